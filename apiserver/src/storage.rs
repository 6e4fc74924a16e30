//! The apiserver's only door to etcd-lite: objects as JSON under
//! `/registry/...`, with compare-and-swap on `mod_revision` so that
//! concurrent writers never lose an update. Entry point: [`Storage::connect`].

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use futures::Stream;
use serde_json::Value;

/// What can go wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// An allocation key (IP, port) claimed by another object.
    #[error("{0} is already reserved")]
    Reserved(String),
    #[error("key {0} not found")]
    NotFound(String),
    /// The object changed since the caller read it; carries what is there now.
    #[error("key {key} was modified concurrently")]
    Conflict {
        key: String,
        current: Option<Stored>,
    },
    #[error("required revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    #[error("stored value under {key} is not valid JSON: {source}")]
    Decode {
        key: String,
        source: serde_json::Error,
    },
    #[error("etcd request failed: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd request timed out")]
    Timeout,
}

/// An object as stored, with the revisions etcd keeps for it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: String,
    pub value: Value,
    /// The object's `resourceVersion`.
    pub mod_revision: i64,
    pub create_revision: i64,
}

impl Stored {
    fn from_kv(kv: &KeyValue) -> Result<Stored, StorageError> {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let value = serde_json::from_slice(kv.value()).map_err(|source| StorageError::Decode {
            key: key.clone(),
            source,
        })?;
        Ok(Stored {
            key,
            value,
            mod_revision: kv.mod_revision(),
            create_revision: kv.create_revision(),
        })
    }
}

/// One page of a range read.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Stored>,
    /// The revision the page was read at (reuse it for the next page).
    pub revision: i64,
    /// More keys follow the last item.
    pub more: bool,
    /// How many keys remain after this page (when `more`).
    pub remaining: i64,
}

/// A change seen by a watch on a key prefix.
#[derive(Debug, Clone)]
pub enum Change {
    Put {
        current: Stored,
        previous: Option<Stored>,
    },
    Delete {
        key: String,
        previous: Option<Stored>,
        revision: i64,
    },
    /// Progress: everything up to this revision has been delivered.
    Progress(i64),
}

/// How long one etcd request may take before the caller gets a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle on etcd; cheap to clone.
#[derive(Clone)]
pub struct Storage {
    client: Client,
}

fn rev_of(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.map(|h| h.revision()).unwrap_or_default()
}

fn map_etcd(err: etcd_client::Error) -> StorageError {
    if let etcd_client::Error::GRpcStatus(status) = &err {
        let msg = status.message();
        if msg.contains("required revision has been compacted") {
            return StorageError::Compacted {
                requested: 0,
                compacted: 0,
            };
        }
    }
    StorageError::Etcd(err)
}

async fn timed<T>(
    fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StorageError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(r) => r.map_err(map_etcd),
        Err(_) => Err(StorageError::Timeout),
    }
}

impl Storage {
    /// Connects to the given etcd endpoints (`http://host:port`).
    pub async fn connect(endpoints: &[String]) -> Result<Storage, StorageError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(options)).await?;
        Ok(Storage { client })
    }

    /// A KV client that accepts responses of any size etcd sends (as etcd's
    /// own client does: a page of large objects exceeds gRPC's 4 MiB default).
    fn kv(&self) -> etcd_client::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(i32::MAX as usize)
    }

    /// The object under `key`, read linearizably.
    pub async fn get(&self, key: &str) -> Result<Option<Stored>, StorageError> {
        let mut kv = self.kv();
        let resp = timed(kv.get(key, None)).await?;
        resp.kvs().first().map(Stored::from_kv).transpose()
    }

    /// Writes `value` under `key` only if nothing is there, and atomically
    /// claims the `reserve` keys (allocated IPs and ports, each naming its
    /// owner); returns the new revision.
    pub async fn create(
        &self,
        key: &str,
        value: &Value,
        reserve: &[String],
    ) -> Result<i64, StorageError> {
        let bytes = serde_json::to_vec(value).expect("a JSON value serializes");
        let mut when = vec![Compare::create_revision(key, CompareOp::Equal, 0)];
        let mut then = vec![TxnOp::put(key, bytes, None)];
        claim(key, reserve, &mut when, &mut then);
        let mut otherwise = vec![TxnOp::get(key, None)];
        otherwise.extend(reserve.iter().map(|r| TxnOp::get(r.as_str(), None)));
        let txn = Txn::new().when(when).and_then(then).or_else(otherwise);
        let mut kv = self.kv();
        let resp = timed(kv.txn(txn)).await?;
        if resp.succeeded() {
            return Ok(rev_of(resp.header()));
        }
        let found = range_kvs(&resp.op_responses());
        if found.first().is_some_and(Option::is_some) {
            return Err(StorageError::AlreadyExists(key.to_string()));
        }
        Err(taken(reserve, &found[1..]))
    }

    /// Replaces the object under `key` if its `mod_revision` is still
    /// `expected` (otherwise `Conflict` with the current object), claiming
    /// `reserve` keys and releasing `release` keys in the same transaction.
    pub async fn update(
        &self,
        key: &str,
        value: &Value,
        expected: i64,
        reserve: &[String],
        release: &[String],
    ) -> Result<i64, StorageError> {
        let bytes = serde_json::to_vec(value).expect("a JSON value serializes");
        let mut when = vec![Compare::mod_revision(key, CompareOp::Equal, expected)];
        let mut then = vec![TxnOp::put(key, bytes, None)];
        claim(key, reserve, &mut when, &mut then);
        then.extend(release.iter().map(|r| TxnOp::delete(r.as_str(), None)));
        let mut otherwise = vec![TxnOp::get(key, None)];
        otherwise.extend(reserve.iter().map(|r| TxnOp::get(r.as_str(), None)));
        let txn = Txn::new().when(when).and_then(then).or_else(otherwise);
        let mut kv = self.kv();
        let resp = timed(kv.txn(txn)).await?;
        if resp.succeeded() {
            return Ok(rev_of(resp.header()));
        }
        let found = range_kvs(&resp.op_responses());
        match found.first().cloned().flatten() {
            None => Err(StorageError::NotFound(key.to_string())),
            Some(kv) if kv.mod_revision() != expected => Err(StorageError::Conflict {
                key: key.to_string(),
                current: Some(Stored::from_kv(&kv)?),
            }),
            Some(_) => Err(taken(reserve, &found[1..])),
        }
    }

    /// Deletes `key` if its `mod_revision` is still `expected`, releasing the
    /// `release` keys; returns the deleted object and the revision of the delete.
    pub async fn delete(
        &self,
        key: &str,
        expected: i64,
        release: &[String],
    ) -> Result<(Stored, i64), StorageError> {
        let mut then = vec![TxnOp::delete(
            key,
            Some(etcd_client::DeleteOptions::new().with_prev_key()),
        )];
        then.extend(release.iter().map(|r| TxnOp::delete(r.as_str(), None)));
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then(then)
            .or_else([TxnOp::get(key, None)]);
        let mut kv = self.kv();
        let resp = timed(kv.txn(txn)).await?;
        let ops = resp.op_responses();
        if resp.succeeded() {
            if let Some(TxnOpResponse::Delete(d)) = ops.first() {
                if let Some(prev) = d.prev_kvs().first() {
                    return Ok((Stored::from_kv(prev)?, rev_of(resp.header())));
                }
            }
            return Err(StorageError::NotFound(key.to_string()));
        }
        match range_kvs(&ops).into_iter().next().flatten() {
            None => Err(StorageError::NotFound(key.to_string())),
            Some(kv) => Err(StorageError::Conflict {
                key: key.to_string(),
                current: Some(Stored::from_kv(&kv)?),
            }),
        }
    }

    /// The keys (only) under `prefix`: allocation bookkeeping.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let opts = GetOptions::new()
            .with_range(prefix_end(prefix))
            .with_keys_only();
        let mut kv = self.kv();
        let resp = timed(kv.get(prefix, Some(opts))).await?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect())
    }

    /// Reads up to `limit` keys (0 = all) from `start` to the end of `prefix`,
    /// at `revision` (0 = now). Compacted revisions fail with `Compacted`.
    pub async fn list(
        &self,
        prefix: &str,
        start: &str,
        revision: i64,
        limit: i64,
    ) -> Result<Page, StorageError> {
        let end = prefix_end(prefix);
        let start = if start.is_empty() { prefix } else { start };
        let mut opts = GetOptions::new().with_range(end).with_revision(revision);
        if limit > 0 {
            opts = opts.with_limit(limit);
        }
        let mut kv = self.kv();
        let resp = match timed(kv.get(start, Some(opts))).await {
            Err(StorageError::Compacted { .. }) => {
                return Err(StorageError::Compacted {
                    requested: revision,
                    compacted: 0,
                })
            }
            other => other?,
        };
        let items = resp
            .kvs()
            .iter()
            .map(Stored::from_kv)
            .collect::<Result<Vec<_>, _>>()?;
        let count = resp.count();
        Ok(Page {
            more: resp.more(),
            remaining: count - items.len() as i64,
            revision: rev_of(resp.header()),
            items,
        })
    }

    /// The store's current revision, read linearizably.
    pub async fn current_revision(&self) -> Result<i64, StorageError> {
        let mut kv = self.kv();
        let opts = GetOptions::new().with_count_only();
        let resp = timed(kv.get("/registry/", Some(opts))).await?;
        Ok(rev_of(resp.header()))
    }

    /// A stream of changes under `prefix` from revision `from` (inclusive),
    /// with previous values, and a handle to ask etcd for a progress
    /// notification (the store's current revision once everything before it
    /// was delivered). The stream ends with an error when etcd cancels the
    /// watch (e.g. `from` was compacted); the caller relists.
    pub async fn watch(
        &self,
        prefix: &str,
        from: i64,
    ) -> Result<
        (
            ProgressRequester,
            impl Stream<Item = Result<Vec<Change>, StorageError>> + Send + 'static,
        ),
        StorageError,
    > {
        let opts = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_start_revision(from)
            .with_prev_key()
            .with_progress_notify();
        let mut watch = self
            .client
            .watch_client()
            .max_decoding_message_size(i32::MAX as usize);
        let stream = timed(watch.watch(prefix, Some(opts))).await?;
        let (sender, responses) = stream.split();
        let stream = futures::stream::unfold(Some(responses), move |state| async move {
            let mut responses = state?;
            let item = match responses.message().await {
                Ok(Some(resp)) if resp.canceled() => Err(StorageError::Compacted {
                    requested: from,
                    compacted: resp.compact_revision(),
                }),
                Ok(Some(resp)) => changes(&resp),
                Ok(None) => Err(StorageError::Etcd(etcd_client::Error::WatchError(
                    "watch stream closed".into(),
                ))),
                Err(e) => Err(map_etcd(e)),
            };
            // The stream ends after its first error.
            let next = item.is_ok().then_some(responses);
            Some((item, next))
        });
        Ok((ProgressRequester(sender), stream))
    }
}

/// Asks etcd for a progress notification on one watch; keeping it alive
/// keeps the watch open.
pub struct ProgressRequester(etcd_client::WatchRequestSender);

impl ProgressRequester {
    pub async fn request(&mut self) -> Result<(), StorageError> {
        self.0.request_progress().await.map_err(StorageError::Etcd)
    }
}

fn changes(resp: &etcd_client::WatchResponse) -> Result<Vec<Change>, StorageError> {
    let mut out = Vec::with_capacity(resp.events().len());
    for ev in resp.events() {
        let Some(kv) = ev.kv() else { continue };
        let previous = ev.prev_kv().map(Stored::from_kv).transpose()?;
        match ev.event_type() {
            EventType::Put => out.push(Change::Put {
                current: Stored::from_kv(kv)?,
                previous,
            }),
            EventType::Delete => out.push(Change::Delete {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                previous,
                revision: kv.mod_revision(),
            }),
        }
    }
    if out.is_empty() {
        out.push(Change::Progress(rev_of(resp.header())));
    }
    Ok(out)
}

/// Adds "each reserved key is still free" to the compares and the claims
/// (each naming `owner`) to the writes.
fn claim(owner: &str, reserve: &[String], when: &mut Vec<Compare>, then: &mut Vec<TxnOp>) {
    for r in reserve {
        when.push(Compare::create_revision(r.as_str(), CompareOp::Equal, 0));
        then.push(TxnOp::put(r.as_str(), owner.as_bytes().to_vec(), None));
    }
}

/// The first key of `reserve` that turned out to be taken.
fn taken(reserve: &[String], found: &[Option<KeyValue>]) -> StorageError {
    let key = reserve
        .iter()
        .zip(found)
        .find(|(_, kv)| kv.is_some())
        .map(|(k, _)| k.clone())
        .unwrap_or_default();
    StorageError::Reserved(key)
}

/// The first key-value of each range response, in order.
fn range_kvs(ops: &[TxnOpResponse]) -> Vec<Option<KeyValue>> {
    ops.iter()
        .filter_map(|op| match op {
            TxnOpResponse::Get(g) => Some(g.kvs().first().cloned()),
            _ => None,
        })
        .collect()
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
