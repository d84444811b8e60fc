//! A bounded cache of verified tokens, so a token seen before costs a hash
//! and a lookup instead of a signature verification.
//!
//! Entries are keyed by the SHA-256 of the token (collision-resistant, so
//! no token is kept in memory and no crafted token can hit another's
//! entry). An entry is used only while the token has not expired and the
//! issuer's key set is the one it was verified against: a key-set change
//! (rotation, removal) drops every entry of that issuer at its next use.
//! Revocation removes an entry by its token's digest.

use std::sync::Arc;

use prometheus::IntCounter;
use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};

use super::keys::IssuerKeys;
use super::link::LinkGrant;
use crate::identity::{CredentialKind, Identity};
use crate::secret::Secret;

/// SHA-256 of a token: the cache key.
pub type TokenDigest = [u8; 32];

/// Digest of a token's bytes.
pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// What a verified token established, stored compactly: boxed strings and
/// slices instead of `String`s, `Vec`s and a `BTreeSet` (whose node alone
/// is a few hundred bytes), so 100,000 entries stay small. The token itself
/// is not kept: the caller re-attaches the one it was presented with.
struct CachedIdentity {
    subject: Box<str>,
    username: Option<Box<str>>,
    email: Option<Box<str>>,
    uid: Option<Box<str>>,
    groups: Box<[Box<str>]>,
    /// Sorted, as the set they came from.
    scopes: Box<[Box<str>]>,
    kind: CredentialKind,
    issuer: Box<str>,
    expires_at: Option<u64>,
    tool: Option<Box<str>>,
    grant: Option<Arc<LinkGrant>>,
}

impl CachedIdentity {
    fn from_identity(id: &Identity) -> CachedIdentity {
        let boxed = |s: &String| Box::<str>::from(s.as_str());
        CachedIdentity {
            subject: boxed(&id.subject),
            username: id.username.as_ref().map(boxed),
            email: id.email.as_ref().map(boxed),
            uid: id.uid.as_ref().map(boxed),
            groups: id.groups.iter().map(boxed).collect(),
            scopes: id.scopes.iter().map(boxed).collect(),
            kind: id.kind,
            issuer: boxed(&id.issuer),
            expires_at: id.expires_at,
            tool: id.tool.as_ref().map(boxed),
            grant: id.grant.clone(),
        }
    }

    fn to_identity(&self, token: Secret) -> Identity {
        // `String::from(&str)`, not `Box<str>::to_string()`, which goes
        // through the formatting machinery (seen in perf on every hit).
        let text = |s: &str| String::from(s);
        Identity {
            subject: text(&self.subject),
            username: self.username.as_deref().map(text),
            email: self.email.as_deref().map(text),
            uid: self.uid.as_deref().map(text),
            groups: self.groups.iter().map(|g| text(g)).collect(),
            scopes: self.scopes.iter().map(|s| text(s)).collect(),
            kind: self.kind,
            issuer: text(&self.issuer),
            expires_at: self.expires_at,
            token,
            query_parameter: None,
            tool: self.tool.as_deref().map(text),
            grant: self.grant.clone(),
        }
    }
}

/// Counters of cache lookups by outcome
/// (`gatehouse_token_cache_lookups_total{result}`).
#[derive(Clone)]
pub struct TokenCacheMetrics {
    /// Found and still valid: no signature checked.
    pub hit: IntCounter,
    /// Not cached: the token is verified in full.
    pub miss: IntCounter,
    /// Cached but expired or verified against a key set since replaced:
    /// dropped, and the token verified in full.
    pub stale: IntCounter,
}

/// One verified token.
#[derive(Clone)]
struct Entry {
    /// The identity, compactly.
    identity: Arc<CachedIdentity>,
    /// The token's `exp`, seconds since the epoch.
    expires_at: u64,
    /// The issuer's key set, and its generation at verification time.
    keys: Arc<IssuerKeys>,
    generation: u64,
}

/// The verified-token cache.
pub struct TokenCache {
    entries: Cache<TokenDigest, Entry>,
    metrics: Option<TokenCacheMetrics>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens.
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            entries: Cache::new(capacity.max(1)),
            metrics: None,
        }
    }

    /// Counts lookups into `metrics`.
    pub fn with_metrics(mut self, metrics: TokenCacheMetrics) -> TokenCache {
        self.metrics = Some(metrics);
        self
    }

    /// The cached identity for a token, if it is still valid at `now`,
    /// with `token` (the one presented) attached.
    pub fn get(&self, digest: &TokenDigest, now: u64, token: &Secret) -> Option<Identity> {
        let count = |outcome: fn(&TokenCacheMetrics) -> &IntCounter| {
            if let Some(metrics) = &self.metrics {
                outcome(metrics).inc();
            }
        };
        let Some(entry) = self.entries.get(digest) else {
            count(|m| &m.miss);
            return None;
        };
        if now > entry.expires_at || entry.keys.generation() != entry.generation {
            self.entries.remove(digest);
            count(|m| &m.stale);
            return None;
        }
        count(|m| &m.hit);
        Some(entry.identity.to_identity(token.clone()))
    }

    /// Remembers a verified token (not the token itself).
    pub fn insert(
        &self,
        digest: TokenDigest,
        identity: &Identity,
        expires_at: u64,
        keys: Arc<IssuerKeys>,
        generation: u64,
    ) {
        self.entries.insert(
            digest,
            Entry {
                identity: Arc::new(CachedIdentity::from_identity(identity)),
                expires_at,
                keys,
                generation,
            },
        );
    }

    /// Forgets a token (revocation).
    pub fn revoke(&self, digest: &TokenDigest) {
        self.entries.remove(digest);
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.entries.clear();
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }
}
