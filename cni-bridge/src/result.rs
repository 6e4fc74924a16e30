//! The spec's success result for ADD and the VERSION answer.
//! Entry points: [`CniResult::to_json`] and [`version_json`].

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::{json, Value};

use crate::config::SUPPORTED_VERSIONS;

/// One interface the plugin created; `sandbox` is set for the pod's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    pub sandbox: Option<String>,
}

/// One address given to the pod; `interface` indexes into `interfaces`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub address: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub interface: usize,
}

/// The result of a successful ADD.
#[derive(Debug, Clone, PartialEq)]
pub struct CniResult {
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<(Ipv4Net, Option<Ipv4Addr>)>,
    pub dns: Value,
}

impl CniResult {
    /// The JSON for the requested version: before 1.0.0 every IP also carries `"version": "4"`.
    pub fn to_json(&self) -> Value {
        let pre_1_0 = self.cni_version.starts_with("0.");
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut v = json!({ "name": i.name, "mac": i.mac });
                if let Some(s) = &i.sandbox {
                    v["sandbox"] = json!(s);
                }
                v
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut v = json!({ "address": ip.address.to_string(), "interface": ip.interface });
                if let Some(gw) = ip.gateway {
                    v["gateway"] = json!(gw.to_string());
                }
                if pre_1_0 {
                    v["version"] = json!("4");
                }
                v
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|(dst, gw)| {
                let mut v = json!({ "dst": dst.to_string() });
                if let Some(gw) = gw {
                    v["gw"] = json!(gw.to_string());
                }
                v
            })
            .collect();
        json!({
            "cniVersion": self.cni_version,
            "interfaces": interfaces,
            "ips": ips,
            "routes": routes,
            "dns": self.dns,
        })
    }
}

/// VERSION: the versions this plugin speaks.
pub fn version_json(cni_version: &str) -> Value {
    json!({ "cniVersion": cni_version, "supportedVersions": SUPPORTED_VERSIONS })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_1_0_results_tag_each_ip_with_its_version() {
        let mut r = CniResult {
            cni_version: "0.4.0".into(),
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "aa".into(),
                sandbox: Some("/ns".into()),
            }],
            ips: vec![IpConfig {
                address: "10.0.0.2/24".parse().unwrap(),
                gateway: None,
                interface: 0,
            }],
            routes: vec![],
            dns: json!({}),
        };
        assert_eq!(r.to_json()["ips"][0]["version"], "4");
        r.cni_version = "1.0.0".into();
        assert!(r.to_json()["ips"][0].get("version").is_none());
        assert_eq!(r.to_json()["interfaces"][0]["sandbox"], "/ns");
    }
}
