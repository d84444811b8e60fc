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

use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};

use super::keys::IssuerKeys;
use crate::identity::Identity;

/// SHA-256 of a token: the cache key.
pub type TokenDigest = [u8; 32];

/// Digest of a token's bytes.
pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// One verified token.
#[derive(Clone)]
struct Entry {
    /// The identity, without the token itself.
    identity: Arc<Identity>,
    /// The token's `exp`, seconds since the epoch.
    expires_at: u64,
    /// The issuer's key set, and its generation at verification time.
    keys: Arc<IssuerKeys>,
    generation: u64,
}

/// The verified-token cache.
pub struct TokenCache {
    entries: Cache<TokenDigest, Entry>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens.
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            entries: Cache::new(capacity.max(1)),
        }
    }

    /// The cached identity for a token, if it is still valid at `now`.
    pub fn get(&self, digest: &TokenDigest, now: u64) -> Option<Arc<Identity>> {
        let entry = self.entries.get(digest)?;
        if now > entry.expires_at || entry.keys.generation() != entry.generation {
            self.entries.remove(digest);
            return None;
        }
        Some(entry.identity)
    }

    /// Remembers a verified token. `identity.token` should be empty: the
    /// caller re-attaches the presented token on a hit.
    pub fn insert(
        &self,
        digest: TokenDigest,
        identity: Arc<Identity>,
        expires_at: u64,
        keys: Arc<IssuerKeys>,
        generation: u64,
    ) {
        self.entries.insert(
            digest,
            Entry {
                identity,
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
