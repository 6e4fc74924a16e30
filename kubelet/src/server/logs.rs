//! Container logs as `kubectl logs` shows them: reads the CRI log files the
//! runtime writes (`<RFC3339Nano> <stdout|stderr> <P|F> <content>`, one
//! record per line, `P` marking a partial line whose rest follows) and
//! applies upstream's PodLogOptions (tailLines, sinceSeconds/sinceTime,
//! timestamps, limitBytes, follow). Entry points: [`parse_record`],
//! [`LogOptions::select`] and [`stream_log`].

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// How often a followed log file is checked for growth.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("failed to open log file {path:?}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("reading log file {path:?}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// One record of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// The timestamp as written (RFC 3339 with nanoseconds).
    pub timestamp: &'a str,
    pub time: DateTime<Utc>,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// False for a `P` record: the line goes on in the next record.
    pub full: bool,
    /// The content, without the record's own newline.
    pub content: &'a [u8],
}

/// Parses one record (without its trailing newline); `None` for a line that
/// is not in the CRI format.
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let timestamp = std::str::from_utf8(parts.next()?).ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    let full = match parts.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    let content = parts.next().unwrap_or_default();
    let time = DateTime::parse_from_rfc3339(timestamp)
        .ok()?
        .with_timezone(&Utc);
    Some(Record {
        timestamp,
        time,
        stream,
        full,
        content,
    })
}

/// The PodLogOptions the kubelet applies to a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Only the last N lines (a line may span several partial records).
    pub tail_lines: Option<u64>,
    /// Only records at or after this time (sinceSeconds / sinceTime).
    pub since: Option<DateTime<Utc>>,
    /// Prefix every record with its timestamp.
    pub timestamps: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    /// Index of the first record to show when only the last `n` lines are
    /// wanted: partial records belong to the line their `F` record ends.
    fn tail_start(records: &[Record<'_>], n: u64) -> usize {
        let mut lines = 0u64;
        let mut start = records.len();
        for (i, r) in records.iter().enumerate().rev() {
            if r.full {
                if lines == n {
                    break;
                }
                lines += 1;
            }
            start = i;
        }
        start
    }

    /// The bytes to show for `data`, the whole records of a file; applies
    /// tail, since, timestamps (but not the byte limit, see [`Limit`]).
    pub fn select(&self, data: &[u8]) -> Vec<u8> {
        let records: Vec<Record<'_>> = data
            .split(|b| *b == b'\n')
            .filter_map(parse_record)
            .collect();
        let start = match self.tail_lines {
            Some(n) => Self::tail_start(&records, n),
            None => 0,
        };
        let mut out = Vec::new();
        for r in &records[start..] {
            self.format(r, &mut out);
        }
        out
    }

    /// Appends one record as shown to the user.
    pub fn format(&self, r: &Record<'_>, out: &mut Vec<u8>) {
        if self.since.is_some_and(|since| r.time < since) {
            return;
        }
        if self.timestamps {
            out.extend_from_slice(r.timestamp.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(r.content);
        if r.full {
            out.push(b'\n');
        }
    }
}

/// What is left of `limitBytes`.
#[derive(Debug, Clone, Copy)]
pub struct Limit(Option<u64>);

impl Limit {
    pub fn new(limit_bytes: Option<u64>) -> Limit {
        Limit(limit_bytes)
    }

    /// Cuts `chunk` to what the limit still allows; true when the limit is
    /// now exhausted.
    pub fn take(&mut self, chunk: &mut Vec<u8>) -> bool {
        match &mut self.0 {
            None => false,
            Some(left) => {
                if (chunk.len() as u64) >= *left {
                    chunk.truncate(*left as usize);
                    *left = 0;
                    true
                } else {
                    *left -= chunk.len() as u64;
                    false
                }
            }
        }
    }
}

/// Whether a followed container may still write to its log.
#[async_trait::async_trait]
pub trait Liveness: Send + Sync {
    async fn running(&self) -> bool;
}

/// Sends the log at `path` to `tx` in chunks. With `follow`, keeps reading
/// as the file grows until `follow` says the container stopped and the
/// file is read to its end (or the receiver hangs up).
pub async fn stream_log(
    path: &Path,
    opts: &LogOptions,
    follow: Option<&dyn Liveness>,
    tx: &mpsc::Sender<Vec<u8>>,
) -> Result<(), LogError> {
    let name = path.display().to_string();
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|source| LogError::Open {
            path: name.clone(),
            source,
        })?;
    let read_err = |source| LogError::Read {
        path: name.clone(),
        source,
    };
    let mut limit = Limit::new(opts.limit_bytes);
    let mut data = Vec::new();
    file.read_to_end(&mut data).await.map_err(read_err)?;
    // Only whole records; a record being written stays for the next read.
    let whole = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut pending = data.split_off(whole);
    let mut chunk = opts.select(&data);
    let done = limit.take(&mut chunk);
    if !chunk.is_empty() && tx.send(chunk).await.is_err() {
        return Ok(());
    }
    let Some(follow) = follow else {
        return Ok(());
    };
    if done {
        return Ok(());
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).await.map_err(read_err)?;
        if n == 0 {
            // Read the end once more after the container stopped: what it
            // wrote just before exiting must not be lost.
            if !follow.running().await {
                let mut rest = Vec::new();
                file.read_to_end(&mut rest).await.map_err(read_err)?;
                if rest.is_empty() {
                    return Ok(());
                }
                pending.extend_from_slice(&rest);
            } else {
                if tx.is_closed() {
                    return Ok(());
                }
                tokio::time::sleep(FOLLOW_POLL).await;
                continue;
            }
        } else {
            pending.extend_from_slice(&buf[..n]);
        }
        let whole = pending
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let rest = pending.split_off(whole);
        let mut out = Vec::new();
        for line in pending.split(|b| *b == b'\n') {
            if let Some(r) = parse_record(line) {
                opts.format(&r, &mut out);
            }
        }
        pending = rest;
        let done = limit.take(&mut out);
        if !out.is_empty() && tx.send(out).await.is_err() {
            return Ok(());
        }
        if done {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2024-05-01T10:00:00.000000001Z stdout F one
2024-05-01T10:00:01.5Z stderr F two
2024-05-01T10:00:02Z stdout P thr
2024-05-01T10:00:02.1Z stdout F ee
2024-05-01T10:00:03+02:00 stdout F four
";

    fn show(opts: LogOptions) -> String {
        String::from_utf8(opts.select(LOG.as_bytes())).unwrap()
    }

    #[test]
    fn records_parse_with_stream_tag_and_content() {
        let r = parse_record(b"2024-05-01T10:00:00.123456789Z stderr P a b  c").unwrap();
        assert_eq!(r.stream, "stderr");
        assert!(!r.full);
        assert_eq!(r.content, b"a b  c");
        assert_eq!(r.time.timestamp_subsec_nanos(), 123_456_789);
        let empty = parse_record(b"2024-05-01T10:00:00Z stdout F ").unwrap();
        assert_eq!(empty.content, b"");
        assert!(parse_record(b"not a log line").is_none());
        assert!(parse_record(b"2024-05-01T10:00:00Z stdin F x").is_none());
        assert!(parse_record(b"2024-05-01T10:00:00Z stdout X x").is_none());
    }

    #[test]
    fn partial_records_join_into_one_line() {
        assert_eq!(show(LogOptions::default()), "one\ntwo\nthree\nfour\n");
    }

    #[test]
    fn tail_counts_lines_not_partial_records() {
        let tail = |n| {
            show(LogOptions {
                tail_lines: Some(n),
                ..Default::default()
            })
        };
        assert_eq!(tail(2), "three\nfour\n");
        assert_eq!(tail(1), "four\n");
        assert_eq!(tail(0), "");
        assert_eq!(tail(10), "one\ntwo\nthree\nfour\n");
    }

    #[test]
    fn since_drops_older_records_across_time_zones() {
        let since = DateTime::parse_from_rfc3339("2024-05-01T10:00:01Z")
            .unwrap()
            .with_timezone(&Utc);
        // "four" was written at 08:00:03Z (+02:00), before `since`.
        assert_eq!(
            show(LogOptions {
                since: Some(since),
                ..Default::default()
            }),
            "two\nthree\n"
        );
    }

    #[test]
    fn timestamps_prefix_each_record_as_written() {
        let out = show(LogOptions {
            timestamps: true,
            tail_lines: Some(2),
            ..Default::default()
        });
        assert_eq!(
            out,
            "2024-05-01T10:00:02Z thr2024-05-01T10:00:02.1Z ee\n2024-05-01T10:00:03+02:00 four\n"
        );
    }

    #[test]
    fn limit_bytes_cuts_the_output() {
        let mut limit = Limit::new(Some(5));
        let mut a = b"abc".to_vec();
        assert!(!limit.take(&mut a));
        let mut b = b"defgh".to_vec();
        assert!(limit.take(&mut b));
        assert_eq!((a, b), (b"abc".to_vec(), b"de".to_vec()));
        let mut unlimited = Limit::new(None);
        let mut c = b"xyz".to_vec();
        assert!(!unlimited.take(&mut c));
        assert_eq!(c, b"xyz");
    }

    struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);

    #[async_trait::async_trait]
    impl Liveness for Flag {
        async fn running(&self) -> bool {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn follow_sends_appended_lines_and_ends_when_the_container_stops() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "2024-05-01T10:00:00Z stdout F first\n").unwrap();
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (tx, mut rx) = mpsc::channel(16);
        let task = {
            let (path, running) = (path.clone(), running.clone());
            tokio::spawn(async move {
                let flag = Flag(running);
                stream_log(&path, &LogOptions::default(), Some(&flag), &tx).await
            })
        };
        assert_eq!(rx.recv().await.unwrap(), b"first\n");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        // A record written in two pieces is sent only once it is whole.
        f.write_all(b"2024-05-01T10:00:01Z stdout F sec").unwrap();
        f.flush().unwrap();
        f.write_all(b"ond\n").unwrap();
        assert_eq!(rx.recv().await.unwrap(), b"second\n");
        f.write_all(b"2024-05-01T10:00:02Z stderr F last words\n")
            .unwrap();
        running.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut rest = Vec::new();
        while let Some(chunk) = rx.recv().await {
            rest.extend(chunk);
        }
        assert_eq!(rest, b"last words\n");
        task.await.unwrap().unwrap();
    }
}
