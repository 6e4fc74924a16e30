//! Eviction thresholds (`evictionHard`, `evictionSoft`, …), the node
//! pressure conditions they drive, and the eviction of running pods when
//! they are met, as upstream's eviction manager (pkg/kubelet/eviction).
//!
//! Entry points: [`EvictionSettings::parse`] checks the configuration,
//! [`Observations::read`] measures the node, [`PressureTracker::update`]
//! turns the thresholds met into `MemoryPressure`, `DiskPressure` and
//! `PIDPressure`. A condition stays true for
//! `evictionPressureTransitionPeriod` after its last threshold stopped being
//! met, so it does not flap. [`manager::EvictionManager`] runs the loop that
//! measures, publishes the conditions and evicts one pod per pass, ranked
//! by [`ranking`] from what [`usage`] measures.
//!
//! Signals, as upstream defines them:
//! - `memory.available`: the kernel's `MemAvailable` (upstream derives it
//!   from the root cgroup's working set; both leave out reclaimable cache);
//! - `nodefs.available` / `nodefs.inodesFree`: the filesystem of
//!   `--root-dir`;
//! - `imagefs.available` / `imagefs.inodesFree`: measured on the same
//!   filesystem (upstream's value whenever the runtime keeps its images on
//!   the node filesystem);
//! - `pid.available`: `kernel.pid_max` minus the tasks that exist.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use ferrokube_api::quantity::{Format, Quantity};

use crate::config::ConfigError;

pub mod manager;
pub mod ranking;
pub mod usage;

/// An eviction signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    MemoryAvailable,
    NodefsAvailable,
    NodefsInodesFree,
    ImagefsAvailable,
    ImagefsInodesFree,
    PidAvailable,
}

impl Signal {
    const ALL: [Signal; 6] = [
        Signal::MemoryAvailable,
        Signal::NodefsAvailable,
        Signal::NodefsInodesFree,
        Signal::ImagefsAvailable,
        Signal::ImagefsInodesFree,
        Signal::PidAvailable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodefsAvailable => "nodefs.available",
            Signal::NodefsInodesFree => "nodefs.inodesFree",
            Signal::ImagefsAvailable => "imagefs.available",
            Signal::ImagefsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    fn parse(s: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|sig| sig.name() == s)
    }

    /// The node condition a met threshold on this signal sets.
    pub fn condition(self) -> Pressure {
        match self {
            Signal::MemoryAvailable => Pressure::Memory,
            Signal::PidAvailable => Pressure::Pid,
            _ => Pressure::Disk,
        }
    }

    /// What evicting a pod reclaims for this signal (upstream's
    /// `signalToResource`).
    pub fn resource(self) -> Resource {
        match self {
            Signal::MemoryAvailable => Resource::Memory,
            Signal::NodefsAvailable | Signal::ImagefsAvailable => Resource::EphemeralStorage,
            Signal::NodefsInodesFree | Signal::ImagefsInodesFree => Resource::Inodes,
            Signal::PidAvailable => Resource::Pids,
        }
    }

    /// How the signal's amounts print: bytes as BinarySI, counts as
    /// DecimalSI, as upstream's observations.
    pub fn format(self) -> Format {
        match self.resource() {
            Resource::Memory | Resource::EphemeralStorage => Format::BinarySI,
            Resource::Inodes | Resource::Pids => Format::DecimalSI,
        }
    }
}

/// A resource the eviction manager reclaims, named as upstream names it in
/// eviction messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Memory,
    EphemeralStorage,
    Inodes,
    Pids,
}

impl Resource {
    pub fn name(self) -> &'static str {
        match self {
            Resource::Memory => "memory",
            Resource::EphemeralStorage => "ephemeral-storage",
            Resource::Inodes => "inodes",
            Resource::Pids => "pids",
        }
    }
}

/// A threshold's level: an absolute amount, or a share of the capacity.
#[derive(Debug, Clone, PartialEq)]
pub enum Level {
    /// As written, so that messages print it as the user did (`100Mi`).
    Amount(Quantity),
    /// 0.0 to 1.0.
    Fraction(f64),
}

impl Level {
    fn amount(&self, capacity: i128) -> i128 {
        match self {
            Level::Amount(q) => q.value(),
            Level::Fraction(f) => (capacity as f64 * f) as i128,
        }
    }

    /// The level as upstream prints it in eviction messages
    /// (`GetThresholdQuantity`): the quantity as written, or the share of
    /// the capacity in bytes (BinarySI).
    pub fn quantity(&self, capacity: i128) -> Quantity {
        match self {
            Level::Amount(q) => q.clone(),
            Level::Fraction(_) => Quantity::new(self.amount(capacity), Format::BinarySI),
        }
    }
}

/// One threshold: met when the signal's available amount is below `level`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub level: Level,
    /// `None` for a hard threshold.
    pub grace_period: Option<Duration>,
}

/// The node pressure conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pressure {
    Memory,
    Disk,
    Pid,
}

/// The checked eviction configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct EvictionSettings {
    pub thresholds: Vec<Threshold>,
    pub pressure_transition_period: Duration,
    /// `evictionMaxPodGracePeriod`: the longest a pod evicted for a soft
    /// threshold is given to stop (its own `terminationGracePeriodSeconds`
    /// if shorter, as upstream 1.32). Default 0.
    pub max_pod_grace_period_seconds: i64,
}

/// upstream's `evictionHard` when the configuration sets none.
const DEFAULT_HARD: [(&str, &str); 5] = [
    ("memory.available", "100Mi"),
    ("nodefs.available", "10%"),
    ("nodefs.inodesFree", "5%"),
    ("imagefs.available", "15%"),
    ("imagefs.inodesFree", "5%"),
];

/// upstream's `evictionPressureTransitionPeriod` default.
const DEFAULT_TRANSITION: Duration = Duration::from_secs(300);

fn invalid(field: &'static str, message: String) -> ConfigError {
    ConfigError::InvalidField { field, message }
}

fn parse_level(field: &'static str, signal: &str, value: &str) -> Result<Level, ConfigError> {
    let bad = |why: &str| invalid(field, format!("{signal}: {value:?} {why}"));
    let v = value.trim().strip_prefix('<').unwrap_or(value.trim());
    if let Some(percent) = v.strip_suffix('%') {
        let p: f64 = percent
            .parse()
            .map_err(|_| bad("is not a percentage like \"10%\""))?;
        if !(0.0..=100.0).contains(&p) {
            return Err(bad("must be between 0% and 100%"));
        }
        return Ok(Level::Fraction(p / 100.0));
    }
    let q = Quantity::parse(v)
        .map_err(|_| bad("is neither a quantity like \"100Mi\" nor a percentage like \"10%\""))?;
    if q.value() < 0 {
        return Err(bad("must not be negative"));
    }
    Ok(Level::Amount(q))
}

fn parse_signal(field: &'static str, s: &str) -> Result<Signal, ConfigError> {
    Signal::parse(s).ok_or_else(|| {
        let known: Vec<&str> = Signal::ALL.iter().map(|s| s.name()).collect();
        invalid(
            field,
            format!(
                "unsupported eviction signal {s:?}; supported: {}",
                known.join(", ")
            ),
        )
    })
}

impl EvictionSettings {
    /// Checks the KubeletConfiguration fields; `hard` replaces upstream's
    /// defaults entirely when given, as upstream does.
    pub fn parse(
        hard: Option<&BTreeMap<String, String>>,
        soft: Option<&BTreeMap<String, String>>,
        soft_grace: Option<&BTreeMap<String, String>>,
        transition: Option<&str>,
        max_pod_grace: Option<i32>,
    ) -> Result<EvictionSettings, ConfigError> {
        let mut thresholds = Vec::new();
        let defaults: BTreeMap<String, String>;
        let hard = match hard {
            Some(h) => h,
            None => {
                defaults = DEFAULT_HARD
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                &defaults
            }
        };
        for (name, value) in hard {
            let signal = parse_signal("evictionHard", name)?;
            thresholds.push(Threshold {
                signal,
                level: parse_level("evictionHard", name, value)?,
                grace_period: None,
            });
        }
        let empty = BTreeMap::new();
        let grace = soft_grace.unwrap_or(&empty);
        for name in grace.keys() {
            parse_signal("evictionSoftGracePeriod", name)?;
        }
        for (name, value) in soft.unwrap_or(&empty) {
            let signal = parse_signal("evictionSoft", name)?;
            let period = grace.get(name).ok_or_else(|| {
                invalid(
                    "evictionSoftGracePeriod",
                    format!(
                        "grace period must be specified for the soft eviction threshold {name}"
                    ),
                )
            })?;
            let period = crate::config::parse_duration(period).ok_or_else(|| {
                invalid(
                    "evictionSoftGracePeriod",
                    format!("{name}: {period:?} is not a duration like \"1m30s\""),
                )
            })?;
            thresholds.push(Threshold {
                signal,
                level: parse_level("evictionSoft", name, value)?,
                grace_period: Some(period),
            });
        }
        let pressure_transition_period = match transition {
            None => DEFAULT_TRANSITION,
            Some(t) => crate::config::parse_duration(t).ok_or_else(|| {
                invalid(
                    "evictionPressureTransitionPeriod",
                    format!("{t:?} is not a duration like \"5m\""),
                )
            })?,
        };
        let max_pod_grace_period_seconds = i64::from(max_pod_grace.unwrap_or(0));
        if max_pod_grace_period_seconds < 0 {
            return Err(invalid(
                "evictionMaxPodGracePeriod",
                format!("{max_pod_grace_period_seconds} must not be negative"),
            ));
        }
        Ok(EvictionSettings {
            thresholds,
            pressure_transition_period,
            max_pod_grace_period_seconds,
        })
    }

    /// The thresholds `obs` meets (hard or soft: a soft one's grace period
    /// delays eviction, not the condition, as upstream).
    pub fn met<'a>(&'a self, obs: &Observations) -> Vec<&'a Threshold> {
        self.thresholds
            .iter()
            .filter(|t| {
                obs.signals
                    .get(&t.signal)
                    .is_some_and(|&(available, capacity)| available < t.level.amount(capacity))
            })
            .collect()
    }
}

/// What the node has: for each signal it could measure, (available, capacity).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    pub signals: HashMap<Signal, (i128, i128)>,
}

impl Observations {
    /// Measures memory, the filesystem holding `root_dir` and process ids; a
    /// signal that cannot be read is left out (its thresholds are not met).
    pub fn read(root_dir: &Path) -> Observations {
        let mut signals = HashMap::new();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kib = |field: &str| -> Option<i128> {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .map(|k: i128| k * 1024)
        };
        if let (Some(available), Some(total)) = (kib("MemAvailable:"), kib("MemTotal:")) {
            signals.insert(Signal::MemoryAvailable, (available, total));
        }
        let fs_path = if root_dir.exists() {
            root_dir
        } else {
            Path::new("/")
        };
        if let Ok(st) = nix::sys::statvfs::statvfs(fs_path) {
            let frsize = st.fragment_size() as i128;
            let bytes = (
                st.blocks_available() as i128 * frsize,
                st.blocks() as i128 * frsize,
            );
            let inodes = (st.files_available() as i128, st.files() as i128);
            signals.insert(Signal::NodefsAvailable, bytes);
            signals.insert(Signal::ImagefsAvailable, bytes);
            // A filesystem without inode accounting (btrfs) reports 0 inodes.
            if inodes.1 > 0 {
                signals.insert(Signal::NodefsInodesFree, inodes);
                signals.insert(Signal::ImagefsInodesFree, inodes);
            }
        }
        let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|s| s.trim().parse::<i128>().ok());
        // /proc/loadavg's fourth field is running/total scheduling entities.
        let tasks = std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| {
            s.split_whitespace()
                .nth(3)?
                .split_once('/')?
                .1
                .parse::<i128>()
                .ok()
        });
        if let (Some(max), Some(tasks)) = (pid_max, tasks) {
            signals.insert(Signal::PidAvailable, (max - tasks, max));
        }
        Observations { signals }
    }
}

/// When each pressure was last observed; see the module docs.
#[derive(Debug, Default)]
pub struct PressureTracker {
    last_observed: HashMap<Pressure, Instant>,
}

impl PressureTracker {
    /// The pressures to report at `now`, given the thresholds met now.
    pub fn update(
        &mut self,
        met: &[&Threshold],
        transition_period: Duration,
        now: Instant,
    ) -> Vec<Pressure> {
        for t in met {
            self.last_observed.insert(t.signal.condition(), now);
        }
        let mut out: Vec<Pressure> = self
            .last_observed
            .iter()
            .filter(|(_, seen)| now.duration_since(**seen) < transition_period || **seen == now)
            .map(|(p, _)| *p)
            .collect();
        out.sort_by_key(|p| *p as u8);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn obs(pairs: &[(Signal, i128, i128)]) -> Observations {
        Observations {
            signals: pairs.iter().map(|&(s, a, c)| (s, (a, c))).collect(),
        }
    }

    #[test]
    fn defaults_are_upstreams_hard_thresholds() {
        let s = EvictionSettings::parse(None, None, None, None, None).unwrap();
        assert_eq!(s.thresholds.len(), 5);
        assert!(s.thresholds.contains(&Threshold {
            signal: Signal::MemoryAvailable,
            level: Level::Amount(Quantity::parse("100Mi").unwrap()),
            grace_period: None,
        }));
        assert!(s.thresholds.contains(&Threshold {
            signal: Signal::NodefsAvailable,
            level: Level::Fraction(0.10),
            grace_period: None,
        }));
        assert_eq!(s.pressure_transition_period, Duration::from_secs(300));
    }

    #[test]
    fn bad_configuration_names_the_field_and_the_signal() {
        let err = |hard: &[(&str, &str)], soft: &[(&str, &str)], grace: &[(&str, &str)]| {
            EvictionSettings::parse(
                Some(&map(hard)),
                Some(&map(soft)),
                Some(&map(grace)),
                None,
                None,
            )
            .unwrap_err()
            .to_string()
        };
        let e = err(&[("memory.free", "1Gi")], &[], &[]);
        assert!(
            e.contains("evictionHard") && e.contains("unsupported eviction signal \"memory.free\""),
            "{e}"
        );
        let e = err(&[("memory.available", "lots")], &[], &[]);
        assert!(
            e.contains("evictionHard")
                && e.contains("memory.available: \"lots\" is neither a quantity"),
            "{e}"
        );
        let e = err(&[("nodefs.available", "120%")], &[], &[]);
        assert!(e.contains("between 0% and 100%"), "{e}");
        let e = err(&[], &[("memory.available", "1Gi")], &[]);
        assert!(e.contains("evictionSoftGracePeriod") && e.contains("grace period must be specified for the soft eviction threshold memory.available"), "{e}");
        let e = err(
            &[],
            &[("memory.available", "1Gi")],
            &[("memory.available", "soon")],
        );
        assert!(e.contains("\"soon\" is not a duration"), "{e}");
        let e = EvictionSettings::parse(None, None, None, Some("forever"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("evictionPressureTransitionPeriod"), "{e}");
    }

    #[test]
    fn thresholds_compare_amounts_and_shares_of_capacity() {
        let s = EvictionSettings::parse(
            Some(&map(&[
                ("memory.available", "<1Gi"),
                ("nodefs.available", "10%"),
            ])),
            Some(&map(&[("pid.available", "1000")])),
            Some(&map(&[("pid.available", "30s")])),
            None,
            None,
        )
        .unwrap();
        let gib = 1 << 30;
        let signals = |mem: i128, disk: i128, pids: i128| {
            obs(&[
                (Signal::MemoryAvailable, mem, 8 * gib),
                (Signal::NodefsAvailable, disk, 100 * gib),
                (Signal::PidAvailable, pids, 4_000_000),
            ])
        };
        assert!(s.met(&signals(2 * gib, 50 * gib, 10_000)).is_empty());
        let met: Vec<Signal> = s
            .met(&signals(gib - 1, 9 * gib, 999))
            .iter()
            .map(|t| t.signal)
            .collect();
        assert_eq!(
            met,
            vec![
                Signal::MemoryAvailable,
                Signal::NodefsAvailable,
                Signal::PidAvailable
            ]
        );
        // A signal that could not be measured meets nothing.
        assert!(s.met(&Observations::default()).is_empty());
    }

    #[test]
    fn pressure_lasts_the_transition_period_after_the_last_observation() {
        let t = Threshold {
            signal: Signal::NodefsInodesFree,
            level: Level::Amount(Quantity::parse("10").unwrap()),
            grace_period: None,
        };
        let period = Duration::from_secs(300);
        let start = Instant::now();
        let mut tracker = PressureTracker::default();
        assert!(tracker.update(&[], period, start).is_empty());
        assert_eq!(tracker.update(&[&t], period, start), vec![Pressure::Disk]);
        let later = start + Duration::from_secs(299);
        assert_eq!(tracker.update(&[], period, later), vec![Pressure::Disk]);
        assert!(tracker
            .update(&[], period, start + Duration::from_secs(300))
            .is_empty());
    }

    #[test]
    fn this_machine_reports_memory_disk_and_pids() {
        let o = Observations::read(Path::new("/"));
        for s in [
            Signal::MemoryAvailable,
            Signal::NodefsAvailable,
            Signal::PidAvailable,
        ] {
            let (available, capacity) = o.signals[&s];
            assert!(
                available > 0 && available <= capacity,
                "{s:?}: {available} of {capacity}"
            );
        }
    }
}
