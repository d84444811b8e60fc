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
use crate::model::grant::LinkGrant;
use crate::model::identity::{CredentialKind, Identity};
use crate::secret::Secret;

/// SHA-256 of a token: the cache key.
pub type TokenDigest = [u8; 32];

/// Digest of a token's bytes.
pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// What a verified token established, stored compactly: every string in
/// one buffer with the offsets where each ends, instead of a `String` (or
/// a box) per field and per group and scope. An entry is then three
/// allocations (this struct in its `Arc`, the text, the offsets) where a
/// whole `Identity` was a dozen or more and the boxed fields of session 1
/// still about ten, so 100,000 entries fit in the memory target
/// (BENCHMARKS.md). The token itself is not kept: the caller re-attaches
/// the one it was presented with.
struct CachedIdentity {
    /// Subject, issuer, the optional fields present (username, email, uid,
    /// tool, in that order), the groups, then the scopes, back to back.
    text: Box<str>,
    /// Where each string of `text` ends, in the same order.
    ends: Box<[u32]>,
    /// Which optional fields are present: bit 0 username, 1 email, 2 uid,
    /// 3 tool.
    present: u8,
    /// How many groups follow the optional fields; the scopes are the rest.
    groups: u32,
    kind: CredentialKind,
    expires_at: Option<u64>,
    grant: Option<Arc<LinkGrant>>,
    /// Kept only when a rule's condition reads claims.
    claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
}

impl CachedIdentity {
    /// `None` if the identity's text exceeds 4 GiB (it cannot: tokens are
    /// bounded far below that), so such an identity is simply not cached.
    fn from_identity(id: &Identity) -> Option<CachedIdentity> {
        let mut text = String::new();
        let mut ends = Vec::new();
        let mut push = |s: &str| -> Option<()> {
            text.push_str(s);
            ends.push(u32::try_from(text.len()).ok()?);
            Some(())
        };
        push(&id.subject)?;
        push(&id.issuer)?;
        let mut present = 0u8;
        for (bit, field) in [&id.username, &id.email, &id.uid, &id.tool]
            .into_iter()
            .enumerate()
        {
            if let Some(value) = field {
                present |= 1 << bit;
                push(value)?;
            }
        }
        for group in &id.groups {
            push(group)?;
        }
        for scope in &id.scopes {
            push(scope)?;
        }
        Some(CachedIdentity {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
            present,
            groups: u32::try_from(id.groups.len()).ok()?,
            kind: id.kind,
            expires_at: id.expires_at,
            grant: id.grant.clone(),
            claims: id.claims.clone(),
        })
    }

    fn to_identity(&self, token: Secret) -> Identity {
        let mut start = 0usize;
        let mut parts = self.ends.iter().map(|&end| {
            let end = end as usize;
            // Offsets were recorded while building `text`, each at a char
            // boundary and in order, so the range always exists.
            let part = self.text.get(start..end).unwrap_or_default();
            start = end;
            String::from(part)
        });
        let mut next = || parts.next().unwrap_or_default();
        let subject = next();
        let issuer = next();
        let mut optional = |bit: u8| (self.present & (1 << bit) != 0).then(&mut next);
        let (username, email, uid, tool) = (optional(0), optional(1), optional(2), optional(3));
        let groups = (0..self.groups).map(|_| next()).collect();
        let scopes = parts.collect();
        Identity {
            subject,
            username,
            email,
            uid,
            groups,
            scopes,
            kind: self.kind,
            issuer,
            expires_at: self.expires_at,
            token,
            query_parameter: None,
            tool,
            grant: self.grant.clone(),
            csrf: None,
            claims: self.claims.clone(),
        }
    }
}

pub use crate::metrics::TokenCacheMetrics;

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
        let Some(compact) = CachedIdentity::from_identity(identity) else {
            return;
        };
        self.entries.insert(
            digest,
            Entry {
                identity: Arc::new(compact),
                expires_at,
                keys,
                generation,
            },
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(
        username: Option<&str>,
        email: Option<&str>,
        uid: Option<&str>,
        tool: Option<&str>,
    ) -> Identity {
        Identity {
            subject: "sübject ✓".into(),
            username: username.map(String::from),
            email: email.map(String::from),
            uid: uid.map(String::from),
            groups: vec!["zeta".into(), "".into(), "alpha".into()],
            scopes: ["read:data".to_string(), "write:ø".to_string()].into(),
            kind: CredentialKind::Link,
            issuer: "https://issuer.test".into(),
            expires_at: Some(1_900_000_000),
            token: Secret::new("not kept"),
            query_parameter: Some("not kept either".into()),
            tool: tool.map(String::from),
            grant: None,
            csrf: None,
            claims: None,
        }
    }

    fn round_trip(id: &Identity) -> Identity {
        CachedIdentity::from_identity(id)
            .expect("compact")
            .to_identity(Secret::new("presented"))
    }

    #[test]
    fn every_field_survives_the_compact_form_whichever_optionals_are_present() {
        let optionals = [Some("a"), None, Some(""), Some("multi word ✓")];
        for mask in 0u8..16 {
            let pick = |bit: u8| optionals[usize::from(bit)].filter(|_| mask & (1 << bit) != 0);
            let original = identity(pick(0), pick(1), pick(2), pick(3));
            let back = round_trip(&original);
            assert_eq!(back.subject, original.subject, "mask {mask}");
            assert_eq!(back.username, original.username, "mask {mask}");
            assert_eq!(back.email, original.email, "mask {mask}");
            assert_eq!(back.uid, original.uid, "mask {mask}");
            assert_eq!(back.tool, original.tool, "mask {mask}");
            assert_eq!(back.groups, original.groups, "mask {mask}");
            assert_eq!(back.scopes, original.scopes, "mask {mask}");
            assert_eq!(back.issuer, original.issuer);
            assert_eq!(back.kind, original.kind);
            assert_eq!(back.expires_at, original.expires_at);
            // The presented token is attached; nothing request-specific kept.
            assert_eq!(back.token.expose(), "presented");
            assert_eq!(back.query_parameter, None);
        }
    }

    #[test]
    fn no_groups_and_no_scopes() {
        let mut original = identity(None, None, None, None);
        original.groups.clear();
        original.scopes.clear();
        let back = round_trip(&original);
        assert!(back.groups.is_empty() && back.scopes.is_empty());
        assert_eq!(back.subject, original.subject);
    }
}
