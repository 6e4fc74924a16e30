//! Results: one [`PhaseRow`] per phase and a [`SystemReport`] per system,
//! printed as an aligned text table ([`render_text`]) or as Markdown for
//! BENCHMARKS.md ([`render_markdown`]). [`RssSampler`] watches members'
//! memory during the whole run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{self, Cluster};
use crate::load::PhaseResult;

/// How often member memory is sampled for the run's maximum.
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// What one run of a phase measured on one system: the load's outcome and
/// what it cost (a figure is `None` where it could not be read).
pub struct Measured {
    pub result: PhaseResult,
    /// CPU time the members used together.
    pub cpu_ms: Option<u64>,
    /// CPU time this benchmark process (the clients) used.
    pub client_cpu_ms: Option<u64>,
    /// Raft log entries the leader appended (its raft index before and after).
    pub raft_entries: Option<u64>,
}

/// A phase's rounds on one system, added up.
pub struct Tally {
    pub total: Measured,
    /// Each round's ops/s.
    pub rounds: Vec<f64>,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            total: Measured {
                result: PhaseResult::empty(),
                cpu_ms: Some(0),
                client_cpu_ms: Some(0),
                raft_entries: Some(0),
            },
            rounds: Vec::new(),
        }
    }
}

impl Tally {
    /// Adds a round; a figure unreadable in any round is unknown for the phase.
    pub fn add(&mut self, round: Measured) -> anyhow::Result<()> {
        let sum = |total: Option<u64>, part: Option<u64>| Some(total? + part?);
        let total = &mut self.total;
        total.cpu_ms = sum(total.cpu_ms, round.cpu_ms);
        total.client_cpu_ms = sum(total.client_cpu_ms, round.client_cpu_ms);
        total.raft_entries = sum(total.raft_entries, round.raft_entries);
        self.rounds.push(round.result.ops_per_sec());
        total.result.merge(round.result)
    }
}

/// One phase's figures.
#[derive(Clone, Debug)]
pub struct PhaseRow {
    pub phase: String,
    pub clients: usize,
    pub ops: u64,
    pub errors: u64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Each member's RSS right after the phase.
    pub rss_after_kib: Vec<Option<u64>>,
    /// CPU time the members used together per 1000 requests, if every member was readable.
    pub cpu_ms_per_kop: Option<f64>,
    /// CPU time this benchmark process (the clients) used per 1000 requests.
    pub client_cpu_ms_per_kop: Option<f64>,
    /// Raft log entries the leader appended per 1000 requests (its raft index
    /// before and after the phase), if its status was readable.
    pub raft_entries_per_kop: Option<f64>,
    /// Each round's ops/s.
    pub round_ops_per_sec: Vec<f64>,
}

impl PhaseRow {
    pub fn new(
        phase: String,
        clients: usize,
        tally: &Tally,
        rss_after_kib: Vec<Option<u64>>,
    ) -> PhaseRow {
        let Measured {
            result,
            cpu_ms: members_cpu_ms,
            client_cpu_ms,
            raft_entries,
        } = &tally.total;
        let per_kop = |n: &u64| *n as f64 * 1000.0 / result.ops as f64;
        PhaseRow {
            phase,
            clients,
            ops: result.ops,
            errors: result.errors,
            ops_per_sec: result.ops_per_sec(),
            p50_ms: result.quantile_ms(0.50),
            p99_ms: result.quantile_ms(0.99),
            rss_after_kib,
            cpu_ms_per_kop: members_cpu_ms
                .as_ref()
                .filter(|_| result.ops > 0)
                .map(per_kop),
            client_cpu_ms_per_kop: client_cpu_ms
                .as_ref()
                .filter(|_| result.ops > 0)
                .map(per_kop),
            raft_entries_per_kop: raft_entries
                .as_ref()
                .filter(|_| result.ops > 0)
                .map(per_kop),
            round_ops_per_sec: tally.rounds.clone(),
        }
    }

    /// One progress line.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} ops, {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms, members' CPU {} ms per 1k ops, client CPU {} ms per 1k ops, {} Raft entries per 1k ops, RSS {} MiB",
            self.phase,
            self.ops,
            self.ops_per_sec,
            self.p50_ms,
            self.p99_ms,
            self.cpu_cell(),
            figure(self.client_cpu_ms_per_kop),
            self.entries_cell(),
            mib_list(&self.rss_after_kib)
        )
    }

    fn cpu_cell(&self) -> String {
        figure(self.cpu_ms_per_kop)
    }

    fn entries_cell(&self) -> String {
        figure(self.raft_entries_per_kop)
    }
}

fn figure(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.0}"))
}

/// Everything measured for one system.
#[derive(Clone, Debug)]
pub struct SystemReport {
    pub system: String,
    pub phases: Vec<PhaseRow>,
    /// Each member's highest RSS seen during the phases.
    pub max_rss_kib: Vec<u64>,
}

/// Samples members' RSS in the background until [`RssSampler::stop`].
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<u64>>,
}

impl RssSampler {
    pub fn start(cluster: &Cluster) -> RssSampler {
        let pids = cluster.pids();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut max = vec![0u64; pids.len()];
            let mut tick = tokio::time::interval(RSS_SAMPLE_INTERVAL);
            loop {
                for (i, &pid) in pids.iter().enumerate() {
                    max[i] = max[i].max(cluster::rss_kib(pid).unwrap_or(0));
                }
                if stopped.load(Ordering::Relaxed) {
                    return max;
                }
                tick.tick().await;
            }
        });
        RssSampler { stop, task }
    }

    /// Takes a last sample and returns each member's maximum in KiB.
    pub async fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

fn mib(kib: u64) -> String {
    format!("{:.0}", kib as f64 / 1024.0)
}

fn mib_list(kib: &[Option<u64>]) -> String {
    kib.iter()
        .map(|k| k.map(mib).unwrap_or_else(|| "-".into()))
        .collect::<Vec<_>>()
        .join(" / ")
}

const HEADERS: [&str; 11] = [
    "system",
    "phase",
    "ops",
    "ops/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "members' CPU ms per 1k ops",
    "client CPU ms per 1k ops",
    "Raft entries per 1k ops",
    "RSS after, MiB per member",
];

fn phase_cells(report: &SystemReport) -> Vec<Vec<String>> {
    report
        .phases
        .iter()
        .map(|row| {
            vec![
                report.system.clone(),
                row.phase.clone(),
                row.ops.to_string(),
                format!("{:.0}", row.ops_per_sec),
                format!("{:.2}", row.p50_ms),
                format!("{:.2}", row.p99_ms),
                row.errors.to_string(),
                row.cpu_cell(),
                figure(row.client_cpu_ms_per_kop),
                row.entries_cell(),
                mib_list(&row.rss_after_kib),
            ]
        })
        .collect()
}

fn max_rss_cells(report: &SystemReport) -> [String; 2] {
    let per_member: Vec<Option<u64>> = report.max_rss_kib.iter().map(|&k| Some(k)).collect();
    [report.system.clone(), mib_list(&per_member)]
}

/// Ops/s round by round for each phase, one column per system; with two
/// systems, the first's ops/s over the second's as a last column. `None` with
/// a single round (the main table says it all).
fn round_table(reports: &[SystemReport]) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    let first = reports.first()?;
    let rounds = first.phases.first()?.round_ops_per_sec.len();
    if rounds < 2 {
        return None;
    }
    let ratio = |a: f64, b: f64| format!("{:.2}×", a / b);
    let mut headers = vec!["phase".to_string(), "round".to_string()];
    headers.extend(reports.iter().map(|r| format!("{} ops/s", r.system)));
    if let [a, b] = reports {
        headers.push(format!("{} / {}", a.system, b.system));
    }
    let mut rows = Vec::new();
    for (p, phase) in first.phases.iter().enumerate() {
        let rows_of: Vec<&PhaseRow> = reports.iter().filter_map(|r| r.phases.get(p)).collect();
        if rows_of.len() != reports.len() {
            continue;
        }
        for round in 0..rounds {
            let figures: Vec<f64> = rows_of
                .iter()
                .map(|row| {
                    row.round_ops_per_sec
                        .get(round)
                        .copied()
                        .unwrap_or(f64::NAN)
                })
                .collect();
            let mut cells = vec![phase.phase.clone(), (round + 1).to_string()];
            cells.extend(figures.iter().map(|x| format!("{x:.0}")));
            if let [a, b] = figures[..] {
                cells.push(ratio(a, b));
            }
            rows.push(cells);
        }
        let mut cells = vec![phase.phase.clone(), "all".to_string()];
        cells.extend(rows_of.iter().map(|row| format!("{:.0}", row.ops_per_sec)));
        if let [a, b] = rows_of[..] {
            cells.push(ratio(a.ops_per_sec, b.ops_per_sec));
        }
        rows.push(cells);
    }
    Some((headers, rows))
}

/// Columns of text (left-aligned) before the columns of figures (right-aligned).
const TEXT_COLUMNS: usize = 2;

/// Cells padded to each column's width.
fn aligned(headers: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let cells: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, &width))| {
                if i < TEXT_COLUMNS {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect();
        cells.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(headers);
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// A Markdown table; the first `text_columns` left-aligned, the figures right-aligned.
fn markdown_table(headers: &[String], rows: &[Vec<String>], text_columns: usize) -> String {
    let mut out = format!("| {} |\n|", headers.join(" | "));
    for column in 0..headers.len() {
        out.push_str(if column < text_columns {
            "---|"
        } else {
            "--:|"
        });
    }
    out.push('\n');
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

fn main_headers() -> Vec<String> {
    HEADERS.iter().map(|h| h.to_string()).collect()
}

/// Aligned plain-text tables: the phases, the rounds (if more than one) and
/// each system's highest member RSS.
pub fn render_text(reports: &[SystemReport]) -> String {
    let rows: Vec<Vec<String>> = reports.iter().flat_map(phase_cells).collect();
    let mut out = aligned(&main_headers(), &rows);
    if let Some((headers, rows)) = round_table(reports) {
        out.push_str("\nops/s round by round (the systems take turns):\n");
        out.push_str(&aligned(&headers, &rows));
    }
    out.push_str("\nmax RSS over the run, MiB per member:\n");
    for report in reports {
        let [system, rss] = max_rss_cells(report);
        out.push_str(&format!("  {system:<10}  {rss}\n"));
    }
    out
}

/// Markdown tables, preceded by the command that produced them.
pub fn render_markdown(reports: &[SystemReport], command: &str) -> String {
    let mut out = format!("Command: `{command}`\n\n");
    let rows: Vec<Vec<String>> = reports.iter().flat_map(phase_cells).collect();
    out.push_str(&markdown_table(&main_headers(), &rows, TEXT_COLUMNS));
    if let Some((headers, rows)) = round_table(reports) {
        out.push('\n');
        out.push_str(&markdown_table(&headers, &rows, TEXT_COLUMNS));
    }
    let rss: Vec<Vec<String>> = reports.iter().map(|r| max_rss_cells(r).to_vec()).collect();
    let headers = ["system", "max RSS over the run, MiB per member"].map(String::from);
    out.push('\n');
    out.push_str(&markdown_table(&headers, &rss, 1));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SystemReport {
        named("etcd 3.4", &[588.4, 6436.0], vec![])
    }

    /// A report with one phase per figure in `ops_per_sec`, each run in `rounds`.
    fn named(system: &str, ops_per_sec: &[f64], rounds: Vec<f64>) -> SystemReport {
        let names = ["put, 1 client", "get, 64 clients"];
        let row = |phase: &str, ops_per_sec| PhaseRow {
            phase: phase.into(),
            clients: 1,
            ops: 100,
            errors: 0,
            ops_per_sec,
            p50_ms: 1.234,
            p99_ms: 9.876,
            rss_after_kib: vec![Some(10 * 1024), None, Some(30 * 1024)],
            cpu_ms_per_kop: Some(123.4),
            client_cpu_ms_per_kop: Some(45.6),
            raft_entries_per_kop: Some(87.6),
            round_ops_per_sec: rounds.clone(),
        };
        SystemReport {
            system: system.into(),
            phases: names
                .iter()
                .zip(ops_per_sec)
                .map(|(n, &x)| row(n, x))
                .collect(),
            max_rss_kib: vec![12 * 1024, 20 * 1024, 31 * 1024],
        }
    }

    #[test]
    fn rounds_table_lists_each_round_and_the_ratio() {
        let a = named("etcd-lite", &[900.0, 12000.0], vec![1000.0, 800.0]);
        let b = named("etcd 3.4", &[600.0, 8000.0], vec![500.0, 700.0]);
        let markdown = render_markdown(&[a.clone(), b.clone()], "etcd-bench");
        assert!(markdown.contains(
            "| phase | round | etcd-lite ops/s | etcd 3.4 ops/s | etcd-lite / etcd 3.4 |\n|---|---|--:|--:|--:|\n"
        ), "{markdown}");
        assert!(
            markdown.contains("| put, 1 client | 1 | 1000 | 500 | 2.00× |\n"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| put, 1 client | 2 | 800 | 700 | 1.14× |\n"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| put, 1 client | all | 900 | 600 | 1.50× |\n"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| get, 64 clients | all | 12000 | 8000 | 1.50× |\n"),
            "{markdown}"
        );
        let text = render_text(&[a, b]);
        assert!(text.contains("round by round"), "{text}");
        // One round: no round table.
        assert!(!render_text(&[sample()]).contains("round by round"));
    }

    #[test]
    fn markdown_has_one_row_per_phase_and_the_command() {
        let markdown = render_markdown(&[sample()], "cargo run -p etcd-bench");
        assert!(markdown.starts_with("Command: `cargo run -p etcd-bench`\n"));
        assert!(markdown.contains(
            "| etcd 3.4 | put, 1 client | 100 | 588 | 1.23 | 9.88 | 0 | 123 | 46 | 88 | 10 / - / 30 |\n"
        ));
        assert!(markdown.contains("| etcd 3.4 | get, 64 clients | 100 | 6436 |"));
        let columns = |line: &str| line.matches('|').count();
        let mut lines = markdown.lines().skip(2);
        let (header, alignment) = (lines.next().unwrap(), lines.next().unwrap());
        assert_eq!(columns(header), HEADERS.len() + 1, "{header}");
        assert_eq!(columns(alignment), columns(header), "{alignment}");
        assert!(markdown.contains("| etcd 3.4 | 12 / 20 / 31 |\n"));
    }

    #[test]
    fn text_table_aligns_columns() {
        let text = render_text(&[sample()]);
        let lines: Vec<&str> = text.lines().take(3).collect();
        assert!(lines[0].starts_with("system    phase"));
        assert!(lines[1].contains("put, 1 client  "));
        assert_eq!(lines[1].len(), lines[2].len(), "{text}");
    }

    #[test]
    fn rss_of_this_process_is_readable() {
        assert!(cluster::rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }

    #[test]
    fn cpu_time_of_this_process_grows_while_it_computes() {
        let pid = std::process::id();
        let before = cluster::cpu_ms(pid).expect("own /proc/PID/stat");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        let mut now = before;
        while now < before + 20 && std::time::Instant::now() < deadline {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            now = cluster::cpu_ms(pid).expect("own /proc/PID/stat");
        }
        assert!(
            now >= before + 20,
            "CPU time stayed at {now} ms (from {before} ms)"
        );
    }
}
