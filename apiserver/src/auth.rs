//! Who is asking and may they: [`Authenticator::authenticate`] turns a
//! request's verified client certificate or bearer token into a [`UserInfo`]
//! (upstream's x509, static token file and anonymous authenticators), and
//! [`authorize`] applies the interim policy until RBAC lands.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::ApiError;

/// The user name of a request that presented no credentials.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// The group of every request that presented no credentials.
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// The group appended to every request that did authenticate.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// An authenticated identity, as upstream's `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// True for the identity given to requests without credentials.
pub fn is_anonymous(user: &UserInfo) -> bool {
    user.name == ANONYMOUS_USER
}

/// Why the authenticator could not be built from its flags.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("reading token file {path}: {source}")]
    ReadTokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {path}, line {line}: {problem}")]
    MalformedTokenLine {
        path: PathBuf,
        line: usize,
        problem: String,
    },
}

/// Upstream's authenticator chain for the secure port: x509 client
/// certificates, then `--token-auth-file` bearer tokens, then (with
/// `--anonymous-auth`) anonymous.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    /// Token → the user it stands for (without `system:authenticated`).
    tokens: HashMap<String, UserInfo>,
    anonymous: bool,
}

impl Authenticator {
    /// Reads the static token file (CSV `token,user,uid,"group1,group2"`,
    /// further columns ignored) if given.
    pub fn new(token_auth_file: Option<&Path>, anonymous: bool) -> Result<Self, AuthError> {
        let tokens = match token_auth_file {
            None => HashMap::new(),
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| AuthError::ReadTokenFile {
                        path: path.to_path_buf(),
                        source,
                    })?;
                parse_token_csv(&text, path)?
            }
        };
        tracing::info!(
            tokens = tokens.len(),
            anonymous,
            "authenticator: x509, token file, anonymous"
        );
        Ok(Authenticator { tokens, anonymous })
    }

    /// The identity of one request.
    ///
    /// - A verified client certificate with a Common Name wins: user = CN,
    ///   groups = the subject's O values (a token is then not looked at).
    /// - Otherwise `Authorization: Bearer <token>` must name a token from the
    ///   file; an unknown token is 401 even when anonymous is allowed, so a
    ///   typo is reported instead of silently downgrading the caller.
    /// - Otherwise the request is `system:anonymous` in
    ///   `system:unauthenticated` if anonymous is enabled, else 401.
    ///
    /// Authenticated users get `system:authenticated` appended.
    pub fn authenticate(
        &self,
        client_cert: Option<&CertificateDer<'_>>,
        authorization: Option<&str>,
    ) -> Result<UserInfo, ApiError> {
        if let Some(user) = client_cert.and_then(user_from_certificate) {
            return Ok(with_authenticated_group(user));
        }
        if let Some(token) = authorization.and_then(bearer_token) {
            return match self.tokens.get(token) {
                Some(user) => Ok(with_authenticated_group(user.clone())),
                None => {
                    tracing::debug!("rejected an unknown bearer token");
                    Err(ApiError::unauthorized())
                }
            };
        }
        if self.anonymous {
            return Ok(UserInfo {
                name: ANONYMOUS_USER.to_string(),
                uid: String::new(),
                groups: vec![UNAUTHENTICATED_GROUP.to_string()],
                extra: BTreeMap::new(),
            });
        }
        Err(ApiError::unauthorized())
    }
}

fn with_authenticated_group(mut user: UserInfo) -> UserInfo {
    if !user.groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        user.groups.push(AUTHENTICATED_GROUP.to_string());
    }
    user
}

/// Upstream's `CommonNameUserConversion`: no CN means the certificate does
/// not identify a user, and the next authenticator gets its turn.
fn user_from_certificate(der: &CertificateDer<'_>) -> Option<UserInfo> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    Some(UserInfo {
        name,
        uid: String::new(),
        groups,
        extra: BTreeMap::new(),
    })
}

/// The token of `Bearer <token>` (scheme case-insensitive); any other
/// scheme or an empty token is "no bearer credentials", as upstream.
pub fn bearer_token(header: &str) -> Option<&str> {
    let mut parts = header.trim().splitn(2, char::is_whitespace);
    let scheme = parts.next()?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = parts.next()?.trim();
    (!token.is_empty()).then_some(token)
}

/// Parses upstream's static token file. Blank lines are skipped; a line with
/// fewer than three columns, an empty token or an empty user name is an
/// error naming its line. A later duplicate token replaces the earlier one.
pub fn parse_token_csv(text: &str, path: &Path) -> Result<HashMap<String, UserInfo>, AuthError> {
    let mut tokens = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let malformed = |problem: String| AuthError::MalformedTokenLine {
            path: path.to_path_buf(),
            line: line_no,
            problem,
        };
        if line.trim().is_empty() {
            continue;
        }
        let fields = split_csv_line(line).map_err(malformed)?;
        if fields.len() < 3 {
            return Err(malformed(format!(
                "expected at least 3 columns (token, user name, user uid), found {}",
                fields.len()
            )));
        }
        if fields[0].is_empty() {
            return Err(malformed("the token is empty".to_string()));
        }
        if fields[1].is_empty() {
            return Err(malformed("the user name is empty".to_string()));
        }
        let groups = fields
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let user = UserInfo {
            name: fields[1].clone(),
            uid: fields[2].clone(),
            groups,
            extra: BTreeMap::new(),
        };
        if tokens.insert(fields[0].clone(), user).is_some() {
            tracing::warn!(path = %path.display(), line = line_no, "duplicate token in token file; the later line wins");
        }
    }
    Ok(tokens)
}

/// One CSV record (RFC 4180 quoting, `""` for a quote inside quotes,
/// leading spaces before a field trimmed as Go's `TrimLeadingSpace`).
fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("a quoted field is not closed".to_string()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => return Err(format!("unexpected {c:?} after a closing quote")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("a bare quote inside an unquoted field".to_string()),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// What a request wants to do, as the server fills it for authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestAttributes<'a> {
    /// A request under `/api/v1/...` or `/apis/<group>/<version>/...` that
    /// names a resource.
    Resource {
        /// Kubernetes verb: get, list, watch, create, update, patch, delete,
        /// deletecollection.
        verb: &'a str,
        /// API group, `""` for the core group.
        api_group: &'a str,
        /// Plural resource name (`pods`).
        resource: &'a str,
        /// `status`, `exec`, ... or `""`.
        subresource: &'a str,
        /// `""` for cluster-scoped resources or all namespaces.
        namespace: &'a str,
        /// `""` for collections.
        name: &'a str,
    },
    /// Any other path; `verb` is the lower-case HTTP method (`get`, `post`, ...).
    NonResource { verb: &'a str, path: &'a str },
}

/// Health, version and discovery paths that anonymous requests may read:
/// `/healthz`, `/livez`, `/readyz` (and their checks), `/version`, `/api`,
/// `/api/<version>`, `/apis`, `/apis/<group>`, `/apis/<group>/<version>`
/// and `/openapi/*`.
pub fn is_health_or_discovery_path(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    let trimmed = path.trim_end_matches('/');
    let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    matches!(
        segments.as_slice(),
        ["healthz" | "livez" | "readyz", ..]
            | ["version"]
            | ["openapi", ..]
            | ["api"]
            | ["api", _]
            | ["apis"]
            | ["apis", _]
            | ["apis", _, _]
    )
}

/// The interim authorization policy (until RBAC): any authenticated user may
/// do anything; anonymous requests reach only health and discovery paths
/// (`path_is_health_or_discovery`, see [`is_health_or_discovery_path`]) and
/// are otherwise 403 with upstream's message.
pub fn authorize(
    user: &UserInfo,
    path_is_health_or_discovery: bool,
    request: &RequestAttributes<'_>,
) -> Result<(), ApiError> {
    if !is_anonymous(user) || path_is_health_or_discovery {
        return Ok(());
    }
    Err(forbidden(user, request))
}

/// Upstream's 403 for a denied request, e.g. `pods is forbidden: User
/// "system:anonymous" cannot list resource "pods" in API group "" in the
/// namespace "default"`.
pub fn forbidden(user: &UserInfo, request: &RequestAttributes<'_>) -> ApiError {
    match *request {
        RequestAttributes::NonResource { verb, path } => ApiError::forbidden(format!(
            "forbidden: User {:?} cannot {verb} path {path:?}",
            user.name
        )),
        RequestAttributes::Resource {
            verb,
            api_group,
            resource,
            subresource,
            namespace,
            name,
        } => {
            let shown = if subresource.is_empty() {
                resource.to_string()
            } else {
                format!("{resource}/{subresource}")
            };
            let scope = if namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace {namespace:?}")
            };
            let reason = format!(
                "User {:?} cannot {verb} resource {shown:?} in API group {api_group:?} {scope}",
                user.name
            );
            let qualified = if api_group.is_empty() {
                resource.to_string()
            } else {
                format!("{resource}.{api_group}")
            };
            let message = if name.is_empty() {
                format!("{qualified} is forbidden: {reason}")
            } else {
                format!("{qualified} {name:?} is forbidden: {reason}")
            };
            let mut e = ApiError::forbidden(message);
            e.name = (!name.is_empty()).then(|| name.to_string());
            e.group = Some(api_group.to_string());
            e.kind = Some(resource.to_string());
            e
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::CertificateAuthority;

    fn authn(csv: &str, anonymous: bool) -> Authenticator {
        Authenticator {
            tokens: parse_token_csv(csv, Path::new("tokens.csv")).unwrap(),
            anonymous,
        }
    }

    #[test]
    fn token_file_user_gets_groups_and_system_authenticated() {
        let a = authn(
            "s3cret,alice,1001,\"dev,ops\",ignored\n\nother,bob,1002\n",
            false,
        );
        let alice = a.authenticate(None, Some("Bearer s3cret")).unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.uid, "1001");
        assert_eq!(alice.groups, ["dev", "ops", AUTHENTICATED_GROUP]);
        let bob = a.authenticate(None, Some("bearer other")).unwrap();
        assert_eq!(bob.groups, [AUTHENTICATED_GROUP]);
    }

    #[test]
    fn unknown_token_is_401_even_when_anonymous_is_allowed() {
        let a = authn("s3cret,alice,1001\n", true);
        let err = a.authenticate(None, Some("Bearer wrong")).unwrap_err();
        assert_eq!(err.code, 401);
    }

    #[test]
    fn no_credentials_is_anonymous_only_when_enabled() {
        let user = authn("", true).authenticate(None, None).unwrap();
        assert!(is_anonymous(&user));
        assert_eq!(user.groups, [UNAUTHENTICATED_GROUP]);
        // A non-bearer scheme is "no credentials" too.
        let user = authn("", true)
            .authenticate(None, Some("Basic YWxpY2U6cHc="))
            .unwrap();
        assert!(is_anonymous(&user));
        assert_eq!(
            authn("", false).authenticate(None, None).unwrap_err().code,
            401
        );
    }

    #[test]
    fn certificate_subject_is_the_user_and_wins_over_a_token() {
        let ca = CertificateAuthority::new("kubernetes").unwrap();
        let cert = ca
            .issue_client("system:node:worker-1", &["system:nodes"])
            .unwrap();
        let user = authn("", false)
            .authenticate(Some(&cert.cert_der()), Some("Bearer whatever"))
            .unwrap();
        assert_eq!(user.name, "system:node:worker-1");
        assert_eq!(user.groups, ["system:nodes", AUTHENTICATED_GROUP]);
    }

    #[test]
    fn malformed_token_line_names_the_line() {
        let err = parse_token_csv("a,alice,1\nb,bob\n", Path::new("/etc/tokens.csv"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/etc/tokens.csv") && err.contains("line 2"),
            "{err}"
        );
        assert!(err.contains("found 2"), "{err}");
        let err = parse_token_csv("a,\"alice,1\n", Path::new("t.csv"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 1") && err.contains("not closed"),
            "{err}"
        );
    }

    #[test]
    fn anonymous_reaches_only_health_and_discovery() {
        for p in [
            "/healthz",
            "/readyz/etcd",
            "/livez",
            "/version",
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps",
            "/apis/apps/v1/",
            "/openapi/v2",
            "/openapi/v3/apis/apps/v1",
        ] {
            assert!(is_health_or_discovery_path(p), "{p}");
        }
        for p in [
            "/api/v1/pods",
            "/apis/apps/v1/deployments",
            "/",
            "/metrics",
            "/versions",
        ] {
            assert!(!is_health_or_discovery_path(p), "{p}");
        }
    }

    #[test]
    fn anonymous_list_pods_is_forbidden_with_upstream_message() {
        let anon = authn("", true).authenticate(None, None).unwrap();
        let list_pods = RequestAttributes::Resource {
            verb: "list",
            api_group: "",
            resource: "pods",
            subresource: "",
            namespace: "default",
            name: "",
        };
        let err = authorize(&anon, false, &list_pods).unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(err.to_status()["details"]["kind"], "pods");
        assert!(authorize(&anon, true, &list_pods).is_ok());

        let exec = RequestAttributes::Resource {
            verb: "create",
            api_group: "",
            resource: "pods",
            subresource: "exec",
            namespace: "default",
            name: "web",
        };
        assert_eq!(
            authorize(&anon, false, &exec).unwrap_err().message,
            "pods \"web\" is forbidden: User \"system:anonymous\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"default\""
        );
        let nodes = RequestAttributes::Resource {
            verb: "list",
            api_group: "apps",
            resource: "deployments",
            subresource: "",
            namespace: "",
            name: "",
        };
        assert_eq!(
            authorize(&anon, false, &nodes).unwrap_err().message,
            "deployments.apps is forbidden: User \"system:anonymous\" cannot list resource \"deployments\" in API group \"apps\" at the cluster scope"
        );
        let metrics = RequestAttributes::NonResource {
            verb: "get",
            path: "/metrics",
        };
        assert_eq!(
            authorize(&anon, false, &metrics).unwrap_err().message,
            "forbidden: User \"system:anonymous\" cannot get path \"/metrics\""
        );
    }

    #[test]
    fn any_authenticated_user_may_do_anything() {
        let a = authn("t,alice,1\n", false);
        let alice = a.authenticate(None, Some("Bearer t")).unwrap();
        let delete_nodes = RequestAttributes::Resource {
            verb: "delete",
            api_group: "",
            resource: "nodes",
            subresource: "",
            namespace: "",
            name: "n1",
        };
        assert!(authorize(&alice, false, &delete_nodes).is_ok());
    }
}
