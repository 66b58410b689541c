//! OIDC token verification: the token's header, signature and time and audience claims, against
//! the issuer's signing keys (JWKS).
//!
//! [`KeySet::verify`] is the synchronous core, with the current time as a parameter; it never
//! touches the network, so a hot path costs one signature check. [`OidcVerifier`] wraps it with
//! the keys fetched from the issuer (`/.well-known/openid-configuration` → `jwks_uri`), cached
//! for a TTL and refreshed early when a token names a key id we have not seen — at most once per
//! `min_refresh_interval`, so forged key ids cannot make sluice hammer the issuer.
//!
//! Everything a token could use to pick its own verification is refused before any key is
//! looked up: `alg: none`, HMAC algorithms (a public key is not a shared secret), algorithms the
//! key was not published for. Errors name what failed, never the token.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use sluice_model::trust::{Claims, is_loopback_http};

/// Why a token was refused. Each failure has its own variant so the server can audit and
/// answer precisely; none carries the token itself.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("not a JWT: {0}")]
    Malformed(&'static str),
    #[error("unsigned token (`alg: none`)")]
    AlgNone,
    #[error(
        "`{alg}` is a shared-secret algorithm; runner tokens must be signed with the issuer's public key"
    )]
    SymmetricAlgorithm { alg: String },
    #[error("unsupported signing algorithm `{alg}`")]
    UnsupportedAlgorithm { alg: String },
    #[error("the token header names no key id (`kid`)")]
    MissingKeyId,
    #[error("key `{kid}` is not among the issuer's signing keys")]
    UnknownKey { kid: String },
    #[error("key `{kid}` is not published for `{alg:?}`")]
    AlgorithmNotAllowedForKey { kid: String, alg: Algorithm },
    #[error("signature does not verify")]
    BadSignature,
    #[error("token expired at {exp} (now {now})")]
    Expired { exp: i64, now: i64 },
    #[error("token not valid yet: `{claim}` is {at}, now is {now}")]
    NotYetValid {
        claim: &'static str,
        at: i64,
        now: i64,
    },
    #[error("token lacks the `{0}` claim")]
    MissingClaim(&'static str),
    #[error("claim `{0}` has the wrong type")]
    InvalidClaim(&'static str),
    #[error("token issuer `{found}` is not `{expected}`")]
    WrongIssuer { expected: String, found: String },
    #[error("token audience {found:?} does not include {expected:?}")]
    WrongAudience {
        expected: Vec<String>,
        found: Vec<String>,
    },
    #[error("could not get the issuer's signing keys")]
    Keys(#[from] JwksError),
}

/// Why the issuer's keys could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("GET {url}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: response larger than {max} bytes")]
    TooLarge { url: String, max: usize },
    #[error("GET {url}: not the expected JSON")]
    Json {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("discovery document names issuer `{found}`, expected `{expected}`")]
    IssuerMismatch { expected: String, found: String },
    #[error("jwks_uri `{0}` is not https (only a loopback issuer may use http)")]
    InsecureJwksUri(String),
}

/// What a valid token must say about who minted it for whom, and the clock skew tolerated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectations {
    pub issuer: String,
    pub audience: Vec<String>,
    pub leeway_secs: i64,
}

/// A verified token: its claims and the key that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub claims: Claims,
    pub kid: String,
    pub expires_at: i64,
}

/// The parts of the JOSE header verification reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHeader {
    pub alg: Algorithm,
    pub kid: String,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
}

fn split(token: &str) -> Result<(&str, &str, &str), TokenError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => Ok((h, p, s)),
        _ => Err(TokenError::Malformed("expected three dot-separated parts")),
    }
}

fn b64_json<T: for<'de> Deserialize<'de>>(part: &str, what: &'static str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(what))?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed(what))
}

/// Read and vet the header: everything that does not need a key is refused here.
pub fn parse_header(token: &str) -> Result<TokenHeader, TokenError> {
    let (h, _, _) = split(token)?;
    let raw: RawHeader = b64_json(h, "header is not base64url JSON")?;
    let alg = raw
        .alg
        .ok_or(TokenError::Malformed("header has no `alg`"))?;
    if alg.eq_ignore_ascii_case("none") {
        return Err(TokenError::AlgNone);
    }
    if alg.to_ascii_uppercase().starts_with("HS") {
        return Err(TokenError::SymmetricAlgorithm { alg });
    }
    let parsed = Algorithm::from_str(&alg)
        .map_err(|_| TokenError::UnsupportedAlgorithm { alg: alg.clone() })?;
    let kid = raw.kid.ok_or(TokenError::MissingKeyId)?;
    Ok(TokenHeader { alg: parsed, kid })
}

struct PublishedKey {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// The issuer's signing keys, by key id, each with the algorithms it may verify.
#[derive(Default)]
pub struct KeySet {
    keys: HashMap<String, PublishedKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

/// The algorithms a JWK may verify: the one it names, else those of its key type. Symmetric
/// keys, encryption keys and keys without an id are never used.
fn algorithms_for(jwk: &Jwk) -> Vec<Algorithm> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return Vec::new();
    }
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => Vec::new(),
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        _ => Vec::new(),
    };
    match jwk.common.key_algorithm {
        None => by_type,
        // A named algorithm narrows the key to it, if it fits the key type at all.
        Some(named) => match Algorithm::from_str(&named.to_string()) {
            Ok(alg) if by_type.contains(&alg) => vec![alg],
            _ => Vec::new(),
        },
    }
}

impl KeySet {
    pub fn from_jwks(set: &JwkSet) -> KeySet {
        let keys = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let algorithms = algorithms_for(jwk);
                if algorithms.is_empty() {
                    return None;
                }
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((kid, PublishedKey { key, algorithms }))
            })
            .collect();
        KeySet { keys }
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verify `token` signed by one of these keys, valid at `now` (Unix seconds).
    pub fn verify(
        &self,
        token: &str,
        expect: &Expectations,
        now: i64,
    ) -> Result<VerifiedToken, TokenError> {
        let header = parse_header(token)?;
        self.verify_with_header(token, &header, expect, now)
    }

    fn verify_with_header(
        &self,
        token: &str,
        header: &TokenHeader,
        expect: &Expectations,
        now: i64,
    ) -> Result<VerifiedToken, TokenError> {
        let published = self
            .keys
            .get(&header.kid)
            .ok_or_else(|| TokenError::UnknownKey {
                kid: header.kid.clone(),
            })?;
        if !published.algorithms.contains(&header.alg) {
            return Err(TokenError::AlgorithmNotAllowedForKey {
                kid: header.kid.clone(),
                alg: header.alg,
            });
        }
        let (_, payload, signature) = split(token)?;
        let message = &token[..token.len() - signature.len() - 1];
        let ok =
            jsonwebtoken::crypto::verify(signature, message.as_bytes(), &published.key, header.alg)
                .map_err(|_| TokenError::BadSignature)?;
        if !ok {
            return Err(TokenError::BadSignature);
        }
        let claims: serde_json::Map<String, serde_json::Value> =
            b64_json(payload, "payload is not base64url JSON")?;
        let (claims, expires_at) = check_claims(claims, expect, now)?;
        Ok(VerifiedToken {
            claims,
            kid: header.kid.clone(),
            expires_at,
        })
    }
}

fn seconds(
    claims: &serde_json::Map<String, serde_json::Value>,
    name: &'static str,
) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.floor() as i64)
            })
            .map(Some)
            .ok_or(TokenError::InvalidClaim(name)),
    }
}

fn string<'a>(
    claims: &'a serde_json::Map<String, serde_json::Value>,
    name: &'static str,
) -> Result<&'a str, TokenError> {
    match claims.get(name) {
        None => Err(TokenError::MissingClaim(name)),
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(_) => Err(TokenError::InvalidClaim(name)),
    }
}

/// The time, issuer and audience checks of a token whose signature verified, and its claims
/// in the trust policy's shape. Pure: `now` is a parameter.
pub fn check_claims(
    claims: serde_json::Map<String, serde_json::Value>,
    expect: &Expectations,
    now: i64,
) -> Result<(Claims, i64), TokenError> {
    let exp = seconds(&claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    // RFC 7519 §4.1.4: not accepted on or after `exp`.
    if now >= exp.saturating_add(expect.leeway_secs) {
        return Err(TokenError::Expired { exp, now });
    }
    for claim in ["nbf", "iat"] {
        if let Some(at) = seconds(&claims, claim)?
            && at > now.saturating_add(expect.leeway_secs)
        {
            return Err(TokenError::NotYetValid { claim, at, now });
        }
    }
    let issuer = string(&claims, "iss")?;
    if issuer != expect.issuer {
        return Err(TokenError::WrongIssuer {
            expected: expect.issuer.clone(),
            found: issuer.to_string(),
        });
    }
    let audience: Vec<String> = match claims.get("aud") {
        None => return Err(TokenError::MissingClaim("aud")),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or(TokenError::InvalidClaim("aud"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(TokenError::InvalidClaim("aud")),
    };
    if !audience.iter().any(|a| expect.audience.contains(a)) {
        return Err(TokenError::WrongAudience {
            expected: expect.audience.clone(),
            found: audience,
        });
    }
    let subject = string(&claims, "sub")?.to_string();
    let issuer = issuer.to_string();
    let other = claims
        .into_iter()
        .filter(|(k, _)| !matches!(k.as_str(), "iss" | "sub" | "aud"))
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            _ => None,
        })
        .collect();
    Ok((
        Claims {
            issuer,
            subject,
            audience,
            other,
        },
        exp,
    ))
}

// ---------------------------------------------------------------------------------------------
// The issuer's keys, fetched and cached
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The `iss` value; discovery is `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub audience: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// How long fetched keys are used before they are fetched again.
    pub jwks_ttl: Duration,
    /// The least time between two fetches triggered by an unknown key id.
    pub min_refresh_interval: Duration,
    /// Timeout of each HTTP request to the issuer.
    pub http_timeout: Duration,
}

impl VerifierConfig {
    pub fn new(issuer: impl Into<String>, audience: Vec<String>) -> Self {
        VerifierConfig {
            issuer: issuer.into(),
            audience,
            leeway: Duration::from_secs(30),
            jwks_ttl: Duration::from_secs(600),
            min_refresh_interval: Duration::from_secs(30),
            http_timeout: Duration::from_secs(10),
        }
    }
}

struct Cache {
    keys: Arc<KeySet>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

/// Tokens already verified under one key set, so that a client sending the same token on
/// every request (Terraform sends its `http` backend password with each `LOCK`, `GET`, `POST`
/// and `UNLOCK`) pays for the signature once. Emptied when the key set is replaced (fetched
/// again or rotated); an entry is used only while its token has not expired.
#[derive(Default)]
struct Verified {
    /// The key set the entries were verified with.
    keys: Option<Arc<KeySet>>,
    tokens: HashMap<String, VerifiedToken>,
}

/// The most tokens [`Verified`] holds; when full it starts over (a token is a few hundred
/// bytes, and a fleet of runners holds far fewer live tokens than this).
const MAX_VERIFIED: usize = 1024;

impl Verified {
    /// The verification of `token` under `keys`, if it was made and `token` is still
    /// within its lifetime at `now`.
    fn get(&self, keys: &Arc<KeySet>, token: &str, now: i64, leeway: i64) -> Option<VerifiedToken> {
        let found = self.tokens.get(token).filter(|_| self.made_with(keys))?;
        // The rule of `check_claims`: not accepted on or after `exp` (plus leeway).
        (now < found.expires_at.saturating_add(leeway)).then(|| found.clone())
    }

    fn put(&mut self, keys: &Arc<KeySet>, token: &str, verified: &VerifiedToken) {
        if !self.made_with(keys) || self.tokens.len() >= MAX_VERIFIED {
            self.tokens.clear();
            self.keys = Some(keys.clone());
        }
        self.tokens.insert(token.to_string(), verified.clone());
    }

    /// Whether the entries were verified with `keys` (this very set, not an equal one).
    fn made_with(&self, keys: &Arc<KeySet>) -> bool {
        self.keys.as_ref().is_some_and(|k| Arc::ptr_eq(k, keys))
    }
}

/// Verifies runner tokens of one issuer, with its keys cached.
pub struct OidcVerifier {
    config: VerifierConfig,
    expect: Expectations,
    http: reqwest::Client,
    cache: RwLock<Cache>,
    // One fetch at a time; tasks that waited reuse its result.
    refreshing: tokio::sync::Mutex<()>,
    verified: RwLock<Verified>,
}

/// Discovery and key documents are small; a larger answer is refused rather than buffered.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl OidcVerifier {
    pub fn new(config: VerifierConfig) -> Result<Self, JwksError> {
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| JwksError::Http {
                url: config.issuer.clone(),
                source,
            })?;
        let expect = Expectations {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway_secs: config.leeway.as_secs() as i64,
        };
        Ok(OidcVerifier {
            config,
            expect,
            http,
            cache: RwLock::new(Cache {
                keys: Arc::new(KeySet::default()),
                fetched_at: None,
                last_attempt: None,
            }),
            refreshing: tokio::sync::Mutex::new(()),
            verified: RwLock::default(),
        })
    }

    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// Verify a runner's token now. Fetches the issuer's keys when none are cached, when the
    /// cache is older than its TTL, or (rate-limited) when the token names an unknown key.
    /// A token verified before with the same keys is not verified again while it is valid.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        // Refuse what needs no key before any network round trip.
        let header = parse_header(token)?;
        let (mut keys, fresh, may_refresh) = self.snapshot();
        if !fresh {
            keys = self.refresh(None).await?;
        } else if !keys.contains(&header.kid) && may_refresh {
            keys = self.refresh(Some(&header.kid)).await?;
        }
        let now = unix_now();
        let leeway = self.expect.leeway_secs;
        let known = self
            .verified
            .read()
            .expect("verified tokens lock")
            .get(&keys, token, now, leeway);
        if let Some(known) = known {
            return Ok(known);
        }
        let verified = keys.verify_with_header(token, &header, &self.expect, now)?;
        self.verified
            .write()
            .expect("verified tokens lock")
            .put(&keys, token, &verified);
        Ok(verified)
    }

    /// (keys, still within TTL, an unknown-kid refresh is allowed now)
    fn snapshot(&self) -> (Arc<KeySet>, bool, bool) {
        let cache = self.cache.read().expect("cache lock");
        let now = Instant::now();
        let fresh = cache
            .fetched_at
            .is_some_and(|t| now.duration_since(t) < self.config.jwks_ttl);
        let may_refresh = cache
            .last_attempt
            .is_none_or(|t| now.duration_since(t) >= self.config.min_refresh_interval);
        (cache.keys.clone(), fresh, may_refresh)
    }

    /// Fetch the keys unless another task did while we waited (for `kid`: it is now known, or
    /// the rate limit forbids another attempt).
    async fn refresh(&self, kid: Option<&str>) -> Result<Arc<KeySet>, JwksError> {
        let _one_at_a_time = self.refreshing.lock().await;
        let (keys, fresh, may_refresh) = self.snapshot();
        match kid {
            None if fresh => return Ok(keys),
            Some(k) if keys.contains(k) || !may_refresh => return Ok(keys),
            _ => {}
        }
        self.cache.write().expect("cache lock").last_attempt = Some(Instant::now());
        let set = self.fetch_jwks().await?;
        let keys = Arc::new(KeySet::from_jwks(&set));
        let mut cache = self.cache.write().expect("cache lock");
        cache.keys = keys.clone();
        cache.fetched_at = Some(Instant::now());
        Ok(keys)
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, url: &str) -> Result<T, JwksError> {
        let http = |source| JwksError::Http {
            url: url.to_string(),
            source,
        };
        let mut response = self.http.get(url).send().await.map_err(http)?;
        if !response.status().is_success() {
            return Err(JwksError::Status {
                url: url.to_string(),
                status: response.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT_BYTES {
                return Err(JwksError::TooLarge {
                    url: url.to_string(),
                    max: MAX_DOCUMENT_BYTES,
                });
            }
        }
        serde_json::from_slice(&body).map_err(|source| JwksError::Json {
            url: url.to_string(),
            source,
        })
    }

    async fn fetch_jwks(&self) -> Result<JwkSet, JwksError> {
        let issuer = self.config.issuer.trim_end_matches('/');
        let discovery: Discovery = self
            .get_json(&format!("{issuer}/.well-known/openid-configuration"))
            .await?;
        // OpenID Connect Discovery §4.3: the document must be for the issuer we asked about.
        if discovery.issuer != self.config.issuer {
            return Err(JwksError::IssuerMismatch {
                expected: self.config.issuer.clone(),
                found: discovery.issuer,
            });
        }
        let https = discovery.jwks_uri.starts_with("https://");
        if !(https || is_loopback_http(issuer) && is_loopback_http(&discovery.jwks_uri)) {
            return Err(JwksError::InsecureJwksUri(discovery.jwks_uri));
        }
        self.get_json(&discovery.jwks_uri).await
    }

    /// Seed the cache with keys obtained out of band (a pinned JWKS, or a benchmark); they are
    /// used for one TTL like fetched keys.
    pub fn seed(&self, set: &JwkSet) {
        let mut cache = self.cache.write().expect("cache lock");
        cache.keys = Arc::new(KeySet::from_jwks(set));
        cache.fetched_at = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn expect() -> Expectations {
        Expectations {
            issuer: "https://issuer.example".into(),
            audience: vec!["sluice".into()],
            leeway_secs: 30,
        }
    }

    fn claims(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    fn base() -> serde_json::Value {
        json!({ "iss": "https://issuer.example", "aud": "sluice", "sub": "repo:a/b:ref:refs/heads/main",
                "exp": 1_000, "iat": 900, "nbf": 900, "repository": "a/b", "run_attempt": "1", "numeric": 5 })
    }

    #[test]
    fn valid_claims_become_trust_claims() {
        let (c, exp) = check_claims(claims(base()), &expect(), 950).unwrap();
        assert_eq!(exp, 1_000);
        assert_eq!(c.get("repository"), Some("a/b"));
        assert_eq!(c.get("numeric"), None, "only string claims are matchable");
        assert_eq!(c.audience, vec!["sluice".to_string()]);
    }

    #[test]
    fn a_verified_token_is_reused_only_with_its_keys_and_before_it_expires() {
        let (claims, expires_at) = check_claims(claims(base()), &expect(), 950).unwrap();
        let verified = VerifiedToken {
            claims,
            kid: "k1".into(),
            expires_at,
        };
        let keys = Arc::new(KeySet::default());
        let mut cache = Verified::default();
        assert_eq!(cache.get(&keys, "t", 950, 30), None);
        cache.put(&keys, "t", &verified);
        assert_eq!(cache.get(&keys, "t", 950, 30), Some(verified.clone()));
        assert_eq!(cache.get(&keys, "other", 950, 30), None);
        // The same rule as `check_claims`: valid until `exp` plus the leeway.
        assert!(cache.get(&keys, "t", 1_029, 30).is_some());
        assert_eq!(cache.get(&keys, "t", 1_030, 30), None);
        // Keys fetched again (even the same ones) are a new set: nothing verified under the
        // old one is reused, and the first token verified under the new one replaces it all.
        let rotated = Arc::new(KeySet::default());
        assert_eq!(cache.get(&rotated, "t", 950, 30), None);
        cache.put(&rotated, "u", &verified);
        assert_eq!(cache.get(&keys, "t", 950, 30), None);
        assert_eq!(cache.get(&rotated, "t", 950, 30), None);
        assert!(cache.get(&rotated, "u", 950, 30).is_some());
        // Bounded: a full cache starts over.
        for n in 0..MAX_VERIFIED {
            cache.put(&rotated, &format!("t{n}"), &verified);
        }
        assert!(cache.tokens.len() <= MAX_VERIFIED);
    }

    #[test]
    fn time_checks_honour_the_leeway() {
        assert!(check_claims(claims(base()), &expect(), 1_029).is_ok());
        assert!(matches!(
            check_claims(claims(base()), &expect(), 1_030),
            Err(TokenError::Expired {
                exp: 1_000,
                now: 1_030
            })
        ));
        assert!(check_claims(claims(base()), &expect(), 870).is_ok());
        assert!(matches!(
            check_claims(claims(base()), &expect(), 869),
            Err(TokenError::NotYetValid { claim: "nbf", .. })
        ));
        let mut v = base();
        v.as_object_mut().unwrap().remove("nbf");
        assert!(matches!(
            check_claims(claims(v), &expect(), 869),
            Err(TokenError::NotYetValid { claim: "iat", .. })
        ));
    }

    #[test]
    fn each_bad_claim_has_its_error() {
        let with = |k: &str, v: serde_json::Value| {
            let mut b = base();
            b[k] = v;
            check_claims(claims(b), &expect(), 950)
        };
        let without = |k: &str| {
            let mut b = base();
            b.as_object_mut().unwrap().remove(k);
            check_claims(claims(b), &expect(), 950)
        };
        assert!(matches!(
            with("iss", json!("https://other")),
            Err(TokenError::WrongIssuer { .. })
        ));
        assert!(matches!(
            with("aud", json!(["x", "y"])),
            Err(TokenError::WrongAudience { .. })
        ));
        assert!(with("aud", json!(["x", "sluice"])).is_ok());
        assert!(matches!(
            with("aud", json!(3)),
            Err(TokenError::InvalidClaim("aud"))
        ));
        assert!(matches!(
            with("exp", json!("soon")),
            Err(TokenError::InvalidClaim("exp"))
        ));
        assert!(matches!(
            without("exp"),
            Err(TokenError::MissingClaim("exp"))
        ));
        assert!(matches!(
            without("aud"),
            Err(TokenError::MissingClaim("aud"))
        ));
        assert!(matches!(
            without("sub"),
            Err(TokenError::MissingClaim("sub"))
        ));
        assert!(matches!(
            without("iss"),
            Err(TokenError::MissingClaim("iss"))
        ));
    }

    fn encode(v: serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn headers_that_pick_their_own_verification_are_refused() {
        let tok = |h: serde_json::Value| format!("{}.{}.sig", encode(h), encode(json!({})));
        assert!(matches!(
            parse_header(&tok(json!({ "alg": "none", "kid": "k" }))),
            Err(TokenError::AlgNone)
        ));
        assert!(matches!(
            parse_header(&tok(json!({ "alg": "NONE" }))),
            Err(TokenError::AlgNone)
        ));
        assert!(matches!(
            parse_header(&tok(json!({ "alg": "HS256", "kid": "k" }))),
            Err(TokenError::SymmetricAlgorithm { .. })
        ));
        assert!(matches!(
            parse_header(&tok(json!({ "alg": "RS1", "kid": "k" }))),
            Err(TokenError::UnsupportedAlgorithm { .. })
        ));
        assert!(matches!(
            parse_header(&tok(json!({ "alg": "RS256" }))),
            Err(TokenError::MissingKeyId)
        ));
        assert!(matches!(parse_header("a.b"), Err(TokenError::Malformed(_))));
        assert!(matches!(
            parse_header("a.b.c.d"),
            Err(TokenError::Malformed(_))
        ));
        assert_eq!(
            parse_header(&tok(json!({ "alg": "ES256", "kid": "k" }))).unwrap(),
            TokenHeader {
                alg: Algorithm::ES256,
                kid: "k".into()
            }
        );
    }

    #[test]
    fn jwks_keys_are_restricted_to_their_algorithms() {
        let set: JwkSet = serde_json::from_value(json!({ "keys": [
            { "kty": "oct", "kid": "secret", "k": "c2VjcmV0" },
            { "kty": "EC", "kid": "enc", "use": "enc", "crv": "P-256",
              "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" },
            { "kty": "EC", "kid": "ec", "crv": "P-256",
              "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" },
            { "kty": "EC", "kid": "noid-ok" , "alg": "ES384", "crv": "P-256",
              "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" }
        ]}))
        .unwrap();
        let keys = KeySet::from_jwks(&set);
        assert!(
            !keys.contains("secret"),
            "a symmetric key never verifies runner tokens"
        );
        assert!(!keys.contains("enc"));
        assert!(keys.contains("ec"));
        assert!(!keys.contains("noid-ok"), "alg contradicts the curve");
        assert_eq!(keys.len(), 1);
    }

    proptest! {
        /// Any bytes as a token: an error, never a panic, never a verified token.
        #[test]
        fn arbitrary_tokens_are_refused(s in "[A-Za-z0-9_.-]{0,200}") {
            let keys = KeySet::default();
            prop_assert!(keys.verify(&s, &expect(), 950).is_err());
        }
    }
}
