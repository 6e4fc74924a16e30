//! `fsGroup`: a pod's volumes belong to its fsGroup, as upstream's
//! `SetVolumeOwnership` (pkg/volume/volume_linux.go) makes them.
//!
//! Every file and directory under the volume gets the group `fsGroup`; files
//! gain group read (and write, unless the volume is read-only) and
//! directories also gain group search and the setgid bit, so that what the
//! containers create there inherits the group. Symlinks change group only.
//! The volume kinds here (emptyDir, configMap, secret, downwardAPI,
//! projected) have no `fsGroupChangePolicy` upstream: the walk always runs,
//! once when an emptyDir is created and after every write of a projected
//! kind (its new files are written by the kubelet as root).

use std::fs::{self, Permissions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::PluginError;

const RW_MASK: u32 = 0o660;
/// What a read-only volume's files gain.
pub const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// Gives everything under `dir` (and `dir` itself) the group `fs_group`;
/// see the module docs for the modes.
pub fn set_volume_ownership(dir: &Path, fs_group: u32, read_only: bool) -> Result<(), PluginError> {
    change(dir, fs_group, read_only)?;
    if !fs::symlink_metadata(dir)
        .map_err(io("reading", dir))?
        .is_dir()
    {
        return Ok(());
    }
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).map_err(io("listing", &current))? {
            let path = entry.map_err(io("listing", &current))?.path();
            let is_dir = change(&path, fs_group, read_only)?;
            if is_dir {
                pending.push(path);
            }
        }
    }
    Ok(())
}

/// Changes one entry, without following a symlink; returns whether it is a directory.
fn change(path: &Path, fs_group: u32, read_only: bool) -> Result<bool, PluginError> {
    std::os::unix::fs::lchown(path, None, Some(fs_group))
        .map_err(io("changing the group of", path))?;
    let meta = fs::symlink_metadata(path).map_err(io("reading", path))?;
    if meta.file_type().is_symlink() {
        return Ok(false);
    }
    let mut mask = if read_only { RO_MASK } else { RW_MASK };
    if meta.is_dir() {
        mask |= SETGID | EXEC_MASK;
    }
    let mode = meta.mode() & 0o7777;
    if mode | mask != mode {
        fs::set_permissions(path, Permissions::from_mode(mode | mask))
            .map_err(io("setting the mode of", path))?;
    }
    Ok(meta.is_dir())
}

fn io(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PluginError {
    let path = path.to_path_buf();
    move |source| PluginError::Io { step, path, source }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn gid(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().gid()
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("sub")).unwrap();
        fs::write(d.path().join("sub/file"), "x").unwrap();
        fs::set_permissions(d.path().join("sub/file"), Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(d.path().join("sub"), Permissions::from_mode(0o700)).unwrap();
        symlink("sub/file", d.path().join("link")).unwrap();
        d
    }

    #[test]
    fn read_write_volume_gets_the_group_rw_files_and_setgid_directories() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: changing a file's group to any gid needs root");
            return;
        }
        let d = tree();
        set_volume_ownership(d.path(), 2345, false).unwrap();
        for p in ["", "sub", "sub/file", "link"] {
            assert_eq!(gid(&d.path().join(p)), 2345, "{p:?}");
        }
        assert_eq!(mode(&d.path().join("sub")), 0o2770);
        assert_eq!(mode(&d.path().join("sub/file")), 0o660);
        assert_eq!(
            mode(d.path()) & 0o2770,
            0o2770,
            "the volume root is a setgid directory the group may use"
        );
        // The link's target is what changed mode; the link itself is still a link.
        assert!(fs::symlink_metadata(d.path().join("link"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn read_only_volume_gets_group_read_only() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: changing a file's group to any gid needs root");
            return;
        }
        let d = tree();
        set_volume_ownership(d.path(), 2345, true).unwrap();
        assert_eq!(mode(&d.path().join("sub/file")), 0o640);
        assert_eq!(mode(&d.path().join("sub")), 0o2750);
        assert_eq!(gid(&d.path().join("sub/file")), 2345);
    }
}
