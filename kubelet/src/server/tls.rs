//! The kubelet port's TLS: `--tls-cert-file`/`--tls-private-key-file`, or
//! else a self-signed pair in `<root-dir>/pki/kubelet.crt|.key` (generated
//! once, reused after restarts, as upstream); client certificates are
//! required when `authentication.x509.clientCAFile` is set.
//! Entry point: [`server_tls_config`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use super::ServerSettings;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-cert-file and --tls-private-key-file must be given together")]
    IncompletePair,
    #[error("reading {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating the self-signed kubelet certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// The serving pair to use: the flags' files, or the self-signed pair
/// under `<root-dir>/pki`, generated for the node's name and IP if absent.
pub fn serving_pair(
    settings: &ServerSettings,
    root_dir: &Path,
    node_name: &str,
    node_ip: IpAddr,
) -> Result<(PathBuf, PathBuf), TlsError> {
    match (&settings.tls_cert_file, &settings.tls_private_key_file) {
        (Some(c), Some(k)) => return Ok((c.clone(), k.clone())),
        (None, None) => {}
        _ => return Err(TlsError::IncompletePair),
    }
    let dir = root_dir.join("pki");
    let (cert, key) = (dir.join("kubelet.crt"), dir.join("kubelet.key"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Write { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(write_err(&dir))?;
    let mut params = rcgen::CertificateParams::new(vec![node_name.to_string()])?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(node_ip));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Upstream names the self-signed certificate `<host>@<unix seconds>`.
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{node_name}@{now}"));
    let pair = rcgen::KeyPair::generate()?;
    let issued = params.self_signed(&pair)?;
    std::fs::write(&cert, issued.pem()).map_err(write_err(&cert))?;
    write_private(&key, &pair.serialize_pem()).map_err(write_err(&key))?;
    tracing::info!(cert = %cert.display(), "generated a self-signed kubelet serving certificate");
    Ok((cert, key))
}

fn write_private(path: &Path, pem: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(pem.as_bytes())
}

/// The TLS configuration of the kubelet port.
pub fn server_tls_config(
    settings: &ServerSettings,
    root_dir: &Path,
    node_name: &str,
    node_ip: IpAddr,
) -> Result<ServerTlsConfig, TlsError> {
    let (cert, key) = serving_pair(settings, root_dir, node_name, node_ip)?;
    let identity = Identity::from_pem(
        read(&cert, "certificate file")?,
        read(&key, "private key file")?,
    );
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &settings.client_ca_file {
        config = config
            .client_ca_root(Certificate::from_pem(read(ca, "client CA file")?))
            .client_auth_optional(false);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pair_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let settings = ServerSettings::default();
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let (cert, key) = serving_pair(&settings, dir.path(), "n1", ip).unwrap();
        assert_eq!(cert, dir.path().join("pki/kubelet.crt"));
        assert_eq!(key, dir.path().join("pki/kubelet.key"));
        let first = std::fs::read(&cert).unwrap();
        serving_pair(&settings, dir.path(), "n1", ip).unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), first);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn half_a_pair_is_refused() {
        let settings = ServerSettings {
            tls_cert_file: Some("/x.crt".into()),
            ..Default::default()
        };
        let err =
            serving_pair(&settings, Path::new("/tmp"), "n", [127, 0, 0, 1].into()).unwrap_err();
        assert!(matches!(err, TlsError::IncompletePair), "{err}");
    }
}
