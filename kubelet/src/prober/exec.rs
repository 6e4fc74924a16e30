//! The exec probe: runs the command in the container through CRI ExecSync;
//! exit code 0 is success, anything else a failure whose message is the
//! command's output. Entry point: [`probe`].

use std::time::Duration;

use super::ProbeResult;
use crate::cri::Runtime;

/// How much longer than the probe's timeout the kubelet waits for the
/// runtime to answer an ExecSync that the runtime itself times out.
const RUNTIME_GRACE: Duration = Duration::from_secs(2);

/// Runs `command` in `container_id` with the probe's timeout.
pub async fn probe<R: Runtime>(
    runtime: &R,
    container_id: &str,
    command: &[String],
    timeout: Duration,
) -> ProbeResult {
    let timed_out = || format!("command {:?} timed out", command.join(" "));
    let seconds = timeout.as_secs().max(1) as i64;
    let call = runtime.exec_sync(container_id, command.to_vec(), seconds);
    match tokio::time::timeout(timeout + RUNTIME_GRACE, call).await {
        Err(_) => ProbeResult::Failure(timed_out()),
        Ok(Err(e)) => {
            let message = e.to_string();
            if message.contains("deadline exceeded") || message.contains("timeout") {
                ProbeResult::Failure(timed_out())
            } else {
                ProbeResult::Failure(message)
            }
        }
        Ok(Ok(resp)) if resp.exit_code == 0 => ProbeResult::Success,
        Ok(Ok(resp)) => {
            let mut output = String::from_utf8_lossy(&resp.stdout).into_owned();
            output.push_str(&String::from_utf8_lossy(&resp.stderr));
            let output = output.trim_end();
            if output.is_empty() {
                ProbeResult::Failure(format!(
                    "command {:?} exited with {}",
                    command.join(" "),
                    resp.exit_code
                ))
            } else {
                ProbeResult::Failure(output.to_string())
            }
        }
    }
}
