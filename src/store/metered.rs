//! A [`Store`] that times every operation of the store it wraps, counts
//! its failures and tracks whether the backend answers
//! (`gatehouse_store_operation_duration_seconds`,
//! `gatehouse_store_errors_total`, `gatehouse_store_up`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{RateDecision, Store, StoreError};
use crate::metrics::{StoreMetrics, StoreOp, StoreOutcome};

/// Wraps a store, recording each operation's latency and failure.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: StoreMetrics,
}

impl MeteredStore {
    /// Records `inner`'s operations in `metrics`.
    pub fn new(inner: Arc<dyn Store>, metrics: StoreMetrics) -> MeteredStore {
        MeteredStore { inner, metrics }
    }

    async fn timed<T>(
        &self,
        op: StoreOp,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = call.await;
        let outcome = match &result {
            Ok(_) => StoreOutcome::Ok,
            Err(StoreError::Unavailable(_)) => StoreOutcome::Unreachable,
            Err(StoreError::Full(_) | StoreError::Encryption(_) | StoreError::Unshared) => {
                StoreOutcome::Refused
            }
        };
        self.metrics.record(op, started.elapsed(), outcome);
        result
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        self.timed(StoreOp::Set, self.inner.set(key, value, ttl))
            .await
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.timed(
            StoreOp::SetIfAbsent,
            self.inner.set_if_absent(key, value, ttl),
        )
        .await
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.timed(
            StoreOp::CompareAndSet,
            self.inner.compare_and_set(key, expected, new, ttl),
        )
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.timed(StoreOp::Get, self.inner.get(key)).await
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.timed(StoreOp::Take, self.inner.take(key)).await
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.timed(StoreOp::Delete, self.inner.delete(key)).await
    }

    async fn index_add(&self, index: &str, member: &str, ttl: Duration) -> Result<(), StoreError> {
        self.timed(StoreOp::IndexAdd, self.inner.index_add(index, member, ttl))
            .await
    }

    async fn index_remove(&self, index: &str, member: &str) -> Result<bool, StoreError> {
        self.timed(StoreOp::IndexRemove, self.inner.index_remove(index, member))
            .await
    }

    async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError> {
        self.timed(StoreOp::IndexMembers, self.inner.index_members(index))
            .await
    }

    async fn rate_limit(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
    ) -> Result<RateDecision, StoreError> {
        self.timed(
            StoreOp::RateLimit,
            self.inner.rate_limit(key, limit, window),
        )
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(StoreOp::Ping, self.inner.ping()).await
    }

    async fn purge_expired(&self) -> Result<usize, StoreError> {
        self.timed(StoreOp::PurgeExpired, self.inner.purge_expired())
            .await
    }

    fn health_interval(&self) -> Option<Duration> {
        self.inner.health_interval()
    }
}
