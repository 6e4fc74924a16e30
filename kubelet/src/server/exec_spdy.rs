//! An exec session against the runtime's streaming server over SPDY/3.1
//! (remotecommand `v4.channel.k8s.io`): one stream per channel (error,
//! stdin, stdout, stderr, resize), so the end of stdin is a FIN on the stdin
//! stream, which the WebSocket channel protocol before v5 cannot say (and
//! the runtime's streaming server speaks no v5). Used for sessions with
//! stdin. Entry point: [`stream_exec`].

use ferrokube_api::remotecommand::{self as rc, ExitOutcome};
use ferrokube_api::spdy::{Frame, FrameReader, FrameWriter, FLAG_FIN};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::exec::{ExecError, ExecEvent, ExecInput};

const ERROR_STREAM: u32 = 1;
const STDIN_STREAM: u32 = 3;
const STDOUT_STREAM: u32 = 5;
const STDERR_STREAM: u32 = 7;
const RESIZE_STREAM: u32 = 9;

/// Which channels the session has, as the CRI exec request said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channels {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// The streams to open, in kubectl's order: error first, resize last.
fn streams(ch: Channels) -> Vec<(u32, &'static str)> {
    let mut s = vec![(ERROR_STREAM, "error")];
    if ch.stdin {
        s.push((STDIN_STREAM, "stdin"));
    }
    if ch.stdout {
        s.push((STDOUT_STREAM, "stdout"));
    }
    if ch.stderr && !ch.tty {
        s.push((STDERR_STREAM, "stderr"));
    }
    if ch.tty {
        s.push((RESIZE_STREAM, "resize"));
    }
    s
}

fn encode(writer: &mut FrameWriter, frame: &Frame) -> Result<Vec<u8>, ExecError> {
    let mut out = Vec::new();
    writer
        .encode(frame, &mut out)
        .map_err(|e| ExecError::Stream(e.to_string()))?;
    Ok(out)
}

/// Runs the session at `url` (the runtime's `http://` streaming URL) until
/// the runtime closes it (then sends `Exit`) or the caller hangs up.
pub async fn stream_exec(
    url: &str,
    channels: Channels,
    mut input: mpsc::Receiver<ExecInput>,
    output: mpsc::Sender<ExecEvent>,
) -> Result<(), ExecError> {
    let bad_url = |message: String| ExecError::Url {
        url: url.to_string(),
        message,
    };
    let uri: hyper::Uri = url.parse().map_err(|e| bad_url(format!("{e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad_url(
            "only http:// streaming servers are supported".into(),
        ));
    }
    let host = uri.host().ok_or_else(|| bad_url("no host".into()))?;
    let address = format!("{host}:{}", uri.port_u16().unwrap_or(80));
    let tcp = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|e| ExecError::Connect(format!("{address}: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| ExecError::Connect(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = hyper::Request::post(path)
        .header(hyper::header::HOST, &address)
        .header(hyper::header::CONNECTION, "Upgrade")
        .header(hyper::header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", rc::V4_PROTOCOL)
        .body(Empty::<Bytes>::new())
        .map_err(|e| bad_url(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| ExecError::Connect(e.to_string()))?;
    if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        return Err(ExecError::Connect(format!(
            "the streaming server answered {} to a SPDY/3.1 upgrade",
            response.status()
        )));
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(|e| ExecError::Connect(e.to_string()))?;
    let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));

    let mut writer = FrameWriter::new();
    let mut opening = Vec::new();
    for (stream_id, kind) in streams(channels) {
        opening.extend(encode(
            &mut writer,
            &Frame::SynStream {
                stream_id,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: vec![("streamtype".into(), kind.into())],
            },
        )?);
    }
    let stream_error = |e: std::io::Error| ExecError::Stream(e.to_string());
    wr.write_all(&opening).await.map_err(stream_error)?;

    let mut reader = FrameReader::new();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 32 * 1024];
    let mut status = Vec::new();
    let mut input_open = true;
    loop {
        tokio::select! {
            frame = input.recv(), if input_open => {
                let frame = match frame {
                    Some(ExecInput::Stdin(data)) if channels.stdin => Frame::Data {
                        stream_id: STDIN_STREAM,
                        flags: 0,
                        data,
                    },
                    Some(ExecInput::CloseStdin) if channels.stdin => {
                        input_open = false;
                        Frame::Data { stream_id: STDIN_STREAM, flags: FLAG_FIN, data: vec![] }
                    }
                    Some(ExecInput::Resize(size)) if channels.tty => Frame::Data {
                        stream_id: RESIZE_STREAM,
                        flags: 0,
                        data: size.to_json(),
                    },
                    Some(_) => continue,
                    None => {
                        input_open = false;
                        continue;
                    }
                };
                let bytes = encode(&mut writer, &frame)?;
                wr.write_all(&bytes).await.map_err(stream_error)?;
            }
            read = rd.read(&mut chunk) => {
                let n = read.map_err(stream_error)?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(frame) = reader
                    .parse(&mut buf)
                    .map_err(|e| ExecError::Stream(e.to_string()))?
                {
                    let event = match frame {
                        Frame::Data { data, .. } if data.is_empty() => continue,
                        Frame::Data { stream_id: STDOUT_STREAM, data, .. } => ExecEvent::Stdout(data),
                        Frame::Data { stream_id: STDERR_STREAM, data, .. } => ExecEvent::Stderr(data),
                        Frame::Data { stream_id: ERROR_STREAM, data, .. } => {
                            status.extend(data);
                            continue;
                        }
                        Frame::Ping { id } => {
                            let bytes = encode(&mut writer, &Frame::Ping { id })?;
                            wr.write_all(&bytes).await.map_err(stream_error)?;
                            continue;
                        }
                        _ => continue,
                    };
                    if output.send(event).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
    let _ = wr.shutdown().await;
    // The runtime closes the connection after the status; no status means
    // the command succeeded (servers before v4).
    let outcome = if status.is_empty() {
        ExitOutcome::Success
    } else {
        rc::read_status(&status)
    };
    let _ = output.send(ExecEvent::Exit(outcome)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_follow_the_channels_like_kubectl() {
        let all = Channels {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        assert_eq!(
            streams(all),
            [(1, "error"), (3, "stdin"), (5, "stdout"), (7, "stderr")]
        );
        let tty = Channels { tty: true, ..all };
        assert_eq!(
            streams(tty),
            [(1, "error"), (3, "stdin"), (5, "stdout"), (9, "resize")]
        );
    }
}
