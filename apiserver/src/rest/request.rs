//! Reading a Kubernetes REST request: which resource, namespace, name,
//! subresource and verb a path and method name (upstream's RequestInfo).
//! Entry point: [`RequestInfo::parse`].

use ferrokube_api::{resources, GroupVersion, ResourceInfo};
use http::Method;

/// What a request under `/api` or `/apis` is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `/api/v1` or `/apis/<g>/<v>`: the resource list of a group/version.
    GroupVersion(GroupVersion),
    /// `/apis/<g>`: one API group.
    Group(String),
    /// A resource request.
    Resource(RequestInfo),
}

/// A resource request, as upstream's `request.RequestInfo`.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestInfo {
    pub verb: Verb,
    pub resource: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// The API verb of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// Why a path names nothing we serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    NotFound,
    MethodNotAllowed(&'static ResourceInfo, &'static str),
}

impl Target {
    /// Parses the path (already split from the query) and method.
    pub fn parse(method: &Method, path: &str, watch_param: bool) -> Result<Target, PathError> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (gv, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => (find_gv("", version)?, rest),
            ["apis", group] => {
                return resources::RESOURCES
                    .iter()
                    .any(|r| r.group == *group)
                    .then(|| Target::Group(group.to_string()))
                    .ok_or(PathError::NotFound)
            }
            ["apis", group, version, rest @ ..] => (find_gv(group, version)?, rest),
            _ => return Err(PathError::NotFound),
        };
        if rest.is_empty() {
            return Ok(Target::GroupVersion(gv));
        }
        // Upstream's legacy `/watch/` prefix.
        let (rest, legacy_watch) = match rest {
            ["watch", tail @ ..] => (tail, true),
            other => (other, false),
        };
        let find =
            |plural: &str| resources::find(gv.group, gv.version, plural).ok_or(PathError::NotFound);
        let (resource, namespace, name, subresource): (
            _,
            Option<&str>,
            Option<&str>,
            Option<&str>,
        ) = match rest {
            // namespaces/<ns>/<resource>[/<name>[/<sub>]] — unless the
            // third segment is a subresource of the namespace itself.
            ["namespaces", ns, sub] if gv.group.is_empty() && is_namespace_sub(sub) => {
                (find("namespaces")?, None, Some(ns), Some(sub))
            }
            ["namespaces", ns, plural, tail @ ..] => {
                let r = find(plural)?;
                if !r.namespaced {
                    return Err(PathError::NotFound);
                }
                match tail {
                    [] => (r, Some(*ns), None, None),
                    [name] => (r, Some(*ns), Some(*name), None),
                    [name, sub] => (r, Some(*ns), Some(*name), Some(*sub)),
                    _ => return Err(PathError::NotFound),
                }
            }
            [plural] => (find(plural)?, None, None, None),
            [plural, name] => {
                let r = find(plural)?;
                if r.namespaced {
                    return Err(PathError::NotFound);
                }
                (r, None, Some(*name), None)
            }
            [plural, name, sub] => {
                let r = find(plural)?;
                if r.namespaced {
                    return Err(PathError::NotFound);
                }
                (r, None, Some(*name), Some(*sub))
            }
            _ => return Err(PathError::NotFound),
        };
        if let Some(sub) = subresource {
            if !resource.has_subresource(sub) {
                return Err(PathError::NotFound);
            }
        }
        let watch = watch_param || legacy_watch;
        let verb = match (method.as_str(), name.is_some()) {
            ("GET", false) if watch => Verb::Watch,
            ("GET", true) if watch => Verb::Watch,
            ("GET", false) => Verb::List,
            ("GET", true) => Verb::Get,
            ("POST", false) => Verb::Create,
            ("POST", true) if subresource.is_some() => Verb::Create,
            ("PUT", true) => Verb::Update,
            ("PATCH", true) => Verb::Patch,
            ("DELETE", true) => Verb::Delete,
            ("DELETE", false) => Verb::DeleteCollection,
            (m, _) => {
                let m: &'static str = match m {
                    "POST" => "POST",
                    "PUT" => "PUT",
                    "PATCH" => "PATCH",
                    _ => "this method",
                };
                return Err(PathError::MethodNotAllowed(resource, m));
            }
        };
        if subresource.is_none() && !resource.verbs.contains(&verb.as_str()) && verb != Verb::Watch
        {
            return Err(PathError::MethodNotAllowed(resource, verb.as_str()));
        }
        Ok(Target::Resource(RequestInfo {
            verb,
            resource,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            subresource: subresource.map(str::to_string),
        }))
    }
}

fn is_namespace_sub(s: &str) -> bool {
    matches!(s, "status" | "finalize")
}

fn find_gv(group: &str, version: &str) -> Result<GroupVersion, PathError> {
    resources::group_versions()
        .into_iter()
        .find(|gv| gv.group == group && gv.version == version)
        .ok_or(PathError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: Method, path: &str) -> RequestInfo {
        match Target::parse(&method, path, false).unwrap() {
            Target::Resource(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paths_resolve_like_upstream() {
        let r = info(Method::GET, "/api/v1/namespaces/default/pods");
        assert_eq!(
            (r.verb, r.resource.plural, r.namespace.as_deref()),
            (Verb::List, "pods", Some("default"))
        );
        let r = info(Method::GET, "/api/v1/pods");
        assert_eq!((r.verb, r.namespace), (Verb::List, None));
        let r = info(Method::PUT, "/api/v1/namespaces/kube-system/status");
        assert_eq!(
            (
                r.resource.plural,
                r.name.as_deref(),
                r.subresource.as_deref()
            ),
            ("namespaces", Some("kube-system"), Some("status"))
        );
        let r = info(Method::GET, "/api/v1/namespaces/kube-system");
        assert_eq!(
            (r.verb, r.resource.plural, r.name.as_deref()),
            (Verb::Get, "namespaces", Some("kube-system"))
        );
        let r = info(
            Method::PATCH,
            "/apis/apps/v1/namespaces/d/deployments/web/scale",
        );
        assert_eq!(
            (r.verb, r.subresource.as_deref()),
            (Verb::Patch, Some("scale"))
        );
        let r = info(Method::DELETE, "/apis/apps/v1/namespaces/d/deployments");
        assert_eq!(r.verb, Verb::DeleteCollection);
        let r = info(Method::POST, "/api/v1/namespaces/d/pods/p/binding");
        assert_eq!(r.verb, Verb::Create);
        assert!(matches!(
            Target::parse(&Method::GET, "/api/v1", false),
            Ok(Target::GroupVersion(_))
        ));
        assert!(matches!(
            Target::parse(&Method::GET, "/apis/apps", false),
            Ok(Target::Group(_))
        ));
    }

    #[test]
    fn unknown_things_are_not_found() {
        assert_eq!(
            Target::parse(&Method::GET, "/api/v1/widgets", false),
            Err(PathError::NotFound)
        );
        assert_eq!(
            Target::parse(&Method::GET, "/apis/apps/v2/deployments", false),
            Err(PathError::NotFound)
        );
        assert_eq!(
            Target::parse(&Method::GET, "/api/v1/namespaces/d/pods/p/bogus", false),
            Err(PathError::NotFound)
        );
        assert_eq!(
            Target::parse(&Method::GET, "/api/v1/namespaces/d/nodes", false),
            Err(PathError::NotFound)
        );
        assert!(matches!(
            Target::parse(&Method::PUT, "/api/v1/pods", false),
            Err(PathError::MethodNotAllowed(..))
        ));
    }
}
