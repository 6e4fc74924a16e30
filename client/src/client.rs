//! [`Client`]: the apiserver's gRPC API with typed verbs for k8s-openapi
//! types (group, version and plural come from [`k8s_openapi::Resource`]).
//! Objects travel as upstream JSON, exactly as REST serves them.

use std::path::Path;
use std::time::Duration;

use ferrokube_proto::api as pb;
use ferrokube_proto::api::api_client::ApiClient;
use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::Error;
use crate::kubeconfig::{Kubeconfig, KubeconfigError};

/// Adds the kubeconfig's bearer token, if any, to every call.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut().insert("authorization", t.clone());
        }
        Ok(req)
    }
}

/// A connection to the apiserver; cheap to clone (one HTTP/2 channel).
#[derive(Clone)]
pub struct Client {
    api: ApiClient<InterceptedService<Channel, BearerToken>>,
}

/// `labelSelector`, `fieldSelector`, `limit`, `continue`, `resourceVersion`.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub label_selector: String,
    pub field_selector: String,
    pub limit: i64,
    pub continue_token: String,
    pub resource_version: String,
}

/// A watch's selectors and starting point.
#[derive(Debug, Clone, Default)]
pub struct WatchParams {
    pub label_selector: String,
    pub field_selector: String,
    /// "" for the current state then changes; R for every change after R.
    pub resource_version: String,
    pub allow_bookmarks: bool,
    /// 0 for the server's default.
    pub timeout_seconds: i64,
}

/// Options for DELETE.
#[derive(Debug, Clone, Default)]
pub struct DeleteParams {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: String,
    pub precondition_uid: String,
    pub precondition_resource_version: String,
    pub dry_run: bool,
}

/// A patch, in one of the three formats the apiserver applies.
#[derive(Debug, Clone)]
pub enum Patch {
    /// RFC 6902 JSON patch (an array of operations).
    Json(Value),
    /// RFC 7386 JSON merge patch.
    Merge(Value),
    /// Strategic merge patch (lists merged by their merge keys).
    Strategic(Value),
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct ObjectList<K> {
    pub items: Vec<K>,
    /// The revision the list is consistent at: watch from here.
    pub resource_version: String,
    /// Non-empty when more pages follow.
    pub continue_token: String,
}

/// One watch event.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent<K> {
    Added(K),
    Modified(K),
    Deleted(K),
    /// Everything up to this resourceVersion has been sent.
    Bookmark {
        resource_version: String,
    },
}

/// The result of a delete.
#[derive(Debug, Clone)]
pub enum Deleted<K> {
    /// The object is gone; this was its last state.
    Gone(K),
    /// Marked for deletion; it stays until its finalizers/grace period are done.
    Pending(K),
}

/// How a resource is named on the wire.
fn resource_ref<K: Resource>(namespace: &str, name: &str) -> pb::ResourceRef {
    pb::ResourceRef {
        group: K::GROUP.to_string(),
        version: K::VERSION.to_string(),
        resource: K::URL_PATH_SEGMENT.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// Decodes an envelope's JSON; list items get apiVersion/kind back from it.
pub(crate) fn decode<K: Resource + DeserializeOwned>(obj: &pb::Object) -> Result<K, Error> {
    let mut v: Value = serde_json::from_slice(&obj.object).map_err(|source| Error::Decode {
        kind: K::KIND,
        source,
    })?;
    if let Some(map) = v.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| Value::String(K::API_VERSION.to_string()));
        map.entry("kind")
            .or_insert_with(|| Value::String(K::KIND.to_string()));
    }
    serde_json::from_value(v).map_err(|source| Error::Decode {
        kind: K::KIND,
        source,
    })
}

fn encode<K: Resource + Serialize>(obj: &K) -> Result<Vec<u8>, Error> {
    let mut v = serde_json::to_value(obj).map_err(|source| Error::Encode {
        kind: K::KIND,
        source,
    })?;
    if let Some(map) = v.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(K::API_VERSION.into()));
        map.insert("kind".into(), Value::String(K::KIND.into()));
    }
    Ok(serde_json::to_vec(&v).expect("JSON serializes"))
}

fn meta_str<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl Client {
    /// Connects with the current context of the kubeconfig at `path`.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client, Error> {
        let config = Kubeconfig::load(path.as_ref())?;
        Client::from_kubeconfig(&config).await
    }

    /// Opens a TLS (HTTP/2) channel to the kubeconfig's server, presenting
    /// its client certificate.
    pub async fn from_kubeconfig(config: &Kubeconfig) -> Result<Client, Error> {
        let connect_err = |source| Error::Connect {
            server: config.server.clone(),
            source,
        };
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &config.ca_pem {
            tls = tls.ca_certificate(Certificate::from_pem(ca));
        }
        if let (Some(cert), Some(key)) = (&config.client_cert_pem, &config.client_key_pem) {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        let endpoint = Endpoint::from_shared(config.server.clone())
            .map_err(connect_err)?
            .connect_timeout(Duration::from_secs(10))
            .tls_config(tls)
            .map_err(connect_err)?;
        let channel = endpoint.connect().await.map_err(connect_err)?;
        let token = match &config.token {
            Some(t) => {
                Some(
                    format!("Bearer {t}")
                        .parse()
                        .map_err(|_| KubeconfigError::Missing {
                            path: Default::default(),
                            what: "the user's token is not valid header text".into(),
                        })?,
                )
            }
            None => None,
        };
        let api = ApiClient::with_interceptor(channel, BearerToken(token))
            .max_decoding_message_size(256 * 1024 * 1024);
        Ok(Client { api })
    }

    /// The generated gRPC client, for callers that work with raw envelopes.
    pub fn raw(&self) -> ApiClient<InterceptedService<Channel, BearerToken>> {
        self.api.clone()
    }

    /// GET `namespace/name` ("" namespace for cluster-scoped resources).
    pub async fn get<K: Resource + DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<K, Error> {
        let req = pb::GetRequest {
            resource: Some(resource_ref::<K>(namespace, name)),
        };
        let obj = self.api.clone().get(req).await?.into_inner();
        decode(&obj)
    }

    /// LIST one namespace ("" for all namespaces or cluster-scoped).
    pub async fn list<K: Resource + DeserializeOwned>(
        &self,
        namespace: &str,
        params: &ListParams,
    ) -> Result<ObjectList<K>, Error> {
        let req = pb::ListRequest {
            resource: Some(resource_ref::<K>(namespace, "")),
            label_selector: params.label_selector.clone(),
            field_selector: params.field_selector.clone(),
            limit: params.limit,
            r#continue: params.continue_token.clone(),
            resource_version: params.resource_version.clone(),
        };
        let list = self.api.clone().list(req).await?.into_inner();
        Ok(ObjectList {
            items: list.items.iter().map(decode).collect::<Result<_, _>>()?,
            resource_version: list.resource_version,
            continue_token: list.r#continue,
        })
    }

    /// WATCH one namespace ("" for all). The stream ends cleanly at the
    /// server's timeout, or with an error (410 Gone: relist).
    pub async fn watch<K: Resource + DeserializeOwned + Send + 'static>(
        &self,
        namespace: &str,
        params: &WatchParams,
    ) -> Result<BoxStream<'static, Result<WatchEvent<K>, Error>>, Error> {
        let req = pb::WatchRequest {
            resource: Some(resource_ref::<K>(namespace, "")),
            label_selector: params.label_selector.clone(),
            field_selector: params.field_selector.clone(),
            resource_version: params.resource_version.clone(),
            allow_bookmarks: params.allow_bookmarks,
            timeout_seconds: params.timeout_seconds,
        };
        let stream = self.api.clone().watch(req).await?.into_inner();
        Ok(stream
            .map(|ev| {
                let ev = ev?;
                let obj = ev.object.unwrap_or_default();
                use pb::watch_event::Type;
                match Type::try_from(ev.r#type) {
                    Ok(Type::Added) => Ok(WatchEvent::Added(decode(&obj)?)),
                    Ok(Type::Modified) => Ok(WatchEvent::Modified(decode(&obj)?)),
                    Ok(Type::Deleted) => Ok(WatchEvent::Deleted(decode(&obj)?)),
                    _ => Ok(WatchEvent::Bookmark {
                        resource_version: obj.resource_version,
                    }),
                }
            })
            .boxed())
    }

    /// CREATE in `namespace` ("" for cluster-scoped, or to use the
    /// object's own metadata.namespace).
    pub async fn create<K: Resource + Serialize + DeserializeOwned>(
        &self,
        namespace: &str,
        obj: &K,
    ) -> Result<K, Error> {
        let req = pb::CreateRequest {
            resource: Some(resource_ref::<K>(namespace, "")),
            object: encode(obj)?,
            options: None,
            subresource: String::new(),
        };
        let obj = self.api.clone().create(req).await?.into_inner();
        decode(&obj)
    }

    /// TokenRequest: a token for the ServiceAccount `namespace/name`
    /// (`POST .../serviceaccounts/<name>/token`); the answer carries it in
    /// `status.token`.
    pub async fn create_token(
        &self,
        namespace: &str,
        name: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, Error> {
        let req = pb::CreateRequest {
            resource: Some(resource_ref::<ServiceAccount>(namespace, name)),
            object: encode(request)?,
            options: None,
            subresource: "token".to_string(),
        };
        let obj = self.api.clone().create(req).await?.into_inner();
        decode(&obj)
    }

    /// UPDATE (PUT) the object named by its own metadata; its
    /// metadata.resourceVersion, when set, makes the write conditional.
    pub async fn update<K: Resource + Serialize + DeserializeOwned>(
        &self,
        obj: &K,
    ) -> Result<K, Error> {
        let req = self.update_request(obj)?;
        let obj = self.api.clone().update(req).await?.into_inner();
        decode(&obj)
    }

    /// UPDATE the status subresource of the object named by its metadata.
    pub async fn update_status<K: Resource + Serialize + DeserializeOwned>(
        &self,
        obj: &K,
    ) -> Result<K, Error> {
        let req = self.update_request(obj)?;
        let obj = self.api.clone().update_status(req).await?.into_inner();
        decode(&obj)
    }

    fn update_request<K: Resource + Serialize>(&self, obj: &K) -> Result<pb::UpdateRequest, Error> {
        let bytes = encode(obj)?;
        let v: Value = serde_json::from_slice(&bytes).expect("just encoded");
        Ok(pb::UpdateRequest {
            resource: Some(resource_ref::<K>(
                meta_str(&v, "namespace"),
                meta_str(&v, "name"),
            )),
            object: bytes,
            options: None,
        })
    }

    /// PATCH the object.
    pub async fn patch<K: Resource + DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
        patch: &Patch,
    ) -> Result<K, Error> {
        self.patch_subresource(namespace, name, "", patch).await
    }

    /// PATCH the status subresource.
    pub async fn patch_status<K: Resource + DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
        patch: &Patch,
    ) -> Result<K, Error> {
        self.patch_subresource(namespace, name, "status", patch)
            .await
    }

    async fn patch_subresource<K: Resource + DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
        subresource: &str,
        patch: &Patch,
    ) -> Result<K, Error> {
        use pb::patch_request::Type;
        let (kind, body) = match patch {
            Patch::Json(v) => (Type::Json, v),
            Patch::Merge(v) => (Type::Merge, v),
            Patch::Strategic(v) => (Type::StrategicMerge, v),
        };
        let req = pb::PatchRequest {
            resource: Some(resource_ref::<K>(namespace, name)),
            r#type: kind as i32,
            patch: serde_json::to_vec(body).expect("JSON serializes"),
            subresource: subresource.to_string(),
            options: None,
        };
        let obj = self.api.clone().patch(req).await?.into_inner();
        decode(&obj)
    }

    /// DELETE.
    pub async fn delete<K: Resource + DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
        params: &DeleteParams,
    ) -> Result<Deleted<K>, Error> {
        let req = pb::DeleteRequest {
            resource: Some(resource_ref::<K>(namespace, name)),
            grace_period_seconds: params.grace_period_seconds,
            propagation_policy: params.propagation_policy.clone(),
            precondition_uid: params.precondition_uid.clone(),
            precondition_resource_version: params.precondition_resource_version.clone(),
            dry_run: params.dry_run,
        };
        let resp = self.api.clone().delete(req).await?.into_inner();
        let obj = decode(&resp.object.unwrap_or_default())?;
        Ok(if resp.pending {
            Deleted::Pending(obj)
        } else {
            Deleted::Gone(obj)
        })
    }

    /// Binds a pod to a node (`pods/binding`), as the scheduler does.
    pub async fn bind(
        &self,
        namespace: &str,
        pod: &str,
        node: &str,
    ) -> Result<k8s_openapi::api::core::v1::Pod, Error> {
        let req = pb::BindRequest {
            namespace: namespace.to_string(),
            name: pod.to_string(),
            node_name: node.to_string(),
            ..Default::default()
        };
        let obj = self.api.clone().bind(req).await?.into_inner();
        decode(&obj)
    }
}
