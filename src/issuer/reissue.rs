//! Reissued tokens (Gafaelfawr's `audience`): on an allowed request, the
//! caller's identity and scopes re-signed by the internal issuer with an
//! internal audience and a short lifetime, for the upstream in
//! `X-Auth-Request-Token`. A reissued token is reused until shortly before
//! it expires, from a bounded cache keyed by the caller's credential and
//! the audience.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{InternalIssuer, new_jti};
use crate::config::{ConfigError, ReissueConfig};
use crate::model::identity::Identity;
use crate::secret::Secret;

/// Longest lifetime a reissued token may be configured with.
const MAX_LIFETIME_SECS: u64 = 24 * 3600;
/// A cached token is reused while it has more than this share of its
/// lifetime left (and at most [`MAX_REUSE_MARGIN_SECS`] is kept).
const REUSE_MARGIN_DIVISOR: u64 = 4;
const MAX_REUSE_MARGIN_SECS: u64 = 60;

/// Why a token could not be reissued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReissueError {
    /// The audience is not one of `issuer.reissue.audiences` (500: the
    /// route is misconfigured).
    #[error("audience {0:?} is not one of issuer.reissue.audiences")]
    UnknownAudience(String),
    /// Signing failed (500).
    #[error("the token could not be signed")]
    Signing,
}

struct Cached {
    token: Secret,
    expires_at: u64,
    reuse_until: u64,
}

/// Reissue settings and the token cache.
pub struct Reissuer {
    audiences: Vec<String>,
    lifetime: u64,
    max_entries: usize,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
}

impl Reissuer {
    /// Validates `issuer.reissue`; `issuer` is the internal issuer's own
    /// audience (links), which a reissued token must never carry.
    pub fn build(cfg: &ReissueConfig, issuer: &str) -> Result<Reissuer, ConfigError> {
        for (i, aud) in cfg.audiences.iter().enumerate() {
            let key = format!("issuer.reissue.audiences[{i}]");
            if aud.is_empty() || aud.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(ConfigError::invalid(key, "non-empty, without spaces"));
            }
            if aud == issuer {
                return Err(ConfigError::invalid(
                    key,
                    "must differ from issuer.issuer (the audience of links)",
                ));
            }
        }
        if let Some(dup) = super::first_duplicate(&cfg.audiences) {
            return Err(ConfigError::invalid(
                "issuer.reissue.audiences",
                format!("{dup:?} is listed twice"),
            ));
        }
        let lifetime = cfg.lifetime.as_secs();
        if lifetime == 0 || lifetime > MAX_LIFETIME_SECS {
            return Err(ConfigError::invalid(
                "issuer.reissue.lifetime",
                "between 1s and 24h",
            ));
        }
        Ok(Reissuer {
            audiences: cfg.audiences.clone(),
            lifetime,
            max_entries: cfg.cache_entries,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `audience` may be reissued for.
    pub fn knows(&self, audience: &str) -> bool {
        self.audiences.iter().any(|a| a == audience)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], Cached>> {
        // Every update is a single map operation: a poisoned map is intact.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of cached tokens.
    pub fn cached(&self) -> usize {
        self.lock().len()
    }

    /// A token for `identity` with `aud = audience`: from the cache while
    /// it is fresh enough, else newly signed (and cached).
    pub fn token(
        &self,
        issuer: &InternalIssuer,
        identity: &Identity,
        audience: &str,
        now: u64,
    ) -> Result<Secret, ReissueError> {
        if !self.knows(audience) {
            return Err(ReissueError::UnknownAudience(audience.to_string()));
        }
        let key = cache_key(identity, audience);
        if let Some(hit) = self.lock().get(&key)
            && now < hit.reuse_until
        {
            return Ok(hit.token.clone());
        }
        let claims = self.claims(issuer, identity, audience, now)?;
        let expires_at = claims.get("exp").and_then(Value::as_u64).unwrap_or(now);
        let token = issuer.sign(&claims).map_err(|_| ReissueError::Signing)?;
        let lifetime = expires_at.saturating_sub(now);
        let margin = (lifetime / REUSE_MARGIN_DIVISOR).min(MAX_REUSE_MARGIN_SECS);
        if self.max_entries > 0 {
            let mut cache = self.lock();
            if cache.len() >= self.max_entries && !cache.contains_key(&key) {
                cache.retain(|_, c| c.expires_at > now);
                if cache.len() >= self.max_entries {
                    // Still full: drop the entry closest to expiry.
                    if let Some(oldest) = cache
                        .iter()
                        .min_by_key(|(_, c)| c.expires_at)
                        .map(|(k, _)| *k)
                    {
                        cache.remove(&oldest);
                    }
                }
            }
            cache.insert(
                key,
                Cached {
                    token: token.clone(),
                    expires_at,
                    reuse_until: expires_at - margin,
                },
            );
        }
        Ok(token)
    }

    /// The claims: the caller's identity and scopes, the link grant if the
    /// caller used one, `exp` no later than the caller's own.
    fn claims(
        &self,
        issuer: &InternalIssuer,
        identity: &Identity,
        audience: &str,
        now: u64,
    ) -> Result<Map<String, Value>, ReissueError> {
        let mut exp = now + self.lifetime;
        if let Some(caller_exp) = identity.expires_at {
            exp = exp.min(caller_exp.max(now + 1));
        }
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(issuer.issuer()));
        claims.insert("aud".into(), json!(audience));
        claims.insert("sub".into(), json!(identity.subject));
        if let Some(name) = &identity.username {
            claims.insert("preferred_username".into(), json!(name));
        }
        if let Some(email) = &identity.email {
            claims.insert("email".into(), json!(email));
        }
        if let Some(uid) = &identity.uid {
            let value = uid.parse::<u64>().map_or_else(|_| json!(uid), |n| json!(n));
            claims.insert("uidNumber".into(), value);
        }
        if !identity.groups.is_empty() {
            claims.insert("groups".into(), json!(identity.groups));
        }
        if !identity.scopes.is_empty() {
            let scopes: Vec<&str> = identity.scopes.iter().map(String::as_str).collect();
            claims.insert("scope".into(), json!(scopes.join(" ")));
        }
        if let Some(grant) = &identity.grant {
            grant.to_claims(&mut claims);
            // The upstream sees the restriction, not a fresh one-time use.
            claims.remove("once");
        }
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(exp));
        claims.insert(
            "jti".into(),
            json!(new_jti().map_err(|_| ReissueError::Signing)?),
        );
        Ok(claims)
    }
}

/// SHA-256 over the audience and the caller's credential: a credential
/// change (new token, new scopes) never reuses an old reissue.
fn cache_key(identity: &Identity, audience: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(audience.as_bytes());
    hash.update([0u8]);
    hash.update(identity.token.expose().as_bytes());
    hash.finalize().into()
}
