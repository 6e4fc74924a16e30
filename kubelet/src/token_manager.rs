//! The kubelet's service-account token manager, as upstream's
//! `pkg/kubelet/token`: tokens for projected `serviceAccountToken` sources
//! are requested once and reused until they need a refresh. Entry point:
//! [`TokenManager::get_service_account_token`].
//!
//! A cached token is refreshed when it is older than 80 % of its lifetime
//! or older than 24 hours; if the refresh fails, the old token is served
//! while it has not expired, so a short apiserver outage does not break pods.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::authentication::v1::TokenRequest;

/// Tokens older than this are refreshed whatever their lifetime.
pub const MAX_TTL: Duration = Duration::hours(24);

/// What identifies a cached token: service account, audiences, lifetime and
/// the uid of the object it is bound to.
type Key = (String, String, Vec<String>, Option<i64>, String);

fn key_of(namespace: &str, name: &str, request: &TokenRequest) -> Key {
    (
        namespace.to_string(),
        name.to_string(),
        request.spec.audiences.clone(),
        request.spec.expiration_seconds,
        request
            .spec
            .bound_object_ref
            .as_ref()
            .and_then(|r| r.uid.clone())
            .unwrap_or_default(),
    )
}

/// When a token was issued and when it expires, from its answer.
fn lifetime(token: &TokenRequest) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let exp = token.status.as_ref()?.expiration_timestamp.0;
    let seconds = token.spec.expiration_seconds?;
    Some((exp - Duration::seconds(seconds), exp))
}

/// Upstream's `requiresRefresh`: past 80 % of the lifetime, or older than
/// [`MAX_TTL`]. A token whose lifetime is unknown is refreshed.
pub fn requires_refresh(token: &TokenRequest, now: DateTime<Utc>) -> bool {
    let Some((iat, exp)) = lifetime(token) else {
        return true;
    };
    if now > iat + MAX_TTL {
        return true;
    }
    let seconds = (exp - iat).num_seconds();
    now > exp - Duration::seconds(seconds * 20 / 100)
}

fn expired(token: &TokenRequest, now: DateTime<Utc>) -> bool {
    lifetime(token).is_none_or(|(_, exp)| now >= exp)
}

/// Caches TokenRequest answers per service account, audiences, lifetime
/// and bound object.
#[derive(Default)]
pub struct TokenManager {
    cache: Mutex<HashMap<Key, TokenRequest>>,
}

impl TokenManager {
    /// The cached token for `request` unless it [`requires_refresh`];
    /// otherwise `fetch`es a new one. When fetching fails the cached token
    /// is returned while it is still valid.
    pub async fn get_service_account_token<F, Fut, E>(
        &self,
        namespace: &str,
        name: &str,
        request: &TokenRequest,
        now: DateTime<Utc>,
        fetch: F,
    ) -> Result<TokenRequest, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<TokenRequest, E>>,
        E: std::fmt::Display,
    {
        let key = key_of(namespace, name, request);
        let cached = self.cache.lock().expect("token cache").get(&key).cloned();
        if let Some(token) = &cached {
            if !requires_refresh(token, now) {
                return Ok(token.clone());
            }
        }
        match fetch().await {
            Ok(token) => {
                tracing::debug!(namespace, name, "fetched a service account token");
                self.cache
                    .lock()
                    .expect("token cache")
                    .insert(key, token.clone());
                Ok(token)
            }
            Err(e) => match cached {
                Some(token) if !expired(&token, now) => {
                    tracing::info!(namespace, name, error = %e, "could not refresh a service account token; serving the cached one");
                    Ok(token)
                }
                _ => Err(e),
            },
        }
    }

    /// Forgets the tokens bound to the object with `uid` (a pod that is
    /// gone), as upstream's `DeleteServiceAccountToken`.
    pub fn delete_service_account_tokens(&self, uid: &str) {
        self.cache
            .lock()
            .expect("token cache")
            .retain(|k, _| k.4 != uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::{TokenRequestSpec, TokenRequestStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn token(issued: i64, seconds: i64, value: &str) -> TokenRequest {
        TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec!["api".into()],
                expiration_seconds: Some(seconds),
                ..Default::default()
            },
            status: Some(TokenRequestStatus {
                token: value.into(),
                expiration_timestamp: Time(at(issued + seconds)),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn refresh_after_eighty_percent_of_the_lifetime_or_a_day() {
        let t = token(0, 3600, "a");
        assert!(!requires_refresh(&t, at(2880)));
        assert!(requires_refresh(&t, at(2881)));
        let long = token(0, 7 * 24 * 3600, "b");
        assert!(!requires_refresh(&long, at(24 * 3600)));
        assert!(requires_refresh(&long, at(24 * 3600 + 1)));
    }

    #[tokio::test]
    async fn cached_token_is_reused_until_it_needs_a_refresh() {
        let m = TokenManager::default();
        let fetches = AtomicUsize::new(0);
        let request = token(0, 3600, "");
        let get = |now: i64, value: &'static str| {
            let fetches = &fetches;
            let m = &m;
            let request = &request;
            async move {
                m.get_service_account_token("ns", "sa", request, at(now), || async {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, String>(token(now, 3600, value))
                })
                .await
                .unwrap()
                .status
                .unwrap()
                .token
            }
        };
        assert_eq!(get(0, "first").await, "first");
        assert_eq!(get(2000, "second").await, "first");
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(get(3000, "third").await, "third");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn tokens_of_a_gone_pod_are_forgotten() {
        let m = TokenManager::default();
        let mut request = token(0, 3600, "");
        request.spec.bound_object_ref =
            Some(k8s_openapi::api::authentication::v1::BoundObjectReference {
                uid: Some("pod-uid".into()),
                ..Default::default()
            });
        let fetch =
            |value: &'static str| move || async move { Ok::<_, String>(token(0, 3600, value)) };
        let first = m
            .get_service_account_token("ns", "sa", &request, at(1), fetch("first"))
            .await
            .unwrap();
        assert_eq!(first.status.unwrap().token, "first");
        m.delete_service_account_tokens("pod-uid");
        let again = m
            .get_service_account_token("ns", "sa", &request, at(2), fetch("second"))
            .await
            .unwrap();
        assert_eq!(again.status.unwrap().token, "second");
    }

    #[tokio::test]
    async fn failed_refresh_serves_the_cached_token_until_it_expires() {
        let m = TokenManager::default();
        let request = token(0, 3600, "");
        let ok = m
            .get_service_account_token("ns", "sa", &request, at(0), || async {
                Ok::<_, String>(token(0, 3600, "cached"))
            })
            .await
            .unwrap();
        assert_eq!(ok.status.unwrap().token, "cached");
        let fail = || async { Err::<TokenRequest, _>("apiserver down".to_string()) };
        let served = m
            .get_service_account_token("ns", "sa", &request, at(3000), fail)
            .await
            .unwrap();
        assert_eq!(served.status.unwrap().token, "cached");
        let err = m
            .get_service_account_token("ns", "sa", &request, at(3600), fail)
            .await
            .unwrap_err();
        assert_eq!(err, "apiserver down");
    }
}
