//! The client against a real apiserver and etcd-lite in this process:
//! every verb round trip, conflicts, watch resumption, the reflector's relist
//! on 410 Gone, binding, and leader election on one Lease.

#[path = "../../apiserver/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use ferrokube_client::{
    Client, DeleteParams, Deleted, LeaderElectionConfig, LeaderElector, ListParams, ObjectKey,
    Patch, Reflector, Store, WatchEvent, WatchParams,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;
use support::{wait_for, TestCluster};

const TIMEOUT: Duration = Duration::from_secs(20);

fn config_map(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), value.to_string())])),
        ..Default::default()
    }
}

fn rv<K: k8s_openapi::Metadata<Ty = ObjectMeta>>(obj: &K) -> String {
    obj.metadata().resource_version.clone().unwrap()
}

async fn connect(cluster: &TestCluster) -> Client {
    tokio::time::timeout(TIMEOUT, Client::connect(cluster.kubeconfig_path()))
        .await
        .expect("connects in time")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_list_update_patch_delete_round_trip() {
    let cluster = TestCluster::start().await;
    let client = connect(&cluster).await;

    let created = client
        .create("default", &config_map("settings", "1"))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some(), "the server filled the uid");

    let got: ConfigMap = client.get("default", "settings").await.unwrap();
    assert_eq!(got.data.as_ref().unwrap()["k"], "1");
    assert_eq!(rv(&got), rv(&created));

    let list = client
        .list::<ConfigMap>("default", &ListParams::default())
        .await
        .unwrap();
    assert!(list
        .items
        .iter()
        .any(|c| c.metadata.name.as_deref() == Some("settings")));
    assert!(!list.resource_version.is_empty());

    let mut changed = got.clone();
    changed.data = Some(BTreeMap::from([("k".to_string(), "2".to_string())]));
    let updated = client.update(&changed).await.unwrap();
    assert_eq!(updated.data.as_ref().unwrap()["k"], "2");
    assert_ne!(rv(&updated), rv(&got));

    let patched: ConfigMap = client
        .patch(
            "default",
            "settings",
            &Patch::Merge(json!({"data": {"extra": "x"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.as_ref().unwrap()["extra"], "x");
    let patched: ConfigMap = client
        .patch(
            "default",
            "settings",
            &Patch::Json(json!([{"op": "replace", "path": "/data/k", "value": "3"}])),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.as_ref().unwrap()["k"], "3");

    let deleted = client
        .delete::<ConfigMap>("default", "settings", &DeleteParams::default())
        .await
        .unwrap();
    assert!(matches!(deleted, Deleted::Gone(_)));
    let err = client
        .get::<ConfigMap>("default", "settings")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(
        err.to_string(),
        "configmaps \"settings\" not found (NotFound, 404)"
    );

    let again = client
        .create("default", &config_map("dup", "1"))
        .await
        .map(|_| ());
    assert!(again.is_ok());
    let err = client
        .create("default", &config_map("dup", "1"))
        .await
        .unwrap_err();
    assert!(err.is_already_exists(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_resource_version_is_a_conflict_with_upstreams_message() {
    let cluster = TestCluster::start().await;
    let client = connect(&cluster).await;
    let first = client
        .create("default", &config_map("c", "1"))
        .await
        .unwrap();
    let mut newer = first.clone();
    newer.data = Some(BTreeMap::from([("k".to_string(), "2".to_string())]));
    client.update(&newer).await.unwrap();

    let mut stale = first.clone();
    stale.data = Some(BTreeMap::from([("k".to_string(), "3".to_string())]));
    let err = client.update(&stale).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    let ferrokube_client::Error::Api(api) = err else {
        panic!("not an API error")
    };
    assert_eq!(api.code, 409);
    assert_eq!(
        api.message,
        "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let now: ConfigMap = client.get("default", "c").await.unwrap();
    assert_eq!(
        now.data.unwrap()["k"],
        "2",
        "the stale write changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_after_a_resource_version_in_order() {
    let cluster = TestCluster::start().await;
    let client = connect(&cluster).await;
    let a = client
        .create("default", &config_map("a", "1"))
        .await
        .unwrap();
    let mut a2 = a.clone();
    a2.data = Some(BTreeMap::from([("k".to_string(), "2".to_string())]));
    let a2 = client.update(&a2).await.unwrap();
    let b = client
        .create("default", &config_map("b", "1"))
        .await
        .unwrap();
    client
        .delete::<ConfigMap>("default", "a", &DeleteParams::default())
        .await
        .unwrap();

    let params = WatchParams {
        resource_version: rv(&a),
        ..Default::default()
    };
    let mut stream = client.watch::<ConfigMap>("default", &params).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let ev = tokio::time::timeout(TIMEOUT, stream.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .unwrap();
        let (kind, obj) = match ev {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark { .. } => continue,
        };
        seen.push((kind, obj.metadata.name.clone().unwrap(), rv(&obj)));
    }
    assert_eq!(
        seen.iter()
            .map(|(k, n, _)| (*k, n.as_str()))
            .collect::<Vec<_>>(),
        [("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    );
    assert_eq!(seen[0].2, rv(&a2));
    assert_eq!(seen[1].2, rv(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_too_old_resource_version_makes_the_reflector_relist() {
    let cluster = TestCluster::start_with(&["--default-watch-cache-size=10"]).await;
    let client = connect(&cluster).await;
    let first = client
        .create("default", &config_map("cm-0", "0"))
        .await
        .unwrap();
    for i in 1..15 {
        client
            .create("default", &config_map(&format!("cm-{i}"), "0"))
            .await
            .unwrap();
    }

    // The watch cache kept only the last 10 changes: rv(cm-0) is gone.
    let params = WatchParams {
        resource_version: rv(&first),
        ..Default::default()
    };
    let mut stream = client.watch::<ConfigMap>("default", &params).await.unwrap();
    let err = tokio::time::timeout(TIMEOUT, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(err.is_gone(), "{err}");

    let store = Store::<ConfigMap>::new();
    let reflector =
        Reflector::new(client.clone(), "default", store.clone()).resuming_from(&rv(&first));
    let task = tokio::spawn(reflector.run());
    assert!(store.wait_until_synced(TIMEOUT).await, "relisted after 410");
    assert_eq!(store.lists(), 1, "synced by a list, not by the old watch");
    assert_eq!(store.len(), 15);

    // And it keeps watching from the relist's resourceVersion.
    client
        .create("default", &config_map("late", "0"))
        .await
        .unwrap();
    let key = ObjectKey::new("default", "late");
    assert!(wait_for(TIMEOUT, || std::future::ready(store.get(&key).is_some())).await);
    assert_eq!(store.lists(), 1);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_sets_the_pods_node_name_once() {
    let cluster = TestCluster::start().await;
    let client = connect(&cluster).await;
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: Some("busybox".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    client.create("default", &pod).await.unwrap();
    let bound = client.bind("default", "web", "node-1").await.unwrap();
    assert_eq!(
        bound.spec.as_ref().unwrap().node_name.as_deref(),
        Some("node-1")
    );
    let got: Pod = client.get("default", "web").await.unwrap();
    assert_eq!(got.spec.unwrap().node_name.as_deref(), Some("node-1"));
    let scheduled = got
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .any(|c| c.type_ == "PodScheduled" && c.status == "True");
    assert!(scheduled, "binding sets the PodScheduled condition");

    let err = client.bind("default", "web", "node-2").await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(
        err.to_string()
            .contains("pod web is already assigned to node \"node-1\""),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_electors_on_one_lease_have_one_leader_and_the_other_takes_over_on_release() {
    let cluster = TestCluster::start().await;
    let client = connect(&cluster).await;
    let config = |id: &str| {
        let mut c = LeaderElectionConfig::new("kube-system", "kube-scheduler", id);
        // Short retries keep the test quick; the lease rules are the same.
        c.retry_period = Duration::from_millis(200);
        c
    };
    let a = LeaderElector::new(client.clone(), config("a"));
    let b = LeaderElector::new(client.clone(), config("b"));
    let (mut a_leads, mut b_leads) = (a.subscribe(), b.subscribe());
    let (stop_a, a_stopped) = tokio::sync::oneshot::channel::<()>();
    let (stop_b, b_stopped) = tokio::sync::oneshot::channel::<()>();
    let a_task = tokio::spawn(a.run(async {
        let _ = a_stopped.await;
    }));
    let b_task = tokio::spawn(b.run(async {
        let _ = b_stopped.await;
    }));

    let leader = tokio::time::timeout(TIMEOUT, async {
        tokio::select! {
            _ = a_leads.wait_for(|l| *l) => "a",
            _ = b_leads.wait_for(|l| *l) => "b",
        }
    })
    .await
    .expect("someone leads");
    let lease: k8s_openapi::api::coordination::v1::Lease =
        client.get("kube-system", "kube-scheduler").await.unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(leader));
    assert_eq!(spec.lease_duration_seconds, Some(15));

    // The follower stays a follower for several retry periods.
    let (follower_leads, stop_leader, leader_task, stop_follower, follower_task) = if leader == "a"
    {
        (b_leads.clone(), stop_a, a_task, stop_b, b_task)
    } else {
        (a_leads.clone(), stop_b, b_task, stop_a, a_task)
    };
    assert!(
        !wait_for(Duration::from_secs(1), || std::future::ready(
            *follower_leads.borrow()
        ))
        .await,
        "two leaders at once"
    );

    stop_leader.send(()).unwrap();
    tokio::time::timeout(TIMEOUT, leader_task)
        .await
        .unwrap()
        .unwrap();
    let mut follower_leads = follower_leads;
    tokio::time::timeout(Duration::from_secs(10), follower_leads.wait_for(|l| *l))
        .await
        .expect("the follower takes over well before the 15 s lease expires")
        .unwrap();
    let lease: k8s_openapi::api::coordination::v1::Lease =
        client.get("kube-system", "kube-scheduler").await.unwrap();
    let spec = lease.spec.unwrap();
    assert_ne!(spec.holder_identity.as_deref(), Some(leader));
    assert_eq!(spec.lease_transitions, Some(1));
    stop_follower.send(()).unwrap();
    tokio::time::timeout(TIMEOUT, follower_task)
        .await
        .unwrap()
        .unwrap();
}
