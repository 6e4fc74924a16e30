//! `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`: upstream's
//! TokenRequest, which signs a service-account JWT, optionally bound to a
//! Pod or Secret. Entry point: [`create`].

use ferrokube_api::resources::{self, ResourceInfo};
use serde_json::{json, Value};

use crate::error::{ApiError, Cause};
use crate::registry::Registry;
use crate::serviceaccount::{self, BoundObject, ObjectRef, ServiceAccountTokens};

/// The resource TokenRequest's validation errors name.
const TOKEN_REQUEST: ResourceInfo = ResourceInfo {
    group: "authentication.k8s.io",
    version: "v1",
    kind: "TokenRequest",
    plural: "tokenrequests",
    singular: "tokenrequest",
    namespaced: true,
    short_names: &[],
    categories: &[],
    verbs: &["create"],
    subresources: &[],
};

fn core(plural: &str) -> &'static ResourceInfo {
    resources::find("", "v1", plural).expect("core resource is served")
}

/// Signs a token for the ServiceAccount `namespace/name` as `request` (a
/// TokenRequest) asks, and returns the TokenRequest with `status` filled.
pub async fn create(
    tokens: &ServiceAccountTokens,
    registry: &Registry,
    namespace: &str,
    name: &str,
    mut request: Value,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Value, ApiError> {
    let Some(issuer) = tokens.issuer.as_ref() else {
        // Upstream does not install the subresource without a signing key.
        return Err(ApiError::no_route(&format!(
            "/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"
        )));
    };
    let expiration = serviceaccount::validate_expiration_seconds(
        request
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_i64),
    )
    .map_err(|why| {
        let requested = request
            .pointer("/spec/expirationSeconds")
            .cloned()
            .unwrap_or(Value::Null);
        let mut e = ApiError::invalid(
            &TOKEN_REQUEST,
            name,
            vec![Cause::invalid("spec.expirationSeconds", &requested, why)],
        );
        e.message = e
            .message
            .replacen("TokenRequest ", "TokenRequest.authentication.k8s.io ", 1);
        e
    })?;
    let sa = registry
        .get(core("serviceaccounts"), Some(namespace), name)
        .await?;
    let sa_uid = uid_of(&sa);
    let bound = match request.pointer("/spec/boundObjectRef") {
        Some(r) if !r.is_null() => Some(bound_object(registry, namespace, name, r).await?),
        _ => None,
    };
    let audiences: Vec<String> = request
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .filter(|a: &Vec<String>| !a.is_empty())
        .unwrap_or_else(|| tokens.api_audiences.clone());
    let claims = serviceaccount::new_claims(
        &issuer.issuer,
        audiences.clone(),
        namespace,
        name,
        &sa_uid,
        bound.as_ref(),
        now.timestamp(),
        expiration,
    );
    let token = issuer
        .issue(&claims)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let expires = chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or(now);
    tracing::debug!(namespace, name, jti = %claims.jti, "issued a service account token");
    request["apiVersion"] = json!("authentication.k8s.io/v1");
    request["kind"] = json!("TokenRequest");
    request["metadata"]["name"] = json!(name);
    request["metadata"]["namespace"] = json!(namespace);
    request["metadata"]["creationTimestamp"] = Value::Null;
    request["spec"]["audiences"] = json!(audiences);
    request["spec"]["expirationSeconds"] = json!(expiration);
    request["status"] = json!({
        "token": token,
        "expirationTimestamp": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    Ok(request)
}

fn uid_of(obj: &Value) -> String {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Checks `spec.boundObjectRef` as upstream: a Pod (running as this service
/// account) or Secret in the namespace, whose uid matches the one given.
async fn bound_object(
    registry: &Registry,
    namespace: &str,
    sa_name: &str,
    reference: &Value,
) -> Result<BoundObject, ApiError> {
    let field = |f: &str| {
        reference
            .get(f)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (api_version, kind, name, uid) = (
        field("apiVersion"),
        field("kind"),
        field("name"),
        field("uid"),
    );
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let plural = match (group, kind.as_str()) {
        ("", "Pod") => "pods",
        ("", "Secret") => "secrets",
        _ => {
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {api_version}, Kind={kind}"
            )))
        }
    };
    let res = core(plural);
    let obj = registry.get(res, Some(namespace), &name).await?;
    if plural == "pods" {
        let runs_as = obj
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default");
        if runs_as != sa_name {
            return Err(ApiError::bad_request(format!(
                "cannot bind token for serviceaccount {sa_name:?} to pod running with different serviceaccount name."
            )));
        }
    }
    let actual = uid_of(&obj);
    if !uid.is_empty() && uid != actual {
        return Err(ApiError::conflict(
            res,
            &name,
            &format!("the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"),
        ));
    }
    let r = ObjectRef { name, uid: actual };
    Ok(if plural == "pods" {
        BoundObject::Pod(r)
    } else {
        BoundObject::Secret(r)
    })
}
