//! Environment building against FakeObjectSource.

use super::*;
use crate::object_source::FakeObjectSource;

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn objects() -> FakeObjectSource {
    let o = FakeObjectSource::default();
    o.insert_config_map(&obj(serde_json::json!({
        "metadata": {"name": "cfg", "namespace": "prod"},
        "data": {"mode": "fast", "level": "3", "bad key": "x"}
    })));
    o.insert_secret(&obj(serde_json::json!({
        "metadata": {"name": "creds", "namespace": "prod"},
        "data": {"password": "czNjcjN0"}
    })));
    o.insert_service(&obj(serde_json::json!({
        "metadata": {"name": "redis-primary", "namespace": "prod"},
        "spec": {"clusterIP": "10.96.0.20", "ports": [
            {"name": "redis", "port": 6379, "protocol": "TCP"},
            {"name": "metrics", "port": 9121}
        ]}
    })));
    o.insert_service(&obj(serde_json::json!({
        "metadata": {"name": "headless", "namespace": "prod"},
        "spec": {"clusterIP": "None", "ports": [{"port": 80}]}
    })));
    o.insert_service(&obj(serde_json::json!({
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]}
    })));
    o.insert_service(&obj(serde_json::json!({
        "metadata": {"name": "other", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 80}]}
    })));
    o.insert_node(&obj(serde_json::json!({
        "metadata": {"name": "n1"},
        "status": {"allocatable": {"cpu": "4", "memory": "2Gi"}}
    })));
    o
}

fn pod(containers: serde_json::Value) -> Pod {
    obj(serde_json::json!({
        "metadata": {"name": "web", "namespace": "prod", "uid": "u-1",
            "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "serviceAccountName": "robot", "containers": containers}
    }))
}

async fn env_of(p: &Pod, o: &FakeObjectSource) -> Result<Vec<(String, String)>, EnvError> {
    let inp = EnvInputs {
        pod: p,
        container: &p.spec.as_ref().unwrap().containers[0],
        node_name: "n1",
        host_ips: &["10.0.0.1".to_string()],
        pod_ips: &["10.244.1.7".to_string()],
        objects: o,
    };
    make_environment(&inp).await
}

fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
    env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[test]
fn expand_follows_upstream_syntax() {
    let vars = |n: &str| match n {
        "A" => Some("1".to_string()),
        "B" => Some("two".to_string()),
        _ => None,
    };
    assert_eq!(expand("$(A)-$(B)", vars), "1-two");
    assert_eq!(expand("$$(A)", vars), "$(A)");
    assert_eq!(expand("$$$(A)", vars), "$1");
    assert_eq!(expand("$(UNKNOWN)", vars), "$(UNKNOWN)");
    assert_eq!(expand("cost $5 $", vars), "cost $5 $");
    assert_eq!(expand("open $(A", vars), "open $(A");
    assert_eq!(expand("é$(A)é", vars), "é1é");
    assert_eq!(expand("", vars), "");
}

#[tokio::test]
async fn values_sources_and_expansion() {
    let o = objects();
    let p = pod(serde_json::json!([{
        "name": "app", "image": "busybox",
        "resources": {"limits": {"memory": "64Mi"}},
        "env": [
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "GREETING", "value": "mode=$(MODE) pod=$(POD) $$(MODE)"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "SVC", "value": "$(REDIS_PRIMARY_SERVICE_HOST)"},
            {"name": "MISSING_OK", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}}
        ]
    }]));
    let env = env_of(&p, &o).await.unwrap();
    assert_eq!(get(&env, "MODE"), Some("fast"));
    assert_eq!(get(&env, "PASS"), Some("s3cr3t"));
    // POD is declared after GREETING, so it is not yet known there.
    assert_eq!(get(&env, "GREETING"), Some("mode=fast pod=$(POD) $(MODE)"));
    assert_eq!(get(&env, "POD"), Some("web"));
    assert_eq!(get(&env, "NS"), Some("prod"));
    assert_eq!(get(&env, "APP"), Some("web"));
    assert_eq!(get(&env, "NODE"), Some("n1"));
    assert_eq!(get(&env, "SA"), Some("robot"));
    assert_eq!(get(&env, "POD_IP"), Some("10.244.1.7"));
    assert_eq!(get(&env, "HOST_IP"), Some("10.0.0.1"));
    assert_eq!(get(&env, "MEM"), Some("64"));
    // No cpu limit: the node's allocatable.
    assert_eq!(get(&env, "CPU"), Some("4"));
    assert_eq!(get(&env, "SVC"), Some("10.96.0.20"));
    assert_eq!(get(&env, "MISSING_OK"), None);
    // Declared variables come first, in order.
    assert_eq!(env[0].0, "MODE");
}

#[tokio::test]
async fn env_from_with_prefix_and_env_overrides() {
    let o = objects();
    let p = pod(serde_json::json!([{
        "name": "app", "image": "busybox",
        "envFrom": [
            {"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
            {"secretRef": {"name": "creds"}},
            {"configMapRef": {"name": "absent", "optional": true}}
        ],
        "env": [{"name": "password", "value": "overridden"}]
    }]));
    let env = env_of(&p, &o).await.unwrap();
    assert_eq!(get(&env, "CFG_mode"), Some("fast"));
    assert_eq!(get(&env, "CFG_level"), Some("3"));
    // A key that is no valid variable name is skipped.
    assert_eq!(get(&env, "CFG_bad key"), None);
    assert_eq!(get(&env, "password"), Some("overridden"));
    assert_eq!(env.iter().filter(|(k, _)| k == "password").count(), 1);
}

#[tokio::test]
async fn missing_config_is_a_config_error_with_upstream_message() {
    let o = objects();
    let cases = [
        (
            serde_json::json!({"configMapKeyRef": {"name": "nope", "key": "k"}}),
            "configmap \"nope\" not found",
        ),
        (
            serde_json::json!({"configMapKeyRef": {"name": "cfg", "key": "k"}}),
            "couldn't find key k in ConfigMap prod/cfg",
        ),
        (
            serde_json::json!({"secretKeyRef": {"name": "nope", "key": "k"}}),
            "secret \"nope\" not found",
        ),
        (
            serde_json::json!({"secretKeyRef": {"name": "creds", "key": "k"}}),
            "couldn't find key k in Secret prod/creds",
        ),
        (
            serde_json::json!({"fieldRef": {"fieldPath": "spec.bogus"}}),
            "unsupported fieldPath: spec.bogus",
        ),
    ];
    for (from, want) in cases {
        let p = pod(serde_json::json!([{
            "name": "app", "image": "busybox",
            "env": [{"name": "X", "valueFrom": from}]
        }]));
        let err = env_of(&p, &o).await.unwrap_err();
        assert_eq!(err.to_string(), want);
    }
    let p = pod(serde_json::json!([{
        "name": "app", "image": "busybox",
        "envFrom": [{"configMapRef": {"name": "absent"}}]
    }]));
    assert_eq!(
        env_of(&p, &o).await.unwrap_err().to_string(),
        "configmap \"absent\" not found"
    );
    // Optional key of an existing configMap: skipped.
    let p = pod(serde_json::json!([{
        "name": "app", "image": "busybox",
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k", "optional": true}}}]
    }]));
    assert_eq!(get(&env_of(&p, &o).await.unwrap(), "X"), None);
}

#[tokio::test]
async fn service_link_variables_match_upstream_format() {
    let o = objects();
    let p = pod(serde_json::json!([{"name": "app", "image": "busybox",
        "env": [{"name": "KUBERNETES_SERVICE_HOST", "value": "mine"}]}]));
    let env = env_of(&p, &o).await.unwrap();
    let want = [
        ("REDIS_PRIMARY_SERVICE_HOST", "10.96.0.20"),
        ("REDIS_PRIMARY_SERVICE_PORT", "6379"),
        ("REDIS_PRIMARY_SERVICE_PORT_REDIS", "6379"),
        ("REDIS_PRIMARY_SERVICE_PORT_METRICS", "9121"),
        ("REDIS_PRIMARY_PORT", "tcp://10.96.0.20:6379"),
        ("REDIS_PRIMARY_PORT_6379_TCP", "tcp://10.96.0.20:6379"),
        ("REDIS_PRIMARY_PORT_6379_TCP_PROTO", "tcp"),
        ("REDIS_PRIMARY_PORT_6379_TCP_PORT", "6379"),
        ("REDIS_PRIMARY_PORT_6379_TCP_ADDR", "10.96.0.20"),
        ("REDIS_PRIMARY_PORT_9121_TCP", "tcp://10.96.0.20:9121"),
        ("KUBERNETES_SERVICE_PORT", "443"),
        ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
        ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
    ];
    for (k, v) in want {
        assert_eq!(get(&env, k), Some(v), "{k}");
    }
    // Explicit env wins; headless services and other namespaces' services are left out.
    assert_eq!(get(&env, "KUBERNETES_SERVICE_HOST"), Some("mine"));
    assert_eq!(
        env.iter()
            .filter(|(k, _)| k == "KUBERNETES_SERVICE_HOST")
            .count(),
        1
    );
    assert!(!env
        .iter()
        .any(|(k, _)| k.starts_with("HEADLESS_") || k.starts_with("OTHER_")));

    // enableServiceLinks: false keeps only the master service.
    let mut p = pod(serde_json::json!([{"name": "app", "image": "busybox"}]));
    p.spec.as_mut().unwrap().enable_service_links = Some(false);
    let env = env_of(&p, &o).await.unwrap();
    assert_eq!(get(&env, "KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
    assert_eq!(get(&env, "REDIS_PRIMARY_SERVICE_HOST"), None);
}

#[test]
fn command_and_args_expand_from_the_final_environment() {
    let c: Container = obj(serde_json::json!({
        "name": "app", "command": ["sh", "-c", "echo $(MSG) $$(MSG)"], "args": ["$(N)", "$(NOPE)"]
    }));
    let env = vec![
        ("MSG".to_string(), "hello".to_string()),
        ("N".to_string(), "3".to_string()),
    ];
    let (cmd, args) = expand_command_and_args(&c, &env);
    assert_eq!(cmd, ["sh", "-c", "echo hello $(MSG)"]);
    assert_eq!(args, ["3", "$(NOPE)"]);
}

#[test]
fn env_var_names() {
    for ok in ["A", "a_b", "_x", ".dot", "-dash", "A1"] {
        assert!(is_env_var_name(ok), "{ok}");
    }
    for bad in ["", "1A", "a b", "a=b"] {
        assert!(!is_env_var_name(bad), "{bad}");
    }
}
