//! API discovery: `/version`, `/api`, `/apis`, `/apis/<group>`, and the
//! `APIResourceList` of every group/version, in both the legacy shape and the
//! aggregated `apidiscovery.k8s.io/v2` shape that kubectl 1.32 asks for first.
//! Entry points: [`negotiate_discovery`], then [`api_versions`] /
//! [`api_group_list`] / [`aggregated_discovery`] / [`api_resource_list`].
//!
//! Everything here is a pure function of [`ferrokube_api::RESOURCES`], so the
//! router may compute each document once and serve the bytes.
//!
//! ## How client-go negotiates (what the router must do)
//!
//! client-go's discovery client sends, on `GET /api` and `GET /apis`:
//!
//! ```text
//! Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,
//!         application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,
//!         application/json
//! ```
//!
//! (newer clients put a `...;profile=nopeer` variant first). It decides how to
//! decode the body from the response `Content-Type` alone: when it carries
//! `g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList` the body is an
//! `APIGroupDiscoveryList` and the client never fetches `/api/v1` or
//! `/apis/<g>/<v>`; otherwise it decodes `APIVersions`/`APIGroupList` and
//! then fetches every group/version's `APIResourceList`. So:
//!
//! | path | format | body | Content-Type |
//! |---|---|---|---|
//! | `/api` | [`DiscoveryFormat::AggregatedV2`] | [`aggregated_discovery`]`(Core, V2)` | [`DiscoveryFormat::content_type`] |
//! | `/apis` | [`DiscoveryFormat::AggregatedV2`] | [`aggregated_discovery`]`(Groups, V2)` | same |
//! | `/api` | [`DiscoveryFormat::Legacy`] | [`api_versions`] | `application/json` |
//! | `/apis` | [`DiscoveryFormat::Legacy`] | [`api_group_list`] | `application/json` |
//! | `/apis/<g>` | any | [`api_group`] | `application/json` |
//! | `/api/v1`, `/apis/<g>/<v>` | any | [`api_resource_list`] | `application/json` |
//! | `/version` | any | [`version_info`] | `application/json` |
//!
//! Upstream also answers aggregated documents with `Vary: Accept` (the same
//! URL has two bodies) and an `ETag`; [`DiscoveryFormat::NotAcceptable`]
//! becomes `406 Not Acceptable` with a `metav1.Status`.

use ferrokube_api::{GroupVersion, ResourceInfo, RESOURCES};
use serde_json::{json, Map, Value};

/// The group of the aggregated discovery types.
pub const APIDISCOVERY_GROUP: &str = "apidiscovery.k8s.io";

/// What to answer on `/api` or `/apis`, chosen from the request's `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryFormat {
    /// `apidiscovery.k8s.io/v2` `APIGroupDiscoveryList` (kubectl ≥ 1.30 asks first).
    AggregatedV2,
    /// `apidiscovery.k8s.io/v2beta1`: same shape, older clients (1.26–1.29).
    AggregatedV2Beta1,
    /// `APIVersions` / `APIGroupList`, for `application/json` and `*/*`.
    Legacy,
    /// Nothing in `Accept` is something we serve (e.g. protobuf only).
    NotAcceptable,
}

impl DiscoveryFormat {
    /// The response `Content-Type`. client-go compares the `g`, `v` and `as`
    /// parameters of this header to decide how to decode the body.
    pub fn content_type(&self) -> &'static str {
        match self {
            DiscoveryFormat::AggregatedV2 => {
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            }
            DiscoveryFormat::AggregatedV2Beta1 => {
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            }
            DiscoveryFormat::Legacy | DiscoveryFormat::NotAcceptable => "application/json",
        }
    }

    fn api_version(&self) -> &'static str {
        match self {
            DiscoveryFormat::AggregatedV2Beta1 => "apidiscovery.k8s.io/v2beta1",
            _ => "apidiscovery.k8s.io/v2",
        }
    }
}

/// One media range of an `Accept` header: type/subtype, parameters, quality.
struct MediaRange<'a> {
    essence: String,
    params: Vec<(String, &'a str)>,
    quality: f32,
}

fn parse_accept(accept: &str) -> Vec<MediaRange<'_>> {
    let mut out: Vec<MediaRange<'_>> = accept
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';');
            let essence = parts.next()?.trim().to_ascii_lowercase();
            if essence.is_empty() {
                return None;
            }
            let mut params = Vec::new();
            let mut quality = 1.0;
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                let k = k.trim().to_ascii_lowercase();
                let v = v.trim().trim_matches('"');
                if k == "q" {
                    quality = v.parse().unwrap_or(0.0);
                } else {
                    params.push((k, v));
                }
            }
            Some(MediaRange {
                essence,
                params,
                quality,
            })
        })
        .collect();
    // Stable: equal qualities keep the client's order, which is its preference.
    out.sort_by(|a, b| b.quality.total_cmp(&a.quality));
    out
}

/// Picks the discovery document format for an `Accept` header, honouring the
/// client's order (and `q=` weights). An empty header means legacy JSON.
pub fn negotiate_discovery(accept: &str) -> DiscoveryFormat {
    if accept.trim().is_empty() {
        return DiscoveryFormat::Legacy;
    }
    for range in parse_accept(accept) {
        if range.quality <= 0.0 {
            continue;
        }
        let json_like = matches!(
            range.essence.as_str(),
            "application/json" | "application/*" | "*/*"
        );
        if !json_like {
            continue;
        }
        let param = |name: &str| {
            range
                .params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| *v)
        };
        match (param("g"), param("v"), param("as")) {
            (None, None, None) => return DiscoveryFormat::Legacy,
            (Some(APIDISCOVERY_GROUP), Some("v2"), Some("APIGroupDiscoveryList")) => {
                return DiscoveryFormat::AggregatedV2
            }
            (Some(APIDISCOVERY_GROUP), Some("v2beta1"), Some("APIGroupDiscoveryList")) => {
                return DiscoveryFormat::AggregatedV2Beta1
            }
            // Some other conversion target (e.g. as=Table): not for discovery.
            _ => continue,
        }
    }
    DiscoveryFormat::NotAcceptable
}

/// The Kubernetes release whose API we serve.
pub const KUBERNETES_MAJOR: &str = "1";
pub const KUBERNETES_MINOR: &str = "32";

/// `v1.32.0+ferrokube-<crate version>`: a semver that kubectl's version-skew
/// check parses as 1.32, with our build in the metadata.
pub fn git_version() -> String {
    format!(
        "v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0+ferrokube-{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// `GET /version`: upstream's `version.Info`. `gitCommit` and `buildDate`
/// come from the `FERROKUBE_GIT_COMMIT` / `FERROKUBE_BUILD_DATE` build-time
/// environment when set. There is no Go toolchain, so `goVersion` and
/// `compiler` name the Rust one honestly; kubectl only displays them.
pub fn version_info() -> Value {
    json!({
        "major": KUBERNETES_MAJOR,
        "minor": KUBERNETES_MINOR,
        "gitVersion": git_version(),
        "gitCommit": option_env!("FERROKUBE_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": if option_env!("FERROKUBE_GIT_COMMIT").is_some() { "clean" } else { "" },
        "buildDate": option_env!("FERROKUBE_BUILD_DATE").unwrap_or("1970-01-01T00:00:00Z"),
        "goVersion": "n/a (rust)",
        "compiler": "rustc",
        "platform": platform(),
    })
}

/// `linux/amd64` in Go's names for the architecture.
fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("{}/{}", std::env::consts::OS, arch)
}

/// `GET /api` (legacy): `APIVersions`. `server_address` is `host:port` as
/// clients reach this server; upstream lists it for `0.0.0.0/0`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    })
}

/// The named groups (not core), in discovery order, each with its versions.
fn named_groups() -> Vec<(&'static str, Vec<GroupVersion>)> {
    let mut out: Vec<(&'static str, Vec<GroupVersion>)> = Vec::new();
    for gv in ferrokube_api::resources::group_versions() {
        if gv.group.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(g, _)| *g == gv.group) {
            Some((_, versions)) => versions.push(gv),
            None => out.push((gv.group, vec![gv])),
        }
    }
    out
}

fn api_group_body(group: &str, versions: &[GroupVersion]) -> Value {
    let gvs: Vec<Value> = versions
        .iter()
        .map(|gv| json!({"groupVersion": gv.api_version(), "version": gv.version}))
        .collect();
    json!({
        "name": group,
        "versions": gvs,
        "preferredVersion": gvs.first().cloned().unwrap_or(Value::Null),
    })
}

/// `GET /apis` (legacy): `APIGroupList` of every named group.
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = named_groups()
        .iter()
        .map(|(g, versions)| api_group_body(g, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<group>`: `APIGroup`, or `None` (404) for a group we do not serve.
pub fn api_group(group: &str) -> Option<Value> {
    let groups = named_groups();
    let (name, versions) = groups.iter().find(|(g, _)| *g == group)?;
    let mut body = api_group_body(name, versions);
    let obj = body.as_object_mut()?;
    obj.insert("kind".into(), json!("APIGroup"));
    obj.insert("apiVersion".into(), json!("v1"));
    Some(body)
}

/// Upstream's `storageVersionHash`: the first 8 bytes of
/// sha256(`<group>/<version>/<kind>`), base64. Clients only compare it for
/// equality (the storage migrator), but matching upstream costs nothing.
pub fn storage_version_hash(group: &str, version: &str, kind: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("{group}/{version}/{kind}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&digest[..8])
}

/// What a subresource answers with, as upstream's discovery lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubresourceInfo {
    pub name: &'static str,
    /// Empty group/version means "same as the parent resource".
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

/// The discovery facts of `res`'s subresource `name`, following upstream's
/// `/api/v1` and `/apis/apps/v1` answers.
pub fn subresource_info(res: &ResourceInfo, name: &'static str) -> SubresourceInfo {
    let (group, version, kind, verbs): (&str, &str, &str, &[&str]) = match name {
        "status" | "ephemeralcontainers" | "resize" => ("", "", res.kind, STATUS_VERBS),
        "scale" => ("autoscaling", "v1", "Scale", STATUS_VERBS),
        "binding" => ("", "", "Binding", &["create"]),
        "eviction" => ("policy", "v1", "Eviction", &["create"]),
        "log" => ("", "", res.kind, &["get"]),
        "exec" => ("", "", "PodExecOptions", &["create", "get"]),
        "attach" => ("", "", "PodAttachOptions", &["create", "get"]),
        "portforward" => ("", "", "PodPortForwardOptions", &["create", "get"]),
        "proxy" => (
            "",
            "",
            match res.kind {
                "Node" => "NodeProxyOptions",
                "Service" => "ServiceProxyOptions",
                _ => "PodProxyOptions",
            },
            PROXY_VERBS,
        ),
        "finalize" => ("", "", res.kind, &["update"]),
        "token" => ("authentication.k8s.io", "v1", "TokenRequest", &["create"]),
        _ => ("", "", res.kind, &["get"]),
    };
    SubresourceInfo {
        name,
        group,
        version,
        kind,
        verbs,
    }
}

fn sorted_verbs(verbs: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = verbs.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Resources of one group/version, in table order.
fn resources_of(gv: GroupVersion) -> impl Iterator<Item = &'static ResourceInfo> {
    RESOURCES.iter().filter(move |r| r.group_version() == gv)
}

/// `GET /api/v1` or `GET /apis/<group>/<version>`: the legacy
/// `APIResourceList`, one entry per resource followed by one per subresource
/// (`pods/log`, `deployments/scale`…). `None` (404) for an unknown group/version.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let gv = GroupVersion {
        group: RESOURCES.iter().find(|r| r.group == group)?.group,
        version: RESOURCES
            .iter()
            .find(|r| r.group == group && r.version == version)?
            .version,
    };
    let mut resources = Vec::new();
    for res in resources_of(gv) {
        let mut entry = Map::new();
        entry.insert("name".into(), json!(res.plural));
        entry.insert("singularName".into(), json!(res.singular));
        entry.insert("namespaced".into(), json!(res.namespaced));
        entry.insert("kind".into(), json!(res.kind));
        entry.insert("verbs".into(), json!(sorted_verbs(res.verbs)));
        if !res.short_names.is_empty() {
            entry.insert("shortNames".into(), json!(res.short_names));
        }
        if !res.categories.is_empty() {
            entry.insert("categories".into(), json!(res.categories));
        }
        entry.insert(
            "storageVersionHash".into(),
            json!(storage_version_hash(res.group, res.version, res.kind)),
        );
        resources.push(Value::Object(entry));
        for sub in res.subresources {
            let info = subresource_info(res, sub);
            let mut entry = Map::new();
            entry.insert("name".into(), json!(format!("{}/{}", res.plural, sub)));
            entry.insert("singularName".into(), json!(""));
            entry.insert("namespaced".into(), json!(res.namespaced));
            if !info.group.is_empty() {
                entry.insert("group".into(), json!(info.group));
                entry.insert("version".into(), json!(info.version));
            }
            entry.insert("kind".into(), json!(info.kind));
            entry.insert("verbs".into(), json!(sorted_verbs(info.verbs)));
            resources.push(Value::Object(entry));
        }
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv.api_version(),
        "resources": resources,
    }))
}

/// Which aggregated document: `/api` (the core group) or `/apis` (the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryRoot {
    /// `GET /api`
    Core,
    /// `GET /apis`
    Groups,
}

fn resource_discovery(res: &ResourceInfo) -> Value {
    let mut entry = Map::new();
    entry.insert("resource".into(), json!(res.plural));
    entry.insert(
        "responseKind".into(),
        json!({"group": res.group, "version": res.version, "kind": res.kind}),
    );
    entry.insert(
        "scope".into(),
        json!(if res.namespaced {
            "Namespaced"
        } else {
            "Cluster"
        }),
    );
    entry.insert("singularResource".into(), json!(res.singular));
    entry.insert("verbs".into(), json!(sorted_verbs(res.verbs)));
    if !res.short_names.is_empty() {
        entry.insert("shortNames".into(), json!(res.short_names));
    }
    if !res.categories.is_empty() {
        entry.insert("categories".into(), json!(res.categories));
    }
    if !res.subresources.is_empty() {
        let subs: Vec<Value> = res
            .subresources
            .iter()
            .map(|sub| {
                let info = subresource_info(res, sub);
                let (group, version) = if info.group.is_empty() {
                    (res.group, res.version)
                } else {
                    (info.group, info.version)
                };
                json!({
                    "subresource": sub,
                    "responseKind": {"group": group, "version": version, "kind": info.kind},
                    "verbs": sorted_verbs(info.verbs),
                })
            })
            .collect();
        entry.insert("subresources".into(), json!(subs));
    }
    Value::Object(entry)
}

fn group_discovery(group: &str, versions: &[GroupVersion]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|gv| {
            let resources: Vec<Value> = resources_of(*gv).map(resource_discovery).collect();
            json!({"version": gv.version, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut metadata = Map::new();
    if !group.is_empty() {
        metadata.insert("name".into(), json!(group));
    }
    metadata.insert("creationTimestamp".into(), Value::Null);
    json!({"metadata": metadata, "versions": versions})
}

/// `GET /api` or `GET /apis` when the client accepts aggregated discovery:
/// an `APIGroupDiscoveryList` holding every resource and subresource, so the
/// client needs no further request. `format` must be one of the aggregated
/// formats (it only sets `apiVersion`; v2beta1 has the same shape).
pub fn aggregated_discovery(root: DiscoveryRoot, format: DiscoveryFormat) -> Value {
    let items: Vec<Value> = match root {
        DiscoveryRoot::Core => {
            let core: Vec<GroupVersion> = ferrokube_api::resources::group_versions()
                .into_iter()
                .filter(|gv| gv.group.is_empty())
                .collect();
            vec![group_discovery("", &core)]
        }
        DiscoveryRoot::Groups => named_groups()
            .iter()
            .map(|(g, versions)| group_discovery(g, versions))
            .collect(),
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format.api_version(),
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_132_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

    #[test]
    fn kubectl_gets_aggregated_v2_and_the_content_type_it_checks() {
        let f = negotiate_discovery(KUBECTL_132_ACCEPT);
        assert_eq!(f, DiscoveryFormat::AggregatedV2);
        assert_eq!(
            f.content_type(),
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        );
        let nopeer = format!(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;profile=nopeer,{KUBECTL_132_ACCEPT}"
        );
        assert_eq!(negotiate_discovery(&nopeer), DiscoveryFormat::AggregatedV2);
    }

    #[test]
    fn plain_json_and_old_clients_get_their_format() {
        assert_eq!(
            negotiate_discovery("application/json"),
            DiscoveryFormat::Legacy
        );
        assert_eq!(negotiate_discovery(""), DiscoveryFormat::Legacy);
        assert_eq!(negotiate_discovery("*/*"), DiscoveryFormat::Legacy);
        assert_eq!(
            negotiate_discovery(
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
            ),
            DiscoveryFormat::AggregatedV2Beta1
        );
        assert_eq!(
            negotiate_discovery("application/vnd.kubernetes.protobuf"),
            DiscoveryFormat::NotAcceptable
        );
        assert_eq!(
            negotiate_discovery(
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0.5,application/json"
            ),
            DiscoveryFormat::Legacy
        );
    }

    #[test]
    fn core_resource_list_has_subresources_like_upstream() {
        let list = api_resource_list("", "v1").unwrap();
        assert_eq!(list["groupVersion"], "v1");
        let resources = list["resources"].as_array().unwrap();
        let find = |name: &str| {
            resources
                .iter()
                .find(|r| r["name"] == name)
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        let pods = find("pods");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert_eq!(pods["singularName"], "pod");
        // Upstream's value for core/v1 Pod.
        assert_eq!(pods["storageVersionHash"], "xPOwRZ+Yhw8=");
        let binding = find("pods/binding");
        assert_eq!(binding["kind"], "Binding");
        assert_eq!(binding["verbs"], json!(["create"]));
        let eviction = find("pods/eviction");
        assert_eq!(eviction["group"], "policy");
        assert_eq!(eviction["kind"], "Eviction");
        let token = find("serviceaccounts/token");
        assert_eq!(token["group"], "authentication.k8s.io");
        assert_eq!(token["kind"], "TokenRequest");
        assert_eq!(token["verbs"], json!(["create"]));
        assert_eq!(
            find("pods/status")["verbs"],
            json!(["get", "patch", "update"])
        );
        assert_eq!(find("namespaces")["namespaced"], false);
        assert!(api_resource_list("", "v2").is_none());
        assert!(api_resource_list("widgets.example.com", "v1").is_none());
    }

    #[test]
    fn deployment_scale_is_an_autoscaling_v1_scale() {
        let list = api_resource_list("apps", "v1").unwrap();
        assert_eq!(list["groupVersion"], "apps/v1");
        let scale = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["version"], "v1");
        assert_eq!(scale["kind"], "Scale");
        assert_eq!(scale["verbs"], json!(["get", "patch", "update"]));
    }

    #[test]
    fn aggregated_documents_carry_every_resource_and_subresource() {
        let core = aggregated_discovery(DiscoveryRoot::Core, DiscoveryFormat::AggregatedV2);
        assert_eq!(core["kind"], "APIGroupDiscoveryList");
        assert_eq!(core["apiVersion"], "apidiscovery.k8s.io/v2");
        let items = core["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert!(items[0]["metadata"].get("name").is_none());
        let v1 = &items[0]["versions"][0];
        assert_eq!(v1["version"], "v1");
        assert_eq!(v1["freshness"], "Current");
        let pods = v1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap();
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(
            pods["responseKind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        assert!(pods["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["subresource"] == "binding" && s["verbs"] == json!(["create"])));

        let groups = aggregated_discovery(DiscoveryRoot::Groups, DiscoveryFormat::AggregatedV2);
        let apps = groups["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == "apps")
            .unwrap();
        let deploy = apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap();
        let scale = deploy["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "scale")
            .unwrap();
        assert_eq!(
            scale["responseKind"],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
    }

    #[test]
    fn legacy_roots_and_version() {
        let api = api_versions("10.0.0.1:6443");
        assert_eq!(api["versions"], json!(["v1"]));
        assert_eq!(
            api["serverAddressByClientCIDRs"][0]["serverAddress"],
            "10.0.0.1:6443"
        );
        let apis = api_group_list();
        let apps = apis["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "apps")
            .unwrap();
        assert_eq!(
            apps["preferredVersion"],
            json!({"groupVersion": "apps/v1", "version": "v1"})
        );
        assert!(apis["groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["name"] != ""));
        assert_eq!(api_group("batch").unwrap()["kind"], "APIGroup");
        assert!(api_group("nope").is_none());
        let v = version_info();
        assert_eq!(v["major"], "1");
        assert_eq!(v["minor"], "32");
        assert!(v["gitVersion"].as_str().unwrap().starts_with("v1.32.0+"));
    }
}
