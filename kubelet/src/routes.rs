//! Host-gw pod routes: for every other node that has a podCIDR and an
//! InternalIP, a route `podCIDR via InternalIP` in this node's network
//! namespace, so pods on different nodes reach each other without an
//! overlay (the nodes share one L2 segment). Entry point:
//! [`HostGwRoutes::sync`], which the kubelet calls with its Node cache.
//!
//! To ensure correctness: the routes carry our own protocol number
//! ([`ROUTE_PROTOCOL`]), so a sync changes only routes it made — never the
//! node's own routes, nor the pod bridge's — and removes the ones of nodes
//! that left.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType,
};
use rtnetlink::{Handle, RouteMessageBuilder};

/// The `proto` of the routes this module owns (`ip route` shows it as
/// `proto 75`).
pub const ROUTE_PROTOCOL: u8 = 75;

#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("opening a netlink socket: {0}")]
    Connect(std::io::Error),
    #[error("{step} {target}: {source}")]
    Request {
        step: &'static str,
        target: String,
        source: rtnetlink::Error,
    },
}

/// The routes this node wants: each other node's podCIDR via its
/// InternalIP. Nodes without either, and IPv6 CIDRs, are left out.
pub fn desired_routes(nodes: &[Node], self_name: &str) -> BTreeMap<Ipv4Net, Ipv4Addr> {
    let mut out = BTreeMap::new();
    for node in nodes {
        if node.metadata.name.as_deref() == Some(self_name) {
            continue;
        }
        let Some(spec) = &node.spec else { continue };
        let cidrs = spec
            .pod_cidrs
            .clone()
            .unwrap_or_else(|| spec.pod_cidr.clone().into_iter().collect());
        let ip = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .and_then(|a| a.address.parse::<Ipv4Addr>().ok());
        let Some(ip) = ip else { continue };
        for cidr in cidrs {
            if let Ok(net) = cidr.parse::<Ipv4Net>() {
                out.insert(net.trunc(), ip);
            }
        }
    }
    out
}

/// Keeps this namespace's host-gw routes equal to [`desired_routes`].
pub struct HostGwRoutes {
    handle: Handle,
}

impl HostGwRoutes {
    /// A netlink connection in the calling thread's namespace (the
    /// kubelet's, i.e. the node's).
    pub fn new() -> Result<Self, RoutesError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(RoutesError::Connect)?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// The routes with [`ROUTE_PROTOCOL`] in the main table.
    pub async fn current(&self) -> Result<BTreeMap<Ipv4Net, Ipv4Addr>, RoutesError> {
        let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let routes: Vec<RouteMessage> = self
            .handle
            .route()
            .get(filter)
            .execute()
            .try_collect()
            .await
            .map_err(|source| RoutesError::Request {
                step: "list routes",
                target: "ipv4".into(),
                source,
            })?;
        let mut out = BTreeMap::new();
        for r in routes {
            if r.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL) {
                continue;
            }
            let mut dst = None;
            let mut gw = None;
            for attr in &r.attributes {
                match attr {
                    RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = Some(*a),
                    RouteAttribute::Gateway(RouteAddress::Inet(a)) => gw = Some(*a),
                    _ => {}
                }
            }
            if let (Some(dst), Some(gw)) = (dst, gw) {
                if let Ok(net) = Ipv4Net::new(dst, r.header.destination_prefix_length) {
                    out.insert(net, gw);
                }
            }
        }
        Ok(out)
    }

    /// Adds, replaces and removes our routes so they equal `want`. Returns
    /// how many routes changed.
    pub async fn sync(&self, want: &BTreeMap<Ipv4Net, Ipv4Addr>) -> Result<usize, RoutesError> {
        let have = self.current().await?;
        let mut changed = 0;
        for (net, gw) in &have {
            if want.get(net) != Some(gw) {
                let msg = route_message(*net, *gw);
                self.handle
                    .route()
                    .del(msg)
                    .execute()
                    .await
                    .map_err(|source| RoutesError::Request {
                        step: "delete route",
                        target: format!("{net} via {gw}"),
                        source,
                    })?;
                tracing::info!(pod_cidr = %net, via = %gw, "removed host-gw route");
                changed += 1;
            }
        }
        for (net, gw) in want {
            if have.get(net) == Some(gw) {
                continue;
            }
            self.handle
                .route()
                .add(route_message(*net, *gw))
                .replace()
                .execute()
                .await
                .map_err(|source| RoutesError::Request {
                    step: "add route",
                    target: format!("{net} via {gw}"),
                    source,
                })?;
            tracing::info!(pod_cidr = %net, via = %gw, "added host-gw route");
            changed += 1;
        }
        Ok(changed)
    }
}

fn route_message(net: Ipv4Net, gw: Ipv4Addr) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(net.network(), net.prefix_len())
        .gateway(gw)
        .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
        .kind(RouteType::Unicast)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"podCIDR": cidr},
            "status": {"addresses": ip.map(|ip| vec![
                serde_json::json!({"type": "Hostname", "address": name}),
                serde_json::json!({"type": "InternalIP", "address": ip}),
            ])},
        }))
        .unwrap()
    }

    #[test]
    fn every_other_node_with_a_cidr_and_an_internal_ip_gets_a_route() {
        let nodes = [
            node("a", Some("10.244.0.0/24"), Some("172.30.1.10")),
            node("b", Some("10.244.1.0/24"), Some("172.30.1.11")),
            node("c", None, Some("172.30.1.12")),
            node("d", Some("10.244.3.0/24"), None),
            node("e", Some("10.244.4.7/24"), Some("172.30.1.14")),
        ];
        let want = desired_routes(&nodes, "a");
        let expected: BTreeMap<Ipv4Net, Ipv4Addr> = [
            ("10.244.1.0/24", "172.30.1.11"),
            ("10.244.4.0/24", "172.30.1.14"),
        ]
        .into_iter()
        .map(|(n, g)| (n.parse().unwrap(), g.parse().unwrap()))
        .collect();
        assert_eq!(want, expected);
    }
}
