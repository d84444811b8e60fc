//! The store conformance suite: every [`Store`] backend must pass it, the
//! memory store and a real Redis (standalone, Cluster, Sentinel) alike.
//!
//! Each case takes a fresh key prefix, so that runs against one shared
//! server never see each other's keys. Expiry is tested with real time
//! (short TTLs and sleeps), since a networked backend has its own clock.

use std::sync::Arc;
use std::time::Duration;

use crate::store::Store;

const MINUTE: Duration = Duration::from_secs(60);

/// A key prefix no other case uses.
fn fresh(case: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("conformance:{case}:{}:{n}", std::process::id())
}

/// Runs every case against `store`; panics on the first failure, naming it.
pub async fn run_all(store: Arc<dyn Store>) {
    set_get_delete(store.as_ref()).await;
    set_if_absent_once(store.as_ref()).await;
    compare_and_set(store.as_ref()).await;
    take_once(store.as_ref()).await;
    indexes(store.as_ref()).await;
    binary_values(store.as_ref()).await;
    expiry(store.as_ref()).await;
    concurrent_one_time_use(store.clone()).await;
    concurrent_compare_and_set(store.clone()).await;
    concurrent_take(store.clone()).await;
    rate_limits(store.as_ref()).await;
    rate_limit_refills(store.as_ref()).await;
    concurrent_rate_limit(store).await;
}

/// `set` overwrites, `get` reads, `delete` tells whether there was a value.
pub async fn set_get_delete(store: &dyn Store) {
    let k = fresh("set");
    assert_eq!(store.get(&k).await, Ok(None), "absent key");
    store.set(&k, b"v1", MINUTE).await.expect("set");
    assert_eq!(store.get(&k).await, Ok(Some(b"v1".to_vec())));
    store.set(&k, b"v2", MINUTE).await.expect("overwrite");
    assert_eq!(store.get(&k).await, Ok(Some(b"v2".to_vec())));
    assert_eq!(store.delete(&k).await, Ok(true), "deleted");
    assert_eq!(store.delete(&k).await, Ok(false), "already gone");
    assert_eq!(store.get(&k).await, Ok(None));
}

/// `set_if_absent` stores only into an empty key.
pub async fn set_if_absent_once(store: &dyn Store) {
    let k = fresh("nx");
    assert_eq!(store.set_if_absent(&k, b"first", MINUTE).await, Ok(true));
    assert_eq!(store.set_if_absent(&k, b"second", MINUTE).await, Ok(false));
    assert_eq!(store.get(&k).await, Ok(Some(b"first".to_vec())));
    store.delete(&k).await.expect("delete");
    assert_eq!(store.set_if_absent(&k, b"third", MINUTE).await, Ok(true));
}

/// `compare_and_set` replaces only the expected value, never an absent one.
pub async fn compare_and_set(store: &dyn Store) {
    let k = fresh("cas");
    assert_eq!(
        store.compare_and_set(&k, b"", b"x", MINUTE).await,
        Ok(false),
        "an absent key never matches, not even an empty expectation"
    );
    assert_eq!(store.get(&k).await, Ok(None));
    store.set(&k, b"a", MINUTE).await.expect("set");
    assert_eq!(
        store.compare_and_set(&k, b"b", b"c", MINUTE).await,
        Ok(false)
    );
    assert_eq!(store.get(&k).await, Ok(Some(b"a".to_vec())));
    assert_eq!(
        store.compare_and_set(&k, b"a", b"c", MINUTE).await,
        Ok(true)
    );
    assert_eq!(store.get(&k).await, Ok(Some(b"c".to_vec())));
    assert_eq!(
        store.compare_and_set(&k, b"a", b"d", MINUTE).await,
        Ok(false)
    );
}

/// `take` returns a value once and removes it.
pub async fn take_once(store: &dyn Store) {
    let k = fresh("take");
    assert_eq!(store.take(&k).await, Ok(None));
    store.set(&k, b"nonce", MINUTE).await.expect("set");
    assert_eq!(store.take(&k).await, Ok(Some(b"nonce".to_vec())));
    assert_eq!(store.take(&k).await, Ok(None));
    assert_eq!(store.get(&k).await, Ok(None));
}

/// Indexes list their members sorted; removal reports presence.
pub async fn indexes(store: &dyn Store) {
    let i = fresh("index");
    assert_eq!(store.index_members(&i).await, Ok(vec![]));
    for m in ["b", "a", "c", "a"] {
        store.index_add(&i, m, MINUTE).await.expect("add");
    }
    assert_eq!(
        store.index_members(&i).await,
        Ok(vec!["a".to_string(), "b".to_string(), "c".to_string()])
    );
    assert_eq!(store.index_remove(&i, "b").await, Ok(true));
    assert_eq!(store.index_remove(&i, "b").await, Ok(false));
    assert_eq!(store.index_remove(&i, "a").await, Ok(true));
    assert_eq!(store.index_remove(&i, "c").await, Ok(true));
    assert_eq!(store.index_members(&i).await, Ok(vec![]));
    // Another index with a member of the same name is separate.
    let j = fresh("index");
    store.index_add(&j, "a", MINUTE).await.expect("add");
    assert_eq!(store.index_members(&i).await, Ok(vec![]));
    assert_eq!(store.index_members(&j).await, Ok(vec!["a".to_string()]));
}

/// Values are bytes, not text: every byte value survives.
pub async fn binary_values(store: &dyn Store) {
    let k = fresh("binary");
    let value: Vec<u8> = (0..=255).collect();
    store.set(&k, &value, MINUTE).await.expect("set");
    assert_eq!(store.get(&k).await, Ok(Some(value)));
    store.set(&k, b"", MINUTE).await.expect("empty value");
    assert_eq!(store.get(&k).await, Ok(Some(vec![])), "empty is not absent");
}

/// Entries and indexes expire; an expired key is free again; an index
/// lives as long as its longest time to live.
pub async fn expiry(store: &dyn Store) {
    let short = Duration::from_millis(300);
    let k = fresh("ttl");
    let nx = fresh("ttl");
    let i = fresh("ttl-index");
    store.set(&k, b"v", short).await.expect("set");
    assert_eq!(store.set_if_absent(&nx, b"v", short).await, Ok(true));
    store.index_add(&i, "short", short).await.expect("add");
    store.index_add(&i, "long", MINUTE).await.expect("add");
    let cas = fresh("ttl");
    store.set(&cas, b"v", MINUTE).await.expect("set");
    assert_eq!(
        store.compare_and_set(&cas, b"v", b"w", short).await,
        Ok(true)
    );
    assert_eq!(store.get(&k).await, Ok(Some(b"v".to_vec())), "still live");
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    assert_eq!(store.get(&k).await, Ok(None), "expired");
    assert_eq!(store.take(&k).await, Ok(None), "expired");
    assert_eq!(store.get(&cas).await, Ok(None), "a CAS sets a fresh TTL");
    assert_eq!(
        store.set_if_absent(&nx, b"again", MINUTE).await,
        Ok(true),
        "an expired key is free"
    );
    assert_eq!(
        store.index_members(&i).await,
        Ok(vec!["long".to_string(), "short".to_string()]),
        "the index lives as long as its longest TTL"
    );
}

/// Of many concurrent first uses of one key, exactly one wins.
pub async fn concurrent_one_time_use(store: Arc<dyn Store>) {
    for _round in 0..10 {
        let k = fresh("race");
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (store, k) = (store.clone(), k.clone());
                tokio::spawn(async move { store.set_if_absent(&k, b"x", MINUTE).await })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            if t.await.expect("task") == Ok(true) {
                won += 1;
            }
        }
        assert_eq!(won, 1, "set_if_absent races");
    }
}

/// Of many concurrent compare-and-sets from one value, exactly one wins.
pub async fn concurrent_compare_and_set(store: Arc<dyn Store>) {
    let k = fresh("cas-race");
    store.set(&k, b"0", MINUTE).await.expect("set");
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let (store, k) = (store.clone(), k.clone());
            tokio::spawn(async move {
                store
                    .compare_and_set(&k, b"0", format!("{n}x").as_bytes(), MINUTE)
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        if t.await.expect("task") == Ok(true) {
            won += 1;
        }
    }
    assert_eq!(won, 1, "compare_and_set races");
}

/// Of many concurrent takes of one key, exactly one gets the value.
pub async fn concurrent_take(store: Arc<dyn Store>) {
    let k = fresh("take-race");
    store.set(&k, b"once", MINUTE).await.expect("set");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (store, k) = (store.clone(), k.clone());
            tokio::spawn(async move { store.take(&k).await })
        })
        .collect();
    let mut got = 0;
    for t in tasks {
        if let Ok(Some(_)) = t.await.expect("task") {
            got += 1;
        }
    }
    assert_eq!(got, 1, "take races");
}

/// A rate limit allows exactly its limit at once, counts down
/// `remaining`, refuses the rest with the time to retry, and keeps each
/// key separate.
pub async fn rate_limits(store: &dyn Store) {
    let k = fresh("rate");
    for remaining in [2, 1, 0] {
        let d = store.rate_limit(&k, 3, MINUTE).await.expect("rate_limit");
        assert!(d.allowed, "within the limit");
        assert_eq!((d.limit, d.remaining), (3, remaining));
        assert_eq!(d.retry_after, Duration::ZERO);
        assert!(d.reset <= MINUTE);
    }
    for _ in 0..3 {
        let d = store.rate_limit(&k, 3, MINUTE).await.expect("rate_limit");
        assert!(!d.allowed, "over the limit");
        assert_eq!(d.remaining, 0);
        // One request every 20 s: the next fits within 20 s.
        assert!(
            d.retry_after > Duration::from_secs(19) && d.retry_after <= Duration::from_secs(20),
            "{:?}",
            d.retry_after
        );
        assert!(
            d.reset > Duration::from_secs(59) && d.reset <= MINUTE,
            "{:?}",
            d.reset
        );
    }
    let other = fresh("rate");
    let d = store
        .rate_limit(&other, 3, MINUTE)
        .await
        .expect("rate_limit");
    assert!(d.allowed, "another key has its own allowance");
    assert_eq!(d.remaining, 2);
}

/// The allowance comes back one request per `window / limit`, and whole
/// once the window has passed (the key has expired).
pub async fn rate_limit_refills(store: &dyn Store) {
    let k = fresh("rate-refill");
    let window = Duration::from_millis(1_000);
    // One request per 500 ms.
    assert!(store.rate_limit(&k, 2, window).await.expect("rl").allowed);
    assert!(store.rate_limit(&k, 2, window).await.expect("rl").allowed);
    assert!(!store.rate_limit(&k, 2, window).await.expect("rl").allowed);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        store.rate_limit(&k, 2, window).await.expect("rl").allowed,
        "one interval later: one more"
    );
    assert!(!store.rate_limit(&k, 2, window).await.expect("rl").allowed);
    tokio::time::sleep(window + Duration::from_millis(100)).await;
    let d = store.rate_limit(&k, 2, window).await.expect("rl");
    assert!(d.allowed && d.remaining == 1, "whole again: {d:?}");
}

/// Of N concurrent requests against a fresh limit L < N, exactly L pass.
pub async fn concurrent_rate_limit(store: Arc<dyn Store>) {
    const LIMIT: u64 = 10;
    for _round in 0..5 {
        let k = fresh("rate-race");
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (store, k) = (store.clone(), k.clone());
                tokio::spawn(async move { store.rate_limit(&k, LIMIT, MINUTE).await })
            })
            .collect();
        let mut allowed = 0;
        for t in tasks {
            if t.await.expect("task").expect("rate_limit").allowed {
                allowed += 1;
            }
        }
        assert_eq!(allowed, LIMIT, "rate_limit races");
    }
}
