//! hostPath: a node path mounted as it is, after upstream's `type` check
//! (`DirectoryOrCreate` and `FileOrCreate` create what is missing).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use k8s_openapi::api::core::v1::HostPathVolumeSource;

use super::PluginError;

/// Checks (and for the `*OrCreate` types creates) `source.path` by type,
/// with upstream's messages, e.g. `hostPath type check failed: /x is not a
/// directory`.
pub fn set_up(source: &HostPathVolumeSource) -> Result<(), PluginError> {
    let path = Path::new(&source.path);
    let type_ = source.type_.as_deref().unwrap_or("");
    let meta = std::fs::metadata(path).ok();
    let is = |f: fn(&std::fs::FileType) -> bool| meta.as_ref().is_some_and(|m| f(&m.file_type()));
    let failed = |what: &str| {
        Err(PluginError::HostPathType(format!(
            "hostPath type check failed: {} is not {what}",
            source.path
        )))
    };
    let io = |step: &'static str| {
        move |source: std::io::Error| PluginError::Io {
            step,
            path: path.to_path_buf(),
            source,
        }
    };
    match type_ {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_none() => {
            std::fs::create_dir_all(path).map_err(io("creating"))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                .map_err(io("setting the mode of"))
        }
        "DirectoryOrCreate" | "Directory" if is(|t| t.is_dir()) => Ok(()),
        "DirectoryOrCreate" | "Directory" => failed("a directory"),
        "FileOrCreate" if meta.is_none() => {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(io("creating"))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
                .map_err(io("setting the mode of"))
        }
        "FileOrCreate" | "File" if is(|t| t.is_file()) => Ok(()),
        "FileOrCreate" | "File" => failed("a file"),
        "Socket" if is(|t| t.is_socket()) => Ok(()),
        "Socket" => failed("a socket file"),
        "CharDevice" if is(|t| t.is_char_device()) => Ok(()),
        "CharDevice" => failed("a character device"),
        "BlockDevice" if is(|t| t.is_block_device()) => Ok(()),
        "BlockDevice" => failed("a block device"),
        other => Err(PluginError::HostPathType(format!(
            "{other} is an invalid volume type"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(path: &Path, type_: &str) -> HostPathVolumeSource {
        HostPathVolumeSource {
            path: path.display().to_string(),
            type_: (!type_.is_empty()).then(|| type_.to_string()),
        }
    }

    #[test]
    fn types_check_and_create() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let missing = d.path().join("missing");

        set_up(&src(d.path(), "Directory")).unwrap();
        set_up(&src(&file, "File")).unwrap();
        set_up(&src(&missing, "")).unwrap();
        assert_eq!(
            set_up(&src(&file, "Directory")).unwrap_err().to_string(),
            format!(
                "hostPath type check failed: {} is not a directory",
                file.display()
            )
        );
        assert_eq!(
            set_up(&src(d.path(), "File")).unwrap_err().to_string(),
            format!(
                "hostPath type check failed: {} is not a file",
                d.path().display()
            )
        );
        assert_eq!(
            set_up(&src(&missing, "Directory")).unwrap_err().to_string(),
            format!(
                "hostPath type check failed: {} is not a directory",
                missing.display()
            )
        );
        assert!(set_up(&src(&file, "Socket"))
            .unwrap_err()
            .to_string()
            .ends_with("is not a socket file"));
        assert!(set_up(&src(&file, "CharDevice"))
            .unwrap_err()
            .to_string()
            .ends_with("is not a character device"));
        set_up(&src(Path::new("/dev/null"), "CharDevice")).unwrap();
        assert_eq!(
            set_up(&src(&file, "Weird")).unwrap_err().to_string(),
            "Weird is an invalid volume type"
        );

        let made_dir = d.path().join("a/b");
        set_up(&src(&made_dir, "DirectoryOrCreate")).unwrap();
        assert!(made_dir.is_dir());
        let made_file = d.path().join("new-file");
        set_up(&src(&made_file, "FileOrCreate")).unwrap();
        assert!(made_file.is_file());
        // An existing path of the wrong kind is not replaced.
        assert!(set_up(&src(&file, "DirectoryOrCreate")).is_err());
        assert!(set_up(&src(d.path(), "FileOrCreate")).is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    }
}
