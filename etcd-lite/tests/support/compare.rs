//! Compatibility by comparison: a [`Script`] of `etcdctl` commands is played
//! against two clusters and the transcripts, with what legitimately differs
//! between runs masked (ids, ports, revisions, TTL countdowns, timings), must
//! be identical. Entry point: [`Script::play`] then [`assert_same_transcript`].

use std::collections::HashMap;

use super::etcdctl::Etcdctl;

/// What a step keeps from its output for later steps to use as `{name}`.
#[derive(Clone, Copy, Debug)]
enum Capture {
    /// `header.revision` of the step's `-w json` output.
    Revision(&'static str),
    /// The hex id of `lease <ID> granted with TTL(...)`.
    LeaseId(&'static str),
}

#[derive(Clone, Debug)]
struct Step {
    args: Vec<String>,
    stdin: Vec<u8>,
    capture: Option<Capture>,
}

/// A fixed sequence of `etcdctl` invocations. Arguments may name earlier
/// captures as `{name}`.
#[derive(Clone, Debug, Default)]
pub struct Script {
    steps: Vec<Step>,
}

/// One step as a user saw it, normalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub command: String,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "$ etcdctl {}   # exit {:?}",
            self.command, self.exit_code
        )?;
        for line in self.stdout.lines() {
            writeln!(f, "  out| {line}")?;
        }
        for line in self.stderr.lines() {
            writeln!(f, "  err| {line}")?;
        }
        Ok(())
    }
}

impl Script {
    pub fn new() -> Script {
        Script::default()
    }

    pub fn run(self, args: &[&str]) -> Script {
        self.push(args, b"", None)
    }

    pub fn run_with_stdin(self, args: &[&str], stdin: &[u8]) -> Script {
        self.push(args, stdin, None)
    }

    /// Runs `args` with `-w json` and remembers the response's revision.
    pub fn capture_revision(self, name: &'static str, args: &[&str]) -> Script {
        let mut args = args.to_vec();
        args.extend(["-w", "json"]);
        self.push(&args, b"", Some(Capture::Revision(name)))
    }

    /// Runs `lease grant ...` and remembers the granted lease id.
    pub fn capture_lease(self, name: &'static str, args: &[&str]) -> Script {
        self.push(args, b"", Some(Capture::LeaseId(name)))
    }

    fn push(mut self, args: &[&str], stdin: &[u8], capture: Option<Capture>) -> Script {
        self.steps.push(Step {
            args: args.iter().map(|a| a.to_string()).collect(),
            stdin: stdin.to_vec(),
            capture,
        });
        self
    }

    /// Runs every step in order and returns the normalized transcript.
    pub fn play(&self, etcdctl: &Etcdctl) -> Vec<Outcome> {
        let mut captured: HashMap<&'static str, String> = HashMap::new();
        let mut transcript = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let args: Vec<String> = step
                .args
                .iter()
                .map(|arg| substitute(arg, &captured))
                .collect();
            let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = etcdctl.run_with_stdin(&arg_refs, &step.stdin);
            match step.capture {
                Some(Capture::Revision(name)) => {
                    let json: serde_json::Value = serde_json::from_str(output.stdout.trim())
                        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", output.stdout));
                    let revision = json["header"]["revision"]
                        .as_i64()
                        .unwrap_or_else(|| panic!("{args:?}: no header.revision: {json}"));
                    captured.insert(name, revision.to_string());
                }
                Some(Capture::LeaseId(name)) => {
                    let id =
                        output.stdout.split_whitespace().nth(1).unwrap_or_else(|| {
                            panic!("{args:?}: no lease id in {:?}", output.stdout)
                        });
                    captured.insert(name, id.to_string());
                }
                None => {}
            }
            transcript.push(Outcome {
                command: step.args.join(" "),
                exit_code: output.status.code(),
                stdout: normalize(&output.stdout),
                stderr: normalize(
                    &output
                        .stderr
                        .lines()
                        // etcdctl's own client-side log lines (timestamps, UUIDs).
                        .filter(|l| !l.starts_with("{\"level\""))
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
            });
        }
        transcript
    }
}

/// Fails the test at the first step where the transcripts differ, showing
/// both in full.
pub fn assert_same_transcript(
    reference_name: &str,
    reference: &[Outcome],
    other_name: &str,
    other: &[Outcome],
) {
    assert_eq!(reference.len(), other.len(), "transcripts differ in length");
    let differing: Vec<usize> = (0..reference.len())
        .filter(|&i| reference[i] != other[i])
        .collect();
    if differing.is_empty() {
        return;
    }
    let mut report = format!(
        "{} of {} steps differ between {reference_name} and {other_name}:\n",
        differing.len(),
        reference.len()
    );
    for &i in &differing {
        report.push_str(&format!(
            "\n--- {reference_name}:\n{}--- {other_name}:\n{}",
            reference[i], other[i]
        ));
    }
    panic!("{report}");
}

fn substitute(arg: &str, captured: &HashMap<&'static str, String>) -> String {
    let mut arg = arg.to_string();
    for (name, value) in captured {
        arg = arg.replace(&format!("{{{name}}}"), value);
    }
    arg
}

/// JSON keys whose values differ between two correct runs.
const MASKED_JSON_KEYS: &[&str] = &[
    "cluster_id",
    "member_id",
    "raft_term",
    "revision",
    "create_revision",
    "mod_revision",
    "compact_revision",
    "ID",
    "id",
    "leader",
    "raftIndex",
    "raftTerm",
    "raftAppliedIndex",
    "dbSize",
    "dbSizeInUse",
    "ttl",
    "Endpoint",
    "peerURLs",
    "clientURLs",
];

/// Masks what differs between two correct runs: JSON fields above, hex ids,
/// loopback ports, TTL countdowns, timings and compacted revisions.
pub fn normalize(text: &str) -> String {
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with('{') || trimmed.starts_with('[') {
                if let Ok(mut json) = serde_json::from_str::<serde_json::Value>(trimmed) {
                    mask_json(&mut json);
                    return json.to_string();
                }
            }
            normalize_line(line)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn mask_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if MASKED_JSON_KEYS.contains(&key.as_str()) {
                    *inner = serde_json::Value::String("<masked>".into());
                } else {
                    mask_json(inner);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_json),
        _ => {}
    }
}

fn normalize_line(line: &str) -> String {
    let line = mask_digits_after(line, "127.0.0.1:", "<port>");
    let line = mask_digits_after(&line, "remaining(", "<ttl>");
    let line = mask_digits_after(&line, "compacted revision ", "<rev>");
    let line = match line.find("took = ") {
        Some(at) => format!("{}took = <duration>", &line[..at]),
        None => line,
    };
    mask_hex_ids(&line)
}

/// Replaces the decimal number right after each `marker` with `mask`.
fn mask_digits_after(line: &str, marker: &str, mask: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(marker) {
        let after = at + marker.len();
        out.push_str(&rest[..after]);
        let digits = rest[after..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - after);
        if digits > 0 {
            out.push_str(mask);
        }
        rest = &rest[after + digits..];
    }
    out.push_str(rest);
    out
}

/// Replaces words of 8 or more hex digits (member and lease ids) with `<id>`.
fn mask_hex_ids(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.len() >= 8 && word.chars().all(|c| c.is_ascii_hexdigit()) {
            out.push_str("<id>");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in line.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[test]
fn normalize_masks_ids_ports_ttls_and_timings() {
    assert_eq!(
        normalize("lease 694d7a5ba1e1d0b5 granted with TTL(60s), remaining(59s)"),
        "lease <id> granted with TTL(60s), remaining(<ttl>s)"
    );
    assert_eq!(
        normalize(
            "117b9266988c4966, started, m0, http://127.0.0.1:22380, http://127.0.0.1:7, false"
        ),
        "<id>, started, m0, http://127.0.0.1:<port>, http://127.0.0.1:<port>, false"
    );
    assert_eq!(
        normalize("127.0.0.1:2379 is healthy: successfully committed proposal: took = 3.4ms"),
        "127.0.0.1:<port> is healthy: successfully committed proposal: took = <duration>"
    );
    assert_eq!(
        normalize(r#"{"header":{"revision":4}}"#),
        r#"{"header":{"revision":"<masked>"}}"#
    );
    assert_eq!(
        normalize(r#"[{"kvs":[{"mod_revision":3,"version":2}]}]"#),
        r#"[{"kvs":[{"mod_revision":"<masked>","version":2}]}]"#
    );
    assert_eq!(normalize("/cmp/a\nvalue 12"), "/cmp/a\nvalue 12");
}
