//! The port-forward protocol (`portforward.k8s.io`) over one SPDY/3.1
//! session with kubectl: for every local connection kubectl opens a pair of
//! streams sharing a `requestid` header, `streamtype: error` and
//! `streamtype: data`, both naming the `port`. Once both are there the pair
//! is dialled through a [`Dialer`] (the pod's kubelet); the data stream
//! carries the connection's bytes both ways, and the error stream the text
//! of a failure. Both streams are closed (FIN) when the pod's side is done.
//! A pair whose other half does not arrive within
//! [`STREAM_CREATION_TIMEOUT`] is given up, as upstream's kubelet does: the
//! error stream (if it came) says so, and what came is closed. The session is transport-neutral: bytes in, bytes out (a WebSocket tunnel
//! or an upgraded HTTP/1.1 connection). Entry point: [`serve`].

use std::collections::HashMap;
use std::sync::Arc;

use ferrokube_api::spdy::{self, Frame, FrameReader, FrameWriter, FLAG_FIN};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant};

/// How long the first stream of a pair waits for the other (upstream's
/// streaming server `StreamCreationTimeout`).
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// `X-Stream-Protocol-Version` of the port-forward protocol.
pub const PROTOCOL_V1: &str = "portforward.k8s.io";
/// The WebSocket subprotocol kubectl 1.31+ asks for first: SPDY frames
/// tunnelled in binary messages.
pub const WEBSOCKET_TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

const HEADER_STREAM_TYPE: &str = "streamtype";
const HEADER_PORT: &str = "port";
const HEADER_REQUEST_ID: &str = "requestid";
const STREAM_TYPE_ERROR: &str = "error";
const STREAM_TYPE_DATA: &str = "data";

/// What the pod's side sends back on a forwarded connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    Data(Vec<u8>),
    /// Why forwarding failed (upstream's error stream text).
    Error(String),
}

/// One forwarded connection to the pod: dropping `to_pod` half-closes it;
/// `from_pod` ends when the pod's side is done.
pub struct Connection {
    pub to_pod: mpsc::Sender<Vec<u8>>,
    pub from_pod: BoxStream<'static, Upstream>,
}

/// Opens connections to a port of the pod.
#[async_trait::async_trait]
pub trait Dialer: Send + Sync + 'static {
    /// `Err` carries the text kubectl shows.
    async fn dial(&self, port: u16) -> Result<Connection, String>;
}

/// What kubectl sent on a data stream.
#[derive(Debug)]
enum Inbound {
    Data(Vec<u8>),
    /// FIN: kubectl sends nothing more.
    Fin,
    /// RST_STREAM: the stream is gone.
    Reset,
}

/// A pair waiting for its other half.
struct PendingPair {
    /// When the pair is given up (its first stream plus the timeout).
    deadline: Instant,
    port: Option<u16>,
    error_stream: Option<u32>,
    data_stream: Option<(u32, mpsc::UnboundedReceiver<Inbound>)>,
}

fn header<'a>(headers: &'a spdy::Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Serves one session until kubectl goes away (`incoming` ends), says
/// GOAWAY, or breaks the protocol. Bytes for kubectl go to `outgoing`,
/// which is dropped when the session ends.
pub async fn serve(
    mut incoming: mpsc::Receiver<Vec<u8>>,
    outgoing: mpsc::Sender<Vec<u8>>,
    dialer: Arc<dyn Dialer>,
) {
    let (frames, mut frames_rx) = mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(async move {
        let mut encoder = FrameWriter::new();
        while let Some(frame) = frames_rx.recv().await {
            let mut bytes = Vec::new();
            if let Err(e) = encoder.encode(&frame, &mut bytes) {
                tracing::debug!(error = %e, "encoding a SPDY frame");
                return;
            }
            if outgoing.send(bytes).await.is_err() {
                return;
            }
        }
    });
    let mut reader = FrameReader::new();
    let mut buf = Vec::new();
    let mut data_streams: HashMap<u32, mpsc::UnboundedSender<Inbound>> = HashMap::new();
    let mut pending: HashMap<String, PendingPair> = HashMap::new();
    let mut forwards = JoinSet::new();
    'session: loop {
        let next_deadline = pending.values().map(|p| p.deadline).min();
        let chunk = tokio::select! {
            chunk = incoming.recv() => match chunk {
                Some(chunk) => chunk,
                None => break 'session,
            },
            _ = tokio::time::sleep_until(next_deadline.unwrap_or_else(Instant::now)), if next_deadline.is_some() => {
                give_up_pairs(&mut pending, &mut data_streams, &frames).await;
                continue 'session;
            }
        };
        // Forget finished connections; a session may carry many.
        while forwards.try_join_next().is_some() {}
        buf.extend_from_slice(&chunk);
        loop {
            let frame = match reader.parse(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "port-forward session: bad SPDY frame");
                    let _ = frames
                        .send(Frame::GoAway {
                            last_good_stream_id: 0,
                            status: 1,
                        })
                        .await;
                    break 'session;
                }
            };
            match frame {
                Frame::SynStream {
                    stream_id,
                    flags,
                    headers,
                    ..
                } => {
                    let stream_type = header(&headers, HEADER_STREAM_TYPE).unwrap_or_default();
                    let port = header(&headers, HEADER_PORT).and_then(|p| p.parse::<u16>().ok());
                    if !matches!(stream_type, STREAM_TYPE_ERROR | STREAM_TYPE_DATA)
                        || port.is_none_or(|p| p == 0)
                    {
                        tracing::debug!(stream_id, ?headers, "port-forward: refusing a stream");
                        let _ = frames
                            .send(Frame::RstStream {
                                stream_id,
                                status: spdy::RST_PROTOCOL_ERROR,
                            })
                            .await;
                        continue;
                    }
                    let _ = frames
                        .send(Frame::SynReply {
                            stream_id,
                            flags: 0,
                            headers: vec![],
                        })
                        .await;
                    // Clients before `requestid` paired streams by id: the
                    // data stream follows its error stream.
                    let request_id = match header(&headers, HEADER_REQUEST_ID) {
                        Some(id) => id.to_string(),
                        None if stream_type == STREAM_TYPE_DATA => {
                            stream_id.saturating_sub(2).to_string()
                        }
                        None => stream_id.to_string(),
                    };
                    let pair = pending
                        .entry(request_id.clone())
                        .or_insert_with(|| PendingPair {
                            deadline: Instant::now() + STREAM_CREATION_TIMEOUT,
                            port: None,
                            error_stream: None,
                            data_stream: None,
                        });
                    pair.port = port;
                    if stream_type == STREAM_TYPE_ERROR {
                        pair.error_stream = Some(stream_id);
                    } else {
                        let (tx, rx) = mpsc::unbounded_channel();
                        if flags & FLAG_FIN != 0 {
                            let _ = tx.send(Inbound::Fin);
                        } else {
                            data_streams.insert(stream_id, tx);
                        }
                        pair.data_stream = Some((stream_id, rx));
                    }
                    if pair.error_stream.is_some() && pair.data_stream.is_some() {
                        let pair = pending.remove(&request_id).expect("just seen");
                        let (Some(port), Some(error_stream), Some((data_stream, inbound))) =
                            (pair.port, pair.error_stream, pair.data_stream)
                        else {
                            continue;
                        };
                        forwards.spawn(forward(
                            dialer.clone(),
                            port,
                            error_stream,
                            data_stream,
                            inbound,
                            frames.clone(),
                        ));
                    }
                }
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                } => {
                    // Data on an error stream (kubectl only closes it) is ignored.
                    if let Some(tx) = data_streams.get(&stream_id) {
                        if !data.is_empty() {
                            let _ = tx.send(Inbound::Data(data));
                        }
                        if flags & FLAG_FIN != 0 {
                            let _ = tx.send(Inbound::Fin);
                            data_streams.remove(&stream_id);
                        }
                    }
                }
                Frame::RstStream { stream_id, .. } => {
                    if let Some(tx) = data_streams.remove(&stream_id) {
                        let _ = tx.send(Inbound::Reset);
                    }
                }
                Frame::Ping { id } => {
                    let _ = frames.send(Frame::Ping { id }).await;
                }
                Frame::GoAway { .. } => break 'session,
                // No flow control is enforced by kubectl's SPDY library, and
                // none is needed here.
                Frame::SynReply { .. }
                | Frame::Headers { .. }
                | Frame::Settings { .. }
                | Frame::WindowUpdate { .. }
                | Frame::Unknown { .. } => {}
            }
        }
    }
    forwards.abort_all();
    drop(frames);
    let _ = writer.await;
}

/// Gives up the pairs whose other half did not come in time: the error
/// stream tells why, and the streams that came are closed.
async fn give_up_pairs(
    pending: &mut HashMap<String, PendingPair>,
    data_streams: &mut HashMap<u32, mpsc::UnboundedSender<Inbound>>,
    frames: &mpsc::Sender<Frame>,
) {
    let now = Instant::now();
    let expired: Vec<String> = pending
        .iter()
        .filter(|(_, p)| p.deadline <= now)
        .map(|(id, _)| id.clone())
        .collect();
    for request_id in expired {
        let Some(pair) = pending.remove(&request_id) else {
            continue;
        };
        let message = format!("(request={request_id}) timed out waiting for streams");
        tracing::debug!(%message, "port-forward: giving up a stream pair");
        let data = |stream_id, flags, data| Frame::Data {
            stream_id,
            flags,
            data,
        };
        if let Some(error_stream) = pair.error_stream {
            let _ = frames
                .send(data(error_stream, 0, message.into_bytes()))
                .await;
            let _ = frames.send(data(error_stream, FLAG_FIN, vec![])).await;
        }
        if let Some((data_stream, _)) = pair.data_stream {
            data_streams.remove(&data_stream);
            let _ = frames.send(data(data_stream, FLAG_FIN, vec![])).await;
        }
    }
}

/// One forwarded connection: dial, then relay until the pod's side is done.
async fn forward(
    dialer: Arc<dyn Dialer>,
    port: u16,
    error_stream: u32,
    data_stream: u32,
    mut inbound: mpsc::UnboundedReceiver<Inbound>,
    frames: mpsc::Sender<Frame>,
) {
    let data = |stream_id, flags, data| Frame::Data {
        stream_id,
        flags,
        data,
    };
    let mut failure = None;
    match dialer.dial(port).await {
        Err(message) => failure = Some(message),
        Ok(Connection {
            to_pod,
            mut from_pod,
        }) => {
            let mut to_pod = Some(to_pod);
            loop {
                tokio::select! {
                    event = inbound.recv(), if to_pod.is_some() => match event {
                        Some(Inbound::Data(bytes)) => {
                            let sender = to_pod.as_ref().expect("checked by the guard");
                            if sender.send(bytes).await.is_err() {
                                to_pod = None;
                            }
                        }
                        Some(Inbound::Fin) | None => to_pod = None,
                        Some(Inbound::Reset) => return,
                    },
                    upstream = from_pod.next() => match upstream {
                        Some(Upstream::Data(bytes)) => {
                            for chunk in bytes.chunks(spdy::MAX_FRAME_LENGTH) {
                                if frames.send(data(data_stream, 0, chunk.to_vec())).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Some(Upstream::Error(message)) => failure = Some(message),
                        None => break,
                    },
                }
            }
        }
    }
    if let Some(message) = failure {
        tracing::debug!(port, %message, "port-forward connection failed");
        let _ = frames
            .send(data(error_stream, 0, message.into_bytes()))
            .await;
    }
    let _ = frames.send(data(data_stream, FLAG_FIN, vec![])).await;
    let _ = frames.send(data(error_stream, FLAG_FIN, vec![])).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Port 80 answers "echo:" and what it received once the client
    /// half-closed; any other port is refused.
    struct EchoDialer;

    #[async_trait::async_trait]
    impl Dialer for EchoDialer {
        async fn dial(&self, port: u16) -> Result<Connection, String> {
            if port != 80 {
                return Err(format!("connection refused on {port}"));
            }
            let (to_pod, mut rx) = mpsc::channel::<Vec<u8>>(4);
            let from_pod = async_stream_from(async move {
                let mut got = b"echo:".to_vec();
                while let Some(d) = rx.recv().await {
                    got.extend(d);
                }
                got
            });
            Ok(Connection { to_pod, from_pod })
        }
    }

    fn async_stream_from(
        f: impl std::future::Future<Output = Vec<u8>> + Send + 'static,
    ) -> BoxStream<'static, Upstream> {
        futures::stream::once(async move { Upstream::Data(f.await) }).boxed()
    }

    /// kubectl's side of a session.
    struct Client {
        writer: FrameWriter,
        reader: FrameReader,
        to_server: mpsc::Sender<Vec<u8>>,
        from_server: mpsc::Receiver<Vec<u8>>,
        buf: Vec<u8>,
    }

    impl Client {
        fn start() -> Client {
            let (to_server, incoming) = mpsc::channel(16);
            let (outgoing, from_server) = mpsc::channel(16);
            tokio::spawn(serve(incoming, outgoing, Arc::new(EchoDialer)));
            Client {
                writer: FrameWriter::new(),
                reader: FrameReader::new(),
                to_server,
                from_server,
                buf: Vec::new(),
            }
        }

        async fn send(&mut self, frame: Frame) {
            let mut bytes = Vec::new();
            self.writer.encode(&frame, &mut bytes).unwrap();
            self.to_server.send(bytes).await.unwrap();
        }

        async fn open(&mut self, stream_id: u32, kind: &str, port: &str, request: &str) {
            let headers = [
                (HEADER_STREAM_TYPE, kind),
                (HEADER_PORT, port),
                (HEADER_REQUEST_ID, request),
            ]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
            self.send(Frame::SynStream {
                stream_id,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers,
            })
            .await;
        }

        async fn next(&mut self) -> Option<Frame> {
            loop {
                if let Some(frame) = self.reader.parse(&mut self.buf).unwrap() {
                    return Some(frame);
                }
                let chunk = self.from_server.recv().await?;
                self.buf.extend(chunk);
            }
        }

        /// Frames until both streams of a pair were closed, as
        /// (stream id, bytes) per stream.
        async fn until_closed(&mut self, streams: [u32; 2]) -> HashMap<u32, Vec<u8>> {
            let mut open = streams.to_vec();
            let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
            while !open.is_empty() {
                match self.next().await.expect("the session ended early") {
                    Frame::Data {
                        stream_id,
                        flags,
                        data,
                    } => {
                        got.entry(stream_id).or_default().extend(data);
                        if flags & FLAG_FIN != 0 {
                            open.retain(|s| *s != stream_id);
                        }
                    }
                    Frame::SynReply { .. } => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            got
        }
    }

    #[tokio::test]
    async fn a_pair_relays_the_connection_and_closes_both_streams() {
        let mut c = Client::start();
        c.open(1, "error", "80", "0").await;
        c.open(3, "data", "80", "0").await;
        c.send(Frame::Data {
            stream_id: 3,
            flags: 0,
            data: b"GET /".to_vec(),
        })
        .await;
        c.send(Frame::Data {
            stream_id: 3,
            flags: FLAG_FIN,
            data: vec![],
        })
        .await;
        let got = c.until_closed([1, 3]).await;
        assert_eq!(got[&3], b"echo:GET /");
        assert!(got.get(&1).is_none_or(|e| e.is_empty()));
    }

    #[tokio::test]
    async fn a_failed_dial_is_told_on_the_error_stream() {
        let mut c = Client::start();
        c.open(1, "error", "81", "7").await;
        c.open(3, "data", "81", "7").await;
        let got = c.until_closed([1, 3]).await;
        assert_eq!(got[&1], b"connection refused on 81");
    }

    #[tokio::test]
    async fn every_stream_gets_a_reply_and_pings_are_answered() {
        let mut c = Client::start();
        c.open(1, "error", "80", "0").await;
        assert_eq!(
            c.next().await,
            Some(Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: vec![]
            })
        );
        c.send(Frame::Ping { id: 5 }).await;
        assert_eq!(c.next().await, Some(Frame::Ping { id: 5 }));
    }

    #[tokio::test]
    async fn a_stream_without_a_port_is_reset() {
        let mut c = Client::start();
        c.open(1, "data", "none", "0").await;
        assert_eq!(
            c.next().await,
            Some(Frame::RstStream {
                stream_id: 1,
                status: spdy::RST_PROTOCOL_ERROR
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_half_pair_is_given_up_after_the_stream_creation_timeout() {
        let mut c = Client::start();
        c.open(1, "error", "80", "9").await;
        assert!(matches!(
            c.next().await,
            Some(Frame::SynReply { stream_id: 1, .. })
        ));
        // The data stream never comes: the error stream says so and closes.
        let started = Instant::now();
        let got = tokio::time::timeout(2 * STREAM_CREATION_TIMEOUT, c.until_closed([1, 1]))
            .await
            .expect("the half pair is given up");
        assert!(started.elapsed() >= STREAM_CREATION_TIMEOUT);
        assert_eq!(
            String::from_utf8_lossy(&got[&1]),
            "(request=9) timed out waiting for streams"
        );
        // The session goes on: a later pair still works.
        c.open(5, "error", "80", "10").await;
        c.open(7, "data", "80", "10").await;
        c.send(Frame::Data {
            stream_id: 7,
            flags: FLAG_FIN,
            data: b"hi".to_vec(),
        })
        .await;
        let got = c.until_closed([5, 7]).await;
        assert_eq!(got[&7], b"echo:hi");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_data_stream_is_closed_after_the_stream_creation_timeout() {
        let mut c = Client::start();
        c.open(3, "data", "80", "4").await;
        let started = Instant::now();
        let got = tokio::time::timeout(2 * STREAM_CREATION_TIMEOUT, c.until_closed([3, 3]))
            .await
            .expect("the lone data stream is closed");
        assert!(started.elapsed() >= STREAM_CREATION_TIMEOUT);
        assert!(got.get(&3).is_none_or(|d| d.is_empty()));
    }

    #[tokio::test]
    async fn the_session_ends_on_goaway() {
        let mut c = Client::start();
        c.send(Frame::GoAway {
            last_good_stream_id: 0,
            status: 0,
        })
        .await;
        assert_eq!(c.next().await, None);
    }
}
