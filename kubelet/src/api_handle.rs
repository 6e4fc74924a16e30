//! [`ApiHandle`]: the apiserver client once the kubelet has reached it.
//! Static pods start before the apiserver answers, so the parts built at
//! start (volume sources, probe events) hold this handle and fail softly —
//! an `Unavailable` error — until it is set.

use std::sync::{Arc, OnceLock};

use ferrokube_client::{ApiError, Client, Error, EventSink};
use serde_json::Value;

#[derive(Clone, Default)]
pub struct ApiHandle(Arc<OnceLock<Client>>);

impl ApiHandle {
    /// Sets the client; later calls keep the first.
    pub fn set(&self, client: Client) {
        let _ = self.0.set(client);
    }

    pub fn get(&self) -> Option<&Client> {
        self.0.get()
    }

    /// The client, or `Unavailable` while the apiserver was not reached.
    pub fn client(&self) -> Result<&Client, Error> {
        self.0.get().ok_or_else(|| {
            Error::Api(ApiError::from_grpc(&tonic::Status::unavailable(
                "the apiserver has not been reached yet",
            )))
        })
    }
}

#[async_trait::async_trait]
impl EventSink for ApiHandle {
    async fn create(&self, namespace: &str, event: Value) -> Result<Value, Error> {
        EventSink::create(self.client()?, namespace, event).await
    }

    async fn patch(&self, namespace: &str, name: &str, patch: Value) -> Result<Value, Error> {
        EventSink::patch(self.client()?, namespace, name, patch).await
    }
}
