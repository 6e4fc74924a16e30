//! The apiserver's flags, named as upstream's `kube-apiserver` names them,
//! and their validation into a [`Config`].

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::Parser;

/// Command-line flags (`kube-apiserver -h` lists them all).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kube-apiserver",
    version,
    about = "The Kubernetes API server validates and configures data for the api objects \
             (pods, services, deployments, ...) and serves the REST API that kubectl uses \
             and the gRPC API the other components use."
)]
pub struct Flags {
    /// List of etcd servers to connect with (scheme://ip:port), comma separated.
    #[arg(long = "etcd-servers", value_delimiter = ',', required = true)]
    pub etcd_servers: Vec<String>,

    /// The port on which to serve HTTPS with authentication and authorization.
    #[arg(long = "secure-port", default_value_t = 6443)]
    pub secure_port: u16,

    /// The IP address on which to listen for the --secure-port port.
    #[arg(long = "bind-address", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub bind_address: IpAddr,

    /// The IP address on which to advertise the apiserver to members of the
    /// cluster (the `kubernetes` Service's endpoint). Defaults to --bind-address,
    /// or the host's first non-loopback address when that is unspecified.
    #[arg(long = "advertise-address")]
    pub advertise_address: Option<IpAddr>,

    /// A CIDR notation IP range from which to assign service cluster IPs.
    #[arg(long = "service-cluster-ip-range", default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,

    /// A port range to reserve for services with NodePort visibility (inclusive).
    #[arg(long = "service-node-port-range", default_value = "30000-32767")]
    pub service_node_port_range: String,

    /// File containing the default x509 certificate for HTTPS. If neither this
    /// nor --tls-private-key-file is given, a self-signed certificate and key
    /// are generated for the public address and saved to --cert-dir.
    #[arg(long = "tls-cert-file")]
    pub tls_cert_file: Option<PathBuf>,

    /// File containing the default x509 private key matching --tls-cert-file.
    #[arg(long = "tls-private-key-file")]
    pub tls_private_key_file: Option<PathBuf>,

    /// The directory where the TLS certs are located. If --tls-cert-file and
    /// --tls-private-key-file are provided, this flag will be ignored.
    #[arg(long = "cert-dir", default_value = "/var/run/kubernetes")]
    pub cert_dir: PathBuf,

    /// If set, any request presenting a client certificate signed by one of the
    /// authorities in the client-ca-file is authenticated with an identity
    /// corresponding to the CommonName of the client certificate.
    #[arg(long = "client-ca-file")]
    pub client_ca_file: Option<PathBuf>,

    /// If set, the file that will be used to secure the secure port of the API
    /// server via token authentication (CSV: token,user,uid,"group1,group2").
    #[arg(long = "token-auth-file")]
    pub token_auth_file: Option<PathBuf>,

    /// Enables anonymous requests to the secure port of the API server.
    /// Anonymous requests have a username of system:anonymous and a group
    /// name of system:unauthenticated; they reach only health and discovery.
    #[arg(long = "anonymous-auth", default_value_t = true, action = clap::ArgAction::Set)]
    pub anonymous_auth: bool,

    /// Path to a client cert file for TLS to the kubelets.
    #[arg(long = "kubelet-client-certificate")]
    pub kubelet_client_certificate: Option<PathBuf>,

    /// Path to a client key file for TLS to the kubelets.
    #[arg(long = "kubelet-client-key")]
    pub kubelet_client_key: Option<PathBuf>,

    /// Path to a cert file for the certificate authority of the kubelets'
    /// serving certificates; without it they are not verified.
    #[arg(long = "kubelet-certificate-authority")]
    pub kubelet_certificate_authority: Option<PathBuf>,

    /// The maximum size of a request body, in bytes.
    #[arg(long = "max-request-bytes", default_value_t = 3 * 1024 * 1024, hide = true)]
    pub max_request_bytes: usize,

    /// Number of recent events each resource's watch cache keeps for watches
    /// that resume from a resourceVersion.
    #[arg(long = "default-watch-cache-size", default_value_t = 1000)]
    pub default_watch_cache_size: usize,

    /// Identifier of the service account token issuer (the `iss` claim of
    /// issued tokens). Repeatable: the first signs, all are accepted.
    #[arg(long = "service-account-issuer")]
    pub service_account_issuer: Vec<String>,

    /// Path to the file that contains the current private key of the
    /// service account token issuer (RSA, PEM). Without it the TokenRequest
    /// API (`serviceaccounts/token`) is not served.
    #[arg(long = "service-account-signing-key-file")]
    pub service_account_signing_key_file: Option<PathBuf>,

    /// File containing PEM-encoded RSA public (or private) keys used to
    /// verify service account tokens. Repeatable. Defaults to the public half
    /// of --service-account-signing-key-file.
    #[arg(long = "service-account-key-file")]
    pub service_account_key_file: Vec<PathBuf>,

    /// Identifiers of the API. Service account tokens must carry one of them
    /// as audience. Defaults to --service-account-issuer.
    #[arg(long = "api-audiences", value_delimiter = ',')]
    pub api_audiences: Vec<String>,
}
