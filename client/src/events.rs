//! [`EventRecorder`]: records core/v1 Events about objects, as client-go's
//! recorder does, aggregating repeats: the same (object, type, reason,
//! message, source) again bumps `count` and `lastTimestamp` on the existing
//! Event instead of creating another. Entry point: [`EventRecorder::record`].
//!
//! Events go through an [`EventSink`]; [`Client`] is the real one, and tests
//! use a fake.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{SecondsFormat, Utc};
use ferrokube_proto::api as pb;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, Resource};
use serde_json::{json, Value};

use crate::client::Client;
use crate::error::Error;

/// `Normal` or `Warning`, the two Event types upstream knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Where Events are written: creates and merge-patches of core/v1 Events
/// as JSON.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync {
    async fn create(&self, namespace: &str, event: Value) -> Result<Value, Error>;
    async fn patch(&self, namespace: &str, name: &str, patch: Value) -> Result<Value, Error>;
}

fn events_ref(namespace: &str, name: &str) -> pb::ResourceRef {
    pb::ResourceRef {
        group: String::new(),
        version: "v1".into(),
        resource: "events".into(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

fn parse(obj: pb::Object) -> Result<Value, Error> {
    serde_json::from_slice(&obj.object).map_err(|source| Error::Decode {
        kind: "Event",
        source,
    })
}

#[async_trait::async_trait]
impl EventSink for Client {
    async fn create(&self, namespace: &str, event: Value) -> Result<Value, Error> {
        let req = pb::CreateRequest {
            resource: Some(events_ref(namespace, "")),
            object: serde_json::to_vec(&event).expect("JSON serializes"),
            options: None,
            subresource: String::new(),
        };
        parse(self.raw().create(req).await?.into_inner())
    }

    async fn patch(&self, namespace: &str, name: &str, patch: Value) -> Result<Value, Error> {
        let req = pb::PatchRequest {
            resource: Some(events_ref(namespace, name)),
            r#type: pb::patch_request::Type::Merge as i32,
            patch: serde_json::to_vec(&patch).expect("JSON serializes"),
            subresource: String::new(),
            options: None,
        };
        parse(self.raw().patch(req).await?.into_inner())
    }
}

/// What makes two events "the same" for aggregation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AggregateKey {
    involved: String,
    event_type: EventType,
    reason: String,
    message: String,
}

/// The Event last written for a key.
struct Recorded {
    namespace: String,
    name: String,
    count: i64,
}

/// Records Events for one component (`source.component`), e.g.
/// `default-scheduler` or `kubelet` (with `source.host`).
pub struct EventRecorder<S> {
    sink: S,
    component: String,
    host: Option<String>,
    seen: Mutex<HashMap<AggregateKey, Recorded>>,
}

impl<S: EventSink> EventRecorder<S> {
    pub fn new(sink: S, component: &str) -> Self {
        EventRecorder {
            sink,
            component: component.to_string(),
            host: None,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Sets `source.host` (the kubelet's node name).
    pub fn with_host(mut self, host: &str) -> Self {
        self.host = Some(host.to_string());
        self
    }

    /// Records an Event about `obj`; a repeat of the last one for the same
    /// object, type, reason and message increments its count instead.
    pub async fn record<K: Resource + Metadata<Ty = ObjectMeta>>(
        &self,
        obj: &K,
        event_type: EventType,
        reason: &str,
        message: &str,
    ) -> Result<Value, Error> {
        let meta = obj.metadata();
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let name = meta.name.clone().unwrap_or_default();
        let mut involved = json!({
            "apiVersion": K::API_VERSION,
            "kind": K::KIND,
            "name": name,
        });
        for (field, value) in [
            ("namespace", &meta.namespace),
            ("uid", &meta.uid),
            ("resourceVersion", &meta.resource_version),
        ] {
            if let Some(v) = value {
                involved[field] = json!(v);
            }
        }
        let key = AggregateKey {
            involved: format!(
                "{}/{}/{}/{}",
                K::API_VERSION,
                K::KIND,
                meta.namespace.as_deref().unwrap_or_default(),
                name
            ),
            event_type,
            reason: reason.to_string(),
            message: message.to_string(),
        };
        let now = Utc::now();
        let timestamp = now.to_rfc3339_opts(SecondsFormat::Secs, true);
        let previous = self
            .lock()
            .get(&key)
            .map(|r| (r.namespace.clone(), r.name.clone(), r.count));
        if let Some((ns, event_name, count)) = previous {
            let patch = json!({"count": count + 1, "lastTimestamp": timestamp});
            match self.sink.patch(&ns, &event_name, patch).await {
                Ok(event) => {
                    if let Some(r) = self.lock().get_mut(&key) {
                        r.count = count + 1;
                    }
                    return Ok(event);
                }
                // Gone (expired, deleted): start a new one.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let mut source = json!({"component": self.component});
        if let Some(h) = &self.host {
            source["host"] = json!(h);
        }
        let event_name = format!("{name}.{:x}", now.timestamp_nanos_opt().unwrap_or_default());
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": event_name, "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": event_type.as_str(),
            "source": source,
            "count": 1,
            "firstTimestamp": timestamp,
            "lastTimestamp": timestamp,
            "reportingComponent": self.component,
            "reportingInstance": self.host.clone().unwrap_or_default(),
        });
        let created = self.sink.create(&namespace, event).await?;
        self.lock().insert(
            key,
            Recorded {
                namespace,
                name: event_name,
                count: 1,
            },
        );
        Ok(created)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AggregateKey, Recorded>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;
    use k8s_openapi::api::core::v1::Pod;
    use std::sync::Arc;

    /// Keeps events in memory, applying merge patches to the top level.
    #[derive(Default, Clone)]
    struct FakeSink {
        events: Arc<Mutex<Vec<Value>>>,
    }

    #[async_trait::async_trait]
    impl EventSink for FakeSink {
        async fn create(&self, _namespace: &str, event: Value) -> Result<Value, Error> {
            self.events.lock().unwrap().push(event.clone());
            Ok(event)
        }
        async fn patch(&self, _namespace: &str, name: &str, patch: Value) -> Result<Value, Error> {
            let mut events = self.events.lock().unwrap();
            let Some(e) = events.iter_mut().find(|e| e["metadata"]["name"] == name) else {
                return Err(Error::Api(ApiError {
                    code: 404,
                    reason: "NotFound".into(),
                    message: format!("events {name:?} not found"),
                    status: Value::Null,
                }));
            };
            for (k, v) in patch.as_object().unwrap() {
                e[k] = v.clone();
            }
            Ok(e.clone())
        }
    }

    fn pod(name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some("u-1".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn repeats_bump_count_on_one_event_and_different_reasons_do_not() {
        let sink = FakeSink::default();
        let recorder = EventRecorder::new(sink.clone(), "default-scheduler");
        let web = pod("web");
        for _ in 0..3 {
            recorder
                .record(
                    &web,
                    EventType::Warning,
                    "FailedScheduling",
                    "0/1 nodes are available",
                )
                .await
                .unwrap();
        }
        recorder
            .record(
                &web,
                EventType::Normal,
                "Scheduled",
                "Successfully assigned default/web to n1",
            )
            .await
            .unwrap();
        let events = sink.events.lock().unwrap().clone();
        assert_eq!(events.len(), 2);
        let failed = &events[0];
        assert_eq!(failed["count"], 3);
        assert_eq!(failed["type"], "Warning");
        assert_eq!(failed["source"]["component"], "default-scheduler");
        assert_eq!(failed["involvedObject"]["kind"], "Pod");
        assert_eq!(failed["involvedObject"]["uid"], "u-1");
        assert!(failed["firstTimestamp"].is_string() && failed["lastTimestamp"].is_string());
        assert_eq!(events[1]["count"], 1);
    }

    #[tokio::test]
    async fn a_repeat_of_a_deleted_event_starts_a_new_one() {
        let sink = FakeSink::default();
        let recorder = EventRecorder::new(sink.clone(), "kubelet").with_host("n1");
        let web = pod("web");
        recorder
            .record(&web, EventType::Normal, "Pulled", "ok")
            .await
            .unwrap();
        sink.events.lock().unwrap().clear();
        recorder
            .record(&web, EventType::Normal, "Pulled", "ok")
            .await
            .unwrap();
        let events = sink.events.lock().unwrap().clone();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["count"], 1);
        assert_eq!(events[0]["source"]["host"], "n1");
    }
}
