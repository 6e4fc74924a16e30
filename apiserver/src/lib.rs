//! kube-apiserver: the Kubernetes REST API that kubectl uses and the gRPC API
//! the components use, over one registry stored in etcd-lite.
//! Entry point: [`run`], which tests call with a listener on port 0.

pub mod admission;
pub mod auth;
pub mod codec;
pub mod config;
pub mod discovery;
pub mod error;
pub mod grpc;
pub mod kubelet;
pub mod openapi;
pub mod pki;
pub mod portforward;
pub mod protobuf;
pub mod registry;
pub mod rest;
pub mod server;
pub mod serviceaccount;
pub mod storage;
pub mod table;
pub mod tls;
pub mod watch_cache;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use tokio::net::TcpListener;

use config::Flags;
use registry::allocator::{parse_port_range, Ipv4Cidr};
use registry::{Registry, ServiceAllocator};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid value for --{flag}: {message}")]
    Flag { flag: &'static str, message: String },
    #[error("connecting to etcd at {endpoints}: {source}")]
    Etcd {
        endpoints: String,
        source: storage::StorageError,
    },
    #[error("bootstrapping the system namespaces and the kubernetes Service: {0}")]
    Bootstrap(error::ApiError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error(transparent)]
    ServiceAccountKeys(#[from] serviceaccount::KeyFileError),
    #[error(transparent)]
    KubeletClient(#[from] kubelet::KubeletClientError),
}

/// The address other members of the cluster reach this server at.
pub fn advertise_address(flags: &Flags) -> IpAddr {
    if let Some(a) = flags.advertise_address {
        return a;
    }
    if !flags.bind_address.is_unspecified() {
        return flags.bind_address;
    }
    // The address of the interface holding the default route; connecting a
    // UDP socket sends nothing.
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("10.255.255.255:1")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Runs the apiserver on `listener` until `shutdown` resolves.
pub async fn run(
    flags: Flags,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let range =
        Ipv4Cidr::parse(&flags.service_cluster_ip_range).map_err(|message| RunError::Flag {
            flag: "service-cluster-ip-range",
            message,
        })?;
    let ports =
        parse_port_range(&flags.service_node_port_range).map_err(|message| RunError::Flag {
            flag: "service-node-port-range",
            message,
        })?;
    let services = ServiceAllocator { range, ports };
    let service_accounts = serviceaccount::ServiceAccountTokens::from_flags(
        &flags.service_account_issuer,
        flags.service_account_signing_key_file.as_deref(),
        &flags.service_account_key_file,
        &flags.api_audiences,
    )?;
    let storage = storage::Storage::connect(&flags.etcd_servers)
        .await
        .map_err(|source| RunError::Etcd {
            endpoints: flags.etcd_servers.join(","),
            source,
        })?;
    let registry = Registry::start(storage, services.clone(), flags.default_watch_cache_size)
        .await
        .map_err(RunError::Bootstrap)?;
    let advertise = advertise_address(&flags);
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(flags.secure_port);
    registry
        .bootstrap(advertise, port)
        .await
        .map_err(RunError::Bootstrap)?;
    let tls_config = tls::server_config(&tls::TlsOptions {
        cert_file: flags.tls_cert_file.clone(),
        key_file: flags.tls_private_key_file.clone(),
        cert_dir: flags.cert_dir.clone(),
        client_ca_file: flags.client_ca_file.clone(),
        alternate_ips: vec![advertise, IpAddr::V4(services.first_ip())],
        alternate_dns: Vec::new(),
    })?;
    let authenticator =
        auth::Authenticator::new(flags.token_auth_file.as_deref(), flags.anonymous_auth)?;
    let state = Arc::new(rest::AppState {
        registry,
        authenticator,
        service_accounts: Arc::new(service_accounts),
        openapi: openapi::OpenApi::build(),
        max_request_bytes: flags.max_request_bytes,
        server_address: format!("{advertise}:{port}"),
        kubelets: kubelet::KubeletClient::new(&kubelet::KubeletClientOptions {
            client_certificate: flags.kubelet_client_certificate.clone(),
            client_key: flags.kubelet_client_key.clone(),
            certificate_authority: flags.kubelet_certificate_authority.clone(),
        })?,
    });
    let app = rest::router(state);
    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving securely");
    server::serve(listener, tls_config, app, shutdown).await;
    Ok(())
}
