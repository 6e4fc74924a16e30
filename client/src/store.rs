//! [`Store`]: the in-memory cache a [`Reflector`](crate::Reflector) keeps
//! in step with the apiserver, keyed by namespace/name, shared by clones.
//!
//! Invariants: between two lists the store changes only by watch events in
//! resourceVersion order; [`Store::wait_until_synced`] returns once the first
//! list has been applied, so readers never mistake "not listed yet" for
//! "does not exist".

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::Metadata;
use tokio::sync::watch;

/// An object's key: `namespace/name`, or `name` for cluster-scoped objects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// The key of an object, from its metadata.
    pub fn of<K: Metadata<Ty = ObjectMeta>>(obj: &K) -> ObjectKey {
        let m = obj.metadata();
        ObjectKey::new(
            m.namespace.as_deref().unwrap_or_default(),
            m.name.as_deref().unwrap_or_default(),
        )
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

struct Inner<K> {
    objects: BTreeMap<ObjectKey, Arc<K>>,
    lists: u64,
}

/// A shared, read-mostly cache of one resource.
pub struct Store<K> {
    inner: Arc<RwLock<Inner<K>>>,
    synced: Arc<watch::Sender<bool>>,
    /// Bumped on every change, so consumers can wait for one.
    generation: Arc<watch::Sender<u64>>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            inner: self.inner.clone(),
            synced: self.synced.clone(),
            generation: self.generation.clone(),
        }
    }
}

impl<K> Default for Store<K> {
    fn default() -> Self {
        Store {
            inner: Arc::new(RwLock::new(Inner {
                objects: BTreeMap::new(),
                lists: 0,
            })),
            synced: Arc::new(watch::channel(false).0),
            generation: Arc::new(watch::channel(0).0),
        }
    }
}

impl<K: Metadata<Ty = ObjectMeta>> Store<K> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.read().objects.get(key).cloned()
    }

    /// Every object, in key order.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().objects.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many times the store was replaced by a full list (1 after the
    /// initial sync; more after relists on 410 Gone).
    pub fn lists(&self) -> u64 {
        self.read().lists
    }

    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until the first list has been applied; false at `timeout`.
    pub async fn wait_until_synced(&self, timeout: Duration) -> bool {
        let mut rx = self.synced.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A receiver that sees a new value after every change (list, upsert,
    /// remove); changes in quick succession may be seen as one.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn bump(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Replaces everything with a fresh list.
    pub fn replace(&self, objects: Vec<K>) {
        {
            let mut inner = self.write();
            inner.objects = objects
                .into_iter()
                .map(|o| (ObjectKey::of(&o), Arc::new(o)))
                .collect();
            inner.lists += 1;
        }
        self.synced.send_replace(true);
        self.bump();
    }

    /// Applies an ADDED or MODIFIED event.
    pub fn upsert(&self, obj: K) {
        self.write()
            .objects
            .insert(ObjectKey::of(&obj), Arc::new(obj));
        self.bump();
    }

    /// Applies a DELETED event.
    pub fn remove(&self, key: &ObjectKey) {
        self.write().objects.remove(key);
        self.bump();
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner<K>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner<K>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(ns: &str, name: &str, v: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some([("k".to_string(), v.to_string())].into()),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn readers_wait_for_the_first_list_and_see_later_events() {
        let store = Store::<ConfigMap>::new();
        assert!(!store.wait_until_synced(Duration::from_secs(1)).await);
        let reader = store.clone();
        let waiting =
            tokio::spawn(async move { reader.wait_until_synced(Duration::from_secs(60)).await });
        store.replace(vec![cm("a", "x", "1"), cm("b", "x", "1")]);
        assert!(waiting.await.unwrap());
        store.upsert(cm("a", "x", "2"));
        store.remove(&ObjectKey::new("b", "x"));
        let got = store.get(&ObjectKey::new("a", "x")).unwrap();
        assert_eq!(got.data.as_ref().unwrap()["k"], "2");
        assert_eq!(store.len(), 1);
        assert_eq!(store.lists(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn subscribers_wake_on_every_kind_of_change() {
        let store = Store::<ConfigMap>::new();
        let mut changes = store.subscribe();
        let mut wakes = 0;
        for change in 0..3 {
            match change {
                0 => store.replace(vec![cm("a", "x", "1")]),
                1 => store.upsert(cm("a", "x", "2")),
                _ => store.remove(&ObjectKey::new("a", "x")),
            }
            let woke = tokio::time::timeout(Duration::from_secs(1), changes.changed()).await;
            wakes += usize::from(matches!(woke, Ok(Ok(()))));
        }
        assert_eq!(wakes, 3);
        // Nothing changed since: no wake.
        let idle = tokio::time::timeout(Duration::from_secs(1), changes.changed()).await;
        assert!(idle.is_err());
    }

    #[test]
    fn a_relist_drops_objects_deleted_meanwhile() {
        let store = Store::<ConfigMap>::new();
        store.replace(vec![cm("a", "x", "1"), cm("a", "y", "1")]);
        store.replace(vec![cm("a", "y", "1")]);
        assert_eq!(store.get(&ObjectKey::new("a", "x")), None);
        assert_eq!(store.lists(), 2);
        assert_eq!(ObjectKey::new("a", "y").to_string(), "a/y");
        assert_eq!(ObjectKey::new("", "node1").to_string(), "node1");
    }
}
