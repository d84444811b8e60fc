//! JWT bearer authentication against configured issuers.
//!
//! The token is parsed once by hand (header and claims as JSON), the issuer
//! is chosen by `iss`, the signature is checked with `jsonwebtoken`'s
//! crypto against a key whose type serves the header's algorithm, and the
//! registered claims are validated here, so every refusal has a precise,
//! client-safe reason.
//!
//! Submodules: `keys` (issuer key sets, fetched and refreshed), `verify`
//! (keys parsed once for signature checks), `cache` (verified tokens kept
//! until they expire).

pub mod cache;
pub mod jose;
pub mod keys;
pub mod verify;

use crate::clock::now_secs;
use crate::model::claims::{
    ClaimProblem, check_identity_claims, claim_groups, claim_scopes, claim_text,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::config::{ClaimsConfig, ConfigError};
use crate::issuer::{ISSUER_NAME, InternalIssuer, claim_names};
use crate::model::identity::{CredentialKind, Identity};
use crate::secret::Secret;
use cache::TokenCache;
use jose::{TokenParts, TypePolicy, parse_claims, parse_header, split_token};
use keys::{IssuerKeys, KeySet};

/// Why a token was refused. The messages go to the client, so they never
/// contain the token or claim values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts of JSON.
    #[error("malformed token")]
    Malformed,
    /// `alg: none` or an algorithm we do not implement.
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// The header carries `crit` extensions we do not understand.
    #[error("unsupported critical header")]
    CriticalHeader,
    /// A member name appears twice in the header or the claims.
    #[error("duplicate member name in the token's JSON")]
    DuplicateMember,
    /// A registered header parameter has the wrong JSON type.
    #[error("invalid header parameter {0}")]
    BadHeaderParameter(&'static str),
    /// A JWE parameter, or `b64` (unencoded payload), in a signed token.
    #[error("header parameter {0} does not belong in a signed token")]
    ForeignHeaderParameter(&'static str),
    /// `cty: JWT`: a nested token, which is not verified.
    #[error("nested tokens are not accepted")]
    NestedToken,
    /// `typ` is not one this issuer accepts (explicit typing).
    #[error("token type not accepted for this issuer")]
    TypeNotAccepted,
    /// `exp` is further from `iat` (or now) than the issuer allows.
    #[error("token lifetime exceeds the issuer's max_lifetime")]
    LifetimeTooLong,
    /// A claim has the wrong type or a value that cannot be carried.
    #[error("invalid {claim} claim: {problem}")]
    InvalidClaim {
        /// The claim's name (configured or registered; never its value).
        claim: String,
        /// What is wrong with it.
        problem: ClaimProblem,
    },
    /// No `iss`, or an issuer we do not trust.
    #[error("untrusted issuer")]
    UnknownIssuer,
    /// The algorithm is not allowed for this issuer.
    #[error("algorithm not allowed for this issuer")]
    AlgorithmNotAllowed,
    /// No key with the token's `kid`, even after a refetch.
    #[error("unknown signing key")]
    UnknownKey,
    /// The issuer's keys are not loaded yet (fail closed).
    #[error("signing keys not available")]
    KeysUnavailable,
    /// The signature does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// `exp` missing or not a number.
    #[error("missing or invalid exp claim")]
    MissingExpiry,
    /// `exp` passed.
    #[error("token has expired")]
    Expired,
    /// `nbf` in the future.
    #[error("token is not yet valid")]
    NotYetValid,
    /// `iat` in the future.
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `aud` missing or none accepted.
    #[error("token audience not accepted")]
    BadAudience,
    /// `sub` missing or not a string.
    #[error("missing sub claim")]
    MissingSubject,
    /// A token of gatehouse's own issuer that is not a well-formed link.
    #[error("invalid link: {0}")]
    InvalidLink(String),
}

/// One trusted issuer, compiled from configuration.
pub struct Issuer {
    /// Name for logs and metrics.
    pub name: String,
    /// The exact `iss` value.
    pub issuer: String,
    /// Accepted audiences.
    pub audiences: Vec<String>,
    /// Accepted algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Live key set.
    pub keys: Arc<IssuerKeys>,
    /// Claim names for identity fields.
    pub claims: ClaimsConfig,
    /// Accepted `typ` header values.
    pub types: TypePolicy,
    /// The longest accepted `exp - iat` in seconds, when limited.
    pub max_lifetime: Option<u64>,
}

impl Issuer {
    /// Gatehouse's own issuer as the verifier trusts it: the audience is
    /// the issuer itself (links); reissued tokens, whose audience is
    /// internal, are for upstreams and not accepted back.
    pub fn internal(own: &InternalIssuer) -> Result<Issuer, ConfigError> {
        let set = KeySet::from_jwks(own.jwks())
            .map_err(|e| ConfigError::invalid("issuer.signing_keys", e.to_string()))?;
        Ok(Issuer {
            name: ISSUER_NAME.into(),
            issuer: own.issuer().to_string(),
            audiences: vec![own.issuer().to_string()],
            algorithms: own.algorithms(),
            keys: Arc::new(IssuerKeys::fixed(ISSUER_NAME.into(), set)),
            claims: claim_names(),
            types: TypePolicy::default(),
            max_lifetime: None,
        })
    }
}

/// Verifies JWTs from any configured issuer.
pub struct JwtVerifier {
    issuers: HashMap<String, Issuer>,
    leeway_secs: u64,
    group_scopes: HashMap<String, Vec<String>>,
    cache: Option<TokenCache>,
    /// The `iss` of gatehouse's own issuer: its tokens must be links.
    internal_issuer: Option<String>,
    /// Keep each token's claims in its identity (a rule's condition reads
    /// `identity.claims`).
    keep_claims: bool,
}

impl JwtVerifier {
    /// Builds a verifier; `group_mapping` is scope → groups, as configured.
    pub fn new(
        issuers: Vec<Issuer>,
        leeway_secs: u64,
        group_mapping: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> JwtVerifier {
        let group_scopes = crate::model::identity::scopes_by_group(group_mapping);
        JwtVerifier {
            issuers: issuers.into_iter().map(|i| (i.issuer.clone(), i)).collect(),
            leeway_secs,
            group_scopes,
            cache: None,
            internal_issuer: None,
            keep_claims: false,
        }
    }

    /// Keeps each verified token's claims in its identity, for rule
    /// conditions that read `identity.claims` (off: nothing is kept).
    pub fn keeping_claims(mut self, keep: bool) -> JwtVerifier {
        self.keep_claims = keep;
        self
    }

    /// Caches up to `capacity` verified tokens (0: no cache).
    pub fn with_cache(mut self, capacity: usize) -> JwtVerifier {
        self.cache = (capacity > 0).then(|| TokenCache::new(capacity));
        self
    }

    /// Counts the cache's lookups into `metrics` (no-op without a cache).
    pub fn with_cache_metrics(mut self, metrics: cache::TokenCacheMetrics) -> JwtVerifier {
        self.cache = self.cache.map(|cache| cache.with_metrics(metrics));
        self
    }

    /// The verified-token cache, if enabled (for tests to look inside).
    #[cfg(test)]
    pub(crate) fn cache(&self) -> Option<&TokenCache> {
        self.cache.as_ref()
    }

    /// How many verified tokens are cached (0 without a cache).
    pub fn cached_tokens(&self) -> usize {
        self.cache.as_ref().map_or(0, TokenCache::len)
    }

    /// Trusts gatehouse's own issuer. Its tokens are accepted only as
    /// signed links: every one must carry a well-formed grant (`URLs`).
    pub fn add_internal_issuer(&mut self, issuer: Issuer) {
        self.internal_issuer = Some(issuer.issuer.clone());
        self.issuers.insert(issuer.issuer.clone(), issuer);
    }

    /// Every trusted issuer, gatehouse's own included.
    pub fn issuers(&self) -> impl Iterator<Item = &Issuer> {
        self.issuers.values()
    }

    /// The key set of the issuer whose `iss` is `iss`.
    pub fn issuer_keys(&self, iss: &str) -> Option<&Arc<IssuerKeys>> {
        self.issuers.get(iss).map(|i| &i.keys)
    }

    /// All issuers' key sets (for readiness and refresh tasks).
    pub fn key_sets(&self) -> impl Iterator<Item = &Arc<IssuerKeys>> {
        self.issuers.values().map(|i| &i.keys)
    }

    /// Verifies `token` and returns the identity it carries.
    pub async fn verify(&self, token: &Secret) -> Result<Identity, JwtError> {
        self.verify_at(token, now_secs()).await
    }

    /// [`Self::verify`] at a given time (seconds since the epoch): from
    /// the cache when this token was verified before and is still valid.
    pub async fn verify_at(&self, token: &Secret, now: u64) -> Result<Identity, JwtError> {
        let Some(cache) = &self.cache else {
            return self.verify_uncached(token, now).await.map(|(id, _)| id);
        };
        let key = cache::digest(token.expose());
        if let Some(identity) = cache.get(&key, now, token) {
            return Ok(identity);
        }
        // Boxed, so the state of a full verification (parsed header and
        // claims, a possible key-set refetch) is allocated on a miss only
        // instead of being part of every check's future, which each layer
        // of the gRPC stack moves. A miss costs a signature check; one
        // allocation more is noise there.
        let (identity, (keys, generation)) = Box::pin(self.verify_uncached(token, now)).await?;
        if let Some(exp) = identity.expires_at {
            cache.insert(key, &identity, exp, keys, generation);
        }
        Ok(identity)
    }

    /// Full verification; also returns the issuer's key set and the
    /// generation it had before verification (for the cache).
    async fn verify_uncached(
        &self,
        token: &Secret,
        now: u64,
    ) -> Result<(Identity, (Arc<IssuerKeys>, u64)), JwtError> {
        let raw = token.expose();
        let parts = split_token(raw)?;
        let header = parse_header(parts.header)?;
        let alg = parse_algorithm(&header.alg)?;
        let claims = parse_claims(parts.claims)?;

        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(JwtError::UnknownIssuer)?;
        let issuer = self.issuers.get(iss).ok_or(JwtError::UnknownIssuer)?;
        if !issuer.algorithms.contains(&alg) {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        if !issuer.types.accepts(header.typ.as_deref()) {
            return Err(JwtError::TypeNotAccepted);
        }

        let generation = issuer.keys.generation();
        let mut set = issuer.keys.current().ok_or(JwtError::KeysUnavailable)?;
        if header.kid.as_deref().is_some_and(|kid| !set.has_kid(kid)) {
            set = issuer
                .keys
                .refetch_for_unknown_kid()
                .await
                .ok_or(JwtError::KeysUnavailable)?;
        }
        verify_signature(&set, header.kid.as_deref(), alg, &parts)?;

        self.validate_claims(issuer, &claims, now)?;
        let identity = self.identity(issuer, &claims, token)?;
        Ok((identity, (issuer.keys.clone(), generation)))
    }

    /// Checks `exp`, `nbf`, `iat` (with leeway), the issuer's
    /// `max_lifetime` and `aud`.
    fn validate_claims(
        &self,
        issuer: &Issuer,
        claims: &Map<String, Value>,
        now: u64,
    ) -> Result<(), JwtError> {
        let leeway = self.leeway_secs;
        let exp = numeric_date(claims.get("exp")).ok_or(JwtError::MissingExpiry)?;
        if now > exp.saturating_add(leeway) {
            return Err(JwtError::Expired);
        }
        let optional_date = |name: &str| match claims.get(name) {
            None => Ok(None),
            value => numeric_date(value)
                .map(Some)
                .ok_or_else(|| invalid_claim(name, ClaimProblem::WrongType)),
        };
        if let Some(nbf) = optional_date("nbf")?
            && now.saturating_add(leeway) < nbf
        {
            return Err(JwtError::NotYetValid);
        }
        let iat = optional_date("iat")?;
        if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(JwtError::IssuedInFuture);
        }
        if let Some(max) = issuer.max_lifetime {
            // From `iat` when the token says when it was issued, from now
            // otherwise; `exp` is bounded, so neither can overflow.
            let start = iat.unwrap_or(now).min(exp);
            if exp - start > max.saturating_add(leeway) {
                return Err(JwtError::LifetimeTooLong);
            }
        }
        let accepted = |aud: &str| issuer.audiences.iter().any(|a| a == aud);
        let ok = match claims.get("aud") {
            Some(Value::String(aud)) => accepted(aud),
            Some(Value::Array(list)) => {
                if !list.iter().all(Value::is_string) {
                    return Err(invalid_claim("aud", ClaimProblem::WrongType));
                }
                list.iter().filter_map(Value::as_str).any(accepted)
            }
            Some(_) => return Err(invalid_claim("aud", ClaimProblem::WrongType)),
            None => false,
        };
        if !ok {
            return Err(JwtError::BadAudience);
        }
        Ok(())
    }

    /// Builds the identity from verified claims.
    fn identity(
        &self,
        issuer: &Issuer,
        claims: &Map<String, Value>,
        token: &Secret,
    ) -> Result<Identity, JwtError> {
        check_identity_claims(&issuer.claims, claims)
            .map_err(|(claim, problem)| invalid_claim(claim, problem))?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(JwtError::MissingSubject)?
            .to_string();
        let grant = if self.internal_issuer.as_deref() == Some(issuer.issuer.as_str()) {
            match crate::model::grant::LinkGrant::from_claims(claims) {
                Ok(Some(grant)) => Some(Arc::new(grant)),
                Ok(None) => return Err(JwtError::InvalidLink("no URLs claim".into())),
                Err(reason) => return Err(JwtError::InvalidLink(reason)),
            }
        } else {
            None
        };
        let names = &issuer.claims;
        let groups = claim_groups(claims.get(&names.groups));
        let mut scopes: BTreeSet<String> = claim_scopes(claims);
        for group in &groups {
            if let Some(mapped) = self.group_scopes.get(group) {
                scopes.extend(mapped.iter().cloned());
            }
        }
        Ok(Identity {
            subject,
            username: claim_text(claims.get(&names.username)),
            email: claim_text(claims.get(&names.email)),
            uid: claim_text(claims.get(&names.uid)),
            groups,
            scopes,
            kind: if grant.is_some() {
                CredentialKind::Link
            } else {
                CredentialKind::Jwt
            },
            issuer: issuer.name.clone(),
            expires_at: numeric_date(claims.get("exp")),
            token: token.clone(),
            query_parameter: None,
            tool: None,
            grant,
            csrf: None,
            claims: self.keep_claims.then(|| Arc::new(claims.clone())),
        })
    }
}

/// The header's `alg`, parsed by jsonwebtoken's own `FromStr` (exact,
/// case-sensitive names); `none` and anything unknown are refused.
fn parse_algorithm(alg: &str) -> Result<Algorithm, JwtError> {
    alg.parse().map_err(|_| JwtError::UnsupportedAlgorithm)
}

/// Tries the candidate keys; with a `kid` there is normally exactly one.
fn verify_signature(
    set: &KeySet,
    kid: Option<&str>,
    alg: Algorithm,
    parts: &TokenParts<'_>,
) -> Result<(), JwtError> {
    let mut tried = false;
    for key in set.candidates(kid, alg).take(8) {
        tried = true;
        if key
            .key
            .verify(alg, parts.signed.as_bytes(), parts.signature)
        {
            return Ok(());
        }
    }
    if tried {
        Err(JwtError::BadSignature)
    } else if kid.is_some() && set.keys.iter().all(|k| k.kid.as_deref() != kid) {
        Err(JwtError::UnknownKey)
    } else {
        // A key with this kid exists but is of another type than the
        // header's algorithm: the signature cannot be valid.
        Err(JwtError::BadSignature)
    }
}

/// The latest NumericDate accepted: 9999-12-31T23:59:59Z. A later one is
/// not a date any issuer means; it is refused rather than saturated.
const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// A NumericDate claim as whole seconds (fractions truncated); `None` when
/// it is not a number between 0 and [`MAX_NUMERIC_DATE`].
fn numeric_date(value: Option<&Value>) -> Option<u64> {
    let Value::Number(n) = value? else {
        return None;
    };
    let secs = match n.as_u64() {
        Some(secs) => secs,
        None => {
            let f = n.as_f64()?;
            if !(0.0..=MAX_NUMERIC_DATE as f64).contains(&f) {
                return None;
            }
            // In range (checked above), so the cast neither wraps nor
            // saturates; it truncates the fraction.
            f as u64
        }
    };
    (secs <= MAX_NUMERIC_DATE).then_some(secs)
}

fn invalid_claim(claim: &str, problem: ClaimProblem) -> JwtError {
    JwtError::InvalidClaim {
        claim: claim.to_string(),
        problem,
    }
}

#[cfg(test)]
mod tests;
