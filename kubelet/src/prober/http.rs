//! The httpGet probe: a GET over HTTP/1.1 (HTTPS without certificate
//! verification, as upstream); a status code in [200, 400) is success.
//! Redirects (301, 302, 303, 307, 308 with a `Location`) are followed as
//! upstream's prober follows them: to the same host name only (any port or
//! scheme), and the 10th redirect fails the probe ("stopped after 10
//! redirects"). A redirect to another host is not followed: that 3xx, like
//! any 3xx answer, counts as success with a warning ("Probe terminated
//! redirects"), which the worker records as a `ProbeWarning` event. Entry
//! point: [`probe`].

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue, ACCEPT, HOST, LOCATION, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::tcp::dial_error;
use super::ProbeResult;

/// The User-Agent upstream's prober sends (`kube-probe/<major>.<minor>`).
pub const USER_AGENT_VALUE: &str = "kube-probe/1.32";

/// Upstream's redirect limit: the request that would follow this many
/// earlier ones is not made, and the probe fails.
pub const MAX_REDIRECTS: usize = 10;

/// How much of a response body a warning quotes (upstream's limit).
const MAX_BODY: usize = 10 * 1024;

/// `HTTP` or `HTTPS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// Where and what to GET.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// Starts with `/`.
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl HttpTarget {
    pub fn url(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{scheme}://{}{}", self.authority(), self.path)
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Where a redirect's `Location` (absolute, or relative to this URL)
    /// points; the probe's headers go along, except a `Host` header when
    /// the location names a host of its own (as Go's client).
    fn redirected(&self, location: &str) -> Result<HttpTarget, String> {
        let base =
            url::Url::parse(&self.url()).map_err(|e| format!("parse {:?}: {e}", self.url()))?;
        let next = base
            .join(location)
            .map_err(|e| format!("failed to parse Location header {location:?}: {e}"))?;
        let scheme = match next.scheme() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(format!("unsupported protocol scheme {other:?}")),
        };
        let host = match next.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(format!("no Host in request URL {next}")),
        };
        let port = next
            .port_or_known_default()
            .ok_or_else(|| format!("no port in request URL {next}"))?;
        let mut path = next.path().to_string();
        if let Some(q) = next.query() {
            path.push('?');
            path.push_str(q);
        }
        let absolute = url::Url::parse(location).is_ok();
        let headers = self
            .headers
            .iter()
            .filter(|(n, _)| !(absolute && n.eq_ignore_ascii_case(HOST.as_str())))
            .cloned()
            .collect();
        Ok(HttpTarget {
            scheme,
            host,
            port,
            path,
            headers,
        })
    }
}

/// GETs the target (following redirects, see the module docs) within
/// `timeout`.
pub async fn probe(target: &HttpTarget, timeout: Duration) -> ProbeResult {
    let url = target.url();
    match tokio::time::timeout(timeout, follow(target)).await {
        Err(_) => ProbeResult::Failure(format!(
            "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
        Ok(Err((url, e))) => ProbeResult::Failure(format!("Get {url:?}: {e}")),
        Ok(Ok(a)) if (200..300).contains(&a.code) => ProbeResult::Success,
        Ok(Ok(a)) if (300..400).contains(&a.code) => ProbeResult::Warning(format!(
            "Probe terminated redirects, Response body: {}",
            a.body
        )),
        Ok(Ok(a)) => ProbeResult::Failure(format!(
            "HTTP probe failed with statuscode: {}",
            a.code
        )),
    }
}

/// What the last request got.
struct Answer {
    code: u16,
    /// `Location`, for a redirect.
    location: Option<String>,
    /// The start of the body of a 3xx answer (quoted in the warning).
    body: String,
}

fn is_redirect(code: u16) -> bool {
    matches!(code, 301 | 302 | 303 | 307 | 308)
}

/// GETs `first` and follows its redirects to the same host name; the last
/// answer, or the URL whose request failed and why.
async fn follow(first: &HttpTarget) -> Result<Answer, (String, String)> {
    let mut target = first.clone();
    // The requests made so far (Go's `via`).
    let mut via = 0;
    loop {
        let answer = get(&target).await.map_err(|e| (target.url(), e))?;
        via += 1;
        let Some(location) = answer
            .location
            .as_deref()
            .filter(|_| is_redirect(answer.code))
        else {
            return Ok(answer);
        };
        let next = target.redirected(location).map_err(|e| (target.url(), e))?;
        if !next.host.eq_ignore_ascii_case(&first.host) {
            tracing::debug!(from = %target.url(), to = %next.url(), "probe does not follow a redirect to another host");
            return Ok(answer);
        }
        if via >= MAX_REDIRECTS {
            return Err((
                next.url(),
                format!("stopped after {MAX_REDIRECTS} redirects"),
            ));
        }
        target = next;
    }
}

/// The response, or what went wrong (Go's wording).
async fn get(target: &HttpTarget) -> Result<Answer, String> {
    let addr = target.authority();
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("dial tcp {addr}: {}", dial_error(&e)))?;
    let request = request(target)?;
    match target.scheme {
        Scheme::Http => send(tcp, request).await,
        Scheme::Https => {
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| format!("invalid server name {:?}: {e}", target.host))?;
            let tls = tokio_rustls::TlsConnector::from(insecure_tls_config())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            send(tls, request).await
        }
    }
}

fn request(target: &HttpTarget) -> Result<Request<Empty<Bytes>>, String> {
    let mut builder = Request::get(target.path.as_str());
    let headers = builder
        .headers_mut()
        .expect("a fresh request builder has headers");
    let given = |name: &HeaderName| {
        target
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name.as_str()))
    };
    let defaults = [
        (HOST, target.authority()),
        (USER_AGENT, USER_AGENT_VALUE.to_string()),
        (ACCEPT, "*/*".to_string()),
    ];
    for (name, value) in defaults {
        if !given(&name) {
            let value = HeaderValue::from_str(&value).map_err(|e| e.to_string())?;
            headers.insert(name, value);
        }
    }
    for (name, value) in &target.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("invalid header name {name:?}: {e}"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| format!("invalid value of header {name}: {e}"))?;
        headers.append(name, value);
    }
    builder
        .body(Empty::new())
        .map_err(|e| format!("invalid request: {e}"))
}

/// Aborts the connection task when the probe ends (or times out).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn send<T>(io: T, request: Request<Empty<Bytes>>) -> Result<Answer, String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let response = sender.send_request(request).await.map_err(|e| {
        if e.is_incomplete_message() {
            "EOF".to_string()
        } else {
            e.to_string()
        }
    })?;
    let code = response.status().as_u16();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = Vec::new();
    if (300..400).contains(&code) {
        let mut incoming = response.into_body();
        while body.len() < MAX_BODY {
            match incoming.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        body.extend_from_slice(data);
                    }
                }
                _ => break,
            }
        }
        body.truncate(MAX_BODY);
    }
    Ok(Answer {
        code,
        location,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// TLS that accepts any server certificate: upstream's prober does not
/// verify either (the probe asks "does it answer", not "is it who it says").
fn insecure_tls_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the default provider supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
