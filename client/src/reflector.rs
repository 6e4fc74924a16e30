//! [`Reflector`]: keeps a [`Store`] in step with the apiserver by listing,
//! then watching from the list's resourceVersion, as client-go's reflector
//! does. Entry point: [`Reflector::run`].
//!
//! To ensure correctness: the store is replaced only by a full list, and
//! changed otherwise only by watch events after that list's revision, in
//! order; a watch that cannot resume (410 Gone) leads to a relist, never to
//! a silently skipped history.

use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, Resource};
use serde::de::DeserializeOwned;

use crate::client::{Client, ListParams, WatchEvent, WatchParams};
use crate::error::Error;
use crate::store::{ObjectKey, Store};

/// Where the reflector is in its list → watch cycle.
pub enum State<K> {
    /// Nothing trusted yet (start, or after 410 Gone): list everything and
    /// replace the store.
    Empty,
    /// The store is current as of `resource_version`: open a watch from it.
    Resuming { resource_version: String },
    /// A watch is open; events after `resource_version` are applied in order.
    Watching {
        resource_version: String,
        stream: BoxStream<'static, Result<WatchEvent<K>, Error>>,
    },
    /// A call failed for a reason other than 410: wait, then resume from
    /// `resource_version` (or list, when there is none).
    Backoff {
        resource_version: Option<String>,
        delay: Duration,
    },
}

impl<K> std::fmt::Debug for State<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::Empty => f.write_str("Empty"),
            State::Resuming { resource_version } => write!(f, "Resuming({resource_version})"),
            State::Watching {
                resource_version, ..
            } => write!(f, "Watching({resource_version})"),
            State::Backoff { delay, .. } => write!(f, "Backoff({delay:?})"),
        }
    }
}

/// The shortest and longest wait after a failed list or watch.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Lists and watches one resource (one namespace, or all) into a store.
pub struct Reflector<K> {
    client: Client,
    namespace: String,
    label_selector: String,
    field_selector: String,
    store: Store<K>,
    state: State<K>,
    /// Consecutive failed calls, for the backoff.
    failures: u32,
}

impl<K> Reflector<K>
where
    K: Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static,
{
    /// A reflector for `namespace` ("" for all namespaces) feeding `store`.
    pub fn new(client: Client, namespace: &str, store: Store<K>) -> Self {
        Reflector {
            client,
            namespace: namespace.to_string(),
            label_selector: String::new(),
            field_selector: String::new(),
            store,
            state: State::Empty,
            failures: 0,
        }
    }

    /// Restricts the reflector to objects matching the selectors.
    pub fn with_selectors(mut self, label_selector: &str, field_selector: &str) -> Self {
        self.label_selector = label_selector.to_string();
        self.field_selector = field_selector.to_string();
        self
    }

    /// Starts by resuming a watch from `resource_version` instead of
    /// listing, as a restarted component that remembers where it was would.
    /// The store is trusted only once that watch works or a relist happened.
    pub fn resuming_from(mut self, resource_version: &str) -> Self {
        self.state = State::Resuming {
            resource_version: resource_version.to_string(),
        };
        self
    }

    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    pub fn state(&self) -> &State<K> {
        &self.state
    }

    /// Runs until the task is dropped or aborted.
    pub async fn run(mut self) {
        loop {
            self.step().await;
        }
    }

    /// One transition of the state machine.
    pub async fn step(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Empty);
        self.state = match state {
            State::Empty => self.list().await,
            State::Resuming { resource_version } => {
                let params = WatchParams {
                    label_selector: self.label_selector.clone(),
                    field_selector: self.field_selector.clone(),
                    resource_version: resource_version.clone(),
                    allow_bookmarks: true,
                    timeout_seconds: 0,
                };
                match self.client.watch::<K>(&self.namespace, &params).await {
                    Ok(stream) => State::Watching {
                        resource_version,
                        stream,
                    },
                    Err(e) if e.is_gone() => {
                        tracing::info!(kind = K::KIND, error = %e, "watch history is gone, relisting");
                        State::Empty
                    }
                    Err(e) => {
                        tracing::warn!(kind = K::KIND, error = %e, "watch failed");
                        State::Backoff {
                            resource_version: Some(resource_version),
                            delay: self.backoff(),
                        }
                    }
                }
            }
            State::Watching {
                mut resource_version,
                mut stream,
            } => match stream.next().await {
                None => {
                    tracing::debug!(kind = K::KIND, %resource_version, "watch ended, resuming");
                    State::Resuming { resource_version }
                }
                Some(Ok(event)) => {
                    self.failures = 0;
                    match event {
                        WatchEvent::Added(obj) | WatchEvent::Modified(obj) => {
                            if let Some(rv) = &obj.metadata().resource_version {
                                resource_version = rv.clone();
                            }
                            self.store.upsert(obj);
                        }
                        WatchEvent::Deleted(obj) => {
                            if let Some(rv) = &obj.metadata().resource_version {
                                resource_version = rv.clone();
                            }
                            self.store.remove(&ObjectKey::of(&obj));
                        }
                        WatchEvent::Bookmark {
                            resource_version: rv,
                        } => resource_version = rv,
                    }
                    State::Watching {
                        resource_version,
                        stream,
                    }
                }
                Some(Err(e)) if e.is_gone() => {
                    tracing::info!(kind = K::KIND, error = %e, "watch history is gone, relisting");
                    State::Empty
                }
                Some(Err(e)) => {
                    tracing::warn!(kind = K::KIND, error = %e, "watch broke");
                    State::Backoff {
                        resource_version: Some(resource_version),
                        delay: self.backoff(),
                    }
                }
            },
            State::Backoff {
                resource_version,
                delay,
            } => {
                tokio::time::sleep(delay).await;
                match resource_version {
                    Some(resource_version) => State::Resuming { resource_version },
                    None => State::Empty,
                }
            }
        };
        if matches!(self.state, State::Backoff { .. }) {
            self.failures = self.failures.saturating_add(1);
        }
    }

    /// The wait before the next attempt: doubling from [`BACKOFF_MIN`] with
    /// each consecutive failure, up to [`BACKOFF_MAX`].
    fn backoff(&self) -> Duration {
        BACKOFF_MIN
            .saturating_mul(1 << self.failures.min(16))
            .min(BACKOFF_MAX)
    }

    async fn list(&mut self) -> State<K> {
        let params = ListParams {
            label_selector: self.label_selector.clone(),
            field_selector: self.field_selector.clone(),
            ..Default::default()
        };
        match self.client.list::<K>(&self.namespace, &params).await {
            Ok(list) => {
                tracing::debug!(kind = K::KIND, items = list.items.len(), resource_version = %list.resource_version, "listed");
                self.store.replace(list.items);
                self.failures = 0;
                State::Resuming {
                    resource_version: list.resource_version,
                }
            }
            Err(e) => {
                tracing::warn!(kind = K::KIND, error = %e, "list failed");
                State::Backoff {
                    resource_version: None,
                    delay: self.backoff(),
                }
            }
        }
    }
}
