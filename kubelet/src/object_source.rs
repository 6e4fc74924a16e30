//! [`ObjectSource`]: where the kubelet reads the API objects a pod refers
//! to — configMaps and secrets (volumes, env), services (service link
//! variables) and its own Node (allocatable, the default for
//! `resourceFieldRef` limits). [`ApiObjectSource`] asks the apiserver,
//! [`FakeObjectSource`] holds objects in memory for unit tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ferrokube_client::ListParams;

use crate::api_handle::ApiHandle;
use crate::token_manager::TokenManager;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::Metadata;

/// A failed read. `NotFound` prints as upstream's kubelet managers do
/// (`configmap "x" not found`), which users see in waiting messages.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ObjectError {
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("getting {kind} {namespace}/{name}: {message}")]
    Get {
        kind: &'static str,
        namespace: String,
        name: String,
        message: String,
    },
    /// A TokenRequest the apiserver refused or could not be asked; the
    /// message is the apiserver's (`serviceaccounts "x" not found`).
    #[error("{message}")]
    CreateToken {
        namespace: String,
        name: String,
        message: String,
    },
    #[error("listing {kind} in namespace {namespace:?}: {message}")]
    List {
        kind: &'static str,
        namespace: String,
        message: String,
    },
}

impl ObjectError {
    fn create_token(namespace: &str, name: &str, message: String) -> Self {
        ObjectError::CreateToken {
            namespace: namespace.to_string(),
            name: name.to_string(),
            message,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, ObjectError::NotFound { .. })
    }
}

/// Reads of the objects pods refer to.
#[async_trait::async_trait]
pub trait ObjectSource: Send + Sync + 'static {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<ConfigMap, ObjectError>;
    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, ObjectError>;
    /// Every service of `namespace`.
    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ObjectError>;
    async fn node(&self, name: &str) -> Result<Node, ObjectError>;
    /// A token for the ServiceAccount `namespace/name` as `request` (a
    /// TokenRequest) asks, reused until it needs a refresh (see
    /// [`crate::token_manager`]).
    async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, ObjectError>;
    /// Drops the cached tokens bound to the pod `pod_uid`, which is gone.
    fn forget_service_account_tokens(&self, pod_uid: &str) {
        let _ = pod_uid;
    }
}

/// The apiserver, through the kubelet's client: a GET per read, so what a
/// pod sees is never older than its last sync.
#[derive(Clone)]
pub struct ApiObjectSource {
    api: ApiHandle,
    tokens: Arc<TokenManager>,
}

impl ApiObjectSource {
    pub fn new(api: ApiHandle) -> Self {
        ApiObjectSource {
            api,
            tokens: Arc::default(),
        }
    }

    async fn get<K>(
        &self,
        kind: &'static str,
        namespace: &str,
        name: &str,
    ) -> Result<K, ObjectError>
    where
        K: k8s_openapi::Resource + serde::de::DeserializeOwned,
    {
        let client = self.api.client().map_err(|e| ObjectError::Get {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            message: e.to_string(),
        })?;
        client
            .get::<K>(namespace, name)
            .await
            .map_err(|e| match e.is_not_found() {
                true => ObjectError::NotFound {
                    kind,
                    name: name.to_string(),
                },
                false => ObjectError::Get {
                    kind,
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    message: e.to_string(),
                },
            })
    }
}

#[async_trait::async_trait]
impl ObjectSource for ApiObjectSource {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<ConfigMap, ObjectError> {
        self.get("configmap", namespace, name).await
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, ObjectError> {
        self.get("secret", namespace, name).await
    }

    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ObjectError> {
        let list_error = |e: ferrokube_client::Error| ObjectError::List {
            kind: "services",
            namespace: namespace.to_string(),
            message: e.to_string(),
        };
        self.api
            .client()
            .map_err(list_error)?
            .list::<Service>(namespace, &ListParams::default())
            .await
            .map(|l| l.items)
            .map_err(list_error)
    }

    async fn node(&self, name: &str) -> Result<Node, ObjectError> {
        self.get("node", "", name).await
    }

    async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, ObjectError> {
        let token_error = |message: String| ObjectError::create_token(namespace, name, message);
        let fetch = || async {
            let client = self.api.client().map_err(|e| token_error(e.to_string()))?;
            client
                .create_token(namespace, name, request)
                .await
                .map_err(|e| match e {
                    // Upstream's message is the Status message alone.
                    ferrokube_client::Error::Api(api) => token_error(api.message),
                    other => token_error(other.to_string()),
                })
        };
        self.tokens
            .get_service_account_token(namespace, name, request, chrono::Utc::now(), fetch)
            .await
    }

    fn forget_service_account_tokens(&self, pod_uid: &str) {
        self.tokens.delete_service_account_tokens(pod_uid);
    }
}

type Key = (&'static str, String, String);

/// Objects in memory; clones share them.
#[derive(Clone, Default)]
pub struct FakeObjectSource {
    objects: Arc<Mutex<BTreeMap<Key, serde_json::Value>>>,
}

impl FakeObjectSource {
    fn put<
        K: serde::Serialize
            + Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
    >(
        &self,
        kind: &'static str,
        obj: &K,
    ) {
        let m = obj.metadata();
        let key = (
            kind,
            m.namespace.clone().unwrap_or_default(),
            m.name.clone().unwrap_or_default(),
        );
        let value = serde_json::to_value(obj).expect("API objects serialize");
        self.objects.lock().unwrap().insert(key, value);
    }

    fn take<K: serde::de::DeserializeOwned>(
        &self,
        kind: &'static str,
        namespace: &str,
        name: &str,
    ) -> Result<K, ObjectError> {
        let key = (kind, namespace.to_string(), name.to_string());
        let objects = self.objects.lock().unwrap();
        let v = objects.get(&key).ok_or_else(|| ObjectError::NotFound {
            kind,
            name: name.to_string(),
        })?;
        Ok(serde_json::from_value(v.clone()).expect("stored objects deserialize"))
    }

    pub fn insert_config_map(&self, cm: &ConfigMap) {
        self.put("configmap", cm);
    }

    pub fn insert_secret(&self, s: &Secret) {
        self.put("secret", s);
    }

    pub fn insert_service(&self, s: &Service) {
        self.put("service", s);
    }

    pub fn insert_service_account(&self, sa: &ServiceAccount) {
        self.put("serviceaccount", sa);
    }

    pub fn insert_node(&self, n: &Node) {
        self.put("node", n);
    }

    pub fn remove_config_map(&self, namespace: &str, name: &str) {
        let key = ("configmap", namespace.to_string(), name.to_string());
        self.objects.lock().unwrap().remove(&key);
    }
}

#[async_trait::async_trait]
impl ObjectSource for FakeObjectSource {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<ConfigMap, ObjectError> {
        self.take("configmap", namespace, name)
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, ObjectError> {
        self.take("secret", namespace, name)
    }

    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ObjectError> {
        let objects = self.objects.lock().unwrap();
        Ok(objects
            .iter()
            .filter(|((kind, ns, _), _)| *kind == "service" && ns == namespace)
            .map(|(_, v)| serde_json::from_value(v.clone()).expect("stored objects deserialize"))
            .collect())
    }

    async fn node(&self, name: &str) -> Result<Node, ObjectError> {
        self.take("node", "", name)
    }

    /// `fake-token:<namespace>:<name>:<bound pod>` with the requested
    /// audiences and lifetime, when the ServiceAccount was inserted.
    async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, ObjectError> {
        let _: ServiceAccount = self.take("serviceaccount", namespace, name).map_err(|_| {
            ObjectError::create_token(
                namespace,
                name,
                format!("serviceaccounts {name:?} not found"),
            )
        })?;
        let bound = request
            .spec
            .bound_object_ref
            .as_ref()
            .and_then(|r| r.name.clone())
            .unwrap_or_default();
        let seconds = request.spec.expiration_seconds.unwrap_or(3600);
        let mut answer = request.clone();
        answer.spec.expiration_seconds = Some(seconds);
        answer.status = Some(TokenRequestStatus {
            token: format!("fake-token:{namespace}:{name}:{bound}"),
            expiration_timestamp: Time(chrono::Utc::now() + chrono::Duration::seconds(seconds)),
        });
        Ok(answer)
    }
}
