//! [`AtomicWriter`]: projects a set of files (a configMap's keys, a
//! secret's, downward API values) into a volume directory so that a
//! reader sees either the whole old set or the whole new one, as
//! upstream's `AtomicWriter`:
//!
//! ```text
//! <dir>/key           -> ..data/key          (one symlink per top-level name)
//! <dir>/..data        -> ..2024_05_01_10_00_00.123456789
//! <dir>/..2024_05_01_10_00_00.123456789/key  (the real files)
//! ```
//!
//! An update writes a new timestamped directory, points `..data_tmp` at it
//! and renames that over `..data` (rename is atomic), then adds symlinks
//! for new names, removes those of names that went, and removes the old
//! timestamped directory. Entry point: [`AtomicWriter::write`].
//!
//! To ensure correctness: the user-visible names never point anywhere but
//! into `..data`, so the swap of that one symlink switches every file at
//! once; payload paths are relative, without `..`, so nothing is written
//! outside the volume.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub const DATA_DIR_NAME: &str = "..data";
pub const NEW_DATA_DIR_NAME: &str = "..data_tmp";
const MAX_FILE_NAME_LENGTH: usize = 255;
const MAX_PATH_LENGTH: usize = 4096;

/// One file of a payload: its bytes and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Relative path → file.
pub type Payload = BTreeMap<String, FileProjection>;

#[derive(Debug, thiserror::Error)]
pub enum AtomicWriterError {
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> AtomicWriterError {
    let path = path.to_path_buf();
    move |source| AtomicWriterError::Io { step, path, source }
}

/// Upstream's `validatePath`: relative, no `..` element, no leading `..`
/// name, within the length limits.
pub fn validate_path(p: &str) -> Result<(), AtomicWriterError> {
    let bad = |why: String| Err(AtomicWriterError::InvalidPath(why));
    if p.is_empty() {
        return bad("must not be empty: \"\"".into());
    }
    if p.starts_with('/') {
        return bad(format!("must be relative path: {p}"));
    }
    if p.len() > MAX_PATH_LENGTH {
        return bad(format!(
            "must be less than or equal to {MAX_PATH_LENGTH} characters"
        ));
    }
    let items: Vec<&str> = p.split('/').collect();
    for item in &items {
        if *item == ".." {
            return bad(format!("must not contain '..': {p}"));
        }
        if item.len() > MAX_FILE_NAME_LENGTH {
            return bad(format!(
                "filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters"
            ));
        }
    }
    if items[0].starts_with("..") && items[0].len() > 2 {
        return bad(format!("must not start with '..': {p}"));
    }
    Ok(())
}

/// `a//b/./c/` → `a/b/c`.
fn clean(p: &str) -> String {
    p.split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn top_level(p: &str) -> &str {
    p.split('/').next().unwrap_or(p)
}

/// Writes payloads into one volume directory.
#[derive(Debug, Clone)]
pub struct AtomicWriter {
    target_dir: PathBuf,
}

static TS_COUNTER: AtomicU64 = AtomicU64::new(0);

impl AtomicWriter {
    pub fn new(target_dir: impl Into<PathBuf>) -> Self {
        AtomicWriter {
            target_dir: target_dir.into(),
        }
    }

    /// The timestamped directory `..data` points at, if any.
    fn current_ts_dir(&self) -> Option<String> {
        std::fs::read_link(self.target_dir.join(DATA_DIR_NAME))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    /// Whether the directory holds a projected payload already.
    pub fn is_written(&self) -> bool {
        self.current_ts_dir().is_some()
    }

    /// Projects `payload`; returns whether anything changed on disk.
    pub fn write(&self, payload: &Payload) -> Result<bool, AtomicWriterError> {
        let mut clean_payload = Payload::new();
        for (p, f) in payload {
            validate_path(p)?;
            clean_payload.insert(clean(p), f.clone());
        }
        std::fs::create_dir_all(&self.target_dir).map_err(io("creating", &self.target_dir))?;

        let old_ts = self.current_ts_dir();
        let new_top: BTreeSet<&str> = clean_payload.keys().map(|p| top_level(p)).collect();
        let old_top: BTreeSet<String> = match &old_ts {
            Some(ts) => list_dir(&self.target_dir.join(ts))?,
            None => BTreeSet::new(),
        };
        let to_remove: Vec<&String> = old_top
            .iter()
            .filter(|n| !new_top.contains(n.as_str()))
            .collect();

        let should_write = match &old_ts {
            None => true,
            Some(ts) => {
                !to_remove.is_empty() || differs(&self.target_dir.join(ts), &clean_payload)?
            }
        };
        if should_write {
            let ts_name = self.new_ts_dir()?;
            let ts_dir = self.target_dir.join(&ts_name);
            write_payload(&ts_dir, &clean_payload)?;
            let tmp_link = self.target_dir.join(NEW_DATA_DIR_NAME);
            match std::fs::remove_file(&tmp_link) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    return Err(io("removing", &tmp_link)(e))
                }
                _ => {}
            }
            std::os::unix::fs::symlink(&ts_name, &tmp_link).map_err(io("symlinking", &tmp_link))?;
            let data_link = self.target_dir.join(DATA_DIR_NAME);
            std::fs::rename(&tmp_link, &data_link).map_err(io("renaming to", &data_link))?;
        }
        for name in &new_top {
            let visible = self.target_dir.join(name);
            if std::fs::symlink_metadata(&visible).is_err() {
                let target = Path::new(DATA_DIR_NAME).join(name);
                std::os::unix::fs::symlink(&target, &visible)
                    .map_err(io("symlinking", &visible))?;
            }
        }
        for name in to_remove {
            let visible = self.target_dir.join(name);
            match std::fs::remove_file(&visible) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    return Err(io("removing", &visible)(e))
                }
                _ => {}
            }
        }
        if should_write {
            if let Some(old) = old_ts {
                let old_dir = self.target_dir.join(old);
                std::fs::remove_dir_all(&old_dir).map_err(io("removing", &old_dir))?;
            }
        }
        Ok(should_write)
    }

    /// `..<UTC timestamp>.<unique suffix>`, mode 0755.
    fn new_ts_dir(&self) -> Result<String, AtomicWriterError> {
        let now = chrono::Utc::now();
        for _ in 0..100 {
            let n = TS_COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!(
                "..{}.{}{:04}",
                now.format("%Y_%m_%d_%H_%M_%S"),
                now.timestamp_subsec_nanos(),
                (std::process::id() as u64 + n) % 10_000
            );
            let dir = self.target_dir.join(&name);
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    set_mode(&dir, 0o755)?;
                    return Ok(name);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io("creating", &dir)(e)),
            }
        }
        Err(AtomicWriterError::Io {
            step: "creating a timestamped directory in",
            path: self.target_dir.clone(),
            source: std::io::Error::from(ErrorKind::AlreadyExists),
        })
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), AtomicWriterError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io("setting the mode of", path))
}

fn list_dir(dir: &Path) -> Result<BTreeSet<String>, AtomicWriterError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(io("reading", dir)(e)),
    };
    let mut out = BTreeSet::new();
    for e in entries {
        let e = e.map_err(io("reading", dir))?;
        out.insert(e.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

/// Whether any file of `payload` is missing in `ts_dir` or differs in
/// content or mode.
fn differs(ts_dir: &Path, payload: &Payload) -> Result<bool, AtomicWriterError> {
    for (p, f) in payload {
        let path = ts_dir.join(p);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return Ok(true);
        };
        if meta.permissions().mode() & 0o7777 != f.mode & 0o7777 {
            return Ok(true);
        }
        let on_disk = std::fs::read(&path).map_err(io("reading", &path))?;
        if on_disk != f.data {
            return Ok(true);
        }
    }
    Ok(false)
}

fn write_payload(ts_dir: &Path, payload: &Payload) -> Result<(), AtomicWriterError> {
    for (p, f) in payload {
        let path = ts_dir.join(p);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        std::fs::write(&path, &f.data).map_err(io("writing", &path))?;
        set_mode(&path, f.mode & 0o7777)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    fn payload(items: &[(&str, &str, u32)]) -> Payload {
        items
            .iter()
            .map(|(p, d, m)| (p.to_string(), file(d, *m)))
            .collect()
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn first_write_lays_out_data_dir_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(dir.path());
        assert!(!w.is_written());
        let changed = w
            .write(&payload(&[
                ("key", "v1", 0o644),
                ("sub/nested", "n", 0o400),
            ]))
            .unwrap();
        assert!(changed);
        let d = dir.path();
        assert_eq!(std::fs::read_to_string(d.join("key")).unwrap(), "v1");
        assert_eq!(std::fs::read_to_string(d.join("sub/nested")).unwrap(), "n");
        assert_eq!(
            std::fs::read_link(d.join("key")).unwrap(),
            Path::new("..data/key")
        );
        assert_eq!(
            std::fs::read_link(d.join("sub")).unwrap(),
            Path::new("..data/sub")
        );
        let ts = std::fs::read_link(d.join("..data")).unwrap();
        let ts = ts.to_str().unwrap();
        assert!(ts.starts_with("..20"), "{ts}");
        assert!(d.join(ts).is_dir());
        assert_eq!(mode(&d.join("key")), 0o644);
        assert_eq!(mode(&d.join("sub/nested")), 0o400);
    }

    #[test]
    fn update_swaps_data_removes_gone_keys_and_old_dir() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let w = AtomicWriter::new(d);
        w.write(&payload(&[("a", "1", 0o644), ("b", "2", 0o644)]))
            .unwrap();
        let old_ts = std::fs::read_link(d.join("..data")).unwrap();
        // A reader holding the old file sees the old content throughout.
        let held = std::fs::File::open(d.join("a")).unwrap();
        assert!(w
            .write(&payload(&[("a", "1-new", 0o644), ("c", "3", 0o600)]))
            .unwrap());
        let new_ts = std::fs::read_link(d.join("..data")).unwrap();
        assert_ne!(old_ts, new_ts);
        assert!(!d.join(&old_ts).exists(), "old timestamped dir removed");
        assert_eq!(std::fs::read_to_string(d.join("a")).unwrap(), "1-new");
        assert_eq!(std::fs::read_to_string(d.join("c")).unwrap(), "3");
        assert_eq!(mode(&d.join("c")), 0o600);
        assert!(std::fs::symlink_metadata(d.join("b")).is_err(), "b removed");
        assert!(!d.join(NEW_DATA_DIR_NAME).exists());
        drop(held);
        let names: BTreeSet<String> = list_dir(d).unwrap();
        let want: BTreeSet<String> = ["..data", "a", "c", new_ts.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(names, want);
    }

    #[test]
    fn unchanged_payload_writes_nothing_but_a_mode_change_does() {
        let dir = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(dir.path());
        let p = payload(&[("a", "1", 0o644)]);
        assert!(w.write(&p).unwrap());
        let ts = std::fs::read_link(dir.path().join("..data")).unwrap();
        assert!(!w.write(&p).unwrap());
        assert_eq!(std::fs::read_link(dir.path().join("..data")).unwrap(), ts);
        assert!(w.write(&payload(&[("a", "1", 0o400)])).unwrap());
        assert_eq!(mode(&dir.path().join("a")), 0o400);
    }

    #[test]
    fn empty_payload_removes_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(dir.path());
        w.write(&payload(&[("a", "1", 0o644)])).unwrap();
        assert!(w.write(&Payload::new()).unwrap());
        assert!(std::fs::symlink_metadata(dir.path().join("a")).is_err());
        assert!(w.is_written());
    }

    #[test]
    fn paths_escaping_the_volume_are_rejected_and_nothing_is_written() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "..hidden"] {
            let dir = tempfile::tempdir().unwrap();
            let w = AtomicWriter::new(dir.path());
            let err = w.write(&payload(&[(bad, "x", 0o644)])).unwrap_err();
            assert!(
                matches!(err, AtomicWriterError::InvalidPath(_)),
                "{bad}: {err}"
            );
            assert!(!w.is_written(), "{bad}");
        }
        assert!(validate_path("..").is_err());
        assert!(validate_path("a/b..c").is_ok());
    }
}
