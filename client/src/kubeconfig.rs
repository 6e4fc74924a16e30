//! Kubeconfig files as kubectl, kubeadm and `deploy/pki.sh` write them
//! (YAML or JSON): the current context's server URL, CA and client
//! credentials, embedded (`*-data`, base64) or as file paths relative to the
//! kubeconfig. Entry point: [`Kubeconfig::load`].

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

/// Why a kubeconfig could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {what}")]
    Missing { path: PathBuf, what: String },
    #[error("{path}: {field} is not valid base64: {source}")]
    Base64 {
        path: PathBuf,
        field: &'static str,
        #[source]
        source: base64::DecodeError,
    },
}

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    clusters: Vec<Named<ClusterEntry>>,
    #[serde(default)]
    users: Vec<Named<UserEntry>>,
    #[serde(default)]
    contexts: Vec<Named<ContextEntry>>,
    #[serde(rename = "current-context", default)]
    current_context: String,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    value: T,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterEntry {
    server: String,
    certificate_authority_data: Option<String>,
    certificate_authority: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UserEntry {
    client_certificate_data: Option<String>,
    client_key_data: Option<String>,
    client_certificate: Option<PathBuf>,
    client_key: Option<PathBuf>,
    token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ContextEntry {
    cluster: String,
    user: String,
}

/// What a client needs from a kubeconfig's current context.
#[derive(Debug, Clone, Default)]
pub struct Kubeconfig {
    /// `https://host:port`.
    pub server: String,
    /// PEM of the cluster CA.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM of the client certificate and its key.
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    /// A bearer token.
    pub token: Option<String>,
}

impl Kubeconfig {
    /// Reads the current context of the kubeconfig at `path`.
    pub fn load(path: &Path) -> Result<Kubeconfig, KubeconfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| KubeconfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: File = serde_saphyr::from_str(&text).map_err(|e| KubeconfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let missing = |what: String| KubeconfigError::Missing {
            path: path.to_path_buf(),
            what,
        };
        let context = file
            .contexts
            .iter()
            .find(|c| c.name == file.current_context)
            .ok_or_else(|| missing(format!("context {:?} not found", file.current_context)))?;
        let cluster = file
            .clusters
            .iter()
            .find(|c| c.name == context.value.cluster)
            .ok_or_else(|| missing(format!("cluster {:?} not found", context.value.cluster)))?;
        let user = file
            .users
            .iter()
            .find(|u| u.name == context.value.user)
            .map(|u| &u.value);
        let dir = path.parent().unwrap_or(Path::new("."));
        let data = |field: &'static str,
                    inline: &Option<String>,
                    file: &Option<PathBuf>|
         -> Result<Option<Vec<u8>>, KubeconfigError> {
            if let Some(b64) = inline {
                return base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map(Some)
                    .map_err(|source| KubeconfigError::Base64 {
                        path: path.to_path_buf(),
                        field,
                        source,
                    });
            }
            match file {
                Some(f) => {
                    let full = dir.join(f);
                    std::fs::read(&full)
                        .map(Some)
                        .map_err(|source| KubeconfigError::Read { path: full, source })
                }
                None => Ok(None),
            }
        };
        let c = &cluster.value;
        if c.server.is_empty() {
            return Err(missing(format!("cluster {:?} has no server", cluster.name)));
        }
        let mut config = Kubeconfig {
            server: c.server.clone(),
            ca_pem: data(
                "certificate-authority-data",
                &c.certificate_authority_data,
                &c.certificate_authority,
            )?,
            ..Default::default()
        };
        if let Some(u) = user {
            config.client_cert_pem = data(
                "client-certificate-data",
                &u.client_certificate_data,
                &u.client_certificate,
            )?;
            config.client_key_pem = data("client-key-data", &u.client_key_data, &u.client_key)?;
            config.token = u.token.clone();
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_current_context_from_yaml_with_embedded_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.conf");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n    server: https://10.0.0.1:6443\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: admin\n  name: admin@kubernetes\ncurrent-context: admin@kubernetes\nusers:\n- name: admin\n  user:\n    client-certificate: admin.crt\n    client-key-data: S0VZ\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("admin.crt"), "CERT").unwrap();
        let k = Kubeconfig::load(&path).unwrap();
        assert_eq!(k.server, "https://10.0.0.1:6443");
        assert_eq!(k.ca_pem.as_deref(), Some(&b"CA"[..]));
        assert_eq!(k.client_cert_pem.as_deref(), Some(&b"CERT"[..]));
        assert_eq!(k.client_key_pem.as_deref(), Some(&b"KEY"[..]));
    }

    #[test]
    fn a_missing_context_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        std::fs::write(&path, "{\"current-context\": \"nope\"}").unwrap();
        let e = Kubeconfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("context \"nope\" not found"), "{e}");
    }
}
