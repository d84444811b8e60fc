//! Shared state behind one trait: the [`Store`].
//!
//! Gatehouse is stateless apart from its store. Every operation is one
//! atomic step that a networked backend can perform in a single command
//! (Redis: `SET key value NX PX ttl`, `GET`, `DEL`), so that several
//! replicas sharing one backend never race each other: two concurrent
//! [`Store::set_if_absent`] calls for the same key never both succeed.
//! Every entry has a time to live; nothing is kept forever.
//!
//! Keys are namespaced with [`key`]: `gatehouse:<namespace>:<id>`.

pub mod memory;
pub mod metered;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{ConfigError, StoreConfig};

/// Why a store operation failed. Callers fail closed (503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store holds its configured maximum of live entries.
    #[error("store is full ({0} live entries)")]
    Full(usize),
    /// The backend cannot be reached or refused the operation.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Key-value state with expiry, shared by every check (and, with a
/// networked backend, by every replica).
#[async_trait]
pub trait Store: Send + Sync {
    /// Stores `value` under `key` for `ttl` unless `key` already holds a
    /// live value. Returns `true` when this call stored it. Atomic: of
    /// concurrent calls for one key, at most one returns `true`.
    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// The live value under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Removes `key`; returns whether it held a live value.
    async fn delete(&self, key: &str) -> Result<bool, StoreError>;

    /// Drops expired entries and returns how many were dropped. Backends
    /// that expire entries by themselves (Redis) do nothing.
    async fn purge_expired(&self) -> Result<usize, StoreError> {
        Ok(0)
    }
}

/// A namespaced key: `gatehouse:<namespace>:<id>`.
pub fn key(namespace: &str, id: &str) -> String {
    format!("gatehouse:{namespace}:{id}")
}

/// Builds the configured store.
pub fn build(config: &StoreConfig) -> Result<Arc<dyn Store>, ConfigError> {
    match config {
        StoreConfig::Memory(memory) => {
            if memory.max_entries == 0 {
                return Err(ConfigError::invalid(
                    "store.memory.max_entries",
                    "must be at least 1",
                ));
            }
            Ok(Arc::new(memory::MemoryStore::new(memory.max_entries)))
        }
    }
}

/// How often [`spawn_purge`] drops expired entries.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Drops expired entries every [`PURGE_INTERVAL`], forever.
pub fn spawn_purge(store: Arc<dyn Store>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PURGE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match store.purge_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(purged = n, "expired store entries dropped"),
                Err(e) => tracing::warn!(error = %e, "store purge failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced() {
        assert_eq!(key("link-use", "abc"), "gatehouse:link-use:abc");
    }

    #[test]
    fn zero_capacity_is_a_config_error() {
        let cfg = StoreConfig::Memory(crate::config::MemoryStoreConfig { max_entries: 0 });
        let err = build(&cfg).err().expect("refused");
        assert!(
            err.to_string().contains("store.memory.max_entries"),
            "{err}"
        );
    }
}
