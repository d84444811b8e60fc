//! What gatehouse's calls to an authorization server on a caller's behalf
//! (introspection, token exchange) share: the HTTP client, which never
//! follows a redirect (one could carry the caller's token or gatehouse's
//! client secret elsewhere; RFC 6749, 10.x), and a bounded cache of
//! answers that expire, filled once per key however many checks ask at
//! the same moment.

use std::future::Future;
use std::time::Duration;

use quick_cache::sync::Cache;

/// An HTTP client for an authorization server: no redirects, `timeout`
/// per request.
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
}

/// Answers by a 32-byte key (a digest: never a token), each until its own
/// expiry, at most `capacity` of them.
pub struct ExpiringCache<V> {
    entries: Cache<[u8; 32], (V, u64)>,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The cache.
    Cache,
    /// The loader, called by this check.
    Loaded,
}

impl<V: Clone> ExpiringCache<V> {
    /// An empty cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> ExpiringCache<V> {
        ExpiringCache {
            entries: Cache::new(capacity),
        }
    }

    /// The live answer under `key` at `now` (seconds), else the one `load`
    /// gives (`(answer, until)`, kept while `until > now`). Concurrent calls
    /// for one key wait for the first one's load; a failed load is not
    /// kept, and the next waiter loads in turn.
    pub async fn get_or_load<E, F, Fut>(
        &self,
        key: [u8; 32],
        now: u64,
        load: F,
    ) -> Result<(V, Source), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(V, u64), E>>,
    {
        // An expired entry is dropped and looked up again, once: if
        // another check put back an expired answer meanwhile, load anyway.
        for _ in 0..2 {
            match self.entries.get_value_or_guard_async(&key).await {
                Ok((value, until)) if until > now => return Ok((value, Source::Cache)),
                Ok(_) => {
                    self.entries.remove_if(&key, |(_, until)| *until <= now);
                }
                Err(guard) => {
                    let (value, until) = load().await?;
                    let _ = guard.insert((value.clone(), until));
                    return Ok((value, Source::Loaded));
                }
            }
        }
        load().await.map(|(value, _)| (value, Source::Loaded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn answers_are_kept_until_they_expire_and_failures_never() {
        let cache = ExpiringCache::<u32>::new(10);
        let loads = AtomicUsize::new(0);
        let load = |value: u32, until: u64| {
            loads.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, ()>((value, until)) }
        };
        assert_eq!(
            cache.get_or_load([1; 32], 100, || load(7, 110)).await,
            Ok((7, Source::Loaded))
        );
        assert_eq!(
            cache.get_or_load([1; 32], 109, || load(8, 200)).await,
            Ok((7, Source::Cache))
        );
        assert_eq!(
            cache.get_or_load([1; 32], 110, || load(9, 200)).await,
            Ok((9, Source::Loaded))
        );
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        let failed = cache
            .get_or_load([2; 32], 100, || async { Err::<(u32, u64), _>("down") })
            .await;
        assert_eq!(failed, Err("down"));
        assert_eq!(
            cache.get_or_load([2; 32], 100, || load(3, 110)).await,
            Ok((3, Source::Loaded))
        );
    }

    #[tokio::test]
    async fn concurrent_calls_for_one_key_load_once() {
        let cache = Arc::new(ExpiringCache::<u32>::new(10));
        let loads = Arc::new(AtomicUsize::new(0));
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let (cache, loads) = (cache.clone(), loads.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_load([1; 32], 100, || async move {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Ok::<_, ()>((5, 200))
                        })
                        .await
                })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap().0, 5);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }
}
