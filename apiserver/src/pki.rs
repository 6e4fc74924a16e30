//! Certificates for tests and tooling: a cluster CA ([`CertificateAuthority`])
//! that issues serving and client certificates, PEM files, and kubeconfigs
//! that real `kubectl` reads ([`write_kubeconfig`]).
//!
//! Operators get the same layout from `deploy/pki.sh` (openssl); this module
//! exists so tests can build a cluster's PKI in memory without a shell.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// What went wrong while making or saving certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating a key pair: {0}")]
    GenerateKey(#[source] rcgen::Error),
    #[error("building the certificate for {subject:?}: {source}")]
    BuildCertificate {
        subject: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("{name:?} is not a valid DNS name for a subject alternative name: {source}")]
    InvalidDnsName {
        name: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("a certificate subject can carry at most 2 organizations (groups) here, got {0}")]
    TooManyOrganizations(usize),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A certificate with its private key, both PEM-encoded (the key as PKCS#8).
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl IssuedCert {
    fn new(cert: rcgen::Certificate, key: &KeyPair) -> Self {
        IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Writes `cert_path` (0644) and `key_path` (0600), creating parent directories.
    pub fn write(&self, cert_path: &Path, key_path: &Path) -> Result<(), PkiError> {
        write_pem(cert_path, &self.cert_pem, false)?;
        write_pem(key_path, &self.key_pem, true)
    }
}

/// A self-signed certificate authority, like kubeadm's `pki/ca.{crt,key}`
/// (CN `kubernetes`), able to issue leaf certificates.
pub struct CertificateAuthority {
    cert: IssuedCert,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_pem", &self.cert.cert_pem)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new CA whose subject is `CN=<common_name>`, valid for ten years.
    pub fn new(common_name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(PkiError::GenerateKey)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(common_name, &[])?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        set_validity(&mut params, 3650);
        let cert = params
            .self_signed(&key)
            .map_err(|source| PkiError::BuildCertificate {
                subject: common_name.to_string(),
                source,
            })?;
        let cert = IssuedCert::new(cert, &key);
        Ok(CertificateAuthority {
            cert,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate (PEM), what clients put in `certificate-authority-data`
    /// and the apiserver in `--client-ca-file`.
    pub fn cert_pem(&self) -> &str {
        &self.cert.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.cert.key_pem
    }

    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.cert_der()
    }

    /// Writes `ca.crt` and `ca.key` style files.
    pub fn write(&self, cert_path: &Path, key_path: &Path) -> Result<(), PkiError> {
        self.cert.write(cert_path, key_path)
    }

    /// A serving certificate (`serverAuth`) for `common_name` whose SANs are
    /// `ips` and `dns_names`, valid for one year.
    pub fn issue_serving(
        &self,
        common_name: &str,
        ips: &[IpAddr],
        dns_names: &[&str],
    ) -> Result<IssuedCert, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(common_name, &[])?;
        params.subject_alt_names = subject_alt_names(ips, dns_names)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, common_name)
    }

    /// A client certificate (`clientAuth`) with subject `CN=<common_name>` and
    /// one `O=` per organization: the apiserver reads them as user name and groups.
    pub fn issue_client(
        &self,
        common_name: &str,
        organizations: &[&str],
    ) -> Result<IssuedCert, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(common_name, organizations)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, common_name)
    }

    fn issue(
        &self,
        mut params: CertificateParams,
        common_name: &str,
    ) -> Result<IssuedCert, PkiError> {
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, 365);
        let key = KeyPair::generate().map_err(PkiError::GenerateKey)?;
        let cert =
            params
                .signed_by(&key, &self.issuer)
                .map_err(|source| PkiError::BuildCertificate {
                    subject: common_name.to_string(),
                    source,
                })?;
        Ok(IssuedCert::new(cert, &key))
    }
}

/// A self-signed serving certificate with no CA behind it, as the apiserver
/// makes for itself when given no `--tls-cert-file`. Clients trust it by
/// using the certificate itself as their CA.
pub fn self_signed_serving(
    common_name: &str,
    ips: &[IpAddr],
    dns_names: &[&str],
) -> Result<IssuedCert, PkiError> {
    let key = KeyPair::generate().map_err(PkiError::GenerateKey)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(common_name, &[])?;
    params.subject_alt_names = subject_alt_names(ips, dns_names)?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    set_validity(&mut params, 365);
    let cert = params
        .self_signed(&key)
        .map_err(|source| PkiError::BuildCertificate {
            subject: common_name.to_string(),
            source,
        })?;
    Ok(IssuedCert::new(cert, &key))
}

/// `O=...,CN=...` in kubeadm's order. rcgen keys a subject by attribute type,
/// so a second `O` goes in under the same OID spelled as a custom type; a
/// third cannot be expressed and is refused rather than silently dropped.
fn subject(common_name: &str, organizations: &[&str]) -> Result<DistinguishedName, PkiError> {
    const ORGANIZATION_OID: [u64; 4] = [2, 5, 4, 10];
    let mut dn = DistinguishedName::new();
    match organizations {
        [] => {}
        [o] => dn.push(DnType::OrganizationName, *o),
        [o1, o2] => {
            dn.push(DnType::OrganizationName, *o1);
            dn.push(DnType::CustomDnType(ORGANIZATION_OID.to_vec()), *o2);
        }
        more => return Err(PkiError::TooManyOrganizations(more.len())),
    }
    dn.push(DnType::CommonName, common_name);
    Ok(dn)
}

fn subject_alt_names(ips: &[IpAddr], dns_names: &[&str]) -> Result<Vec<SanType>, PkiError> {
    let mut sans: Vec<SanType> = Vec::with_capacity(ips.len() + dns_names.len());
    for name in dns_names {
        let ia5 = (*name)
            .try_into()
            .map_err(|source| PkiError::InvalidDnsName {
                name: name.to_string(),
                source,
            })?;
        let san = SanType::DnsName(ia5);
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    for ip in ips {
        let san = SanType::IpAddress(*ip);
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

/// Valid from an hour ago (tolerating clock skew between nodes) for `days`.
fn set_validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

/// Writes a PEM file, creating parent directories; `private` files get mode
/// 0600 from the moment they exist, so a key is never world-readable.
pub fn write_pem(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options.open(path).map_err(err)?;
    file.write_all(contents.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)
}

/// Writes a kubeconfig with one cluster, one user and the context
/// `<user_name>@<cluster_name>` (made current), with the CA, client
/// certificate and key embedded as base64 `*-data` fields, as
/// `kubectl config set-* --embed-certs` and kubeadm write them.
pub fn write_kubeconfig(
    path: &Path,
    server_url: &str,
    ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
    user_name: &str,
    cluster_name: &str,
) -> Result<(), PkiError> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let context = format!("{user_name}@{cluster_name}");
    // JSON is YAML, and serde_json quotes every string correctly.
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{
            "name": cluster_name,
            "cluster": {
                "server": server_url,
                "certificate-authority-data": b64(ca_pem),
            },
        }],
        "users": [{
            "name": user_name,
            "user": {
                "client-certificate-data": b64(client_cert_pem),
                "client-key-data": b64(client_key_pem),
            },
        }],
        "contexts": [{
            "name": context,
            "context": { "cluster": cluster_name, "user": user_name },
        }],
        "current-context": context,
    });
    let text = serde_json::to_string_pretty(&config).expect("a JSON value always serializes");
    // The file holds a private key.
    write_pem(path, &(text + "\n"), true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    #[test]
    fn client_cert_carries_user_as_cn_and_groups_as_o() {
        let ca = CertificateAuthority::new("kubernetes").unwrap();
        let admin = ca
            .issue_client("kubernetes-admin", &["system:masters", "devs"])
            .unwrap();
        let der = admin.cert_der();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        let o: Vec<_> = cert
            .subject()
            .iter_organization()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(cn, ["kubernetes-admin"]);
        assert_eq!(o, ["system:masters", "devs"]);
        assert!(matches!(
            ca.issue_client("x", &["a", "b", "c"]),
            Err(PkiError::TooManyOrganizations(3))
        ));
        assert_eq!(
            cert.issuer().to_string(),
            "CN=kubernetes",
            "issued by the CA"
        );
    }

    #[test]
    fn serving_cert_lists_ips_and_dns_names() {
        let ca = CertificateAuthority::new("kubernetes").unwrap();
        let ip: IpAddr = "10.96.0.1".parse().unwrap();
        let cert = ca
            .issue_serving("kube-apiserver", &[ip], &["kubernetes", "localhost"])
            .unwrap();
        let der = cert.cert_der();
        let (_, parsed) = X509Certificate::from_der(&der).unwrap();
        let san = parsed.subject_alternative_name().unwrap().unwrap();
        let names = &san.value.general_names;
        assert!(
            names.contains(&GeneralName::DNSName("kubernetes")),
            "{names:?}"
        );
        assert!(
            names.contains(&GeneralName::IPAddress(&[10, 96, 0, 1])),
            "{names:?}"
        );
    }

    #[test]
    fn kubeconfig_embeds_base64_data_and_sets_current_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.conf");
        write_kubeconfig(
            &path,
            "https://127.0.0.1:6443",
            "CA",
            "CERT",
            "KEY",
            "kubernetes-admin",
            "kubernetes",
        )
        .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["current-context"], "kubernetes-admin@kubernetes");
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
        assert_eq!(v["users"][0]["user"]["client-key-data"], "S0VZ");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "kubeconfig holds a private key");
    }
}
