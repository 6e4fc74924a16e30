//! The apiserver's client of the kubelets' streaming API
//! (`proto/kubelet.proto`): finds the node a pod runs on, dials its kubelet
//! port (the Node's InternalIP and `daemonEndpoints.kubeletEndpoint.Port`)
//! over TLS with `--kubelet-client-certificate`/`--kubelet-client-key`, and
//! verifies the kubelet against `--kubelet-certificate-authority` when given
//! (upstream skips verification without it). Entry point: [`KubeletClient`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use ferrokube_proto::kubelet::kubelet_client::KubeletClient as GrpcClient;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde_json::Value;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::ApiError;
use crate::registry::Registry;

/// The kubelet port when a Node does not advertise one.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

/// The `--kubelet-*` flags.
#[derive(Debug, Clone, Default)]
pub struct KubeletClientOptions {
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub certificate_authority: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeletClientError {
    #[error("--kubelet-client-certificate and --kubelet-client-key must be given together")]
    IncompletePair,
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no usable {what}")]
    NotPem { path: PathBuf, what: &'static str },
    #[error("building the kubelet client TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Dials kubelets; cheap to clone.
#[derive(Clone)]
pub struct KubeletClient {
    tls: Arc<ClientConfig>,
}

/// Where a pod's kubelet is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletLocation {
    pub node: String,
    pub address: SocketAddr,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, KubeletClientError> {
    std::fs::read(path).map_err(|source| KubeletClientError::Read {
        path: path.clone(),
        source,
    })
}

impl KubeletClient {
    pub fn new(opts: &KubeletClientOptions) -> Result<KubeletClient, KubeletClientError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match &opts.certificate_authority {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                let pem = read(path)?;
                for cert in rustls_pemfile::certs(&mut &pem[..]).flatten() {
                    roots.add(cert)?;
                }
                if roots.is_empty() {
                    return Err(KubeletClientError::NotPem {
                        path: path.clone(),
                        what: "CERTIFICATE",
                    });
                }
                builder.with_root_certificates(roots)
            }
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SkipVerify(provider))),
        };
        let mut config = match (&opts.client_certificate, &opts.client_key) {
            (Some(cert), Some(key)) => {
                let certs: Vec<_> = rustls_pemfile::certs(&mut &read(cert)?[..])
                    .flatten()
                    .collect();
                if certs.is_empty() {
                    return Err(KubeletClientError::NotPem {
                        path: cert.clone(),
                        what: "CERTIFICATE",
                    });
                }
                let key_der = rustls_pemfile::private_key(&mut &read(key)?[..])
                    .ok()
                    .flatten()
                    .ok_or_else(|| KubeletClientError::NotPem {
                        path: key.clone(),
                        what: "PRIVATE KEY",
                    })?;
                builder.with_client_auth_cert(certs, key_der)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(KubeletClientError::IncompletePair),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(KubeletClient {
            tls: Arc::new(config),
        })
    }

    /// The pod (typed) and its kubelet; 400 for a pod not yet scheduled,
    /// as upstream.
    pub async fn locate(
        &self,
        registry: &Registry,
        namespace: &str,
        pod: &str,
    ) -> Result<(Pod, KubeletLocation), ApiError> {
        let pods = ferrokube_api::resources::find("", "v1", "pods").expect("served");
        let nodes = ferrokube_api::resources::find("", "v1", "nodes").expect("served");
        let obj = registry.get(pods, Some(namespace), pod).await?;
        let typed: Pod = serde_json::from_value(obj)
            .map_err(|e| ApiError::internal(format!("stored pod {namespace}/{pod}: {e}")))?;
        let node_name = typed
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(format!("pod {pod} does not have a host assigned"))
            })?;
        let node = registry.get(nodes, None, &node_name).await?;
        let address = kubelet_address(&node).ok_or_else(|| {
            ApiError::internal(format!("node {node_name} has no InternalIP address"))
        })?;
        Ok((
            typed,
            KubeletLocation {
                node: node_name,
                address,
            },
        ))
    }

    /// A gRPC client of the kubelet at `location` (connects on first use).
    pub fn client(&self, location: &KubeletLocation) -> Result<GrpcClient<Channel>, ApiError> {
        let address = location.address;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone());
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| ApiError::internal(format!("kubelet address {address}: {e}")))?;
        let channel = endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let tls = tls.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(address).await?;
                let _ = tcp.set_nodelay(true);
                let stream = tls
                    .connect(ServerName::IpAddress(address.ip().into()), tcp)
                    .await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }));
        Ok(GrpcClient::new(channel).max_decoding_message_size(16 * 1024 * 1024))
    }
}

/// The Node's InternalIP and advertised kubelet port.
pub fn kubelet_address(node: &Value) -> Option<SocketAddr> {
    let addresses = node.pointer("/status/addresses")?.as_array()?;
    let ip: IpAddr = addresses
        .iter()
        .find(|a| a["type"] == "InternalIP")?
        .get("address")?
        .as_str()?
        .parse()
        .ok()?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0 && *p <= u64::from(u16::MAX))
        .map_or(DEFAULT_KUBELET_PORT, |p| p as u16);
    Some(SocketAddr::new(ip, port))
}

/// A kubelet error as the API error upstream answers with: the kubelet's
/// refusals (wrong container, not started yet) are 400 Bad Request with the
/// kubelet's message; an unreachable kubelet is a 500.
pub fn api_error(location: &KubeletLocation, status: &tonic::Status) -> ApiError {
    use tonic::Code;
    match status.code() {
        Code::InvalidArgument | Code::FailedPrecondition | Code::NotFound => {
            ApiError::bad_request(status.message())
        }
        Code::Unimplemented => ApiError::bad_request(status.message()),
        _ => ApiError::internal(format!(
            "error talking to the kubelet of node {} at {}: {}",
            location.node,
            location.address,
            status.message()
        )),
    }
}

/// Upstream's behaviour without `--kubelet-certificate-authority`: the
/// kubelet's serving certificate (often self-signed) is not verified; the
/// handshake signature still is.
#[derive(Debug)]
struct SkipVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_kubelet_is_at_the_internal_ip_and_advertised_port() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10260}},
        }});
        assert_eq!(
            kubelet_address(&node),
            Some("10.0.0.5:10260".parse().unwrap())
        );
        let no_port =
            json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.5"}]}});
        assert_eq!(
            kubelet_address(&no_port),
            Some("10.0.0.5:10250".parse().unwrap())
        );
        assert_eq!(kubelet_address(&json!({"status": {}})), None);
    }

    #[test]
    fn half_a_client_pair_is_refused() {
        let err = KubeletClient::new(&KubeletClientOptions {
            client_certificate: Some("/x.crt".into()),
            ..Default::default()
        })
        .err()
        .unwrap();
        assert!(matches!(err, KubeletClientError::IncompletePair), "{err}");
    }
}
