//! Verification keys of one issuer: parsed once from a JWKS (inline, file,
//! URL or OIDC discovery) or a shared secret, refreshed in the background,
//! refetched (rate-limited) on an unknown `kid`, and kept when the issuer
//! is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use tokio::sync::Mutex;

use sha2::{Digest, Sha256};

use super::verify::KeyMaterial;
use crate::config::RefreshConfig;
use crate::metrics::{KeyMetrics, KeySetGauge};

/// The first retry after a failed fetch while no key set has loaded yet
/// (it doubles up to `refresh.retry_interval`).
pub const FIRST_RETRY: Duration = Duration::from_millis(100);

/// Largest JWKS or discovery document accepted from the network.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Why a key set could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyError {
    /// The HTTP request failed or returned a non-success status.
    #[error("fetching {url}: {reason}")]
    Fetch {
        /// What was fetched.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The document is not a valid JWKS / discovery document.
    #[error("{0}")]
    Document(String),
}

/// The kind of a verification key, which decides the algorithms it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA: RS256/384/512, PS256/384/512.
    Rsa,
    /// EC P-256: ES256.
    P256,
    /// EC P-384: ES384.
    P384,
    /// Ed25519: EdDSA.
    Ed25519,
    /// HMAC shared secret: HS256/384/512 (never from a JWKS).
    Hmac,
}

impl KeyKind {
    /// Whether a key of this kind may verify `alg`. This is the guard
    /// against algorithm confusion: an RSA key never verifies an HMAC.
    pub fn serves(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (KeyKind::Rsa, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (KeyKind::P256, ES256)
                | (KeyKind::P384, ES384)
                | (KeyKind::Ed25519, EdDSA)
                | (KeyKind::Hmac, HS256 | HS384 | HS512)
        )
    }
}

/// One parsed verification key.
#[derive(Clone)]
pub struct VerifyKey {
    /// The JWK `kid`, if any.
    pub kid: Option<String>,
    /// The JWK `alg` pin, if any: then only that algorithm is accepted.
    pub alg: Option<Algorithm>,
    /// What kind of key it is.
    pub kind: KeyKind,
    /// The key, parsed and ready to verify.
    pub key: KeyMaterial,
}

impl VerifyKey {
    /// Whether this key may verify a token signed with `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.serves(alg) && self.alg.is_none_or(|pinned| pinned == alg)
    }
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A loaded set of keys.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    /// The usable keys.
    pub keys: Vec<VerifyKey>,
    /// SHA-256 over the keys' source (JWK JSON or secret), to tell a real
    /// change from a refresh that returned the same keys.
    pub fingerprint: [u8; 32],
}

impl KeySet {
    /// Parses a JWKS document. Keys that cannot verify signatures for us
    /// (encryption keys, symmetric keys, unknown types or curves) are
    /// skipped; a document with no usable key is an error.
    pub fn from_jwks(doc: &serde_json::Value) -> Result<KeySet, KeyError> {
        let entries = doc
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| KeyError::Document("JWKS has no \"keys\" array".into()))?;
        let mut hasher = Sha256::new();
        let mut keys = Vec::with_capacity(entries.len());
        for entry in entries {
            if let Some(key) = parse_jwk(entry) {
                hasher.update(entry.to_string().as_bytes());
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(KeyError::Document(
                "JWKS has no usable signature verification key".into(),
            ));
        }
        Ok(KeySet {
            keys,
            fingerprint: hasher.finalize().into(),
        })
    }

    /// A key set holding one HMAC shared secret.
    pub fn from_shared_secret(secret: &[u8]) -> KeySet {
        KeySet {
            keys: vec![VerifyKey {
                kid: None,
                alg: None,
                kind: KeyKind::Hmac,
                key: KeyMaterial::secret(secret),
            }],
            fingerprint: Sha256::digest(secret).into(),
        }
    }

    /// Keys that may verify a token with this `kid` and `alg`. With a
    /// `kid`, only keys carrying that id; without, every key that accepts
    /// the algorithm.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerifyKey> + 'a {
        self.keys.iter().filter(move |k| {
            k.accepts(alg)
                && match kid {
                    Some(kid) => k.kid.as_deref() == Some(kid),
                    None => true,
                }
        })
    }

    /// Whether any key has this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// Parses one JWK into a verification key, or `None` when it is not one
/// we can or may use.
fn parse_jwk(value: &serde_json::Value) -> Option<VerifyKey> {
    let jwk: Jwk = serde_json::from_value(value.clone()).ok()?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => KeyKind::P256,
            EllipticCurve::P384 => KeyKind::P384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => KeyKind::Ed25519,
            _ => return None,
        },
        // Symmetric keys are only ever configured as shared secrets: a JWKS
        // (often public) must not be able to introduce an HMAC key.
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(jwk_algorithm(a)?),
    };
    if alg.is_some_and(|a| !kind.serves(a)) {
        return None;
    }
    let key = KeyMaterial::from_jwk(&jwk, kind)?;
    Some(VerifyKey {
        kid: jwk.common.key_id,
        alg,
        kind,
        key,
    })
}

/// Maps a JWK `alg` to a signature algorithm; encryption algorithms → None.
fn jwk_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Where an issuer's keys come from at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// Loaded once at start-up (inline JWKS, file, shared secret).
    Static,
    /// A JWKS URL.
    JwksUri(String),
    /// An OIDC discovery document naming the JWKS URL.
    Discovery {
        /// The discovery document URL.
        url: String,
        /// The issuer the document must name.
        issuer: String,
    },
}

/// The live key set of one issuer.
pub struct IssuerKeys {
    /// Issuer name, for logs.
    pub name: String,
    origin: KeyOrigin,
    refresh: RefreshConfig,
    /// The HTTP client of a remote set; static keys have none.
    http: Option<reqwest::Client>,
    current: ArcSwapOption<KeySet>,
    /// Bumped whenever the key set's content changes (cache invalidation).
    generation: AtomicU64,
    /// Time of the last unknown-`kid` refetch; the mutex also makes
    /// concurrent refetches single-flight.
    last_refetch: Mutex<Option<Instant>>,
    /// Never fetch (`gatehouse explain` runs without network).
    offline: AtomicBool,
    /// Unix time of the last successful fetch (0: never).
    fetched_at: AtomicU64,
    /// Fetch counters, when metrics are kept.
    metrics: Option<KeyMetrics>,
}

impl IssuerKeys {
    /// Keys loaded once, never refreshed.
    pub fn fixed(name: String, set: KeySet) -> IssuerKeys {
        IssuerKeys {
            name,
            origin: KeyOrigin::Static,
            refresh: RefreshConfig::default(),
            http: None,
            current: ArcSwapOption::from_pointee(set),
            generation: AtomicU64::new(0),
            last_refetch: Mutex::new(None),
            offline: AtomicBool::new(false),
            fetched_at: AtomicU64::new(crate::clock::now_secs()),
            metrics: None,
        }
    }

    /// Keys fetched from the network; empty until the first fetch.
    pub fn remote(
        name: String,
        origin: KeyOrigin,
        refresh: RefreshConfig,
        http: reqwest::Client,
    ) -> IssuerKeys {
        IssuerKeys {
            name,
            origin,
            refresh,
            http: Some(http),
            current: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            last_refetch: Mutex::new(None),
            offline: AtomicBool::new(false),
            fetched_at: AtomicU64::new(0),
            metrics: None,
        }
    }

    /// Counts this key set's fetches in `metrics`.
    pub fn with_metrics(mut self, metrics: KeyMetrics) -> IssuerKeys {
        self.metrics = Some(metrics);
        self
    }

    /// Whether these keys are fetched from the same place, under the same
    /// name and refresh settings, as `origin` describes: then a reload
    /// keeps this key set (and its refresh) instead of fetching anew.
    pub fn same_source(&self, name: &str, origin: &KeyOrigin, refresh: &RefreshConfig) -> bool {
        self.is_remote() && self.name == name && self.origin == *origin && self.refresh == *refresh
    }

    /// Unix time of the last successful fetch (for fixed keys: when they
    /// were loaded); `None` before the first.
    pub fn fetched_at(&self) -> Option<u64> {
        match self.fetched_at.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// Notes a fetch's outcome (metrics, age).
    fn fetched(&self, ok: bool) {
        if ok {
            self.fetched_at
                .store(crate::clock::now_secs(), Ordering::Relaxed);
        }
        if let Some(metrics) = &self.metrics {
            metrics.fetched(ok);
        }
    }

    /// The current key set, if one has been loaded.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    /// The key set's generation: it changes whenever keys are added,
    /// removed or replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Installs a newly fetched key set, bumping the generation when its
    /// content differs from the current one.
    pub fn install(&self, set: KeySet) {
        let changed = self
            .current
            .load()
            .as_ref()
            .is_none_or(|old| old.fingerprint != set.fingerprint);
        self.current.store(Some(Arc::new(set)));
        if changed {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether a key set is loaded (readiness).
    pub fn is_ready(&self) -> bool {
        self.current.load().is_some()
    }

    /// What the key-set gauges show of this set: `None` for static keys,
    /// which are never fetched.
    pub fn gauge(&self) -> Option<KeySetGauge> {
        self.is_remote().then(|| KeySetGauge {
            name: self.name.clone(),
            keys: self.current().map_or(0, |set| set.keys.len()),
            fetched_at: self.fetched_at(),
        })
    }

    /// Whether the keys are fetched from the network (and so refreshed).
    pub fn is_remote(&self) -> bool {
        !matches!(self.origin, KeyOrigin::Static)
    }

    /// Where the keys come from, for messages: `static`, `jwks_uri`,
    /// `discovery`.
    pub fn origin_label(&self) -> &'static str {
        match self.origin {
            KeyOrigin::Static => "static",
            KeyOrigin::JwksUri(_) => "jwks_uri",
            KeyOrigin::Discovery { .. } => "discovery",
        }
    }

    /// From now on, never fetch: every fetch fails and the current key set
    /// (possibly none) stays. For `gatehouse explain`.
    pub fn set_offline(&self) {
        self.offline.store(true, Ordering::Release);
    }

    /// Refetches because a token named a `kid` we do not know, at most
    /// once per `unknown_kid_interval`; returns the key set to use.
    pub async fn refetch_for_unknown_kid(&self) -> Option<Arc<KeySet>> {
        if !self.is_remote() {
            return self.current();
        }
        let mut last = self.last_refetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.refresh.unknown_kid_interval) {
            return self.current();
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok((set, _)) => {
                tracing::info!(issuer = %self.name, keys = set.keys.len(), "key set refetched for an unknown kid");
                self.install(set);
                self.fetched(true);
            }
            Err(e) => {
                self.fetched(false);
                tracing::warn!(issuer = %self.name, error = %e, "key refetch failed; keeping the last good key set")
            }
        }
        self.current()
    }

    /// Fetches and replaces the key set forever: at the `max-age` the
    /// server gives (within bounds), or the configured interval; after a
    /// failure, at the retry interval, keeping the last good set. Until a
    /// first set has loaded, retries back off from [`FIRST_RETRY`],
    /// doubling up to the retry interval: an IdP starting together with
    /// gatehouse is picked up within a fraction of a second, not after
    /// a whole retry interval of 503s.
    pub async fn refresh_forever(self: Arc<Self>) {
        if !self.is_remote() {
            return;
        }
        let mut backoff = FIRST_RETRY;
        loop {
            let wait = match self.fetch().await {
                Ok((set, max_age)) => {
                    tracing::info!(issuer = %self.name, keys = set.keys.len(), "key set loaded");
                    self.install(set);
                    self.fetched(true);
                    backoff = FIRST_RETRY;
                    self.next_refresh(max_age)
                }
                Err(e) => {
                    self.fetched(false);
                    tracing::warn!(issuer = %self.name, error = %e, "key set fetch failed; keeping the last good key set");
                    let retry = self.refresh.retry_interval;
                    if self.current().is_none() {
                        let wait = backoff.min(retry);
                        backoff = backoff.saturating_mul(2).min(retry);
                        wait
                    } else {
                        retry
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// The delay before the next scheduled refresh.
    fn next_refresh(&self, max_age: Option<Duration>) -> Duration {
        match max_age {
            Some(age) => age.clamp(self.refresh.min_interval, self.refresh.max_interval),
            None => self.refresh.interval,
        }
    }

    /// One fetch: discovery (if configured) then the JWKS.
    async fn fetch(&self) -> Result<(KeySet, Option<Duration>), KeyError> {
        if self.offline.load(Ordering::Acquire) {
            return Err(KeyError::Fetch {
                url: self.origin_label().into(),
                reason: "offline: no key fetching".into(),
            });
        }
        let jwks_uri = match &self.origin {
            KeyOrigin::Static => {
                return Ok((
                    self.current().map(|s| (*s).clone()).unwrap_or_default(),
                    None,
                ));
            }
            KeyOrigin::JwksUri(uri) => uri.clone(),
            KeyOrigin::Discovery { url, issuer } => {
                let (doc, _) = self.get_json(url).await?;
                discovered_jwks_uri(&doc, issuer)?
            }
        };
        let (doc, max_age) = self.get_json(&jwks_uri).await?;
        Ok((KeySet::from_jwks(&doc)?, max_age))
    }

    /// GETs a JSON document, bounded in time and size; returns it with the
    /// `Cache-Control: max-age` the server sent.
    async fn get_json(&self, url: &str) -> Result<(serde_json::Value, Option<Duration>), KeyError> {
        let fail = |reason: String| KeyError::Fetch {
            url: url.to_string(),
            reason,
        };
        let Some(http) = &self.http else {
            return Err(fail("static keys are not fetched".into()));
        };
        let mut response = http
            .get(url)
            .timeout(self.refresh.timeout)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP status {}", response.status())));
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(cache_max_age);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fail(e.to_string()))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(fail("document larger than 1 MiB".into()));
            }
            body.extend_from_slice(&chunk);
        }
        let doc = serde_json::from_slice(&body).map_err(|e| fail(format!("not JSON: {e}")))?;
        Ok((doc, max_age))
    }
}

/// Reads `jwks_uri` from an OIDC discovery document after checking that it
/// names the expected issuer (OpenID Connect Discovery §4.3).
fn discovered_jwks_uri(doc: &serde_json::Value, issuer: &str) -> Result<String, KeyError> {
    let metadata: openidconnect::core::CoreProviderMetadata =
        serde_json::from_value(doc.clone())
            .map_err(|e| KeyError::Document(format!("invalid discovery document: {e}")))?;
    if metadata.issuer().as_str() != issuer {
        return Err(KeyError::Document(format!(
            "discovery document names issuer {:?}, expected {issuer:?}",
            metadata.issuer().as_str()
        )));
    }
    Ok(metadata.jwks_uri().url().to_string())
}

/// `max-age` from a `Cache-Control` value; `no-store`/`no-cache` count as 0.
fn cache_max_age(value: &str) -> Option<Duration> {
    let mut max_age = None;
    for directive in value.split(',') {
        let directive = directive.trim().to_ascii_lowercase();
        if directive == "no-store" || directive == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(secs) = directive.strip_prefix("max-age=") {
            max_age = secs
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    max_age
}

/// The gauges of the remote key sets among `key_sets`, for a scrape.
pub fn gauges(key_sets: &[Arc<IssuerKeys>]) -> Vec<KeySetGauge> {
    key_sets.iter().filter_map(|k| k.gauge()).collect()
}

#[cfg(test)]
mod tests;
