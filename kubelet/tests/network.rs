//! Pod networking across the rig's two nodes: every pod gets an address
//! from its node's podCIDR through cni-bridge, and pods reach each other on
//! the same node (one bridge) and across nodes (the kubelets' host-gw
//! routes). Root only: skipped with a message otherwise.

mod support;

use std::time::Duration;

use ferrokube_client::Client;
use k8s_openapi::api::core::v1::Pod;
use support::{wait_for, Rig, TestNode};

/// A busybox pod on `node` running `script`.
fn pod(node: &TestNode, name: &str, script: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {
            "nodeName": node.name,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script]}]
        }
    }))
    .unwrap()
}

async fn running_ip(client: &Client, name: &str) -> Option<String> {
    let p: Pod = client.get("default", name).await.ok()?;
    let s = p.status?;
    (s.phase.as_deref() == Some("Running")).then_some(s.pod_ip)?
}

/// A web server that answers with `body`.
fn server(body: &str) -> String {
    format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 8080 -h /www")
}

/// Fetches `url` until it answers (at most 60 tries), prints it, then idles.
/// (`timeout`, not `wget -T`: Debian's static busybox 1.35 crashes on `-T`.)
fn fetcher(url: &str) -> String {
    format!(
        "for i in $(seq 60); do if timeout 3 wget -qO- {url}; then echo FETCHED; break; fi; sleep 1; done; exec sleep 3600"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_reach_each_other_on_one_node_and_across_nodes() {
    let Some(rig) = Rig::start("net", 2).await else {
        return;
    };
    let client = rig.client().await;
    let (a, b) = (&rig.nodes[0], &rig.nodes[1]);

    client
        .create("default", &pod(a, "web-a", &server("hello-from-a")))
        .await
        .unwrap();
    client
        .create("default", &pod(b, "web-b", &server("hello-from-b")))
        .await
        .unwrap();
    let mut ips = Vec::new();
    for (name, node) in [("web-a", a), ("web-b", b)] {
        let up = wait_for(Duration::from_secs(60), || async {
            running_ip(&client, name).await.is_some()
        })
        .await;
        assert!(
            up,
            "{name} is not running; kubelet log:\n{}",
            node.kubelet_log()
        );
        let ip = running_ip(&client, name).await.unwrap();
        assert!(
            kubelet::cni::contains(&node.pod_cidr, &ip),
            "{name}'s IP {ip} is not in {}",
            node.pod_cidr
        );
        ips.push(ip);
    }

    // Node a has a host-gw route to b's pods through b's address, and back.
    for (from, to) in [(a, b), (b, a)] {
        let routed = wait_for(Duration::from_secs(30), || async {
            let out = from.netns_exec(&["ip", "route", "show", &to.pod_cidr]);
            String::from_utf8_lossy(&out.stdout).contains(&format!("via {}", to.ip))
        })
        .await;
        assert!(
            routed,
            "{} has no route to {} via {}",
            from.name, to.pod_cidr, to.ip
        );
    }

    // Same node: a pod on a fetches from web-a; across: from web-b.
    let same = format!("http://{}:8080/", ips[0]);
    let across = format!("http://{}:8080/", ips[1]);
    client
        .create("default", &pod(a, "client-same", &fetcher(&same)))
        .await
        .unwrap();
    client
        .create("default", &pod(a, "client-across", &fetcher(&across)))
        .await
        .unwrap();
    for (name, body) in [
        ("client-same", "hello-from-a"),
        ("client-across", "hello-from-b"),
    ] {
        let fetched = wait_for(Duration::from_secs(90), || async {
            a.container_logs(&format!("default_{name}_"), "main")
                .contains("FETCHED")
        })
        .await;
        let log = a.container_logs(&format!("default_{name}_"), "main");
        assert!(
            fetched,
            "{name} never fetched; its log:\n{log}\nkubelet log:\n{}",
            a.kubelet_log()
        );
        assert!(log.contains(body), "{name} got the wrong page:\n{log}");
    }
}
