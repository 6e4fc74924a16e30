//! ferrokube-client: what a component needs to talk to the apiserver over
//! gRPC (`proto/api.proto`): a [`Client`] with typed verbs for k8s-openapi
//! types, a [`Reflector`] that keeps a [`Store`] in step with list + watch,
//! a de-duplicating, rate-limited [`WorkQueue`], an [`EventRecorder`] and a
//! [`LeaderElector`] on Leases — client-go's building blocks for controllers.
//!
//! Entry point: [`Client::connect`] with a kubeconfig path.

pub mod client;
pub mod error;
pub mod events;
pub mod kubeconfig;
pub mod leader_election;
pub mod reflector;
pub mod store;
pub mod workqueue;

pub use client::{
    Client, DeleteParams, Deleted, ListParams, ObjectList, Patch, WatchEvent, WatchParams,
};
pub use error::{ApiError, Error};
pub use events::{EventRecorder, EventSink, EventType};
pub use kubeconfig::Kubeconfig;
pub use leader_election::{LeaderElectionConfig, LeaderElector};
pub use reflector::{Reflector, State};
pub use store::{ObjectKey, Store};
pub use workqueue::WorkQueue;
