//! JWT claims -> what a caller may publish and which private updates it may receive.
//!
//! Tokens follow Mercure: a compact JWS whose `mercure` claim (or the same object under
//! `https://mercure.rocks/`) holds `publish` and `subscribe` selector lists and an optional
//! `payload`. The algorithm is pinned per key; `none` is never accepted.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::selector::{Selector, SelectorSet};

/// Most selectors accepted in one claim list.
pub const MAX_SELECTORS_PER_CLAIM: usize = 1000;

/// A token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Malformed, wrongly signed, wrong algorithm, expired or not yet valid.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A claim list holds more selectors than allowed.
    #[error("the token's {claim} claim has more than {MAX_SELECTORS_PER_CLAIM} selectors")]
    TooManySelectors {
        /// `publish` or `subscribe`.
        claim: &'static str,
    },
}

/// What a verified token grants.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    /// Topics the bearer may publish to (`None`: the claim is absent, nothing may be published).
    pub publish: Option<SelectorSet>,
    /// Private updates the bearer may receive.
    pub subscribe: Option<SelectorSet>,
    /// `mercure.payload`, shown in subscription events.
    pub payload: Option<serde_json::Value>,
    /// Expiry, in seconds since the Unix epoch.
    pub expires_at: Option<u64>,
}

impl Claims {
    /// Whether every one of `topics` matches a `publish` selector.
    pub fn may_publish_to<S: AsRef<str>>(&self, topics: &[S]) -> bool {
        match &self.publish {
            None => false,
            Some(set) => topics.iter().all(|t| set.matches_any(&[t.as_ref()])),
        }
    }

    /// Whether a private update with these topics may reach the bearer.
    pub fn may_receive_private<S: AsRef<str>>(&self, topics: &[S]) -> bool {
        self.subscribe
            .as_ref()
            .is_some_and(|set| set.matches_any(topics))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct MercureClaim {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    publish: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subscribe: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TokenBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mercure: Option<MercureClaim>,
    #[serde(
        default,
        rename = "https://mercure.rocks/",
        skip_serializing_if = "Option::is_none"
    )]
    namespaced: Option<MercureClaim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
}

/// Verifies tokens signed with one key and one algorithm.
///
/// Tokens it accepted are remembered (up to [`CACHED_TOKENS`], each up to [`CACHED_TOKEN_BYTES`]),
/// so a client that sends the same token with every request pays for one signature check rather
/// than one per request. A remembered token is answered only while its `exp` is in the future;
/// from then on it is checked again, and refused, like any expired token. Clones share what is
/// remembered.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    cache: Arc<TokenCache>,
}

/// Most tokens a [`Verifier`] remembers.
pub const CACHED_TOKENS: usize = 1024;
/// Longest token a [`Verifier`] remembers, in bytes; longer ones are checked every time.
pub const CACHED_TOKEN_BYTES: usize = 4096;

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

/// A signing algorithm a key is pinned to. `none` does not exist here on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// HMAC with SHA-256 (a shared secret). The default.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSA PKCS#1 v1.5 with SHA-256 (a PEM public key).
    RS256,
    /// RSA PKCS#1 v1.5 with SHA-384.
    RS384,
    /// RSA PKCS#1 v1.5 with SHA-512.
    RS512,
    /// RSA-PSS with SHA-256.
    PS256,
    /// RSA-PSS with SHA-384.
    PS384,
    /// RSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256 (a PEM public key).
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// Ed25519 (a PEM public key).
    EdDSA,
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "HS256" => Self::HS256,
            "HS384" => Self::HS384,
            "HS512" => Self::HS512,
            "RS256" => Self::RS256,
            "RS384" => Self::RS384,
            "RS512" => Self::RS512,
            "PS256" => Self::PS256,
            "PS384" => Self::PS384,
            "PS512" => Self::PS512,
            "ES256" => Self::ES256,
            "ES384" => Self::ES384,
            "EDDSA" => Self::EdDSA,
            "NONE" => return Err("the algorithm \"none\" is never accepted".into()),
            _ => {
                return Err(format!(
                    "unknown JWT algorithm {s:?}: use HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA"
                ))
            }
        })
    }
}

impl KeyAlgorithm {
    fn algorithm(self) -> Algorithm {
        match self {
            Self::HS256 => Algorithm::HS256,
            Self::HS384 => Algorithm::HS384,
            Self::HS512 => Algorithm::HS512,
            Self::RS256 => Algorithm::RS256,
            Self::RS384 => Algorithm::RS384,
            Self::RS512 => Algorithm::RS512,
            Self::PS256 => Algorithm::PS256,
            Self::PS384 => Algorithm::PS384,
            Self::PS512 => Algorithm::PS512,
            Self::ES256 => Algorithm::ES256,
            Self::ES384 => Algorithm::ES384,
            Self::EdDSA => Algorithm::EdDSA,
        }
    }

    /// Whether the key is a shared secret (HMAC) rather than a public key.
    pub fn is_hmac(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }
}

impl Verifier {
    /// An HMAC-SHA256 (HS256) verifier for a shared secret.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::with_key(DecodingKey::from_secret(secret), KeyAlgorithm::HS256)
    }

    /// A verifier pinned to `algorithm`: for HMAC `key` is the shared secret, otherwise a PEM
    /// public key (RSA, EC or Ed25519, matching the algorithm).
    pub fn new(algorithm: KeyAlgorithm, key: &[u8]) -> Result<Self, AuthError> {
        let bad = |e: jsonwebtoken::errors::Error| {
            AuthError::Invalid(format!("the {algorithm:?} public key is not usable: {e}"))
        };
        let decoding = match algorithm {
            KeyAlgorithm::HS256 | KeyAlgorithm::HS384 | KeyAlgorithm::HS512 => {
                if key.is_empty() {
                    return Err(AuthError::Invalid("the JWT secret is empty".into()));
                }
                DecodingKey::from_secret(key)
            }
            KeyAlgorithm::RS256
            | KeyAlgorithm::RS384
            | KeyAlgorithm::RS512
            | KeyAlgorithm::PS256
            | KeyAlgorithm::PS384
            | KeyAlgorithm::PS512 => DecodingKey::from_rsa_pem(key).map_err(bad)?,
            KeyAlgorithm::ES256 | KeyAlgorithm::ES384 => {
                DecodingKey::from_ec_pem(key).map_err(bad)?
            }
            KeyAlgorithm::EdDSA => DecodingKey::from_ed_pem(key).map_err(bad)?,
        };
        Ok(Self::with_key(decoding, algorithm))
    }

    fn with_key(key: DecodingKey, algorithm: KeyAlgorithm) -> Self {
        // One algorithm per key: a token announcing another one (HS256 signed with an RSA public
        // key as the secret, or `none`) is refused.
        let mut validation = Validation::new(algorithm.algorithm());
        validation.required_spec_claims.clear();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = 0;
        Self {
            key,
            validation,
            cache: Arc::default(),
        }
    }

    /// Checks the signature, the algorithm and `exp`/`nbf`, and returns the claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let now = unix_now();
        if let Some(claims) = self.cache.get(token, now) {
            return Ok(claims);
        }
        let claims = self.check(token)?;
        self.cache.put(token, &claims, now);
        Ok(claims)
    }

    /// What [`Verifier::verify`] does for a token it does not remember.
    fn check(&self, token: &str) -> Result<Claims, AuthError> {
        let data = jsonwebtoken::decode::<TokenBody>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Invalid(describe(&e)))?;
        let body = data.claims;
        let claim = body.mercure.or(body.namespaced).unwrap_or_default();
        Ok(Claims {
            publish: selectors(claim.publish, "publish")?,
            subscribe: selectors(claim.subscribe, "subscribe")?,
            payload: claim.payload,
            expires_at: body.exp,
        })
    }
}

/// Tokens already verified, by a keyed hash of the token. The hash is keyed with a random key per
/// cache and the stored token is compared in constant time, so that neither the map's own
/// comparisons nor the final one tell a caller how much of a remembered token it guessed.
#[derive(Default)]
struct TokenCache {
    hasher: RandomState,
    entries: Mutex<HashMap<u64, Remembered>>,
}

struct Remembered {
    token: Box<str>,
    claims: Claims,
}

impl TokenCache {
    /// The claims of `token` if it was verified and has not expired at `now` (seconds).
    fn get(&self, token: &str, now: u64) -> Option<Claims> {
        if token.len() > CACHED_TOKEN_BYTES {
            return None;
        }
        let key = self.hasher.hash_one(token);
        let entries = self.lock();
        let found = entries.get(&key)?;
        if !same_bytes(found.token.as_bytes(), token.as_bytes()) || expired(&found.claims, now) {
            return None;
        }
        Some(found.claims.clone())
    }

    /// Remembers the claims of a token just verified.
    fn put(&self, token: &str, claims: &Claims, now: u64) {
        if token.len() > CACHED_TOKEN_BYTES || expired(claims, now) {
            return;
        }
        let key = self.hasher.hash_one(token);
        let mut entries = self.lock();
        if entries.len() >= CACHED_TOKENS && !entries.contains_key(&key) {
            entries.retain(|_, e| !expired(&e.claims, now));
            if entries.len() >= CACHED_TOKENS {
                // Many distinct live tokens: start over rather than track recency on every hit.
                entries.clear();
            }
        }
        entries.insert(
            key,
            Remembered {
                token: token.into(),
                claims: claims.clone(),
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Remembered>> {
        // Every critical section only reads or replaces whole entries: a panic elsewhere cannot
        // leave one half-written.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether claims with this `exp` may no longer be answered from memory at `now`. The signature
/// check refuses a token once `exp` is in the past; the cache stops one second earlier and lets
/// that check decide the last second.
fn expired(claims: &Claims, now: u64) -> bool {
    claims.expires_at.is_some_and(|exp| now >= exp)
}

/// Byte equality whose time depends only on the lengths.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn selectors(
    list: Option<Vec<String>>,
    claim: &'static str,
) -> Result<Option<SelectorSet>, AuthError> {
    match list {
        None => Ok(None),
        Some(l) if l.len() > MAX_SELECTORS_PER_CLAIM => Err(AuthError::TooManySelectors { claim }),
        Some(l) => Ok(Some(SelectorSet::new(
            l.iter().map(|s| Selector::parse(s)).collect(),
        ))),
    }
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidSignature => "the signature does not match the configured key".into(),
        ErrorKind::InvalidAlgorithm => "the token's algorithm is not the one configured".into(),
        ErrorKind::InvalidToken => "not a well-formed JWT".into(),
        _ => "the token could not be decoded".into(),
    }
}

/// What a token minted by [`mint_hs256`] grants.
#[derive(Debug, Clone, Default)]
pub struct TokenSpec {
    /// `mercure.publish` selectors (absent when `None`).
    pub publish: Option<Vec<String>>,
    /// `mercure.subscribe` selectors (absent when `None`).
    pub subscribe: Option<Vec<String>>,
    /// Lifetime in seconds from now; `None` never expires.
    pub ttl_secs: Option<u64>,
}

/// Signs a Mercure token with HS256.
pub fn mint_hs256(secret: &[u8], spec: &TokenSpec) -> Result<String, AuthError> {
    let exp = spec.ttl_secs.map(|ttl| unix_now().saturating_add(ttl));
    let body = TokenBody {
        mercure: Some(MercureClaim {
            publish: spec.publish.clone(),
            subscribe: spec.subscribe.clone(),
            payload: None,
        }),
        namespaced: None,
        exp,
        nbf: None,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &body,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| AuthError::Invalid(e.to_string()))
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mint_and_verify() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let token = mint_hs256(
            secret,
            &TokenSpec {
                publish: Some(vec!["https://example.com/books/{id}".into()]),
                subscribe: Some(vec!["*".into()]),
                ttl_secs: Some(60),
            },
        )
        .unwrap();
        let claims = Verifier::hs256(secret).verify(&token).unwrap();
        assert!(claims.may_publish_to(&["https://example.com/books/1"]));
        assert!(!claims.may_publish_to(&["https://example.com/books/1", "https://other"]));
        assert!(claims.may_receive_private(&["anything"]));
        assert!(claims.expires_at.is_some());
        assert!(Verifier::hs256(b"another secret, also long enough!")
            .verify(&token)
            .is_err());
    }

    #[test]
    fn expired_and_garbage_tokens_are_refused() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let body = TokenBody {
            mercure: Some(MercureClaim::default()),
            namespaced: None,
            exp: Some(1),
            nbf: None,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &body,
            &EncodingKey::from_secret(secret),
        )
        .unwrap();
        let err = Verifier::hs256(secret).verify(&token).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        assert!(Verifier::hs256(secret).verify("not.a.jwt").is_err());
        assert!(Verifier::hs256(secret).verify("").is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        // {"alg":"none","typ":"JWT"} . {"mercure":{"publish":["*"]}} . (no signature)
        let token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJtZXJjdXJlIjp7InB1Ymxpc2giOlsiKiJdfX0.";
        assert!(Verifier::hs256(b"secret").verify(token).is_err());
    }

    #[test]
    fn namespaced_claim_is_read() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let body = TokenBody {
            mercure: None,
            namespaced: Some(MercureClaim {
                publish: Some(vec!["a".into()]),
                subscribe: None,
                payload: None,
            }),
            exp: None,
            nbf: None,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &body,
            &EncodingKey::from_secret(secret),
        )
        .unwrap();
        let claims = Verifier::hs256(secret).verify(&token).unwrap();
        assert!(claims.may_publish_to(&["a"]));
        assert!(!claims.may_receive_private(&["a"]));
    }

    #[test]
    fn remembered_tokens_are_answered_until_they_expire() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let token = mint_hs256(
            secret,
            &TokenSpec {
                publish: Some(vec!["a".into()]),
                subscribe: None,
                ttl_secs: Some(60),
            },
        )
        .unwrap();
        let verifier = Verifier::hs256(secret);
        let claims = verifier.verify(&token).unwrap();
        let exp = claims.expires_at.unwrap();
        let again = verifier.clone().verify(&token).unwrap();
        assert!(again.may_publish_to(&["a"]) && !again.may_publish_to(&["b"]));
        assert!(verifier.cache.get(&token, exp - 1).is_some());
        assert!(verifier.cache.get(&token, exp).is_none());
        // A token without `exp` stays valid.
        let forever = mint_hs256(secret, &TokenSpec::default()).unwrap();
        verifier.verify(&forever).unwrap();
        assert!(verifier.cache.get(&forever, u64::MAX).is_some());
    }

    #[test]
    fn only_the_exact_token_is_answered_from_memory() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let token = mint_hs256(secret, &TokenSpec::default()).unwrap();
        let verifier = Verifier::hs256(secret);
        verifier.verify(&token).unwrap();
        // One character changed in the middle of the signature.
        let at = token.len() - 10;
        let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
        let tampered = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
        assert!(verifier.verify(&tampered).is_err());
        assert!(verifier.cache.get(&tampered, 0).is_none());
        // Another key's verifier does not share what this one remembers.
        assert!(Verifier::hs256(b"another secret, also long enough!")
            .verify(&token)
            .is_err());
        // Refused tokens are not remembered.
        assert!(verifier.verify("not.a.jwt").is_err());
        assert!(verifier.cache.get("not.a.jwt", 0).is_none());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = TokenCache::default();
        let live = Claims::default();
        for i in 0..CACHED_TOKENS * 3 {
            cache.put(&format!("token-{i}"), &live, 0);
            assert!(cache.lock().len() <= CACHED_TOKENS);
        }
        let long = "x".repeat(CACHED_TOKEN_BYTES + 1);
        cache.put(&long, &live, 0);
        assert!(cache.get(&long, 0).is_none());
        let dead = Claims {
            expires_at: Some(10),
            ..Claims::default()
        };
        cache.put("dead", &dead, 10);
        assert!(cache.get("dead", 10).is_none());
    }
}
