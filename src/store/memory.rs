//! The embedded store: one process's memory. The default, for a single
//! replica (several replicas need a shared backend, or a one-time link
//! could be used once per replica).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Store, StoreError};

/// One value and when it expires.
struct Entry {
    value: Vec<u8>,
    expires_at: Instant,
}

/// A bounded in-memory [`Store`]. Every operation holds one mutex for a
/// few map operations (never across an `.await`), which makes
/// `set_if_absent` atomic. Expired entries are invisible at once and
/// dropped by [`Store::purge_expired`] (run periodically) or when the
/// store is full.
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Entry>>,
    max_entries: usize,
}

impl MemoryStore {
    /// An empty store holding at most `max_entries` live entries.
    pub fn new(max_entries: usize) -> MemoryStore {
        MemoryStore {
            entries: Mutex::new(HashMap::new()),
            max_entries,
        }
    }

    /// The map; a panic in another thread while holding the lock cannot
    /// leave an entry half-written (every update is one map call), so a
    /// poisoned lock is still consistent.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of entries, expired or not (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the store holds no entry at all.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut map = self.lock();
        if map.get(key).is_some_and(|e| e.expires_at > now) {
            return Ok(false);
        }
        if !map.contains_key(key) && map.len() >= self.max_entries {
            map.retain(|_, e| e.expires_at > now);
            if map.len() >= self.max_entries {
                return Err(StoreError::Full(map.len()));
            }
        }
        // A zero TTL would store an entry that is already gone.
        let ttl = ttl.max(Duration::from_millis(1));
        map.insert(
            key.to_string(),
            Entry {
                value: value.to_vec(),
                expires_at: now + ttl,
            },
        );
        Ok(true)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let now = Instant::now();
        Ok(self
            .lock()
            .get(key)
            .filter(|e| e.expires_at > now)
            .map(|e| e.value.clone()))
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        Ok(self.lock().remove(key).is_some_and(|e| e.expires_at > now))
    }

    async fn purge_expired(&self) -> Result<usize, StoreError> {
        let now = Instant::now();
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, e| e.expires_at > now);
        Ok(before - map.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn set_if_absent_get_delete() {
        let s = MemoryStore::new(10);
        assert_eq!(s.get("k").await, Ok(None));
        assert_eq!(s.set_if_absent("k", b"v1", MINUTE).await, Ok(true));
        assert_eq!(s.set_if_absent("k", b"v2", MINUTE).await, Ok(false));
        assert_eq!(s.get("k").await, Ok(Some(b"v1".to_vec())));
        assert_eq!(s.delete("k").await, Ok(true));
        assert_eq!(s.delete("k").await, Ok(false));
        assert_eq!(s.set_if_absent("k", b"v3", MINUTE).await, Ok(true));
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_and_are_purged() {
        let s = MemoryStore::new(10);
        assert_eq!(s.set_if_absent("k", b"v", MINUTE).await, Ok(true));
        tokio::time::advance(MINUTE - Duration::from_millis(1)).await;
        assert_eq!(s.set_if_absent("k", b"w", MINUTE).await, Ok(false));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(s.get("k").await, Ok(None));
        assert_eq!(s.delete("k").await, Ok(false));
        // Expired: the key is free again.
        assert_eq!(s.set_if_absent("k", b"w", MINUTE).await, Ok(true));
        assert_eq!(
            s.set_if_absent("other", b"x", Duration::ZERO).await,
            Ok(true)
        );
        tokio::time::advance(MINUTE).await;
        assert_eq!(s.purge_expired().await, Ok(2));
        assert!(s.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn full_store_purges_then_refuses() {
        let s = MemoryStore::new(2);
        assert_eq!(s.set_if_absent("a", b"", MINUTE).await, Ok(true));
        assert_eq!(s.set_if_absent("b", b"", 2 * MINUTE).await, Ok(true));
        assert_eq!(
            s.set_if_absent("c", b"", MINUTE).await,
            Err(StoreError::Full(2))
        );
        tokio::time::advance(MINUTE).await;
        // `a` expired: purged to make room.
        assert_eq!(s.set_if_absent("c", b"", MINUTE).await, Ok(true));
        assert_eq!(s.len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_set_if_absent_succeeds_once() {
        let s = Arc::new(MemoryStore::new(1000));
        for round in 0..20 {
            let key = format!("k{round}");
            let tasks: Vec<_> = (0..16)
                .map(|_| {
                    let s = s.clone();
                    let key = key.clone();
                    tokio::spawn(async move { s.set_if_absent(&key, b"x", MINUTE).await })
                })
                .collect();
            let mut won = 0;
            for t in tasks {
                if t.await.expect("task") == Ok(true) {
                    won += 1;
                }
            }
            assert_eq!(won, 1, "round {round}");
        }
    }
}
