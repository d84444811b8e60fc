//! A [`Store`] that times every operation of the store it wraps and
//! counts its failures (`gatehouse_store_operation_duration_seconds`,
//! `gatehouse_store_errors_total`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Store, StoreError};
use crate::metrics::StoreMetrics;

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
}

#[async_trait]
impl Store for MeteredStore {
    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let started = Instant::now();
        let result = self.inner.set_if_absent(key, value, ttl).await;
        self.metrics
            .set_if_absent
            .record(started.elapsed(), result.is_err());
        result
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let started = Instant::now();
        let result = self.inner.get(key).await;
        self.metrics.get.record(started.elapsed(), result.is_err());
        result
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let started = Instant::now();
        let result = self.inner.delete(key).await;
        self.metrics
            .delete
            .record(started.elapsed(), result.is_err());
        result
    }

    async fn purge_expired(&self) -> Result<usize, StoreError> {
        let started = Instant::now();
        let result = self.inner.purge_expired().await;
        self.metrics
            .purge_expired
            .record(started.elapsed(), result.is_err());
        result
    }
}
