//! A store that can be switched off: the memory store, with every
//! operation failing as `StoreError::Unavailable` while it is down (a
//! Redis that went away), for fail-closed tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use crate::store::memory::MemoryStore;
use crate::store::{RateDecision, Store, StoreError};

/// The memory store with an off switch.
pub struct FlakyStore {
    inner: MemoryStore,
    down: AtomicBool,
}

impl FlakyStore {
    /// Up, holding at most `max_entries`.
    pub fn new(max_entries: usize) -> FlakyStore {
        FlakyStore {
            inner: MemoryStore::new(max_entries),
            down: AtomicBool::new(false),
        }
    }

    /// Takes the store down (every operation fails) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("connection refused".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for FlakyStore {
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        self.check()?;
        self.inner.set(key, value, ttl).await
    }
    async fn set_if_absent(&self, k: &str, v: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.set_if_absent(k, v, ttl).await
    }
    async fn compare_and_set(
        &self,
        k: &str,
        e: &[u8],
        n: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.compare_and_set(k, e, n, ttl).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.check()?;
        self.inner.get(key).await
    }
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.check()?;
        self.inner.take(key).await
    }
    async fn rate_limit(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
    ) -> Result<RateDecision, StoreError> {
        self.check()?;
        self.inner.rate_limit(key, limit, window).await
    }
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete(key).await
    }
    async fn index_add(&self, i: &str, m: &str, ttl: Duration) -> Result<(), StoreError> {
        self.check()?;
        self.inner.index_add(i, m, ttl).await
    }
    async fn index_remove(&self, i: &str, m: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.index_remove(i, m).await
    }
    async fn index_members(&self, i: &str) -> Result<Vec<String>, StoreError> {
        self.check()?;
        self.inner.index_members(i).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.check()
    }
    async fn purge_expired(&self) -> Result<usize, StoreError> {
        self.check()?;
        self.inner.purge_expired().await
    }
    fn health_interval(&self) -> Option<std::time::Duration> {
        self.inner.health_interval()
    }
}
