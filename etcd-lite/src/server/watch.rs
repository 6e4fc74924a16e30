//! The Watch service: one bidirectional stream carries many watches.
//!
//! Per stream, one task reads create/cancel/progress requests and registers
//! watchers in the [`WatchHub`](crate::watch::WatchHub); another turns what the
//! hub sends into `WatchResponse`s. The `created` response of a watch is queued
//! before the watcher is registered, so it always precedes the watch's events.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::proto::{PbWatchRequest, PbWatchRequestUnion, PbWatchResponse, PbWatchService};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::EtcdServer;
use crate::watch::{WatchMessage, WatchSpec, FILTER_NODELETE, FILTER_NOPUT};

/// Messages a stream buffers from the hub before its watchers fall back to catching up from history.
const HUB_BUFFER: usize = 1024;
/// How often a watch with `progress_notify` gets an empty response carrying the revision (etcd: 10 minutes).
pub const PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(600);
/// The watch id of a response to a progress request (etcd's `InvalidWatchID`).
const PROGRESS_WATCH_ID: i64 = -1;

type WatchStream = Pin<Box<dyn Stream<Item = Result<PbWatchResponse, Status>> + Send>>;

pub struct WatchService {
    server: Arc<EtcdServer>,
}

impl WatchService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        WatchService { server }
    }
}

/// One client stream's state.
struct StreamState {
    server: Arc<EtcdServer>,
    id: u64,
    out: mpsc::Sender<Result<PbWatchResponse, Status>>,
    hub_tx: mpsc::Sender<WatchMessage>,
    /// Live watch ids of this stream; the next auto id is the smallest unused one from `next_id`.
    ids: Mutex<HashSet<i64>>,
    progress: Mutex<HashSet<i64>>,
    next_id: Mutex<i64>,
}

impl StreamState {
    fn response(&self, watch_id: i64, revision: i64) -> PbWatchResponse {
        PbWatchResponse {
            header: Some(self.server.header(revision)),
            watch_id,
            ..Default::default()
        }
    }

    async fn send(&self, resp: PbWatchResponse) -> bool {
        self.out.send(Ok(resp)).await.is_ok()
    }

    async fn handle(&self, req: PbWatchRequest) -> bool {
        match req.request_union {
            Some(PbWatchRequestUnion::CreateRequest(c)) => {
                let requested = c.watch_id;
                let assigned = {
                    let mut ids = self.ids.lock().expect("watch ids lock");
                    let id = if requested > 0 {
                        requested
                    } else {
                        let mut next = self.next_id.lock().expect("watch id lock");
                        while ids.contains(&*next) {
                            *next += 1;
                        }
                        *next
                    };
                    if ids.insert(id) {
                        Ok(id)
                    } else {
                        Err(id)
                    }
                };
                let watch_id = match assigned {
                    Ok(id) => id,
                    Err(id) => {
                        let current = self.server.current_header().revision;
                        let mut resp = self.response(id, current);
                        resp.created = true;
                        resp.canceled = true;
                        resp.cancel_reason = format!("etcdserver: watch id {id} already in use");
                        return self.send(resp).await;
                    }
                };
                let spec = WatchSpec {
                    key: c.key,
                    range_end: c.range_end,
                    start_revision: c.start_revision,
                    prev_kv: c.prev_kv,
                    no_put: c.filters.contains(&FILTER_NOPUT),
                    no_delete: c.filters.contains(&FILTER_NODELETE),
                };
                if c.progress_notify {
                    self.progress
                        .lock()
                        .expect("progress lock")
                        .insert(watch_id);
                }
                let key = (self.id, watch_id);
                let hub = self.server.sm().hub();
                // Queued before registration: the created response precedes every event.
                let unsent = {
                    let store = self.server.sm().store();
                    let mut created = self.response(watch_id, store.revision());
                    created.created = true;
                    match self.out.try_send(Ok(created)) {
                        Ok(()) => {
                            hub.watch(&store, key, spec.clone(), self.hub_tx.clone());
                            None
                        }
                        Err(e) => Some(e.into_inner()),
                    }
                };
                if let Some(created) = unsent {
                    if self.out.send(created).await.is_err() {
                        return false;
                    }
                    let store = self.server.sm().store();
                    hub.watch(&store, key, spec, self.hub_tx.clone());
                }
                true
            }
            Some(PbWatchRequestUnion::CancelRequest(c)) => {
                self.server.sm().hub().cancel((self.id, c.watch_id));
                self.ids.lock().expect("watch ids lock").remove(&c.watch_id);
                self.progress
                    .lock()
                    .expect("progress lock")
                    .remove(&c.watch_id);
                let mut resp = self.response(c.watch_id, self.server.current_header().revision);
                resp.canceled = true;
                self.send(resp).await
            }
            Some(PbWatchRequestUnion::ProgressRequest(_)) => {
                // Only meaningful once every watcher of the stream has caught up (etcd's rule).
                if self.server.sm().hub().stream_synced(self.id) {
                    let resp =
                        self.response(PROGRESS_WATCH_ID, self.server.current_header().revision);
                    return self.send(resp).await;
                }
                true
            }
            None => true,
        }
    }

    fn hub_message(&self, msg: WatchMessage) -> PbWatchResponse {
        match msg {
            WatchMessage::Events {
                watch_id,
                revision,
                events,
            } => {
                let mut resp = self.response(watch_id, revision);
                resp.events = events;
                resp
            }
            WatchMessage::Compacted {
                watch_id,
                compact_revision,
            } => {
                self.ids.lock().expect("watch ids lock").remove(&watch_id);
                self.progress
                    .lock()
                    .expect("progress lock")
                    .remove(&watch_id);
                let mut resp = self.response(watch_id, self.server.current_header().revision);
                resp.compact_revision = compact_revision;
                resp.canceled = true;
                resp.cancel_reason =
                    "etcdserver: mvcc: required revision has been compacted".into();
                resp
            }
        }
    }
}

#[tonic::async_trait]
impl PbWatchService for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<Streaming<PbWatchRequest>>,
    ) -> Result<Response<WatchStream>, Status> {
        let mut incoming = req.into_inner();
        let (out_tx, out_rx) = mpsc::channel(HUB_BUFFER);
        let (hub_tx, mut hub_rx) = mpsc::channel::<WatchMessage>(HUB_BUFFER);
        let state = Arc::new(StreamState {
            server: self.server.clone(),
            id: self.server.next_watch_stream(),
            out: out_tx,
            hub_tx,
            ids: Mutex::default(),
            progress: Mutex::default(),
            next_id: Mutex::new(0),
        });

        let forwarder = state.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(PROGRESS_NOTIFY_INTERVAL);
            ticker.tick().await;
            loop {
                tokio::select! {
                    msg = hub_rx.recv() => {
                        let Some(msg) = msg else { break };
                        let resp = forwarder.hub_message(msg);
                        if !forwarder.send(resp).await {
                            break;
                        }
                    }
                    _ = ticker.tick() => {
                        if !forwarder.server.sm().hub().stream_synced(forwarder.id) {
                            continue;
                        }
                        let ids: Vec<i64> = forwarder.progress.lock().expect("progress lock").iter().copied().collect();
                        let revision = forwarder.server.current_header().revision;
                        for id in ids {
                            if !forwarder.send(forwarder.response(id, revision)).await {
                                return;
                            }
                        }
                    }
                    _ = forwarder.out.closed() => break,
                }
            }
            forwarder.server.sm().hub().cancel_stream(forwarder.id);
        });

        let reader = state;
        tokio::spawn(async move {
            // A client that half-closes keeps its watches (as with etcd); an error or
            // a closed response stream ends them.
            while let Some(req) = incoming.next().await {
                let ok = match req {
                    Ok(req) => reader.handle(req).await,
                    Err(_) => false,
                };
                if !ok {
                    reader.server.sm().hub().cancel_stream(reader.id);
                    break;
                }
            }
        });

        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }
}
