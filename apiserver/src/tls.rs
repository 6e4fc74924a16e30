//! The secure port's TLS: [`server_config`] turns the `--tls-*`, `--cert-dir`
//! and `--client-ca-file` flags into one rustls `ServerConfig` (ALPN `h2` and
//! `http/1.1`, so REST and gRPC share the port), and [`peer_certificate`]
//! hands the verified client certificate to authentication.

use std::io::BufReader;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::pki;

/// File names of the generated serving pair in `--cert-dir`, as upstream.
pub const SELF_SIGNED_CERT_FILE: &str = "apiserver.crt";
pub const SELF_SIGNED_KEY_FILE: &str = "apiserver.key";

/// DNS names every apiserver certificate carries: how clients inside the
/// cluster reach it through the `kubernetes` Service.
pub const KUBERNETES_SERVICE_NAMES: [&str; 4] = [
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// Inputs for the secure port's TLS, one field per upstream flag.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// `--tls-cert-file`: PEM chain, leaf first.
    pub cert_file: Option<PathBuf>,
    /// `--tls-private-key-file`: PEM key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// `--cert-dir`: where a self-signed pair is generated (and reused) when
    /// neither file above is given.
    pub cert_dir: PathBuf,
    /// `--client-ca-file`: when set, client certificates are requested and
    /// must chain to one of these CAs; clients may still present none.
    pub client_ca_file: Option<PathBuf>,
    /// IP SANs for a generated certificate (advertise/bind address, the
    /// `kubernetes` Service's ClusterIP); 127.0.0.1 is always added.
    pub alternate_ips: Vec<IpAddr>,
    /// Extra DNS SANs for a generated certificate (e.g. the host name);
    /// `localhost` and the `kubernetes.default…` names are always added.
    pub alternate_dns: Vec<String>,
}

/// What went wrong while setting up TLS; each names the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "--tls-cert-file and --tls-private-key-file must be given together (only {given} was set)"
    )]
    IncompletePair { given: &'static str },
    #[error("reading {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path} contains no PEM-encoded {expected}")]
    NotPem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("{what} {path} is not usable: {source}")]
    Unusable {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("private key {key} does not match the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("client CA file {path} is not usable: {source}")]
    ClientCa {
        path: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    #[error("generating a self-signed serving certificate in {dir}: {source}")]
    SelfSigned {
        dir: PathBuf,
        #[source]
        source: pki::PkiError,
    },
    #[error("building the TLS configuration: {0}")]
    Config(#[source] rustls::Error),
}

/// The secure port's TLS configuration.
///
/// Serving pair: `--tls-cert-file`/`--tls-private-key-file` when given;
/// otherwise `apiserver.crt`/`apiserver.key` in `--cert-dir`, generated
/// (self-signed, no CA) on first start and reused afterwards, so clients that
/// pinned it keep working across restarts.
///
/// Client certificates: requested and verified against `--client-ca-file`
/// when given, but optional: a client without one falls through to bearer
/// tokens or anonymous. A client presenting a certificate from another CA
/// fails the handshake.
pub fn server_config(opts: &TlsOptions) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let (cert_path, key_path) = serving_pair(opts)?;
    let (certs, key) = load_pair(&cert_path, &key_path, &provider)?;

    let verifier = match &opts.client_ca_file {
        None => WebPkiClientVerifier::no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(path, "client CA file")? {
                roots.add(cert).map_err(|source| TlsError::Unusable {
                    what: "client CA file",
                    path: path.clone(),
                    source,
                })?;
            }
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|source| TlsError::ClientCa {
                    path: path.clone(),
                    source,
                })?
        }
    };

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tracing::info!(
        cert = %cert_path.display(),
        client_ca = ?opts.client_ca_file,
        "serving TLS"
    );
    Ok(Arc::new(config))
}

/// The verified leaf certificate the client presented, if any. rustls only
/// completes a handshake whose client certificate chained to the client CA,
/// so whatever this returns has been verified.
pub fn peer_certificate<IO>(
    stream: &tokio_rustls::server::TlsStream<IO>,
) -> Option<CertificateDer<'static>> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.clone().into_owned())
}

/// The cert/key paths to serve, generating the self-signed pair if needed.
fn serving_pair(opts: &TlsOptions) -> Result<(PathBuf, PathBuf), TlsError> {
    match (&opts.cert_file, &opts.key_file) {
        (Some(cert), Some(key)) => return Ok((cert.clone(), key.clone())),
        (Some(_), None) => {
            return Err(TlsError::IncompletePair {
                given: "--tls-cert-file",
            })
        }
        (None, Some(_)) => {
            return Err(TlsError::IncompletePair {
                given: "--tls-private-key-file",
            })
        }
        (None, None) => {}
    }
    let cert = opts.cert_dir.join(SELF_SIGNED_CERT_FILE);
    let key = opts.cert_dir.join(SELF_SIGNED_KEY_FILE);
    if cert.exists() && key.exists() {
        tracing::debug!(cert = %cert.display(), "reusing the self-signed serving certificate");
        return Ok((cert, key));
    }
    let generated = generate_self_signed(opts).map_err(|source| TlsError::SelfSigned {
        dir: opts.cert_dir.clone(),
        source,
    })?;
    generated
        .write(&cert, &key)
        .map_err(|source| TlsError::SelfSigned {
            dir: opts.cert_dir.clone(),
            source,
        })?;
    tracing::info!(cert = %cert.display(), "generated a self-signed serving certificate");
    Ok((cert, key))
}

fn generate_self_signed(opts: &TlsOptions) -> Result<pki::IssuedCert, pki::PkiError> {
    let mut ips = opts.alternate_ips.clone();
    ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut dns: Vec<&str> = opts.alternate_dns.iter().map(String::as_str).collect();
    dns.push("localhost");
    dns.extend(KUBERNETES_SERVICE_NAMES);
    // Upstream names the certificate `<host>@<unix seconds>`.
    let host = opts
        .alternate_ips
        .first()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "localhost".to_string());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    pki::self_signed_serving(&format!("{host}@{now}"), &ips, &dns)
}

fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs = read_certs(cert_path, "certificate file")?;
    let key = read_key(key_path)?;
    match rustls::sign::CertifiedKey::from_der(certs.clone(), key.clone_key(), provider) {
        Ok(_) => Ok((certs, key)),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        }),
        Err(source) => Err(TlsError::Unusable {
            what: "private key file",
            path: key_path.to_path_buf(),
            source,
        }),
    }
}

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Every `CERTIFICATE` block in the file; at least one.
fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(path, what)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(&bytes[..]))
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NotPem {
            what,
            path: path.to_path_buf(),
            expected: "CERTIFICATE block",
        });
    }
    Ok(certs)
}

/// The first private key block (PKCS#8, PKCS#1 `RSA` or SEC1 `EC`).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let what = "private key file";
    let bytes = read_file(path, what)?;
    rustls_pemfile::private_key(&mut BufReader::new(&bytes[..]))
        .map_err(|source| TlsError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsError::NotPem {
            what,
            path: path.to_path_buf(),
            expected: "PRIVATE KEY block",
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::CertificateAuthority;

    fn opts_in(dir: &Path) -> TlsOptions {
        TlsOptions {
            cert_dir: dir.to_path_buf(),
            ..TlsOptions::default()
        }
    }

    #[test]
    fn missing_cert_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = opts_in(dir.path());
        opts.cert_file = Some(dir.path().join("nope.crt"));
        opts.key_file = Some(dir.path().join("nope.key"));
        let err = server_config(&opts).unwrap_err().to_string();
        assert!(
            err.contains("certificate file") && err.contains("nope.crt"),
            "{err}"
        );
    }

    #[test]
    fn non_pem_cert_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("garbage.crt");
        std::fs::write(&cert, "this is not a certificate\n").unwrap();
        let mut opts = opts_in(dir.path());
        opts.cert_file = Some(cert);
        opts.key_file = Some(dir.path().join("k.key"));
        let err = server_config(&opts).unwrap_err().to_string();
        assert!(
            err.contains("garbage.crt") && err.contains("no PEM-encoded CERTIFICATE"),
            "{err}"
        );
    }

    #[test]
    fn key_of_another_certificate_is_a_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::new("kubernetes").unwrap();
        let a = ca.issue_serving("a", &[], &["localhost"]).unwrap();
        let b = ca.issue_serving("b", &[], &["localhost"]).unwrap();
        let cert = dir.path().join("a.crt");
        let key = dir.path().join("b.key");
        pki::write_pem(&cert, &a.cert_pem, false).unwrap();
        pki::write_pem(&key, &b.key_pem, true).unwrap();
        let mut opts = opts_in(dir.path());
        opts.cert_file = Some(cert);
        opts.key_file = Some(key);
        let err = server_config(&opts).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        assert!(err.to_string().contains("b.key"), "{err}");
    }

    #[test]
    fn only_one_of_cert_and_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = opts_in(dir.path());
        opts.cert_file = Some(dir.path().join("a.crt"));
        let err = server_config(&opts).unwrap_err().to_string();
        assert!(err.contains("must be given together"), "{err}");
    }

    #[test]
    fn client_ca_without_certificates_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, "").unwrap();
        let mut opts = opts_in(dir.path());
        opts.client_ca_file = Some(ca);
        let err = server_config(&opts).unwrap_err().to_string();
        assert!(
            err.contains("client CA file") && err.contains("ca.crt"),
            "{err}"
        );
    }

    #[test]
    fn alpn_offers_h2_then_http1() {
        let dir = tempfile::tempdir().unwrap();
        let config = server_config(&opts_in(dir.path())).unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
