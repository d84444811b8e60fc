//! Shared state behind one trait: the [`Store`].
//!
//! Gatehouse is stateless apart from its store. Every operation is one
//! atomic step that a networked backend performs in a single command or
//! script on a single key (Redis: `SET key value NX PX ttl`, `GETDEL`, a
//! Lua compare-and-set), so that several replicas sharing one backend never
//! race each other, and so that a Redis Cluster never needs two keys in one
//! slot: two concurrent [`Store::set_if_absent`] calls for the same key
//! never both succeed. Every entry has a time to live; nothing is kept
//! forever.
//!
//! Keys are built with [`key`] as `<namespace>:<id>`; a networked backend
//! puts its configured prefix (`gatehouse:`) in front. A key never holds a
//! secret: whoever needs to look a secret up hashes it first
//! ([`hashed_id`]). Values are opaque bytes; [`sealed::SealedStore`]
//! encrypts them before they reach the backend.
//!
//! Besides plain values, a store keeps *indexes*: named sets of members
//! (e.g. the ids of one user's API tokens), for listing by owner. An index
//! expires as a whole, never before the longest time to live it was given;
//! its members are identifiers, never secrets, and may outlive the entries
//! they name, so readers skip members whose entry is gone.
//!
//! And a store counts *rate limits* ([`Store::rate_limit`], see [`rate`]):
//! one key per (rule, caller) holding the time the caller's allowance is
//! back, updated in one atomic step.

pub mod memory;
pub mod metered;
pub mod rate;
pub mod redis;
pub mod sealed;
pub mod unshared;

pub use rate::RateDecision;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, ConfigSource, StoreConfig};
use crate::model::deny::Deny;

/// Why a store operation failed. Callers fail closed (503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store holds its configured maximum of live entries.
    #[error("store is full ({0} live entries)")]
    Full(usize),
    /// The backend cannot be reached or refused the operation.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A value could not be encrypted before storing it (the random
    /// source failed). A value that cannot be *decrypted* is no error: it
    /// reads as absent (see [`sealed`]).
    #[error("store value encryption failed: {0}")]
    Encryption(String),
    /// This process keeps no state ([`unshared::Unshared`]: the in-process
    /// Envoy filter without a shared store): the check belongs to the
    /// service.
    #[error("no shared store in this process")]
    Unshared,
}

impl StoreError {
    /// The denial for a check the store failed, 503 either way (fail
    /// closed): [`Deny::NeedsState`] for [`StoreError::Unshared`], else
    /// [`Deny::StoreUnavailable`].
    pub fn denial(&self) -> Deny {
        match self {
            StoreError::Unshared => Deny::NeedsState,
            _ => Deny::StoreUnavailable,
        }
    }

    /// Whether a store that should have worked did not (worth a warning);
    /// not [`StoreError::Unshared`], which is how a process without state
    /// is meant to answer.
    pub fn is_failure(&self) -> bool {
        !matches!(self, StoreError::Unshared)
    }
}

/// Key-value state with expiry, shared by every check (and, with a
/// networked backend, by every replica).
#[async_trait]
pub trait Store: Send + Sync {
    /// Stores `value` under `key` for `ttl`, replacing any value.
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError>;

    /// Stores `value` under `key` for `ttl` unless `key` already holds a
    /// live value. Returns `true` when this call stored it. Atomic: of
    /// concurrent calls for one key, at most one returns `true`.
    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Replaces the value under `key` with `new` (and a fresh `ttl`) only if
    /// it currently holds exactly `expected`. Returns whether it did.
    /// Atomic: of concurrent calls expecting one value, at most one wins.
    async fn compare_and_set(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// The live value under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Removes `key` and returns the live value it held, atomically: of
    /// concurrent calls, at most one gets the value (one-time state such as
    /// a login's `state` or a CLI nonce).
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Removes `key`; returns whether it held a live value.
    async fn delete(&self, key: &str) -> Result<bool, StoreError>;

    /// Adds `member` to the index `index`, which then lives at least `ttl`
    /// (an index's time to live is only ever extended).
    async fn index_add(&self, index: &str, member: &str, ttl: Duration) -> Result<(), StoreError>;

    /// Removes `member` from `index`; returns whether it was there.
    async fn index_remove(&self, index: &str, member: &str) -> Result<bool, StoreError>;

    /// The members of `index`, sorted (empty when it does not exist).
    async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError>;

    /// Counts one request against the rate limit under `key`: `limit`
    /// requests per `window`, bursts up to `limit` (GCRA, see [`rate`]).
    /// Atomic: of N concurrent calls on a fresh key, exactly
    /// `min(N, limit)` are allowed. A refused request is not counted. The
    /// key expires once the allowance is whole again (at most `window`).
    ///
    /// The value under `key` is a timestamp the backend reads itself (in
    /// Redis, inside the script): it is never sealed. The caller hashes
    /// anything identifying in `key` ([`hashed_id`]).
    async fn rate_limit(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
    ) -> Result<RateDecision, StoreError>;

    /// Whether the backend answers (a `PING`). Always fine in memory.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Drops expired entries and returns how many were dropped. Backends
    /// that expire entries by themselves (Redis) do nothing.
    async fn purge_expired(&self) -> Result<usize, StoreError> {
        Ok(0)
    }

    /// How often [`spawn_upkeep`] pings the backend, so that
    /// `gatehouse_store_up` stays current while no check uses the store;
    /// `None` (memory): never. A wrapper returns its inner store's (no
    /// default, so that a new wrapper cannot forget to).
    fn health_interval(&self) -> Option<Duration>;
}

/// A namespaced key: `<namespace>:<id>`.
pub fn key(namespace: &str, id: &str) -> String {
    format!("{namespace}:{id}")
}

/// The JSON record under `key` with its exact bytes (what a later
/// [`Store::compare_and_set`] expects); `None` when absent or unreadable.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    key: &str,
) -> Result<Option<(T, Vec<u8>)>, StoreError> {
    Ok(store.get(key).await?.and_then(|raw| {
        serde_json::from_slice(&raw)
            .ok()
            .map(|record| (record, raw))
    }))
}

/// An id that stands for `secret` in a key: the hex SHA-256 of
/// `namespace` and `secret`, so that the key shows nothing of the secret
/// and equal secrets in two namespaces do not share an id.
pub fn hashed_id(namespace: &str, secret: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(namespace.as_bytes());
    hasher.update([0]);
    hasher.update(secret);
    hex::encode(hasher.finalize())
}

/// Builds the configured store: Redis when `store.redis` is set (checked
/// here, connected lazily: Redis may be down), else memory. Relative file
/// names are read against the configuration file's directory (`source`).
pub fn build(config: &StoreConfig, source: &ConfigSource) -> Result<Arc<dyn Store>, ConfigError> {
    if let Some(redis) = &config.redis {
        if config.memory.is_some() {
            return Err(ConfigError::invalid(
                "store.redis",
                "name one backend: store.memory or store.redis, not both",
            ));
        }
        return Ok(Arc::new(self::redis::RedisStore::new(redis, source)?));
    }
    let memory = config.memory.clone().unwrap_or_default();
    if memory.max_entries == 0 {
        return Err(ConfigError::invalid(
            "store.memory.max_entries",
            "must be at least 1",
        ));
    }
    Ok(Arc::new(memory::MemoryStore::new(memory.max_entries)))
}

/// How often [`spawn_upkeep`] drops expired entries.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Keeps `store` in shape, forever: drops expired entries every
/// [`PURGE_INTERVAL`] and, when the store has a
/// [`Store::health_interval`], pings it that often (the first ping at
/// once, which also makes a Redis store connect).
pub fn spawn_upkeep(store: Arc<dyn Store>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut purge = tokio::time::interval(PURGE_INTERVAL);
        purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Without a health interval, the ping tick never comes.
        let mut ping = store.health_interval().map(|every| {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        });
        loop {
            tokio::select! {
                _ = purge.tick() => match store.purge_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(purged = n, "expired store entries dropped"),
                    Err(e) => tracing::warn!(error = %e, "store purge failed"),
                },
                Some(_) = next_tick(ping.as_mut()) => {
                    // The outcome is recorded by the metered store
                    // (gatehouse_store_up); a lost connection is logged
                    // by the store itself.
                    let _ = store.ping().await;
                }
            }
        }
    })
}

/// The next tick of `interval`, or never.
async fn next_tick(interval: Option<&mut tokio::time::Interval>) -> Option<tokio::time::Instant> {
    match interval {
        Some(interval) => Some(interval.tick().await),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced() {
        assert_eq!(key("link-used", "abc"), "link-used:abc");
    }

    #[test]
    fn hashed_ids_hide_the_secret_and_depend_on_the_namespace() {
        let a = hashed_id("api-token", b"s3cret");
        assert_eq!(a.len(), 64);
        assert!(!a.contains("s3cret"));
        assert_eq!(a, hashed_id("api-token", b"s3cret"));
        assert_ne!(a, hashed_id("session", b"s3cret"));
    }

    #[test]
    fn zero_capacity_is_a_config_error() {
        let cfg = StoreConfig {
            memory: Some(crate::config::MemoryStoreConfig { max_entries: 0 }),
            ..Default::default()
        };
        let err = build(&cfg, &ConfigSource::Text(String::new()))
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("store.memory.max_entries"),
            "{err}"
        );
    }
}
