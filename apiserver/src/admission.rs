//! Admission: a chain of plugins every write passes through after
//! defaulting — mutating plugins first, then validating ones, as upstream
//! orders them. Later work adds plugins to [`PLUGINS`]; the registry calls
//! [`mutate`], [`validate`] and [`validate_delete`].

use ferrokube_api::ResourceInfo;
use serde_json::Value;

use crate::error::ApiError;
use crate::registry::{Context, Registry};

/// The operation being admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

/// What a plugin sees of one request.
pub struct Attributes<'a> {
    pub registry: &'a Registry,
    pub resource: &'a ResourceInfo,
    pub operation: Operation,
    /// The object being written (for Delete: the stored one).
    pub object: &'a Value,
    /// The stored object, for updates.
    pub old: Option<&'a Value>,
    pub context: &'a Context,
}

/// One admission plugin. Both phases default to "admit unchanged".
#[async_trait::async_trait]
pub trait Plugin: Send + Sync {
    /// Upstream's name for the plugin (`NamespaceLifecycle`).
    fn name(&self) -> &'static str;

    /// May change the object.
    async fn mutate(&self, _attrs: &Attributes<'_>, _object: &mut Value) -> Result<(), ApiError> {
        Ok(())
    }

    /// May only refuse.
    async fn validate(&self, _attrs: &Attributes<'_>) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Refuses new content in namespaces that do not exist or are being
/// terminated, as upstream's NamespaceLifecycle does.
pub struct NamespaceLifecycle;

#[async_trait::async_trait]
impl Plugin for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        "NamespaceLifecycle"
    }

    async fn validate(&self, attrs: &Attributes<'_>) -> Result<(), ApiError> {
        if attrs.operation != Operation::Create || !attrs.resource.namespaced {
            return Ok(());
        }
        let Some(ns) = attrs
            .object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
        else {
            return Ok(());
        };
        let namespaces = ferrokube_api::resources::find("", "v1", "namespaces").expect("served");
        let namespace = attrs.registry.get_cached(namespaces, None, ns).await?;
        let terminating = namespace.pointer("/status/phase").and_then(Value::as_str)
            == Some("Terminating")
            || namespace.pointer("/metadata/deletionTimestamp").is_some();
        // Events about the namespace's own teardown are still welcome.
        if terminating && attrs.resource.plural != "events" {
            return Err(ApiError::forbidden(format!(
                "{} {:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                attrs.resource.qualified_resource(),
                attrs
                    .object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            )));
        }
        Ok(())
    }
}

/// The chain, in order.
pub static PLUGINS: &[&dyn Plugin] = &[&NamespaceLifecycle];

/// Runs every plugin's mutating phase.
pub async fn mutate(
    registry: &Registry,
    resource: &ResourceInfo,
    operation: Operation,
    object: &mut Value,
    old: Option<&Value>,
    context: &Context,
) -> Result<(), ApiError> {
    for plugin in PLUGINS {
        let snapshot = object.clone();
        let attrs = Attributes {
            registry,
            resource,
            operation,
            object: &snapshot,
            old,
            context,
        };
        plugin.mutate(&attrs, object).await?;
    }
    Ok(())
}

/// Runs every plugin's validating phase.
pub async fn validate(
    registry: &Registry,
    resource: &ResourceInfo,
    operation: Operation,
    object: &Value,
    old: Option<&Value>,
    context: &Context,
) -> Result<(), ApiError> {
    let attrs = Attributes {
        registry,
        resource,
        operation,
        object,
        old,
        context,
    };
    for plugin in PLUGINS {
        plugin.validate(&attrs).await?;
    }
    Ok(())
}

/// Runs the validating phase for a delete of `object`.
pub async fn validate_delete(
    registry: &Registry,
    resource: &ResourceInfo,
    object: &Value,
    context: &Context,
) -> Result<(), ApiError> {
    validate(registry, resource, Operation::Delete, object, None, context).await
}
