//! Encryption at rest: a [`Store`] that seals every value with AES-256-GCM
//! before the store it wraps sees it, and opens it on the way back.
//!
//! A sealed value is `version (1) | key id (4) | nonce (12) | ciphertext |
//! tag (16)`, with a fresh random nonce each time. The tag covers the
//! header and the store key the value is stored under, so a value copied
//! to another key (another user's token, another link) does not open. The
//! key id is the start of the key's SHA-256 ([`KeyId`]): the first key of
//! `store.encryption_key_file` seals, every key in it opens, so a key is
//! rotated by putting a new one first and dropping the old one once the
//! values sealed under it have expired.
//!
//! Keys and index members are not encrypted: they are identifiers (hashed
//! where they stand for a secret, see [`super::hashed_id`]), and the
//! backend must be able to look them up and list them.
//!
//! Rate limits ([`Store::rate_limit`]) pass through unsealed too: their
//! value is a timestamp (when the caller's allowance is back), no secret,
//! and the backend must read it itself (Redis: inside its script, which
//! could not open a sealed value). Who the caller is stays in the key,
//! hashed.
//!
//! A value that does not open (sealed under a key since dropped from the
//! file, a format this version does not know, tampered with, or moved to
//! another key) counts as **absent**: `get` and `take` return `None` and
//! `compare_and_set` returns `false`, with a warning that names the key id
//! and the store key's namespace, never the value. Absence is the
//! fail-closed choice because every reader of the store denies on it: an
//! API token or a session that cannot be read is refused, and a one-time
//! use is recorded with `set_if_absent`, which never decrypts anything, so
//! an unreadable record still blocks a second use. An error instead would
//! turn a retired key into an outage (503 on every check that touches an
//! old value) until the value expires, without protecting anything more.

mod keyring;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use subtle::ConstantTimeEq;

use super::{RateDecision, Store, StoreError};
use crate::config::{ConfigError, ConfigSource, StoreConfig, resolve_path};
pub use keyring::{
    KEY_BYTES, KEY_HEX_CHARS, KeyId, Keyring, KeyringError, OVERHEAD, OpenError, SealError,
    VERSION, generate_key,
};

/// The configuration key of the key file, as errors name it.
const KEY_FILE: &str = "store.encryption_key_file";

/// Wraps a store, sealing the values it is given and opening those it
/// returns.
pub struct SealedStore {
    inner: Arc<dyn Store>,
    keys: Keyring,
}

impl SealedStore {
    /// Seals `inner`'s values with `keys`.
    pub fn new(inner: Arc<dyn Store>, keys: Keyring) -> SealedStore {
        SealedStore { inner, keys }
    }

    fn seal(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.keys
            .seal(key.as_bytes(), value)
            .map_err(|e| StoreError::Encryption(e.to_string()))
    }

    /// The plaintext of `raw` stored under `key`, or `None` (logged) when it
    /// does not open.
    fn open(&self, key: &str, raw: &[u8]) -> Option<Vec<u8>> {
        match self.keys.open(key.as_bytes(), raw) {
            Ok(plain) => Some(plain),
            Err(e) => {
                let namespace = key.split(':').next().unwrap_or_default();
                match e.key_id() {
                    Some(id) => tracing::warn!(
                        namespace,
                        key_id = %id,
                        reason = %e,
                        "stored value does not open; treated as absent"
                    ),
                    None => tracing::warn!(
                        namespace,
                        reason = %e,
                        "stored value does not open; treated as absent"
                    ),
                }
                None
            }
        }
    }
}

/// The keyring `store` configures: the keys of `store.encryption_key_file`
/// (resolved against the configuration file's directory). Without a key
/// file: a random key for the memory store, and an error with `redis`,
/// whose values outlive the process and are shared with other replicas.
/// Called before the backend is built, so a bad key file is reported
/// without connecting anywhere.
pub fn configured_keys(
    config: &StoreConfig,
    source: &ConfigSource,
) -> Result<Keyring, ConfigError> {
    match &config.encryption_key_file {
        Some(path) => {
            let path = resolve_path(source, path);
            Keyring::load(&path).map_err(|e| match e {
                KeyringError::Read { .. } => ConfigError::invalid(KEY_FILE, e.to_string()),
                other => ConfigError::invalid(KEY_FILE, format!("{}: {other}", path.display())),
            })
        }
        None if config.redis.is_some() => Err(ConfigError::invalid(
            KEY_FILE,
            "required with store.redis (make one with `gatehouse keys store-key -o FILE`)",
        )),
        None => Keyring::random().map_err(|e| ConfigError::invalid(KEY_FILE, e.to_string())),
    }
}

#[async_trait]
impl Store for SealedStore {
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let sealed = self.seal(key, value)?;
        self.inner.set(key, &sealed, ttl).await
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let sealed = self.seal(key, value)?;
        self.inner.set_if_absent(key, &sealed, ttl).await
    }

    /// Opens the current value and compares it with `expected` in constant
    /// time, then swaps on the exact sealed bytes it read: if another
    /// writer got in between, the inner compare-and-set fails, so the
    /// whole stays atomic.
    async fn compare_and_set(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let Some(raw) = self.inner.get(key).await? else {
            return Ok(false);
        };
        let Some(current) = self.open(key, &raw) else {
            return Ok(false);
        };
        if !bool::from(current.as_slice().ct_eq(expected)) {
            return Ok(false);
        }
        let sealed = self.seal(key, new)?;
        self.inner.compare_and_set(key, &raw, &sealed, ttl).await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .inner
            .get(key)
            .await?
            .and_then(|raw| self.open(key, &raw)))
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .inner
            .take(key)
            .await?
            .and_then(|raw| self.open(key, &raw)))
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.delete(key).await
    }

    async fn index_add(&self, index: &str, member: &str, ttl: Duration) -> Result<(), StoreError> {
        self.inner.index_add(index, member, ttl).await
    }

    async fn index_remove(&self, index: &str, member: &str) -> Result<bool, StoreError> {
        self.inner.index_remove(index, member).await
    }

    async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError> {
        self.inner.index_members(index).await
    }

    /// Not sealed (see the module's notes): a timestamp the backend reads.
    async fn rate_limit(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
    ) -> Result<RateDecision, StoreError> {
        self.inner.rate_limit(key, limit, window).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn purge_expired(&self) -> Result<usize, StoreError> {
        self.inner.purge_expired().await
    }

    fn health_interval(&self) -> Option<Duration> {
        self.inner.health_interval()
    }
}
