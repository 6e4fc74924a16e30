//! `kubectl logs`, `kubectl exec` and `kubectl port-forward` (real kubectl
//! 1.32) through the apiserver's `pods/log`, `pods/exec` and
//! `pods/portforward` to the kubelet port of a rig node and on to the CRI
//! log files, containerd's streaming server and the pod's network
//! namespace. Root only: skipped with a message otherwise.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use ferrokube_client::Client;
use k8s_openapi::api::core::v1::Pod;
use support::{wait_for, Rig};

const START_TIMEOUT: Duration = Duration::from_secs(60);

fn pod(node: &str, name: &str, policy: &str, containers: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "restartPolicy": policy,
            "terminationGracePeriodSeconds": 1,
            "containers": containers,
        }
    }))
    .unwrap()
}

fn container(name: &str, script: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "image": "busybox:1.36", "command": ["sh", "-c", script]})
}

async fn phase(client: &Client, name: &str) -> Option<String> {
    client.get::<Pod>("default", name).await.ok()?.status?.phase
}

async fn restart_count(client: &Client, name: &str) -> i32 {
    client
        .get::<Pod>("default", name)
        .await
        .ok()
        .and_then(|p| {
            p.status?
                .container_statuses?
                .first()
                .map(|c| c.restart_count)
        })
        .unwrap_or(0)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Waits up to `limit` for `child` to exit, kills it if it has not, and
/// returns whether it ended by itself, with what it printed.
async fn finish(mut child: std::process::Child, limit: Duration) -> (bool, Output) {
    let ended = wait_for(limit, || {
        let done = child.try_wait().unwrap().is_some();
        async move { done }
    })
    .await;
    if !ended {
        child.kill().unwrap();
    }
    (ended, child.wait_with_output().unwrap())
}

fn kubectl(rig: &Rig) -> Command {
    let mut cmd = Command::new("kubectl");
    cmd.arg(format!("--kubeconfig={}", rig.kubeconfig().display()));
    cmd
}

/// Lines of `kubectl logs <args>` that succeeded.
fn log_lines(rig: &Rig, args: &[&str]) -> Vec<String> {
    let mut all = vec!["logs"];
    all.extend_from_slice(args);
    let out = rig.kubectl(&all);
    assert!(out.status.success(), "kubectl {all:?}: {}", describe(&out));
    text(&out.stdout).lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_and_exec_reach_the_containers() {
    let Some(rig) = Rig::start("stream", 1).await else {
        return;
    };
    let client = rig.client().await;
    let node = rig.nodes[0].name.clone();
    let two = pod(
        &node,
        "two",
        "Always",
        serde_json::json!([
            container("a", "echo a-one; echo a-two; echo a-three; exec sleep 3600"),
            container("b", "echo from-b >&2; exec sleep 3600"),
        ]),
    );
    let ticker = pod(
        &node,
        "ticker",
        "Always",
        serde_json::json!([container(
            "main",
            "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.1; done"
        )]),
    );
    let short = pod(
        &node,
        "short",
        "Never",
        serde_json::json!([container(
            "main",
            "for i in 1 2 3 4 5; do echo n-$i; sleep 1; done"
        )]),
    );
    let crash = pod(
        &node,
        "crash",
        "Always",
        serde_json::json!([container(
            "main",
            "echo run-$(cat /proc/sys/kernel/random/uuid); sleep 4; exit 1"
        )]),
    );
    let mut missing = pod(
        &node,
        "waiting",
        "Always",
        serde_json::json!([container("main", "true")]),
    );
    if let Some(spec) = missing.spec.as_mut() {
        spec.containers[0].image = Some("example.invalid/none:1".into());
        spec.containers[0].image_pull_policy = Some("Never".into());
    }
    for p in [&two, &ticker, &short, &crash, &missing] {
        client.create("default", p).await.unwrap();
    }
    for name in ["two", "ticker", "crash"] {
        let running = wait_for(START_TIMEOUT, || async {
            phase(&client, name).await.as_deref() == Some("Running")
        })
        .await;
        assert!(
            running,
            "pod {name} never ran; kubelet log:\n{}",
            rig.nodes[0].kubelet_log()
        );
    }

    // logs: per container (b's line went to stderr: logs carry both
    // streams; their relative order is the runtime's, so it is not checked), tail.
    // (Running says the container started, not that it wrote everything.)
    let written = wait_for(START_TIMEOUT, || async {
        let a = rig.kubectl(&["logs", "two", "-c", "a"]);
        let b = rig.kubectl(&["logs", "two", "-c", "b"]);
        text(&a.stdout).lines().count() == 3 && text(&b.stdout).lines().count() == 1
    })
    .await;
    assert!(
        written,
        "{}",
        describe(&rig.kubectl(&["logs", "two", "-c", "a"]))
    );
    assert_eq!(
        log_lines(&rig, &["two", "-c", "a"]),
        ["a-one", "a-two", "a-three"]
    );
    assert_eq!(log_lines(&rig, &["two", "-c", "b"]), ["from-b"]);
    assert_eq!(
        log_lines(&rig, &["two", "-c", "a", "--tail=2"]),
        ["a-two", "a-three"]
    );
    let stamped = log_lines(&rig, &["two", "-c", "a", "--timestamps"]);
    assert!(
        stamped.len() == 3 && stamped[0].ends_with(" a-one") && stamped[0].starts_with("20"),
        "{stamped:?}"
    );
    // No container named: kubectl picks the first (and says so).
    let out = rig.kubectl(&["logs", "two"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "a-one\na-two\na-three\n");

    // Errors, with upstream's messages and 400s.
    let out = rig.kubectl(&["logs", "two", "-c", "nope"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("container nope is not valid for pod two"),
        "{}",
        describe(&out)
    );
    let waiting = wait_for(START_TIMEOUT, || async {
        let out = rig.kubectl(&["logs", "waiting"]);
        text(&out.stderr).contains("Error from server (BadRequest): container \"main\" in pod \"waiting\" is waiting to start: ErrImageNeverPull")
    })
    .await;
    assert!(waiting, "{}", describe(&rig.kubectl(&["logs", "waiting"])));
    let out = rig.kubectl(&["logs", "two", "-c", "a", "-p"]);
    assert!(
        text(&out.stderr).contains("previous terminated container \"a\" in pod \"two\" not found"),
        "{}",
        describe(&out)
    );

    // logs -p: the attempt before the running one.
    let restarted = wait_for(Duration::from_secs(90), || async {
        if restart_count(&client, "crash").await < 1 {
            return false;
        }
        let (now, before) = (
            rig.kubectl(&["logs", "crash"]),
            rig.kubectl(&["logs", "crash", "-p"]),
        );
        let (now, before) = (text(&now.stdout), text(&before.stdout));
        now.starts_with("run-") && before.starts_with("run-") && now != before
    })
    .await;
    assert!(
        restarted,
        "logs -p never showed an earlier run than logs: {}\n{}",
        describe(&rig.kubectl(&["logs", "crash", "-p"])),
        describe(&rig.kubectl(&["logs", "crash"]))
    );

    // logs -f: lines written after kubectl started arrive while it runs.
    let last: u64 = log_lines(&rig, &["ticker", "--tail=1"])[0]
        .trim_start_matches("tick-")
        .parse()
        .unwrap();
    let wanted = format!("tick-{}", last + 20);
    let mut follower = kubectl(&rig)
        .args(["logs", "-f", "ticker"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let seen = (|| loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line == wanted => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    })();
    follower.kill().unwrap();
    follower.wait().unwrap();
    assert!(seen, "kubectl logs -f never showed {wanted}");

    // logs -f ends by itself when the container exits.
    let follower = kubectl(&rig)
        .args(["logs", "-f", "short"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (ended, out) = finish(follower, Duration::from_secs(60)).await;
    assert!(
        ended,
        "kubectl logs -f short did not end: {}",
        describe(&out)
    );
    assert_eq!(
        text(&out.stdout),
        "n-1\nn-2\nn-3\nn-4\nn-5\n",
        "{}",
        describe(&out)
    );

    // exec: output, exit codes, stdin.
    let out = rig.kubectl(&["exec", "two", "-c", "a", "--", "echo", "hi"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "hi\n", "{}", rig.nodes[0].kubelet_log());
    let out = rig.kubectl(&[
        "exec",
        "two",
        "-c",
        "b",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err\n"), "{}", describe(&out));
    let out = rig.kubectl(&["exec", "two", "-c", "a", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("command terminated with exit code 3"),
        "{}",
        describe(&out)
    );
    let mut child = kubectl(&rig)
        .args([
            "exec",
            "-i",
            "two",
            "-c",
            "a",
            "--",
            "sh",
            "-c",
            "read line; echo got-$line",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.as_mut().unwrap().write_all(b"hello\n").unwrap();
    let (ended, out) = finish(child, Duration::from_secs(30)).await;
    assert!(ended && out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "got-hello\n");
    // exec -i: the end of kubectl's stdin is the end of the command's.
    let mut child = kubectl(&rig)
        .args([
            "exec",
            "-i",
            "two",
            "-c",
            "a",
            "--",
            "sh",
            "-c",
            "cat; echo eof-seen",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"line-1\nline-2\n").unwrap();
    drop(stdin);
    let (ended, out) = finish(child, Duration::from_secs(30)).await;
    assert!(ended && out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "line-1\nline-2\neof-seen\n");
    // exec -it: kubectl on a terminal (util-linux `script` gives it a
    // pseudo-terminal) asks for a TTY; the command then runs on one, and
    // what is typed reaches it.
    let command = format!(
        "kubectl --kubeconfig={} exec -it two -c a -- sh -c {}",
        rig.kubeconfig().display(),
        "'test -t 0 && test -t 1 && echo on-a-tty; read line; echo got-$line'"
    );
    let mut child = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // What the terminal shows, read on a thread so every wait is bounded.
    let screen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    {
        let (screen, mut stdout) = (screen.clone(), child.stdout.take().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
                if n == 0 {
                    break;
                }
                screen
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    let shows = |what: &'static str| {
        let screen = screen.clone();
        wait_for(Duration::from_secs(30), move || {
            let found = screen.lock().unwrap().contains(what);
            async move { found }
        })
    };
    // Type only once the command runs on its terminal.
    let on_a_tty = shows("on-a-tty").await;
    assert!(on_a_tty, "{:?}", screen.lock().unwrap());
    stdin.write_all(b"hello\r").unwrap();
    let got = shows("got-hello").await;
    drop(stdin);
    let (ended, out) = finish(child, Duration::from_secs(30)).await;
    let screen = screen.lock().unwrap().clone();
    assert!(got, "{screen:?} {}", describe(&out));
    assert!(
        ended && out.status.success(),
        "{screen:?} {}",
        describe(&out)
    );
    let out = rig.kubectl(&["exec", "two", "-c", "nope", "--", "true"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(text(&out.stderr).contains("nope"), "{}", describe(&out));
    let out = rig.kubectl(&["exec", "two", "-c", "a", "--", "/no/such/binary"]);
    assert!(!out.status.success(), "{}", describe(&out));
}

/// Starts `kubectl port-forward pod/web <target>` and reads its stdout until it says which local port it
/// listens on ("Forwarding from 127.0.0.1:<port> -> <remote>"); its stderr
/// is collected into the returned buffer.
fn start_port_forward(
    rig: &Rig,
    target: &str,
    websockets: bool,
) -> (
    std::process::Child,
    Option<u16>,
    std::sync::Arc<std::sync::Mutex<String>>,
) {
    let mut child = kubectl(rig)
        .args(["port-forward", "pod/web", target])
        // false: kubectl's SPDY/3.1 upgrade instead of the WebSocket tunnel.
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr_text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = stderr_text.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Drains stdout for kubectl's whole life: it writes a line per
    // connection and dies of SIGPIPE once nobody reads.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let port = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                    break rest.split_whitespace().next().and_then(|p| p.parse().ok());
                }
            }
            Err(_) => break None,
        }
    };
    (child, port, stderr_text)
}

/// One HTTP/1.0 exchange with the local end of a port-forward: the whole
/// answer until the server closed, or what arrived before an error.
async fn http_get(port: u16) -> String {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let Ok(mut conn) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5))
        else {
            return String::new();
        };
        conn.set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        conn.set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        if conn
            .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .is_err()
        {
            return String::new();
        }
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer);
        text(&answer)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_port_forward_reaches_a_port_inside_the_pod() {
    let Some(rig) = Rig::start("pfwd", 1).await else {
        return;
    };
    let client = rig.client().await;
    let node = rig.nodes[0].name.clone();
    let web = pod(
        &node,
        "web",
        "Always",
        serde_json::json!([container(
            "web",
            "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www"
        )]),
    );
    client.create("default", &web).await.unwrap();
    let running = wait_for(START_TIMEOUT, || async {
        phase(&client, "web").await.as_deref() == Some("Running")
    })
    .await;
    assert!(
        running,
        "pod web never ran; kubelet log:\n{}",
        rig.nodes[0].kubelet_log()
    );

    // A listening port: the page comes back through kubectl, once per
    // connection, several connections over one port-forward session.
    let (mut child, port, stderr) = start_port_forward(&rig, ":8080", true);
    let Some(port) = port else {
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        panic!(
            "kubectl port-forward never said where it listens: {}\n{}",
            describe(&out),
            stderr.lock().unwrap()
        );
    };
    // Running says httpd started, not that it listens yet.
    let served = wait_for(Duration::from_secs(30), || async {
        http_get(port).await.contains("hello-from-web")
    })
    .await;
    let second = http_get(port).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        served,
        "no page through the forwarded port; kubectl stderr:\n{}\nkubelet log:\n{}",
        stderr.lock().unwrap(),
        rig.nodes[0].kubelet_log()
    );
    assert!(
        second.starts_with("HTTP/1.")
            && second.contains(" 200 ")
            && second.ends_with("hello-from-web\n"),
        "{second:?}; kubectl stderr:\n{}",
        stderr.lock().unwrap()
    );

    // The same over kubectl's fallback, a plain SPDY/3.1 upgrade.
    let (mut child, port, stderr) = start_port_forward(&rig, ":8080", false);
    let answer = match port {
        Some(port) => http_get(port).await,
        None => String::new(),
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        answer.contains(" 200 ") && answer.ends_with("hello-from-web\n"),
        "{answer:?}; kubectl stderr:\n{}",
        stderr.lock().unwrap()
    );

    // A port nothing listens on: the connection closes without data and
    // kubectl reports upstream's error.
    let (mut child, port, stderr) = start_port_forward(&rig, ":9999", true);
    let Some(port) = port else {
        child.kill().unwrap();
        panic!(
            "kubectl port-forward :9999 never listened: {}",
            stderr.lock().unwrap()
        );
    };
    let answer = http_get(port).await;
    let reported = wait_for(Duration::from_secs(30), || {
        let s = stderr.lock().unwrap().clone();
        async move { s.contains("connect: connection refused") }
    })
    .await;
    let _ = child.kill();
    child.wait().unwrap();
    let stderr = stderr.lock().unwrap().clone();
    assert_eq!(answer, "", "{stderr}");
    assert!(reported, "kubectl stderr:\n{stderr}");
    assert!(
        stderr.contains("error forwarding port 9999 to pod ")
            && stderr.contains("failed to connect to localhost:9999 inside namespace"),
        "{stderr}"
    );
}
