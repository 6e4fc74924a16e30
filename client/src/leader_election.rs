//! [`LeaderElector`]: leader election on a `coordination.k8s.io/v1` Lease,
//! with client-go's defaults (lease 15 s, renew deadline 10 s, retry every
//! 2 s). Entry point: [`LeaderElector::run`].
//!
//! To ensure correctness:
//! - every write carries the resourceVersion it read, so two candidates
//!   racing for an expired lease cannot both win (the loser gets a Conflict);
//! - a lease counts as expired only when this candidate has seen the same
//!   record, unchanged, for `lease_duration` of its own clock (client-go's
//!   `observedTime`), so clock skew between nodes does not matter;
//! - a leader that cannot renew within `renew_deadline` stops leading before
//!   the lease can expire for others;
//! - on shutdown a leader releases the lease (empty holder) so a successor
//!   need not wait for it to expire.

use std::future::Future;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use ferrokube_proto::api as pb;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::Client;
use crate::error::Error;

/// Timing and identity of one candidate.
#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    pub lease_namespace: String,
    pub lease_name: String,
    /// This candidate's `holderIdentity` (usually hostname + a unique suffix).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaderElectionConfig {
            lease_namespace: namespace.to_string(),
            lease_name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One candidate for leadership.
pub struct LeaderElector {
    client: Client,
    config: LeaderElectionConfig,
    leading: watch::Sender<bool>,
    /// The last lease record seen and when (by our clock) it last changed.
    observed: Option<(Value, Instant)>,
}

fn micro_time() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn lease_ref(c: &LeaderElectionConfig, name: &str) -> pb::ResourceRef {
    pb::ResourceRef {
        group: "coordination.k8s.io".into(),
        version: "v1".into(),
        resource: "leases".into(),
        namespace: c.lease_namespace.clone(),
        name: name.to_string(),
    }
}

fn decode(obj: pb::Object) -> Result<Value, Error> {
    serde_json::from_slice(&obj.object).map_err(|source| Error::Decode {
        kind: "Lease",
        source,
    })
}

/// The part of a lease that says who holds it: a change in it (a renewal)
/// restarts the expiry clock.
fn record(lease: &Value) -> Value {
    let spec = &lease["spec"];
    json!([
        spec["holderIdentity"],
        spec["renewTime"],
        spec["leaseTransitions"]
    ])
}

fn holder(lease: &Value) -> &str {
    lease
        .pointer("/spec/holderIdentity")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaderElectionConfig) -> Self {
        LeaderElector {
            client,
            config,
            leading: watch::channel(false).0,
            observed: None,
        }
    }

    /// True while this candidate leads; changes as it gains or loses the lease.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// Campaigns, leads and renews until `shutdown` resolves; then releases
    /// the lease if it holds it.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last_renewed = Instant::now();
        loop {
            let attempt = self.try_acquire_or_renew().await;
            let now = Instant::now();
            match attempt {
                Ok(true) => {
                    last_renewed = now;
                    if !self.is_leader() {
                        tracing::info!(identity = %self.config.identity, lease = %self.config.lease_name, "became leader");
                        self.leading.send_replace(true);
                    }
                }
                Ok(false) | Err(_) => {
                    if let Err(e) = &attempt {
                        tracing::debug!(error = %e, "leader election attempt failed");
                    }
                    if self.is_leader()
                        && (matches!(attempt, Ok(false))
                            || now.duration_since(last_renewed) >= self.config.renew_deadline)
                    {
                        tracing::info!(identity = %self.config.identity, lease = %self.config.lease_name, "lost leadership");
                        self.leading.send_replace(false);
                    }
                }
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
        }
        if self.is_leader() {
            if let Err(e) = self.release().await {
                tracing::warn!(error = %e, "releasing the lease failed");
            }
            self.leading.send_replace(false);
        }
    }

    /// One attempt: create the lease, take it if free or expired, or renew
    /// it if ours. True when this candidate holds it afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, Error> {
        let c = self.config.clone();
        let now = micro_time();
        let mut api = self.client.raw();
        let current = match api
            .get(pb::GetRequest {
                resource: Some(lease_ref(&c, &c.lease_name)),
            })
            .await
        {
            Ok(obj) => decode(obj.into_inner())?,
            Err(s) => {
                let e = Error::from(s);
                if !e.is_not_found() {
                    return Err(e);
                }
                let lease = json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": c.lease_name, "namespace": c.lease_namespace},
                    "spec": {
                        "holderIdentity": c.identity,
                        "leaseDurationSeconds": c.lease_duration.as_secs(),
                        "acquireTime": now, "renewTime": now, "leaseTransitions": 0,
                    },
                });
                return match api
                    .create(pb::CreateRequest {
                        resource: Some(lease_ref(&c, "")),
                        object: serde_json::to_vec(&lease).expect("JSON serializes"),
                        options: None,
                        subresource: String::new(),
                    })
                    .await
                {
                    Ok(obj) => {
                        let created = decode(obj.into_inner())?;
                        self.observed = Some((record(&created), Instant::now()));
                        Ok(true)
                    }
                    Err(s) => {
                        let e = Error::from(s);
                        if e.is_already_exists() {
                            Ok(false)
                        } else {
                            Err(e)
                        }
                    }
                };
            }
        };
        let seen = record(&current);
        let observed_at = match &self.observed {
            Some((r, at)) if *r == seen => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((seen, at));
                at
            }
        };
        let held_by = holder(&current).to_string();
        let ours = held_by == c.identity;
        let duration = current
            .pointer("/spec/leaseDurationSeconds")
            .and_then(Value::as_u64)
            .map(Duration::from_secs)
            .unwrap_or(c.lease_duration);
        let expired = observed_at + duration <= Instant::now();
        if !ours && !held_by.is_empty() && !expired {
            return Ok(false);
        }
        let mut lease = current.clone();
        let spec = &mut lease["spec"];
        if !ours {
            spec["acquireTime"] = json!(now);
            let transitions = spec
                .get("leaseTransitions")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            spec["leaseTransitions"] = json!(transitions + 1);
        }
        spec["holderIdentity"] = json!(c.identity);
        spec["leaseDurationSeconds"] = json!(c.lease_duration.as_secs());
        spec["renewTime"] = json!(now);
        match self.write(&lease).await {
            Ok(updated) => {
                self.observed = Some((record(&updated), Instant::now()));
                Ok(true)
            }
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up if this candidate holds it: an empty holder and a
    /// one-second duration, as client-go's `ReleaseOnCancel`.
    pub async fn release(&mut self) -> Result<(), Error> {
        let c = self.config.clone();
        let current = decode(
            self.client
                .raw()
                .get(pb::GetRequest {
                    resource: Some(lease_ref(&c, &c.lease_name)),
                })
                .await?
                .into_inner(),
        )?;
        if holder(&current) != c.identity {
            return Ok(());
        }
        let mut lease = current;
        lease["spec"]["holderIdentity"] = json!("");
        lease["spec"]["leaseDurationSeconds"] = json!(1);
        lease["spec"]["renewTime"] = json!(micro_time());
        self.write(&lease).await?;
        tracing::info!(identity = %c.identity, lease = %c.lease_name, "released the lease");
        Ok(())
    }

    /// A conditional update: the lease's resourceVersion is the one we read.
    async fn write(&self, lease: &Value) -> Result<Value, Error> {
        let c = &self.config;
        let obj = self
            .client
            .raw()
            .update(pb::UpdateRequest {
                resource: Some(lease_ref(c, &c.lease_name)),
                object: serde_json::to_vec(lease).expect("JSON serializes"),
                options: None,
            })
            .await?
            .into_inner();
        decode(obj)
    }
}
