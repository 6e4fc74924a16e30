//! Runs Debian's `etcdctl` (API v3) against a cluster and captures what a
//! user would see: exit status, stdout and stderr. [`Etcdctl::spawn_watch`]
//! keeps a long-running `etcdctl watch` and hands its output line by line.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest any single `etcdctl` invocation may run before the test fails;
/// etcdctl's own `--command-timeout` should always end it sooner.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

/// How to run `etcdctl` against a given set of endpoints.
#[derive(Clone, Debug)]
pub struct Etcdctl {
    endpoints: String,
    dial_timeout: String,
    command_timeout: String,
}

/// What one `etcdctl` run printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The `Error: ...` line etcdctl prints for a failed command.
    pub fn error_line(&self) -> Option<&str> {
        self.stderr.lines().find(|l| l.starts_with("Error: "))
    }
}

/// The `etcdctl` program (`ETCDCTL` overrides `/usr/bin/etcdctl`).
pub fn etcdctl_path() -> PathBuf {
    std::env::var_os("ETCDCTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcdctl"))
}

impl Etcdctl {
    /// `endpoints` as for `--endpoints`: `127.0.0.1:PORT[,...]`.
    pub fn new(endpoints: impl Into<String>) -> Etcdctl {
        Etcdctl {
            endpoints: endpoints.into(),
            dial_timeout: "2s".into(),
            command_timeout: "10s".into(),
        }
    }

    /// Shorter etcdctl timeouts, for probes that are retried anyway.
    pub fn with_timeouts(mut self, dial: &str, command: &str) -> Etcdctl {
        self.dial_timeout = dial.into();
        self.command_timeout = command.into();
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(etcdctl_path());
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints))
            .arg(format!("--dial-timeout={}", self.dial_timeout))
            .arg(format!("--command-timeout={}", self.command_timeout))
            .args(args);
        command
    }

    /// Runs `etcdctl ARGS` with empty stdin.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, &[])
    }

    /// Runs `etcdctl ARGS` feeding `input` on stdin (for `txn`, or `put` of
    /// a value too large for the command line).
    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", etcdctl_path().display()));
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        // A writer thread, so a large input cannot deadlock against output.
        let writer = std::thread::spawn(move || {
            // etcdctl may exit before reading everything (e.g. on a bad flag).
            let _ = stdin.write_all(&input);
        });
        let stdout = read_all_in_background(child.stdout.take().expect("piped stdout"));
        let stderr = read_all_in_background(child.stderr.take().expect("piped stderr"));
        let status = wait_bounded(&mut child, PROCESS_TIMEOUT)
            .unwrap_or_else(|| panic!("etcdctl {args:?} still running after {PROCESS_TIMEOUT:?}"));
        writer.join().expect("stdin writer thread");
        Output {
            status,
            stdout: stdout.join().expect("stdout reader thread"),
            stderr: stderr.join().expect("stderr reader thread"),
        }
    }

    /// Runs `etcdctl ARGS`, fails the test unless it succeeded, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.success(),
            "etcdctl {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            output.status,
            output.stdout,
            output.stderr
        );
        output.stdout
    }

    /// Runs `etcdctl ARGS`, fails the test if it succeeded, returns the
    /// `Error: ...` line it printed.
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            !output.success(),
            "etcdctl {args:?} succeeded but should have failed; stdout:\n{}",
            output.stdout
        );
        output
            .error_line()
            .unwrap_or_else(|| panic!("etcdctl {args:?} printed no Error line:\n{}", output.stderr))
            .to_string()
    }

    /// Runs `etcdctl ARGS -w json` and parses what it printed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.extend(["-w", "json"]);
        let stdout = self.ok(&args);
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("etcdctl {args:?} printed invalid JSON ({e}):\n{stdout}"))
    }

    /// Starts a long-running `etcdctl ARGS` (a `watch`); it is killed when
    /// the returned handle is dropped.
    pub fn spawn_watch(&self, args: &[&str]) -> WatchProcess {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", etcdctl_path().display()));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = read_all_in_background(child.stderr.take().expect("piped stderr"));
        WatchProcess {
            child,
            lines,
            stderr: Some(stderr),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }
}

/// A running `etcdctl watch`; its stdout arrives line by line.
pub struct WatchProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    args: Vec<String>,
}

impl WatchProcess {
    /// The next line of output, or `None` if none came within `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// The next `count` lines; fails the test with what did arrive (and
    /// etcdctl's stderr) if they do not all come within `timeout`.
    pub fn expect_lines(&mut self, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::with_capacity(count);
        while got.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => got.push(line),
                Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
                    panic!(
                        "etcdctl {:?}: expected {count} lines within {timeout:?}, got {got:?}; \
                         stderr:\n{}",
                        self.args,
                        stderr.unwrap_or_default()
                    );
                }
            }
        }
        got
    }

    /// Waits (bounded) for etcdctl to exit by itself, and returns its exit
    /// status, remaining stdout lines and stderr.
    pub fn wait_exit(mut self, timeout: Duration) -> (ExitStatus, Vec<String>, String) {
        let status = wait_bounded(&mut self.child, timeout)
            .unwrap_or_else(|| panic!("etcdctl {:?} did not exit within {timeout:?}", self.args));
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
        // The reader thread ends at EOF, which follows the exit closely.
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(timeout) {
            rest.push(line);
        }
        (status, rest, stderr.unwrap_or_default())
    }
}

impl Drop for WatchProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_all_in_background(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` to exit for at most `timeout`; kills it and returns
/// `None` if it did not.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("poll etcdctl") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
