//! The grpc probe: `grpc.health.v1.Health/Check` with the probe's service
//! name; `SERVING` is success. Entry point: [`probe`].

use std::time::Duration;

use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::ProbeResult;

/// Asks the health service at `host:port` about `service`.
pub async fn probe(host: &str, port: u16, service: &str, timeout: Duration) -> ProbeResult {
    let addr = format!("{host}:{port}");
    let secs = format!("{}s", timeout.as_secs_f64());
    let endpoint = match Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e.connect_timeout(timeout).timeout(timeout),
        Err(e) => return ProbeResult::Failure(format!("invalid address {addr:?}: {e}")),
    };
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(c)) => c,
        _ => {
            return ProbeResult::Failure(format!(
                "timeout: failed to connect service {addr:?} within {secs}"
            ))
        }
    };
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    let mut client = HealthClient::new(channel);
    match tokio::time::timeout(timeout, client.check(request)).await {
        Err(_) => ProbeResult::Failure(format!(
            "timeout: health rpc did not complete within {secs}"
        )),
        Ok(Err(status)) if status.code() == tonic::Code::DeadlineExceeded => ProbeResult::Failure(
            format!("timeout: health rpc did not complete within {secs}"),
        ),
        Ok(Err(status)) => ProbeResult::Failure(format!(
            "rpc error: code = {:?} desc = {}",
            status.code(),
            status.message()
        )),
        Ok(Ok(resp)) => {
            let status = resp.into_inner().status();
            if status == ServingStatus::Serving {
                ProbeResult::Success
            } else {
                ProbeResult::Failure(format!(
                    "service unhealthy (responded with {:?})",
                    status.as_str_name()
                ))
            }
        }
    }
}
