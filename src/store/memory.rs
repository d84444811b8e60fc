//! The embedded store: one process's memory. The default, for a single
//! replica (several replicas need a shared backend, or a one-time link
//! could be used once per replica).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::rate::Gcra;
use super::{RateDecision, Store, StoreError};

/// One value and when it expires.
struct Entry {
    value: Vec<u8>,
    expires_at: Instant,
}

/// One index (a set of members) and when it expires.
struct Index {
    members: BTreeSet<String>,
    expires_at: Instant,
}

/// Everything the store holds, behind one lock.
#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    indexes: HashMap<String, Index>,
    /// Members across all indexes (they count towards `max_entries`).
    members: usize,
}

impl State {
    /// Live entries plus index members: what `max_entries` bounds.
    fn size(&self) -> usize {
        self.entries.len() + self.members
    }

    fn purge(&mut self, now: Instant) -> usize {
        let before = self.size();
        self.entries.retain(|_, e| e.expires_at > now);
        self.indexes.retain(|_, i| i.expires_at > now);
        self.members = self.indexes.values().map(|i| i.members.len()).sum();
        before - self.size()
    }

    /// Makes room for one more item: purges when full, then refuses.
    fn make_room(&mut self, now: Instant, max: usize) -> Result<(), StoreError> {
        if self.size() >= max {
            self.purge(now);
            if self.size() >= max {
                return Err(StoreError::Full(self.size()));
            }
        }
        Ok(())
    }

    fn live_entry(&self, key: &str, now: Instant) -> Option<&Entry> {
        self.entries.get(key).filter(|e| e.expires_at > now)
    }

    fn live_index(&mut self, index: &str, now: Instant) -> Option<&mut Index> {
        if self.indexes.get(index).is_some_and(|i| i.expires_at <= now) {
            if let Some(gone) = self.indexes.remove(index) {
                self.members -= gone.members.len();
            }
            return None;
        }
        self.indexes.get_mut(index)
    }
}

/// A bounded in-memory [`Store`]. Every operation holds one mutex for a
/// few map operations (never across an `.await`), which makes each one
/// atomic. Expired entries are invisible at once and dropped by
/// [`Store::purge_expired`] (run periodically) or when the store is full.
pub struct MemoryStore {
    state: Mutex<State>,
    max_entries: usize,
}

/// A zero TTL would store an entry that is already gone.
fn deadline(now: Instant, ttl: Duration) -> Instant {
    now + ttl.max(Duration::from_millis(1))
}

/// Whole microseconds of `d` (saturating).
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl MemoryStore {
    /// An empty store holding at most `max_entries` live entries and index
    /// members together.
    pub fn new(max_entries: usize) -> MemoryStore {
        MemoryStore {
            state: Mutex::new(State::default()),
            max_entries,
        }
    }

    /// The state; a panic in another thread while holding the lock cannot
    /// leave it half-written (every update is a few map calls that cannot
    /// panic), so a poisoned lock is still consistent.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of entries and index members, expired or not (for tests).
    pub fn len(&self) -> usize {
        self.lock().size()
    }

    /// Whether the store holds nothing at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores an entry, making room first when the key is new.
    fn insert(
        &self,
        state: &mut State,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        self.insert_until(state, now, key, value, deadline(now, ttl))
    }

    /// Stores an entry live until `expires_at`, making room first when the
    /// key is new.
    fn insert_until(
        &self,
        state: &mut State,
        now: Instant,
        key: &str,
        value: &[u8],
        expires_at: Instant,
    ) -> Result<(), StoreError> {
        if !state.entries.contains_key(key) {
            state.make_room(now, self.max_entries)?;
        }
        state.entries.insert(
            key.to_string(),
            Entry {
                value: value.to_vec(),
                expires_at,
            },
        );
        Ok(())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let mut state = self.lock();
        self.insert(&mut state, key, value, ttl)
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        if state.live_entry(key, Instant::now()).is_some() {
            return Ok(false);
        }
        self.insert(&mut state, key, value, ttl)?;
        Ok(true)
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        if state
            .live_entry(key, Instant::now())
            .is_none_or(|e| e.value != expected)
        {
            return Ok(false);
        }
        self.insert(&mut state, key, new, ttl)?;
        Ok(true)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .lock()
            .live_entry(key, Instant::now())
            .map(|e| e.value.clone()))
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let now = Instant::now();
        Ok(self
            .lock()
            .entries
            .remove(key)
            .filter(|e| e.expires_at > now)
            .map(|e| e.value))
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.take(key).await?.is_some())
    }

    async fn index_add(&self, index: &str, member: &str, ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut state = self.lock();
        let present = state
            .live_index(index, now)
            .is_some_and(|i| i.members.contains(member));
        if !present {
            state.make_room(now, self.max_entries)?;
        }
        let until = deadline(now, ttl);
        let entry = state.indexes.entry(index.to_string()).or_insert(Index {
            members: BTreeSet::new(),
            expires_at: until,
        });
        entry.expires_at = entry.expires_at.max(until);
        if entry.members.insert(member.to_string()) {
            state.members += 1;
        }
        Ok(())
    }

    async fn index_remove(&self, index: &str, member: &str) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let Some(entry) = state.live_index(index, Instant::now()) else {
            return Ok(false);
        };
        let removed = entry.members.remove(member);
        let now_empty = entry.members.is_empty();
        if removed {
            state.members -= 1;
        }
        if now_empty {
            state.indexes.remove(index);
        }
        Ok(removed)
    }

    async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .lock()
            .live_index(index, Instant::now())
            .map(|i| i.members.iter().cloned().collect())
            .unwrap_or_default())
    }

    /// The entry's expiry *is* the caller's allowance time (the GCRA's
    /// theoretical arrival time): the backlog is how far it lies ahead, and
    /// an expired or absent entry is no backlog. A new key takes room like
    /// any entry (a full store refuses: the caller fails closed).
    async fn rate_limit(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
    ) -> Result<RateDecision, StoreError> {
        let gcra = Gcra::new(limit, window);
        let now = Instant::now();
        let mut state = self.lock();
        let backlog = state
            .live_entry(key, now)
            .map_or(0, |e| micros(e.expires_at.duration_since(now)));
        let step = gcra.step(backlog);
        if step.allowed {
            let until = now + Duration::from_micros(step.backlog_us);
            self.insert_until(&mut state, now, key, b"", until)?;
        }
        Ok(gcra.decision(step))
    }

    async fn purge_expired(&self) -> Result<usize, StoreError> {
        Ok(self.lock().purge(Instant::now()))
    }

    fn health_interval(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

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
        s.index_add("i", "m", MINUTE).await.expect("added");
        tokio::time::advance(MINUTE).await;
        assert_eq!(s.purge_expired().await, Ok(3));
        assert!(s.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn full_store_purges_then_refuses() {
        let s = MemoryStore::new(3);
        assert_eq!(s.set_if_absent("a", b"", MINUTE).await, Ok(true));
        assert_eq!(s.set_if_absent("b", b"", 2 * MINUTE).await, Ok(true));
        s.index_add("i", "m1", 2 * MINUTE).await.expect("room");
        assert_eq!(
            s.set_if_absent("c", b"", MINUTE).await,
            Err(StoreError::Full(3))
        );
        assert_eq!(
            s.index_add("i", "m2", MINUTE).await,
            Err(StoreError::Full(3))
        );
        // Re-adding a member or overwriting a key needs no room.
        s.index_add("i", "m1", MINUTE).await.expect("present");
        s.set("b", b"2", 2 * MINUTE).await.expect("present");
        tokio::time::advance(MINUTE).await;
        // `a` expired: purged to make room.
        assert_eq!(s.set_if_absent("c", b"", MINUTE).await, Ok(true));
        assert_eq!(s.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limits_refill_and_expire() {
        let s = MemoryStore::new(10);
        for remaining in [2, 1, 0] {
            let d = s.rate_limit("q", 3, MINUTE).await.expect("counted");
            assert!(d.allowed);
            assert_eq!(d.remaining, remaining);
        }
        let refused = s.rate_limit("q", 3, MINUTE).await.expect("counted");
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_secs(20));
        assert_eq!(refused.reset, MINUTE);
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(s.rate_limit("q", 3, MINUTE).await.expect("ok").allowed);
        assert!(!s.rate_limit("q", 3, MINUTE).await.expect("ok").allowed);
        // Another caller's key is separate.
        assert!(s.rate_limit("other", 3, MINUTE).await.expect("ok").allowed);
        // Once the allowance is whole again the key is gone.
        tokio::time::advance(MINUTE).await;
        assert_eq!(s.purge_expired().await, Ok(2));
        assert!(s.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limits_are_bounded_like_every_entry() {
        let s = MemoryStore::new(2);
        assert!(s.rate_limit("a", 5, MINUTE).await.expect("room").allowed);
        assert!(s.rate_limit("b", 5, MINUTE).await.expect("room").allowed);
        // A third caller finds the store full: an error, never an allow.
        assert_eq!(s.rate_limit("c", 5, MINUTE).await, Err(StoreError::Full(2)));
        // Known callers still count (no new room needed).
        assert!(s.rate_limit("a", 5, MINUTE).await.expect("present").allowed);
        assert_eq!(s.len(), 2);
        // One request's backlog (12 s) later both keys have expired.
        tokio::time::advance(Duration::from_secs(25)).await;
        assert!(s.rate_limit("c", 5, MINUTE).await.expect("purged").allowed);
        assert_eq!(s.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_index_lives_as_long_as_its_longest_ttl() {
        let s = MemoryStore::new(10);
        s.index_add("i", "long", 2 * MINUTE).await.expect("added");
        s.index_add("i", "short", MINUTE).await.expect("added");
        tokio::time::advance(MINUTE + Duration::from_secs(1)).await;
        assert_eq!(
            s.index_members("i").await,
            Ok(vec!["long".to_string(), "short".to_string()])
        );
        tokio::time::advance(MINUTE).await;
        assert_eq!(s.index_members("i").await, Ok(vec![]));
        assert_eq!(s.index_remove("i", "long").await, Ok(false));
        assert!(s.is_empty(), "the expired index was dropped on access");
    }
}
