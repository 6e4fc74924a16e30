//! The gRPC API on the secure port, from the outside: it shares the port
//! and the registry with REST (routed by content type), authenticates like
//! REST (anonymous → PermissionDenied with upstream's message, a bad token →
//! Unauthenticated), maps errors to gRPC codes with the metav1.Status in the
//! details, and proxies logs/exec to the pod's kubelet (refusing pods that
//! do not exist or are not scheduled yet, as upstream).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use ferrokube_client::{Client, Kubeconfig, ListParams};
use ferrokube_proto::api as pb;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use support::TestCluster;

const TIMEOUT: Duration = Duration::from_secs(20);

async fn client_with(cluster: &TestCluster, token: Option<&str>) -> Client {
    let config = Kubeconfig {
        server: cluster.base_url(),
        ca_pem: Some(cluster.ca_pem().as_bytes().to_vec()),
        token: token.map(str::to_string),
        ..Default::default()
    };
    tokio::time::timeout(TIMEOUT, Client::from_kubeconfig(&config))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_rest_share_the_port_and_the_registry() {
    let cluster = TestCluster::start().await;
    let client = Client::connect(cluster.kubeconfig_path()).await.unwrap();
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("shared".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
        ..Default::default()
    };
    client.create("default", &cm).await.unwrap();
    let (code, body) = cluster
        .https_get("/api/v1/namespaces/default/configmaps/shared")
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let rest: serde_json::Value = serde_json::from_str(&body).unwrap();
    let grpc: ConfigMap = client.get("default", "shared").await.unwrap();
    assert_eq!(rest["metadata"]["uid"], grpc.metadata.uid.unwrap().as_str());
    assert_eq!(rest["data"]["k"], "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_calls_are_forbidden_with_upstreams_message() {
    let cluster = TestCluster::start().await;
    let anonymous = client_with(&cluster, None).await;
    let err = anonymous
        .list::<ConfigMap>("default", &ListParams::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(403), "{err}");
    let ferrokube_client::Error::Api(api) = err else {
        panic!("not an API error")
    };
    assert_eq!(
        api.message,
        "configmaps is forbidden: User \"system:anonymous\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    assert_eq!(api.status["reason"], "Forbidden");

    let raw = anonymous
        .raw()
        .get(pb::GetRequest {
            resource: Some(pb::ResourceRef {
                version: "v1".into(),
                resource: "namespaces".into(),
                name: "default".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(raw.code(), tonic::Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_token_is_unauthenticated() {
    let cluster = TestCluster::start().await;
    let client = client_with(&cluster, Some("not-a-token")).await;
    let raw = client
        .raw()
        .list(pb::ListRequest {
            resource: Some(pb::ResourceRef {
                version: "v1".into(),
                resource: "pods".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(raw.code(), tonic::Code::Unauthenticated, "{raw:?}");
    let details: serde_json::Value = serde_json::from_slice(raw.details()).unwrap();
    assert_eq!(details["code"], 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_to_grpc_codes_with_the_status_in_the_details() {
    let cluster = TestCluster::start().await;
    let client = Client::connect(cluster.kubeconfig_path()).await.unwrap();
    let mut raw = client.raw();
    let missing = raw
        .get(pb::GetRequest {
            resource: Some(pb::ResourceRef {
                version: "v1".into(),
                resource: "configmaps".into(),
                namespace: "default".into(),
                name: "nope".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let status: serde_json::Value = serde_json::from_slice(missing.details()).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "NotFound");
    assert_eq!(status["message"], "configmaps \"nope\" not found");

    let invalid = raw
        .create(pb::CreateRequest {
            resource: Some(pb::ResourceRef {
                version: "v1".into(),
                resource: "configmaps".into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            object: br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#
                .to_vec(),
            options: None,
            subresource: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    let status: serde_json::Value = serde_json::from_slice(invalid.details()).unwrap();
    assert_eq!(status["code"], 422);
    assert_eq!(
        status["details"]["causes"][0]["field"], "metadata.name",
        "{status}"
    );

    let unknown = raw
        .list(pb::ListRequest {
            resource: Some(pb::ResourceRef {
                group: "example.com".into(),
                version: "v1".into(),
                resource: "widgets".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_exec_refuse_missing_and_unscheduled_pods_like_upstream() {
    let cluster = TestCluster::start().await;
    let client = Client::connect(cluster.kubeconfig_path()).await.unwrap();
    let mut raw = client.raw();
    let logs = |pod: &str| pb::LogsRequest {
        namespace: "default".into(),
        pod: pod.into(),
        ..Default::default()
    };
    let start = |pod: &str| pb::ExecInput {
        frame: Some(pb::exec_input::Frame::Start(pb::ExecStart {
            namespace: "default".into(),
            pod: pod.into(),
            command: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })),
    };
    let missing = raw.logs(logs("web")).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
    let missing = raw
        .exec(futures::stream::iter([start("web")]))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");

    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "pending"},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
    }))
    .unwrap();
    client.create("default", &pod).await.unwrap();
    let unscheduled = raw.logs(logs("pending")).await.unwrap_err();
    assert_eq!(unscheduled.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        unscheduled.message(),
        "pod pending does not have a host assigned"
    );
    let unscheduled = raw
        .exec(futures::stream::iter([start("pending")]))
        .await
        .unwrap_err();
    assert_eq!(unscheduled.code(), tonic::Code::InvalidArgument);
}
