//! Service-account tokens, as upstream's `pkg/serviceaccount`: the
//! [`TokenIssuer`] signs the JWTs that `POST .../serviceaccounts/<name>/token`
//! (TokenRequest) returns, and the [`TokenVerifier`] checks the ones clients
//! present. Entry points: [`ServiceAccountTokens::from_flags`], then
//! [`TokenIssuer::issue`] and [`TokenVerifier::verify`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::auth::UserInfo;

/// The prefix of every service account's user name.
pub const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";
/// The group of every service account.
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// A TokenRequest without `spec.expirationSeconds` gets this lifetime.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Upstream refuses shorter tokens: they would expire between refreshes.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// Upstream's upper bound, 2^32 seconds.
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// `extra` keys upstream's authenticator sets for a pod-bound token.
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";

/// Why the service-account keys could not be loaded from their flags.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("reading --{flag} {path}: {source}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--{flag} {path}: {problem}")]
    Parse {
        flag: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error("--service-account-issuer is required when --service-account-signing-key-file is set")]
    MissingIssuer,
}

/// Why a presented token was not accepted (all of them are 401 to clients;
/// the reason goes to the debug log).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token signing failed: {0}")]
    Sign(String),
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token lacks the kubernetes.io service account claims")]
    NotAServiceAccountToken,
}

/// A reference to the object a token is bound to (or the service account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ObjectRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// Upstream's private `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KubernetesClaims {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
}

/// The claims of a service-account JWT, named as upstream's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: Option<KubernetesClaims>,
}

/// What a token is bound to besides its service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundObject {
    Pod(ObjectRef),
    Secret(ObjectRef),
}

/// `spec.expirationSeconds` of a TokenRequest, defaulted and checked as
/// upstream's validation does; the error is the field's message.
pub fn validate_expiration_seconds(requested: Option<i64>) -> Result<i64, &'static str> {
    let seconds = requested.unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    if seconds < MIN_EXPIRATION_SECONDS {
        return Err("may not specify a duration less than 10 minutes");
    }
    if seconds > MAX_EXPIRATION_SECONDS {
        return Err("may not specify a duration larger than 2^32 seconds");
    }
    Ok(seconds)
}

/// The claims of a new token for `namespace/name` (uid `sa_uid`), valid
/// for `expiration_seconds` from `now` (Unix seconds).
#[allow(clippy::too_many_arguments)]
pub fn new_claims(
    issuer: &str,
    audiences: Vec<String>,
    namespace: &str,
    name: &str,
    sa_uid: &str,
    bound: Option<&BoundObject>,
    now: i64,
    expiration_seconds: i64,
) -> Claims {
    let (pod, secret) = match bound {
        Some(BoundObject::Pod(r)) => (Some(r.clone()), None),
        Some(BoundObject::Secret(r)) => (None, Some(r.clone())),
        None => (None, None),
    };
    Claims {
        iss: issuer.to_string(),
        sub: format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}"),
        aud: audiences,
        exp: now + expiration_seconds,
        iat: now,
        nbf: now,
        jti: uuid::Uuid::new_v4().to_string(),
        kubernetes: Some(KubernetesClaims {
            namespace: namespace.to_string(),
            serviceaccount: ObjectRef {
                name: name.to_string(),
                uid: sa_uid.to_string(),
            },
            pod,
            secret,
        }),
    }
}

/// Signs service-account tokens with `--service-account-signing-key-file`.
pub struct TokenIssuer {
    pub issuer: String,
    key: EncodingKey,
    /// The `kid` header: which key signed, for verifiers holding several.
    key_id: String,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// The compact RS256 JWT of `claims`, with upstream's header
    /// (`alg` and `kid`, no `typ`).
    pub fn issue(&self, claims: &Claims) -> Result<String, TokenError> {
        let header = Header {
            typ: None,
            kid: Some(self.key_id.clone()),
            ..Header::new(Algorithm::RS256)
        };
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|e| TokenError::Sign(e.to_string()))
    }
}

/// Checks presented tokens against `--service-account-key-file` keys, the
/// issuer and the API audiences.
pub struct TokenVerifier {
    issuers: Vec<String>,
    audiences: Vec<String>,
    keys: Vec<DecodingKey>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl TokenVerifier {
    /// The claims of `token` when one of the keys verifies its RS256
    /// signature, its issuer is ours, one audience is an API audience and
    /// `now` (Unix seconds) lies in [nbf, exp) (no leeway, as upstream's
    /// tolerance is for clock skew between servers, which one server lacks).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&self.issuers);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        // Time is checked below against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let mut last = TokenError::Invalid("no verification key".into());
        for key in &self.keys {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    let claims = data.claims;
                    if now >= claims.exp {
                        return Err(TokenError::Invalid("token has expired".into()));
                    }
                    if now < claims.nbf {
                        return Err(TokenError::Invalid("token is not valid yet".into()));
                    }
                    if claims.kubernetes.is_none() {
                        return Err(TokenError::NotAServiceAccountToken);
                    }
                    return Ok(claims);
                }
                Err(e) => last = TokenError::Invalid(e.to_string()),
            }
        }
        Err(last)
    }
}

/// The service-account token machinery configured by the flags: the
/// issuer is absent without `--service-account-signing-key-file` (then
/// TokenRequest is not served), the verifier without any key.
#[derive(Debug, Default)]
pub struct ServiceAccountTokens {
    pub issuer: Option<TokenIssuer>,
    pub verifier: Option<TokenVerifier>,
    /// `--api-audiences`, defaulted to the issuers.
    pub api_audiences: Vec<String>,
}

impl ServiceAccountTokens {
    /// Loads the keys the flags name. The verification keys are
    /// `--service-account-key-file`'s, or the signing key's public half.
    pub fn from_flags(
        issuers: &[String],
        signing_key_file: Option<&Path>,
        key_files: &[PathBuf],
        api_audiences: &[String],
    ) -> Result<Self, KeyFileError> {
        let api_audiences = if api_audiences.is_empty() {
            issuers.to_vec()
        } else {
            api_audiences.to_vec()
        };
        let mut keys = Vec::new();
        for path in key_files {
            keys.extend(read_public_keys(path)?);
        }
        let issuer = match signing_key_file {
            None => None,
            Some(path) => {
                let first = issuers.first().ok_or(KeyFileError::MissingIssuer)?;
                let (key, public, key_id) = read_signing_key(path)?;
                if key_files.is_empty() {
                    keys.push(public);
                }
                Some(TokenIssuer {
                    issuer: first.clone(),
                    key,
                    key_id,
                })
            }
        };
        let verifier = (!keys.is_empty() && !issuers.is_empty()).then(|| TokenVerifier {
            issuers: issuers.to_vec(),
            audiences: api_audiences.clone(),
            keys,
        });
        tracing::info!(
            signing = issuer.is_some(),
            verifying = verifier.is_some(),
            "service account tokens"
        );
        Ok(ServiceAccountTokens {
            issuer,
            verifier,
            api_audiences,
        })
    }
}

const SIGNING_FLAG: &str = "service-account-signing-key-file";
const KEY_FLAG: &str = "service-account-key-file";

fn read_pem(flag: &'static str, path: &Path) -> Result<Vec<u8>, KeyFileError> {
    std::fs::read(path).map_err(|source| KeyFileError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    })
}

fn parse_error(flag: &'static str, path: &Path, problem: impl Into<String>) -> KeyFileError {
    KeyFileError::Parse {
        flag,
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// The public half of the RSA private key in `pem` (PKCS#1 or PKCS#8),
/// and its key id as upstream's: base64url(sha256(its PKIX DER)).
fn rsa_public_half(
    flag: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<(DecodingKey, String), KeyFileError> {
    use aws_lc_rs::signature::KeyPair as _;
    let der = rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| parse_error(flag, path, e.to_string()))?
        .ok_or_else(|| parse_error(flag, path, "no PEM private key found"))?;
    let pair = match &der {
        rustls::pki_types::PrivateKeyDer::Pkcs1(k) => {
            aws_lc_rs::rsa::KeyPair::from_der(k.secret_pkcs1_der())
        }
        rustls::pki_types::PrivateKeyDer::Pkcs8(k) => {
            aws_lc_rs::rsa::KeyPair::from_pkcs8(k.secret_pkcs8_der())
        }
        _ => return Err(parse_error(flag, path, "only RSA keys are supported")),
    }
    .map_err(|e| parse_error(flag, path, format!("not an RSA private key: {e}")))?;
    let public = pair.public_key();
    let pkix = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(public)
        .map_err(|e| parse_error(flag, path, format!("encoding the public key: {e}")))?;
    let key_id = {
        use base64::Engine as _;
        use sha2::Digest as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(pkix.as_ref()))
    };
    Ok((DecodingKey::from_rsa_der(public.as_ref()), key_id))
}

/// The RSA private key of `path` (PKCS#1 or PKCS#8 PEM), its public half
/// and key id.
fn read_signing_key(path: &Path) -> Result<(EncodingKey, DecodingKey, String), KeyFileError> {
    let pem = read_pem(SIGNING_FLAG, path)?;
    let (public, key_id) = rsa_public_half(SIGNING_FLAG, path, &pem)?;
    let encoding = EncodingKey::from_rsa_pem(&pem)
        .map_err(|e| parse_error(SIGNING_FLAG, path, e.to_string()))?;
    Ok((encoding, public, key_id))
}

/// Every RSA public key in `path`: `PUBLIC KEY`, `RSA PUBLIC KEY`, or a
/// private key whose public half is used, as upstream accepts.
fn read_public_keys(path: &Path) -> Result<Vec<DecodingKey>, KeyFileError> {
    let pem = read_pem(KEY_FLAG, path)?;
    let text = String::from_utf8_lossy(&pem);
    let mut keys = Vec::new();
    for block in pem_blocks(&text) {
        if block.contains("PRIVATE KEY-----") {
            keys.push(rsa_public_half(KEY_FLAG, path, block.as_bytes())?.0);
        } else {
            keys.push(
                DecodingKey::from_rsa_pem(block.as_bytes())
                    .map_err(|e| parse_error(KEY_FLAG, path, format!("not an RSA key: {e}")))?,
            );
        }
    }
    if keys.is_empty() {
        return Err(parse_error(KEY_FLAG, path, "no PEM public key found"));
    }
    Ok(keys)
}

/// The `-----BEGIN ...-----` to `-----END ...-----` blocks of `text`.
fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN ") {
            current = Some(String::new());
        }
        if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
        if line.starts_with("-----END ") {
            blocks.extend(current.take());
        }
    }
    blocks
}

/// The identity a verified token stands for, as upstream's
/// `serviceaccount.UserInfo`: the SA's user name and uid, its groups, and
/// the bound pod in `extra`.
pub fn user_info(claims: &Claims) -> UserInfo {
    let k = claims.kubernetes.clone().unwrap_or_default();
    let mut extra = BTreeMap::new();
    if let Some(pod) = &k.pod {
        extra.insert(EXTRA_POD_NAME.to_string(), vec![pod.name.clone()]);
        extra.insert(EXTRA_POD_UID.to_string(), vec![pod.uid.clone()]);
    }
    UserInfo {
        name: format!(
            "{SERVICE_ACCOUNT_USER_PREFIX}{}:{}",
            k.namespace, k.serviceaccount.name
        ),
        uid: k.serviceaccount.uid,
        groups: vec![
            SERVICE_ACCOUNTS_GROUP.to_string(),
            format!("{SERVICE_ACCOUNTS_GROUP}:{}", k.namespace),
        ],
        extra,
    }
}

/// True when `token` has the shape of a JWT (three base64url parts), so a
/// failure to verify it is reported rather than passed on.
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|p| !p.is_empty())
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Test helpers: a fresh RSA key pair as PEM files.
pub mod testing {
    use aws_lc_rs::encoding::AsDer as _;
    use base64::Engine as _;

    /// A new 2048-bit RSA private key, PKCS#8 PEM.
    pub fn rsa_private_key_pem() -> String {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .expect("RSA key generation");
        let der = pair.as_der().expect("PKCS#8 DER");
        pem("PRIVATE KEY", der.as_ref())
    }

    /// The `PUBLIC KEY` (SPKI) PEM of a PKCS#8 PEM private key.
    pub fn rsa_public_key_pem(private_pem: &str) -> String {
        use aws_lc_rs::signature::KeyPair as _;
        let der = rustls_pemfile::private_key(&mut private_pem.as_bytes())
            .expect("PEM")
            .expect("a key");
        let rustls::pki_types::PrivateKeyDer::Pkcs8(k) = der else {
            panic!("PKCS#8 expected")
        };
        let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(k.secret_pkcs8_der()).expect("RSA key");
        let spki = pair.public_key().as_der().expect("SPKI DER");
        pem("PUBLIC KEY", spki.as_ref())
    }

    fn pem(label: &str, der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut out = format!("-----BEGIN {label}-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

    fn tokens_with(
        dir: &Path,
        key_files: &[PathBuf],
        audiences: &[String],
    ) -> ServiceAccountTokens {
        let key = dir.join("sa.key");
        if !key.exists() {
            std::fs::write(&key, testing::rsa_private_key_pem()).unwrap();
        }
        ServiceAccountTokens::from_flags(&[ISSUER.to_string()], Some(&key), key_files, audiences)
            .unwrap()
    }

    /// Fresh keys in `dir`, and a token for the API audience issued at 1000.
    fn issued(dir: &Path, exp_secs: i64) -> (ServiceAccountTokens, String) {
        let t = tokens_with(dir, &[], &[]);
        let token = t
            .issuer
            .as_ref()
            .unwrap()
            .issue(&claims(&[ISSUER], 1000, exp_secs))
            .unwrap();
        (t, token)
    }

    fn claims(aud: &[&str], now: i64, exp_secs: i64) -> Claims {
        new_claims(
            ISSUER,
            aud.iter().map(|s| s.to_string()).collect(),
            "default",
            "builder",
            "sa-uid",
            Some(&BoundObject::Pod(ObjectRef {
                name: "web".into(),
                uid: "pod-uid".into(),
            })),
            now,
            exp_secs,
        )
    }

    #[test]
    fn issued_token_carries_upstream_claims_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let t = tokens_with(dir.path(), &[], &[]);
        assert_eq!(t.api_audiences, vec![ISSUER.to_string()]);
        let token = t
            .issuer
            .as_ref()
            .unwrap()
            .issue(&claims(&[ISSUER], 1000, 3600))
            .unwrap();
        assert!(looks_like_jwt(&token));
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.typ, None);
        // Upstream's key id: base64url(sha256(PKIX DER of the public key)).
        let private = std::fs::read_to_string(dir.path().join("sa.key")).unwrap();
        let spki = testing::rsa_public_key_pem(&private);
        let der = rustls_pemfile::public_keys(&mut spki.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        use sha2::Digest as _;
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(der.as_ref()));
        assert_eq!(header.kid.as_deref(), Some(expected.as_str()));
        let got = t.verifier.as_ref().unwrap().verify(&token, 1001).unwrap();
        assert_eq!(got.sub, "system:serviceaccount:default:builder");
        assert_eq!(got.exp, 4600);
        assert_eq!((got.iat, got.nbf), (1000, 1000));
        let k = got.kubernetes.clone().unwrap();
        assert_eq!(k.serviceaccount.uid, "sa-uid");
        assert_eq!(k.pod.unwrap().name, "web");
        let user = user_info(&got);
        assert_eq!(user.name, "system:serviceaccount:default:builder");
        assert_eq!(user.uid, "sa-uid");
        assert_eq!(
            user.groups,
            vec!["system:serviceaccounts", "system:serviceaccounts:default"]
        );
        assert_eq!(user.extra[EXTRA_POD_UID], vec!["pod-uid".to_string()]);
        // The wire claim is upstream's "kubernetes.io" object.
        let payload = token.split('.').nth(1).unwrap();
        use base64::Engine as _;
        let json: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(json["kubernetes.io"]["pod"]["uid"], "pod-uid");
        assert_eq!(json["kubernetes.io"]["namespace"], "default");
        assert_eq!(json["aud"], serde_json::json!([ISSUER]));
    }

    #[test]
    fn expired_and_not_yet_valid_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (t, token) = issued(dir.path(), 600);
        let v = t.verifier.as_ref().unwrap();
        assert!(v.verify(&token, 1599).is_ok());
        assert_eq!(
            v.verify(&token, 1600),
            Err(TokenError::Invalid("token has expired".into()))
        );
        assert!(v.verify(&token, 999).is_err());
    }

    #[test]
    fn token_for_another_audience_or_issuer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = tokens_with(dir.path(), &[], &["api".to_string()]);
        let issuer = t.issuer.as_ref().unwrap();
        let v = t.verifier.as_ref().unwrap();
        let vault = issuer.issue(&claims(&["vault"], 1000, 3600)).unwrap();
        assert!(v.verify(&vault, 1001).is_err());
        let ok = issuer
            .issue(&claims(&["vault", "api"], 1000, 3600))
            .unwrap();
        assert!(v.verify(&ok, 1001).is_ok());
        let mut foreign = claims(&["api"], 1000, 3600);
        foreign.iss = "https://elsewhere".into();
        assert!(v.verify(&issuer.issue(&foreign).unwrap(), 1001).is_err());
    }

    #[test]
    fn token_signed_by_another_key_is_refused_and_public_key_file_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let (_, token) = issued(dir.path(), 3600);
        // A verifier given only another key refuses it...
        let other = dir.path().join("other.pub");
        std::fs::write(
            &other,
            testing::rsa_public_key_pem(&testing::rsa_private_key_pem()),
        )
        .unwrap();
        let foreign = tokens_with(dir.path(), std::slice::from_ref(&other), &[]);
        assert!(foreign
            .verifier
            .as_ref()
            .unwrap()
            .verify(&token, 1001)
            .is_err());
        // ...and one given both that key and our public key accepts it.
        let ours = dir.path().join("sa.pub");
        let private = std::fs::read_to_string(dir.path().join("sa.key")).unwrap();
        std::fs::write(&ours, testing::rsa_public_key_pem(&private)).unwrap();
        let both = tokens_with(dir.path(), &[other, ours], &[]);
        assert!(both.verifier.as_ref().unwrap().verify(&token, 1001).is_ok());
    }

    #[test]
    fn expiration_seconds_defaults_and_bounds() {
        assert_eq!(validate_expiration_seconds(None), Ok(3600));
        assert_eq!(validate_expiration_seconds(Some(600)), Ok(600));
        assert_eq!(
            validate_expiration_seconds(Some(300)),
            Err("may not specify a duration less than 10 minutes")
        );
        assert_eq!(
            validate_expiration_seconds(Some((1 << 32) + 1)),
            Err("may not specify a duration larger than 2^32 seconds")
        );
    }

    #[test]
    fn bad_key_files_name_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let issuers = [ISSUER.to_string()];
        let missing = dir.path().join("missing.key");
        let err = ServiceAccountTokens::from_flags(&issuers, Some(&missing), &[], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("reading --service-account-signing-key-file"),
            "{err}"
        );
        let garbage = dir.path().join("garbage.key");
        std::fs::write(&garbage, "not a key").unwrap();
        let err = ServiceAccountTokens::from_flags(&issuers, Some(&garbage), &[], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--service-account-signing-key-file")
                && err.contains("no PEM private key found"),
            "{err}"
        );
        let err = ServiceAccountTokens::from_flags(&issuers, None, &[garbage], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--service-account-key-file"), "{err}");
        let key = dir.path().join("sa.key");
        std::fs::write(&key, testing::rsa_private_key_pem()).unwrap();
        let err = ServiceAccountTokens::from_flags(&[], Some(&key), &[], &[]).unwrap_err();
        assert!(matches!(err, KeyFileError::MissingIssuer));
    }

    #[test]
    fn jwt_shape_is_recognised() {
        assert!(looks_like_jwt("eyJh.eyJi.c2ln"));
        assert!(!looks_like_jwt("s3cret"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a b.c.d"));
    }
}
