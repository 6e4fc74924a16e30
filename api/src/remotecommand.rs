//! The channel protocol of `pods/exec` over WebSocket (upstream's
//! `remotecommand`, subprotocols `v4.channel.k8s.io` and `v5.channel.k8s.io`):
//! every binary message is one channel byte followed by that channel's data.
//! Shared by the apiserver (serving kubectl) and the kubelet (talking to the
//! runtime's streaming server). Entry points: [`encode`], [`decode`],
//! [`exit_status`], [`read_status`], and [`container_for_request`] (which
//! container a log/exec request is about).
//!
//! Channels: 0 stdin, 1 stdout, 2 stderr, 3 error (one `metav1.Status` JSON
//! when the command ends), 4 resize (`{"Width":w,"Height":h}`); v5 adds 255
//! (`[255, channel]`: the sender closed that channel, e.g. stdin EOF).

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5 only: `[CLOSE, channel]` closes `channel` (half-close of stdin).
pub const CLOSE: u8 = 255;

/// kubectl 1.30+'s first choice: v4 plus the close channel.
pub const V5_PROTOCOL: &str = "v5.channel.k8s.io";
pub const V4_PROTOCOL: &str = "v4.channel.k8s.io";
/// The unversioned original, still offered by runtimes' streaming servers.
pub const V1_PROTOCOL: &str = "channel.k8s.io";

/// One message on the wire: the channel byte, then the data.
pub fn encode(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(data.len() + 1);
    msg.push(channel);
    msg.extend_from_slice(data);
    msg
}

/// Splits a message into channel and data; `None` for an empty message.
pub fn decode(msg: &[u8]) -> Option<(u8, &[u8])> {
    msg.split_first().map(|(c, rest)| (*c, rest))
}

/// A terminal size as the resize channel carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

impl TerminalSize {
    /// Reads one resize message; `None` when it is not a size.
    pub fn parse(data: &[u8]) -> Option<TerminalSize> {
        serde_json::from_slice(data).ok()
    }

    pub fn to_json(self) -> Vec<u8> {
        serde_json::to_vec(&self).expect("JSON serializes")
    }
}

/// How a command ended, as the error channel tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitOutcome {
    /// Exit code 0.
    Success,
    /// A non-zero exit code.
    ExitCode(i32),
    /// The command could not run, or the stream failed (upstream's message).
    Error(String),
}

/// The error channel's last message for a command that exited with `code`,
/// exactly as upstream's v4 writes it (kubectl turns the `ExitCode` cause
/// into "command terminated with exit code N" and its own exit code).
pub fn exit_status(command: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The error channel's message for a command that could not run.
pub fn error_status(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "code": 500,
    })
}

/// Reads an error channel message (v4 `metav1.Status` JSON, or the plain
/// text pre-v4 servers send).
pub fn read_status(data: &[u8]) -> ExitOutcome {
    let Ok(status) = serde_json::from_slice::<Value>(data) else {
        let text = String::from_utf8_lossy(data).trim().to_string();
        return ExitOutcome::Error(text);
    };
    if status["status"] == "Success" {
        return ExitOutcome::Success;
    }
    if status["reason"] == "NonZeroExitCode" {
        let code = status["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["reason"] == "ExitCode")
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse().ok());
        if let Some(code) = code {
            return ExitOutcome::ExitCode(code);
        }
    }
    ExitOutcome::Error(
        status["message"]
            .as_str()
            .unwrap_or("the command failed")
            .to_string(),
    )
}

/// The container a `pods/log`, `pods/exec` or `pods/attach` request is
/// about: the one named, or the only one. The error is upstream's 400
/// message (`a container name must be specified for pod web, choose one
/// of: [a b]`, `container x is not valid for pod web`).
pub fn container_for_request(pod: &Pod, container: &str) -> Result<String, String> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let names = |cs: &[k8s_openapi::api::core::v1::Container]| {
        cs.iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let init = spec.init_containers.clone().unwrap_or_default();
    let ephemeral: Vec<String> = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    if container.is_empty() {
        return match spec.containers.as_slice() {
            [only] => Ok(only.name.clone()),
            [] => Err(format!("a container name must be specified for pod {name}")),
            many => {
                let mut msg = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names(many)
                );
                if !init.is_empty() {
                    msg.push_str(&format!(
                        " or one of the init containers: [{}]",
                        names(&init)
                    ));
                }
                Err(msg)
            }
        };
    }
    let known = spec
        .containers
        .iter()
        .chain(&init)
        .any(|c| c.name == container)
        || ephemeral.iter().any(|c| c == container);
    if known {
        Ok(container.to_string())
    } else {
        Err(format!("container {container} is not valid for pod {name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: &[&str], init: &[&str]) -> Pod {
        let c = |n: &&str| k8s_openapi::api::core::v1::Container {
            name: n.to_string(),
            ..Default::default()
        };
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("web".into()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                containers: containers.iter().map(c).collect(),
                init_containers: (!init.is_empty()).then(|| init.iter().map(c).collect()),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn the_container_is_named_or_the_only_one() {
        assert_eq!(container_for_request(&pod(&["a"], &[]), ""), Ok("a".into()));
        assert_eq!(
            container_for_request(&pod(&["a", "b"], &[]), ""),
            Err("a container name must be specified for pod web, choose one of: [a b]".into())
        );
        assert_eq!(
            container_for_request(&pod(&["a", "b"], &["setup"]), ""),
            Err("a container name must be specified for pod web, choose one of: [a b] or one of the init containers: [setup]".into())
        );
        assert_eq!(
            container_for_request(&pod(&["a", "b"], &["setup"]), "setup"),
            Ok("setup".into())
        );
        assert_eq!(
            container_for_request(&pod(&["a"], &[]), "x"),
            Err("container x is not valid for pod web".into())
        );
    }

    #[test]
    fn messages_are_channel_byte_then_data() {
        let msg = encode(STDOUT, b"hi\n");
        assert_eq!(msg, b"\x01hi\n");
        assert_eq!(decode(&msg), Some((STDOUT, &b"hi\n"[..])));
        assert_eq!(decode(&encode(STDIN, b"")), Some((STDIN, &b""[..])));
        assert_eq!(decode(b""), None);
        assert_eq!(decode(&[CLOSE, STDIN]), Some((CLOSE, &[STDIN][..])));
    }

    #[test]
    fn resize_reads_upstream_field_names() {
        let size = TerminalSize::parse(br#"{"Width":120,"Height":40}"#).unwrap();
        assert_eq!(
            size,
            TerminalSize {
                width: 120,
                height: 40
            }
        );
        assert_eq!(TerminalSize::parse(&size.to_json()), Some(size));
        assert_eq!(TerminalSize::parse(b"nonsense"), None);
    }

    #[test]
    fn exit_codes_round_trip_through_the_error_channel() {
        let cmd = vec!["sh".to_string(), "-c".into(), "exit 3".into()];
        let failed = exit_status(&cmd, 3);
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        let bytes = serde_json::to_vec(&failed).unwrap();
        assert_eq!(read_status(&bytes), ExitOutcome::ExitCode(3));
        let ok = serde_json::to_vec(&exit_status(&cmd, 0)).unwrap();
        assert_eq!(read_status(&ok), ExitOutcome::Success);
        let err = serde_json::to_vec(&error_status("no such file")).unwrap();
        assert_eq!(read_status(&err), ExitOutcome::Error("no such file".into()));
        assert_eq!(
            read_status(b"plain text error\n"),
            ExitOutcome::Error("plain text error".into())
        );
    }
}
