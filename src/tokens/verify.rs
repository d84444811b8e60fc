//! Checking a presented token: its record by key (through the local
//! cache), the secret's SHA-256 compared in constant time, the expiry.

use std::sync::Arc;
use std::time::Duration;

use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::record::{TokenRecord, record_key, used_key};
use super::{ApiTokens, Cached, format};
use crate::store::StoreError;

/// How often one replica writes a token's last use (at most).
pub const LAST_USED_EVERY: Duration = Duration::from_secs(60);

/// Why a presented token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Our prefix, but not `<prefix>-<key>.<secret>`.
    #[error("malformed API token")]
    Malformed,
    /// No record under its key: never created, revoked, or expired and
    /// dropped by the store.
    #[error("unknown or revoked API token")]
    Unknown,
    /// A record exists but the secret does not match (shown to the client
    /// like [`Self::Unknown`]).
    #[error("unknown or revoked API token")]
    WrongSecret,
    /// The record says it has expired.
    #[error("API token expired")]
    Expired,
    /// The store cannot be reached: nothing can be said (fail closed).
    #[error("state store unavailable: {0}")]
    Unavailable(StoreError),
}

/// A token that checks out.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Its public key.
    pub key: String,
    /// Its record.
    pub record: Arc<TokenRecord>,
}

impl ApiTokens {
    /// Checks `token` at `now` (seconds since the epoch).
    pub async fn verify(&self, token: &str, now: u64) -> Result<Verified, VerifyError> {
        let parts =
            format::parse(token, &self.config.prefix).map_err(|_| VerifyError::Malformed)?;
        let record = self
            .record(parts.key)
            .await
            .map_err(VerifyError::Unavailable)?
            .ok_or(VerifyError::Unknown)?;
        let presented = format::secret_hash(parts.secret);
        let matches: bool = presented
            .as_bytes()
            .ct_eq(record.secret_sha256.as_bytes())
            .into();
        if !matches {
            return Err(VerifyError::WrongSecret);
        }
        if record.expires <= now {
            return Err(VerifyError::Expired);
        }
        self.touch(parts.key, &record, now).await;
        Ok(Verified {
            key: parts.key.to_string(),
            record,
        })
    }

    /// The record under `key`, from the cache while fresh, else from the
    /// store (and then cached, present or not).
    async fn record(&self, key: &str) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        if let Some(cached) = self.cache.get(key)
            && cached.at.elapsed() < self.config.cache_ttl
        {
            return Ok(cached.record);
        }
        let record = match self.store.get(&record_key(key)).await? {
            None => None,
            Some(bytes) => match serde_json::from_slice::<TokenRecord>(&bytes) {
                Ok(record) => Some(Arc::new(record)),
                Err(e) => {
                    // Treated as absent: a record we cannot read grants nothing.
                    tracing::warn!(token_key = key, error = %e, "unreadable API token record");
                    None
                }
            },
        };
        if !self.config.cache_ttl.is_zero() {
            self.cache.insert(
                key.to_string(),
                Cached {
                    at: Instant::now(),
                    record: record.clone(),
                },
            );
        }
        Ok(record)
    }

    /// Forgets what this replica cached about `key` (after a revocation).
    pub(super) fn forget(&self, key: &str) {
        self.cache.remove(key);
        self.last_used.remove(key);
    }

    /// Records the last use, at most every [`LAST_USED_EVERY`] per token
    /// on this replica, so that a check does not write to the store every
    /// time. A failure is logged and ignored: the check already passed.
    async fn touch(&self, key: &str, record: &TokenRecord, now: u64) {
        let due = self
            .last_used
            .get(key)
            .is_none_or(|at| at.elapsed() >= LAST_USED_EVERY);
        if !due {
            return;
        }
        self.last_used.insert(key.to_string(), Instant::now());
        let ttl = Duration::from_secs(record.expires.saturating_sub(now).max(1));
        if let Err(e) = self
            .store
            .set(&used_key(key), now.to_string().as_bytes(), ttl)
            .await
        {
            tracing::debug!(token_key = key, error = %e, "last use of an API token not recorded");
        }
    }

    /// The last use recorded for `key`, if any.
    pub(super) async fn last_used(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .store
            .get(&used_key(key))
            .await?
            .and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok()))
    }
}
