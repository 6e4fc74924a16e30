//! A container's environment with upstream's semantics
//! (`makeEnvironmentVariables`): `envFrom` first, then `env` in order
//! (`value` with `$(VAR)` expansion, `configMapKeyRef`, `secretKeyRef`,
//! `fieldRef`, `resourceFieldRef`), then the service link variables of
//! [`service_env_vars`] for names the container did not set. Entry point:
//! [`make_environment`]; [`expand`] also serves command and args.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::fieldpath::{self, FieldPathError};
use crate::object_source::{ObjectError, ObjectSource};

/// Why a container's environment cannot be built; the container is not
/// created and waits with `CreateContainerConfigError` and this message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnvError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKey {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKey {
        key: String,
        namespace: String,
        name: String,
    },
    #[error(transparent)]
    FieldPath(#[from] FieldPathError),
    #[error("failed to list services when setting up env vars: {0}")]
    Services(ObjectError),
}

/// What the environment is built from besides the pod and container.
pub struct EnvInputs<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub node_name: &'a str,
    pub host_ips: &'a [String],
    /// The sandbox's IPs; empty before the sandbox has a network.
    pub pod_ips: &'a [String],
    pub objects: &'a dyn ObjectSource,
}

/// `$(VAR)` references replaced by `mapping`, `$$` an escaped `$`; an
/// unknown reference or an unclosed `$(` stays as written (upstream's
/// `third_party/forked/golang/expansion`).
pub fn expand(input: &str, mapping: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        match mapping(name) {
                            Some(v) => out.push_str(&v),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        close + 1
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // `$` before any other character stays, with that character.
                    let ch = rest.chars().next().expect("rest is not empty");
                    out.push('$');
                    out.push(ch);
                    ch.len_utf8()
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < input.len() {
        out.push_str(&input[checkpoint..]);
    }
    out
}

/// Command and args with `$(VAR)` expanded from the final environment.
pub fn expand_command_and_args(
    c: &Container,
    env: &[(String, String)],
) -> (Vec<String>, Vec<String>) {
    let map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let lookup = |name: &str| map.get(name).map(|v| v.to_string());
    let all = |v: &Option<Vec<String>>| {
        v.iter()
            .flatten()
            .map(|s| expand(s, lookup))
            .collect::<Vec<_>>()
    };
    (all(&c.command), all(&c.args))
}

/// `[-._a-zA-Z][-._a-zA-Z0-9]*`, upstream's `IsEnvVarName`.
pub fn is_env_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || "-._".contains(c) => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

fn is_service_ip_set(s: &Service) -> bool {
    s.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty() && ip != "None")
}

fn host_port(ip: &str, port: i32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// The docker-link style variables of services, exactly as upstream's
/// `envvars.FromServices`: `<SVC>_SERVICE_HOST`, `<SVC>_SERVICE_PORT`,
/// `<SVC>_SERVICE_PORT_<NAME>` per named port, `<SVC>_PORT` (first port)
/// and `<SVC>_PORT_<port>_<PROTO>` with `_PROTO`, `_PORT`, `_ADDR`.
pub fn service_env_vars(services: &[Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in services.iter().filter(|s| is_service_ip_set(s)) {
        let spec = svc.spec.clone().unwrap_or_default();
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        let ports = spec.ports.unwrap_or_default();
        let Some(first) = ports.first() else {
            continue;
        };
        let prefix = env_name(svc.metadata.name.as_deref().unwrap_or_default());
        out.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
        let port_var = format!("{prefix}_SERVICE_PORT");
        out.push((port_var.clone(), first.port.to_string()));
        for p in &ports {
            if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((format!("{port_var}_{}", env_name(name)), p.port.to_string()));
            }
        }
        for (i, p) in ports.iter().enumerate() {
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let lower = proto.to_lowercase();
            let url = format!("{lower}://{}", host_port(&ip, p.port));
            if i == 0 {
                out.push((format!("{prefix}_PORT"), url.clone()));
            }
            let pp = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
            out.push((pp.clone(), url));
            out.push((format!("{pp}_PROTO"), lower));
            out.push((format!("{pp}_PORT"), p.port.to_string()));
            out.push((format!("{pp}_ADDR"), ip.clone()));
        }
    }
    out
}

/// The services whose variables a pod in `namespace` gets: `kubernetes`
/// in `default` always, and with `enableServiceLinks` every service of
/// its own namespace (which wins over a same-named `kubernetes`).
pub fn pod_services(
    namespace: &str,
    enable_service_links: bool,
    own: &[Service],
    default_ns: &[Service],
) -> Vec<Service> {
    let mut chosen: BTreeMap<String, Service> = BTreeMap::new();
    for s in default_ns.iter().filter(|s| is_service_ip_set(s)) {
        if s.metadata.name.as_deref() == Some("kubernetes") {
            chosen.insert("kubernetes".into(), s.clone());
        }
    }
    if enable_service_links {
        for s in own.iter().filter(|s| is_service_ip_set(s)) {
            let name = s.metadata.name.clone().unwrap_or_default();
            if namespace == "default" && name == "kubernetes" {
                continue;
            }
            chosen.insert(name, s.clone());
        }
    }
    chosen.into_values().collect()
}

/// An insertion-ordered map: a later set of the same name keeps its place.
#[derive(Default)]
struct OrderedEnv {
    order: Vec<String>,
    values: HashMap<String, String>,
}

impl OrderedEnv {
    fn set(&mut self, k: String, v: String) {
        if self.values.insert(k.clone(), v).is_none() {
            self.order.push(k);
        }
    }
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    data
}

/// configMaps and secrets read once per container start.
struct Fetched<'a> {
    objects: &'a dyn ObjectSource,
    namespace: String,
    config_maps: HashMap<String, ConfigMap>,
    secrets: HashMap<String, Secret>,
}

impl Fetched<'_> {
    /// `Ok(None)`: missing and optional.
    async fn config_map(
        &mut self,
        name: &str,
        optional: bool,
    ) -> Result<Option<&ConfigMap>, EnvError> {
        if !self.config_maps.contains_key(name) {
            match self.objects.config_map(&self.namespace, name).await {
                Ok(cm) => {
                    self.config_maps.insert(name.to_string(), cm);
                }
                Err(e) if e.is_not_found() && optional => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(self.config_maps.get(name))
    }

    async fn secret(&mut self, name: &str, optional: bool) -> Result<Option<&Secret>, EnvError> {
        if !self.secrets.contains_key(name) {
            match self.objects.secret(&self.namespace, name).await {
                Ok(s) => {
                    self.secrets.insert(name.to_string(), s);
                }
                Err(e) if e.is_not_found() && optional => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(self.secrets.get(name))
    }
}

/// The container's environment, in the order: `envFrom` and `env` as
/// declared (a later name overrides an earlier value in place), then
/// service variables the container did not set itself, sorted.
pub async fn make_environment(inp: &EnvInputs<'_>) -> Result<Vec<(String, String)>, EnvError> {
    let pod = inp.pod;
    let c = inp.container;
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let spec = pod.spec.clone().unwrap_or_default();

    let enable_links = spec.enable_service_links.unwrap_or(true);
    let own = if enable_links {
        inp.objects
            .services(&namespace)
            .await
            .map_err(EnvError::Services)?
    } else {
        Vec::new()
    };
    let default_ns = if namespace == "default" && enable_links {
        own.clone()
    } else {
        inp.objects
            .services("default")
            .await
            .map_err(EnvError::Services)?
    };
    let service_env: HashMap<String, String> =
        service_env_vars(&pod_services(&namespace, enable_links, &own, &default_ns))
            .into_iter()
            .collect();

    let mut fetched = Fetched {
        objects: inp.objects,
        namespace: namespace.clone(),
        config_maps: HashMap::new(),
        secrets: HashMap::new(),
    };
    let mut env = OrderedEnv::default();
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let pairs: Vec<(String, String)> = if let Some(r) = &from.config_map_ref {
            match fetched
                .config_map(&r.name, r.optional == Some(true))
                .await?
            {
                Some(cm) => cm.data.clone().unwrap_or_default().into_iter().collect(),
                None => continue,
            }
        } else if let Some(r) = &from.secret_ref {
            match fetched.secret(&r.name, r.optional == Some(true)).await? {
                Some(s) => secret_data(s)
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                    .collect(),
                None => continue,
            }
        } else {
            continue;
        };
        let mut invalid = Vec::new();
        for (k, v) in pairs {
            let name = format!("{prefix}{k}");
            if is_env_var_name(&name) {
                env.set(name, v);
            } else {
                invalid.push(name);
            }
        }
        if !invalid.is_empty() {
            tracing::warn!(pod = %crate::pod_worker::pod_name(pod), container = %c.name, keys = ?invalid, "InvalidEnvironmentVariableNames: keys skipped from envFrom");
        }
    }

    let mut allocatable: Option<BTreeMap<String, Quantity>> = None;
    for e in c.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) if !v.is_empty() => expand(v, |name| {
                env.values
                    .get(name)
                    .or_else(|| service_env.get(name))
                    .cloned()
            }),
            (_, Some(from)) => {
                if let Some(f) = &from.field_ref {
                    pod_field_value(inp, &f.field_path)?
                } else if let Some(r) = &from.resource_field_ref {
                    let target = match r.container_name.as_deref() {
                        Some(n) if !n.is_empty() => fieldpath::find_container(pod, n)?,
                        _ => c,
                    };
                    if allocatable.is_none() {
                        allocatable = Some(node_allocatable(inp).await);
                    }
                    fieldpath::container_resource_value(
                        &r.resource,
                        r.divisor.as_ref(),
                        target,
                        allocatable.as_ref().expect("set above"),
                    )?
                } else if let Some(r) = &from.config_map_key_ref {
                    let optional = r.optional == Some(true);
                    let Some(cm) = fetched.config_map(&r.name, optional).await? else {
                        continue;
                    };
                    match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::ConfigMapKey {
                                key: r.key.clone(),
                                namespace,
                                name: r.name.clone(),
                            })
                        }
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let optional = r.optional == Some(true);
                    let Some(s) = fetched.secret(&r.name, optional).await? else {
                        continue;
                    };
                    match secret_data(s).remove(&r.key) {
                        Some(v) => String::from_utf8_lossy(&v).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::SecretKey {
                                key: r.key.clone(),
                                namespace,
                                name: r.name.clone(),
                            })
                        }
                    }
                } else {
                    String::new()
                }
            }
            _ => String::new(),
        };
        env.set(e.name.clone(), value);
    }

    let OrderedEnv { order, mut values } = env;
    let mut out: Vec<(String, String)> = order
        .into_iter()
        .map(|k| {
            let v = values.remove(&k).unwrap_or_default();
            (k, v)
        })
        .collect();
    let mut services: Vec<(String, String)> = service_env
        .into_iter()
        .filter(|(k, _)| !out.iter().any(|(n, _)| n == k))
        .collect();
    services.sort();
    out.extend(services);
    Ok(out)
}

/// `fieldRef` values: the pod's metadata plus `spec.nodeName`,
/// `spec.serviceAccountName`, `status.hostIP(s)`, `status.podIP(s)`.
fn pod_field_value(inp: &EnvInputs<'_>, path: &str) -> Result<String, FieldPathError> {
    let spec = inp.pod.spec.as_ref();
    Ok(match path {
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| inp.node_name.to_string()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => inp.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => inp.host_ips.join(","),
        "status.podIP" => inp.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => inp.pod_ips.join(","),
        _ => fieldpath::extract_field_path_as_string(inp.pod, path)?,
    })
}

async fn node_allocatable(inp: &EnvInputs<'_>) -> BTreeMap<String, Quantity> {
    match inp.objects.node(inp.node_name).await {
        Ok(n) => n.status.and_then(|s| s.allocatable).unwrap_or_default(),
        Err(e) => {
            tracing::warn!(node = %inp.node_name, error = %e, "reading the node's allocatable for resourceFieldRef");
            BTreeMap::new()
        }
    }
}

#[cfg(test)]
#[path = "env_tests.rs"]
mod tests;
