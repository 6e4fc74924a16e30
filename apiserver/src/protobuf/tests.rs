//! Bodies built with k8s-pb (prost types from upstream's generated.proto),
//! wrapped as kubectl wraps them, must decode to upstream's JSON shape.

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::coordination::v1 as coordination;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::policy::v1 as policy;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;
use prost::Message as _;
use serde_json::json;

use super::*;

/// `k8s\0` + runtime.Unknown, as client-go's protobuf serializer writes it.
fn envelope(api_version: &str, kind: &str, object: &impl prost::Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(object.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// Go's zero metav1.Time is always on the wire (a non-pointer struct).
fn zero_time() -> Option<meta::Time> {
    Some(meta::Time {
        seconds: Some(0),
        nanos: Some(0),
    })
}

fn object_meta(name: &str, namespace: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: s(name),
        namespace: s(namespace),
        // Go's non-pointer strings are always encoded, empty or not.
        generate_name: s(""),
        resource_version: s(""),
        creation_timestamp: zero_time(),
        ..Default::default()
    })
}

fn quantity(v: &str) -> Quantity {
    Quantity { string: s(v) }
}

fn int_or_string_int(v: i32) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(0),
        int_val: Some(v),
        str_val: s(""),
    })
}

fn int_or_string_str(v: &str) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: s(v),
    })
}

#[test]
fn namespace_decodes_with_type_meta_from_the_envelope() {
    let ns = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            labels: [("team".to_string(), "a".to_string())].into(),
            ..object_meta("demo", "").unwrap()
        }),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus {
            phase: s(""),
            ..Default::default()
        }),
    };
    let got = decode(&envelope("v1", "Namespace", &ns)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "demo", "labels": {"team": "a"}},
            "spec": {},
            "status": {},
        })
    );
}

#[test]
fn deployment_pod_template_keeps_upstream_field_names() {
    let container = core::Container {
        name: s("web"),
        image: s("nginx:1.27"),
        command: vec!["nginx".into(), "-g".into(), "".into()],
        ports: vec![core::ContainerPort {
            name: s("http"),
            container_port: Some(8080),
            host_port: Some(0),
            host_ip: s("10.0.0.1"),
            protocol: s("TCP"),
        }],
        env: vec![
            core::EnvVar {
                name: s("MODE"),
                value: s("prod"),
                value_from: None,
            },
            core::EnvVar {
                name: s("NODE"),
                value: s(""),
                value_from: Some(core::EnvVarSource {
                    field_ref: Some(core::ObjectFieldSelector {
                        api_version: s("v1"),
                        field_path: s("spec.nodeName"),
                    }),
                    ..Default::default()
                }),
            },
        ],
        resources: Some(core::ResourceRequirements {
            limits: [("memory".to_string(), quantity("128Mi"))].into(),
            requests: [
                ("cpu".to_string(), quantity("100m")),
                ("memory".to_string(), quantity("64Mi")),
            ]
            .into(),
            claims: vec![],
        }),
        liveness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: s("/healthz"),
                    port: int_or_string_str("http"),
                    host: s(""),
                    scheme: s("HTTP"),
                    http_headers: vec![],
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(5),
            period_seconds: Some(10),
            ..Default::default()
        }),
        readiness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                tcp_socket: Some(core::TcpSocketAction {
                    port: int_or_string_int(8080),
                    host: s(""),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let deployment = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            labels: [("app".to_string(), "web".to_string())].into(),
            ..object_meta("web", "demo").unwrap()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(3),
            selector: Some(meta::LabelSelector {
                match_labels: [("app".to_string(), "web".to_string())].into(),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: [("app".to_string(), "web".to_string())].into(),
                    ..object_meta("", "").unwrap()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    volumes: vec![core::Volume {
                        name: s("config"),
                        volume_source: Some(core::VolumeSource {
                            config_map: Some(core::ConfigMapVolumeSource {
                                local_object_reference: Some(core::LocalObjectReference {
                                    name: s("web-config"),
                                }),
                                default_mode: Some(420),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                    }],
                    restart_policy: s("Always"),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: int_or_string_str("25%"),
                    max_surge: int_or_string_int(1),
                }),
            }),
            min_ready_seconds: Some(0),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus::default()),
    };
    let got = decode(&envelope("apps/v1", "Deployment", &deployment)).unwrap();
    let expected = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "demo", "labels": {"app": "web"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "web",
                        "image": "nginx:1.27",
                        "command": ["nginx", "-g", ""],
                        "ports": [{
                            "name": "http",
                            "containerPort": 8080,
                            "hostIP": "10.0.0.1",
                            "protocol": "TCP",
                        }],
                        "env": [
                            {"name": "MODE", "value": "prod"},
                            {"name": "NODE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}},
                        ],
                        "resources": {
                            "limits": {"memory": "128Mi"},
                            "requests": {"cpu": "100m", "memory": "64Mi"},
                        },
                        "livenessProbe": {
                            "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                            "initialDelaySeconds": 5,
                            "periodSeconds": 10,
                        },
                        "readinessProbe": {"tcpSocket": {"port": 8080}},
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": "web-config", "defaultMode": 420}}],
                    "restartPolicy": "Always",
                },
            },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1},
            },
        },
        "status": {},
    });
    assert_eq!(got, expected, "{got:#}");
}

#[test]
fn deployment_body_is_accepted_by_the_json_path() {
    let deployment = apps::Deployment {
        metadata: object_meta("web", "demo"),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(1),
            selector: Some(meta::LabelSelector {
                match_labels: [("app".to_string(), "web".to_string())].into(),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: [("app".to_string(), "web".to_string())].into(),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: s("busybox"),
                        image: s("busybox"),
                        resources: Some(core::ResourceRequirements::default()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let body = envelope("apps/v1", "Deployment", &deployment);
    let value = crate::codec::parse_body("application/vnd.kubernetes.protobuf", &body).unwrap();
    let res = ferrokube_api::resources::find_by_kind("apps/v1", "Deployment")
        .expect("deployments are served");
    let decoded =
        crate::codec::decode_object(res, value, crate::codec::FieldValidation::Strict).unwrap();
    assert_eq!(
        decoded.object["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox"
    );
}

#[test]
fn secret_bytes_become_base64_and_string_data_stays_text() {
    let secret = core::Secret {
        metadata: object_meta("s", "demo"),
        data: [
            ("a".to_string(), b"b".to_vec()),
            ("bin".to_string(), vec![0, 255, 10]),
            ("empty".to_string(), vec![]),
        ]
        .into(),
        string_data: [("plain".to_string(), "text".to_string())].into(),
        r#type: s("Opaque"),
        immutable: None,
    };
    let got = decode(&envelope("v1", "Secret", &secret)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s", "namespace": "demo"},
            "data": {"a": "Yg==", "bin": "AP8K", "empty": ""},
            "stringData": {"plain": "text"},
            "type": "Opaque",
        })
    );
}

#[test]
fn configmap_keeps_empty_values_and_binary_data() {
    let cm = core::ConfigMap {
        metadata: object_meta("cm", "demo"),
        immutable: Some(false),
        data: [
            ("k".to_string(), "v".to_string()),
            ("blank".to_string(), String::new()),
        ]
        .into(),
        binary_data: [("raw".to_string(), b"\x01\x02".to_vec())].into(),
    };
    let got = decode(&envelope("v1", "ConfigMap", &cm)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cm", "namespace": "demo"},
            "immutable": false,
            "data": {"k": "v", "blank": ""},
            "binaryData": {"raw": "AQI="},
        })
    );
}

#[test]
fn service_target_port_is_a_number_or_a_name() {
    let svc = core::Service {
        metadata: object_meta("web", "demo"),
        spec: Some(core::ServiceSpec {
            ports: vec![
                core::ServicePort {
                    name: s("http"),
                    protocol: s("TCP"),
                    port: Some(80),
                    target_port: int_or_string_int(8080),
                    node_port: Some(0),
                    app_protocol: None,
                },
                core::ServicePort {
                    name: s("admin"),
                    protocol: s("TCP"),
                    port: Some(9000),
                    target_port: int_or_string_str("admin"),
                    node_port: Some(0),
                    app_protocol: None,
                },
                core::ServicePort {
                    name: s("default"),
                    port: Some(443),
                    // kubectl leaves it zero for the server to default.
                    target_port: int_or_string_int(0),
                    ..Default::default()
                },
            ],
            selector: [("app".to_string(), "web".to_string())].into(),
            r#type: s("ClusterIP"),
            cluster_ip: s(""),
            ..Default::default()
        }),
        status: Some(core::ServiceStatus {
            load_balancer: Some(core::LoadBalancerStatus::default()),
            conditions: vec![],
        }),
    };
    let got = decode(&envelope("v1", "Service", &svc)).unwrap();
    assert_eq!(
        got["spec"],
        json!({
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                {"name": "admin", "protocol": "TCP", "port": 9000, "targetPort": "admin"},
                {"name": "default", "port": 443},
            ],
            "selector": {"app": "web"},
            "type": "ClusterIP",
        })
    );
    assert_eq!(got["status"], json!({"loadBalancer": {}}));
}

#[test]
fn eviction_carries_delete_options() {
    let eviction = policy::Eviction {
        metadata: object_meta("web-0", "demo"),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(30),
            preconditions: Some(meta::Preconditions {
                uid: s("4f1e"),
                resource_version: None,
            }),
            dry_run: vec!["All".into()],
            ..Default::default()
        }),
    };
    let got = decode(&envelope("policy/v1", "Eviction", &eviction)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "web-0", "namespace": "demo"},
            "deleteOptions": {"gracePeriodSeconds": 30, "preconditions": {"uid": "4f1e"}, "dryRun": ["All"]},
        })
    );
}

#[test]
fn delete_options_decode_in_any_group_version() {
    let opts = meta::DeleteOptions {
        propagation_policy: s("Foreground"),
        orphan_dependents: None,
        ..Default::default()
    };
    for api_version in ["v1", "apps/v1", "meta.k8s.io/v1"] {
        let got = decode(&envelope(api_version, "DeleteOptions", &opts)).unwrap();
        assert_eq!(
            got,
            json!({"apiVersion": api_version, "kind": "DeleteOptions", "propagationPolicy": "Foreground"})
        );
    }
}

#[test]
fn times_are_rfc3339_and_micro_times_keep_microseconds() {
    let lease = coordination::Lease {
        metadata: Some(meta::ObjectMeta {
            name: s("node-1"),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_767_225_600),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        spec: Some(coordination::LeaseSpec {
            holder_identity: s("node-1"),
            lease_duration_seconds: Some(40),
            acquire_time: Some(meta::MicroTime {
                seconds: Some(1_767_225_600),
                nanos: Some(123_456_000),
            }),
            renew_time: Some(meta::MicroTime {
                seconds: Some(0),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
    };
    let got = decode(&envelope("coordination.k8s.io/v1", "Lease", &lease)).unwrap();
    assert_eq!(got["metadata"]["creationTimestamp"], "2026-01-01T00:00:00Z");
    assert_eq!(
        got["spec"],
        json!({
            "holderIdentity": "node-1",
            "leaseDurationSeconds": 40,
            "acquireTime": "2026-01-01T00:00:00.123456Z",
        })
    );
}

#[test]
fn raw_extension_holds_embedded_json() {
    let revision = apps::ControllerRevision {
        metadata: object_meta("web-1", "demo"),
        data: Some(k8s_pb::apimachinery::pkg::runtime::RawExtension {
            raw: Some(br#"{"spec":{"template":{}}}"#.to_vec()),
        }),
        revision: Some(2),
    };
    let got = decode(&envelope("apps/v1", "ControllerRevision", &revision)).unwrap();
    assert_eq!(got["data"], json!({"spec": {"template": {}}}));
    assert_eq!(got["revision"], 2);
}

#[test]
fn repeated_scalars_decode_packed_and_unpacked() {
    // PodSecurityContext.supplementalGroups (tag 4, int64): gogo writes it
    // unpacked; proto3-style writers pack it. Both must read the same.
    let unpacked = [0x20, 1, 0x20, 0xe8, 0x07];
    let packed = [0x22, 3, 1, 0xe8, 0x07];
    for bytes in [&unpacked[..], &packed[..]] {
        let msg = message("k8s.io.api.core.v1.PodSecurityContext").unwrap();
        let mut obj = Map::new();
        decode_message(msg, bytes, "", 0, &mut obj).unwrap();
        assert_eq!(Value::Object(obj), json!({"supplementalGroups": [1, 1000]}));
    }
}

#[test]
fn unknown_field_numbers_are_skipped() {
    let mut raw = core::Namespace {
        metadata: object_meta("demo", ""),
        ..Default::default()
    }
    .encode_to_vec();
    // Field 99 as varint, fixed64, length-delimited and fixed32.
    raw.extend([0x98, 0x06, 0x01]);
    raw.extend([0x99, 0x06, 0, 0, 0, 0, 0, 0, 0, 0]);
    raw.extend([0x9a, 0x06, 0x02, b'h', b'i']);
    raw.extend([0x9d, 0x06, 0, 0, 0, 0]);
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s("v1"),
            kind: s("Namespace"),
        }),
        raw: Some(raw),
        ..Default::default()
    };
    let body = [MAGIC, &unknown.encode_to_vec()].concat();
    assert_eq!(
        decode(&body).unwrap(),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})
    );
}

#[test]
fn bad_bodies_get_a_clear_bad_request() {
    let cases: &[(&[u8], &str)] = &[
        (b"{\"kind\":\"Namespace\"}", "protobuf prefix"),
        (b"k8s\x00\x0a\x05\x0a\x02v1", "truncated"),
    ];
    for (body, needle) in cases {
        let err = decode(body).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(
            err.message.starts_with("failed to decode protobuf body: "),
            "{}",
            err.message
        );
        assert!(err.message.contains(needle), "{}", err.message);
    }
    let err = decode(&envelope(
        "example.com/v1",
        "Widget",
        &meta::Status::default(),
    ))
    .unwrap_err();
    assert_eq!(err.code, 400);
    assert!(
        err.message
            .contains(r#"no protobuf schema for apiVersion "example.com/v1" kind "Widget""#),
        "{}",
        err.message
    );
    let gzipped = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s("v1"),
            kind: s("Namespace"),
        }),
        raw: Some(vec![]),
        content_encoding: s("gzip"),
        content_type: None,
    };
    let err = decode(&[MAGIC, &gzipped.encode_to_vec()].concat()).unwrap_err();
    assert!(
        err.message.contains("content encoding \"gzip\""),
        "{}",
        err.message
    );
}

#[test]
fn a_field_with_the_wrong_wire_type_names_its_path() {
    // Namespace.metadata (tag 1) holding ObjectMeta.name (tag 1) as a varint.
    let raw = [0x0a, 0x02, 0x08, 0x01];
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s("v1"),
            kind: s("Namespace"),
        }),
        raw: Some(raw.to_vec()),
        ..Default::default()
    };
    let err = decode(&[MAGIC, &unknown.encode_to_vec()].concat()).unwrap_err();
    assert!(
        err.message.contains("metadata.name: expected wire type 2"),
        "{}",
        err.message
    );
}

#[test]
fn durations_print_as_go_does() {
    assert_eq!(go_duration(0), "0s");
    assert_eq!(go_duration(999), "999ns");
    assert_eq!(go_duration(1_500), "1.5µs");
    assert_eq!(go_duration(300_000_000), "300ms");
    assert_eq!(go_duration(1_500_000_000), "1.5s");
    assert_eq!(go_duration(90_000_000_000), "1m30s");
    assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
    assert_eq!(go_duration(-2_000_000_000), "-2s");
}

#[test]
fn schema_is_sorted_and_closed() {
    let messages = schema::MESSAGES;
    assert!(
        messages.windows(2).all(|w| w[0].name < w[1].name),
        "sorted by name"
    );
    for m in messages {
        assert!(
            m.fields.windows(2).all(|w| w[0].tag < w[1].tag),
            "{}: sorted tags",
            m.name
        );
        for f in m.fields {
            let referenced = match f.kind {
                Kind::Message(n) | Kind::Inline(n) => Some(n),
                Kind::Map(_, Kind::Message(n)) => Some(*n),
                _ => None,
            };
            if let Some(n) = referenced {
                assert!(
                    message(n).is_some(),
                    "{}.{} refers to missing {n}",
                    m.name,
                    f.json
                );
            }
        }
    }
    for kind in [
        "Pod",
        "Service",
        "Secret",
        "ConfigMap",
        "Namespace",
        "Node",
        "Event",
    ] {
        assert!(message_for("v1", kind).is_some(), "{kind}");
    }
    assert!(message_for("rbac.authorization.k8s.io/v1", "ClusterRoleBinding").is_some());
    assert!(message_for("autoscaling/v1", "Scale").is_some());
    assert!(message_for("batch/v1", "CronJob").is_some());
    assert!(message_for(
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration"
    )
    .is_some());
}

fn sample_deployment_body() -> Vec<u8> {
    let deployment = apps::Deployment {
        metadata: object_meta("web", "demo"),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(2),
            template: Some(core::PodTemplateSpec {
                metadata: object_meta("", ""),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: s("c"),
                        image: s("busybox"),
                        ports: vec![core::ContainerPort {
                            container_port: Some(80),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    envelope("apps/v1", "Deployment", &deployment)
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
        let _ = decode(&[MAGIC, &bytes].concat());
    }

    #[test]
    fn corrupted_bodies_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut body = sample_deployment_body();
        for (at, byte) in flips {
            let i = at.index(body.len());
            body[i] = byte;
        }
        let _ = decode(&body);
        let _ = decode(&body[..cut.index(body.len())]);
    }
}
