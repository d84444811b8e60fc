//! A store for a process that must not keep state of its own: every
//! operation fails, so every check that needs state is refused (503,
//! fail closed) instead of being decided on a private copy.
//!
//! The in-process Envoy filter uses it when no shared backend (Redis) is
//! configured: a one-time link used up, or a session read, in one Envoy's
//! memory would not be seen by the gRPC service or another Envoy, so such
//! routes must go to the service over `ext_authz`.

use std::time::Duration;

use async_trait::async_trait;

use super::{RateDecision, Store, StoreError};

/// Refuses every operation with [`StoreError::Unshared`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Unshared;

impl Unshared {
    fn refuse<T>() -> Result<T, StoreError> {
        Err(StoreError::Unshared)
    }
}

#[async_trait]
impl Store for Unshared {
    async fn set(&self, _: &str, _: &[u8], _: Duration) -> Result<(), StoreError> {
        Self::refuse()
    }
    async fn set_if_absent(&self, _: &str, _: &[u8], _: Duration) -> Result<bool, StoreError> {
        Self::refuse()
    }
    async fn compare_and_set(
        &self,
        _: &str,
        _: &[u8],
        _: &[u8],
        _: Duration,
    ) -> Result<bool, StoreError> {
        Self::refuse()
    }
    async fn get(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Self::refuse()
    }
    async fn take(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Self::refuse()
    }
    async fn delete(&self, _: &str) -> Result<bool, StoreError> {
        Self::refuse()
    }
    async fn index_add(&self, _: &str, _: &str, _: Duration) -> Result<(), StoreError> {
        Self::refuse()
    }
    async fn index_remove(&self, _: &str, _: &str) -> Result<bool, StoreError> {
        Self::refuse()
    }
    async fn index_members(&self, _: &str) -> Result<Vec<String>, StoreError> {
        Self::refuse()
    }
    async fn rate_limit(&self, _: &str, _: u64, _: Duration) -> Result<RateDecision, StoreError> {
        Self::refuse()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Self::refuse()
    }
    fn health_interval(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_operation_is_refused() {
        let s = Unshared;
        let d = Duration::from_secs(1);
        assert_eq!(s.set("k", b"v", d).await, Err(StoreError::Unshared));
        assert_eq!(
            StoreError::Unshared.denial(),
            crate::model::deny::Deny::NeedsState
        );
        assert!(!StoreError::Unshared.is_failure());
        assert!(StoreError::Full(1).is_failure());
        assert!(s.set_if_absent("k", b"v", d).await.is_err());
        assert!(s.compare_and_set("k", b"a", b"b", d).await.is_err());
        assert!(s.get("k").await.is_err());
        assert!(s.take("k").await.is_err());
        assert!(s.delete("k").await.is_err());
        assert!(s.index_add("i", "m", d).await.is_err());
        assert!(s.index_remove("i", "m").await.is_err());
        assert!(s.index_members("i").await.is_err());
        assert!(s.rate_limit("k", 1, d).await.is_err());
        assert!(s.ping().await.is_err());
        assert_eq!(s.purge_expired().await, Ok(0));
    }
}
