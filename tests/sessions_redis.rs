//! Sessions on a real Redis (`gatehouse::testkit::redis` starts it), behind
//! the sealed store as in production, shared by two `Sessions` instances
//! (two replicas): a session created on one is found on the other, a
//! logout on one is refused by the other within `cache_ttl`, and 20
//! racing refreshes over both replicas reach the provider once.
//!
//! Needs `redis-server` on PATH (`bash tests/setup.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gatehouse::config::{ConfigSource, RedisStoreConfig, SessionConfig};
use gatehouse::secret::Secret;
use gatehouse::sessions::{
    NewSession, RefreshError, RefreshedTokens, Refresher, SessionIdentity, SessionTokens, Sessions,
};
use gatehouse::store::Store;
use gatehouse::store::redis::RedisStore;
use gatehouse::store::sealed::{Keyring, SealedStore};
use gatehouse::testkit::redis::RedisServer;

fn shared_store(redis: &RedisServer) -> Arc<dyn Store> {
    let config = RedisStoreConfig {
        url: Some(redis.url()),
        ..Default::default()
    };
    let backend = Arc::new(
        RedisStore::new(&config, &ConfigSource::Text(String::new())).expect("store.redis"),
    );
    let keys = Keyring::parse(&format!("{}\n", "7a".repeat(32))).expect("key");
    Arc::new(SealedStore::new(backend, keys))
}

fn new_session(access_expires: u64) -> NewSession {
    NewSession {
        provider: "kc".into(),
        identity: SessionIdentity {
            subject: "alice-sub".into(),
            username: Some("alice".into()),
            ..Default::default()
        },
        sid: Some("idp-session".into()),
        tokens: SessionTokens {
            access_token: Some(Secret::new("access-1")),
            access_expires: Some(access_expires),
            access_issued: None,
            refresh_token: Some(Secret::new("refresh-1")),
            id_token: None,
        },
        replaces: None,
    }
}

struct Counting(AtomicUsize);

#[async_trait]
impl Refresher for Counting {
    async fn refresh(&self, _: &str, _: &Secret) -> Result<RefreshedTokens, RefreshError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(RefreshedTokens {
            access_token: Secret::new("access-2"),
            access_expires: Some(gatehouse::clock::now_secs() + 3600),
            refresh_token: None,
            id_token: None,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_sessions_on_redis() {
    let redis = RedisServer::start();
    let config = SessionConfig::default();
    let a = Arc::new(Sessions::new(&config, shared_store(&redis)).unwrap());
    let b = Arc::new(Sessions::new(&config, shared_store(&redis)).unwrap());
    let now = gatehouse::clock::now_secs();

    let created = a.create(new_session(now + 3600)).await.expect("created");
    let id = created.id.expose();
    let on_b = b.lookup(id).await.expect("redis up").expect("b finds it");
    assert_eq!(on_b.record.identity.username.as_deref(), Some("alice"));
    // Redis holds the session under its hash, sealed.
    let keys = redis.cli(&["--scan", "--pattern", "*"]);
    assert!(
        keys.contains(&format!("session:{}", created.session.handle)),
        "{keys}"
    );
    assert!(!keys.contains(id), "{keys}");
    let raw = redis.cli(&[
        "GET",
        &format!("gatehouse:session:{}", created.session.handle),
    ]);
    assert!(
        !raw.contains("alice") && !raw.contains("refresh-1"),
        "{raw}"
    );

    // Logout on A: B refuses it within cache_ttl (500ms).
    assert!(a.end(id).await.expect("ended"));
    let ended = Instant::now();
    loop {
        if b.lookup(id).await.expect("redis up").is_none() {
            break;
        }
        assert!(ended.elapsed() < config.cache_ttl + Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "replica B refused the ended session after {:?}",
        ended.elapsed()
    );

    // Back-channel logout by sid on B ends a session made on A.
    let created = a.create(new_session(now + 3600)).await.expect("created");
    assert_eq!(b.end_by_sid("kc", "idp-session").await.expect("up"), 1);
    tokio::time::sleep(config.cache_ttl).await;
    assert!(a.lookup(created.id.expose()).await.unwrap().is_none());

    // 20 racing refreshes over both replicas: one call to the provider.
    let created = a.create(new_session(now)).await.expect("created");
    let counting = Arc::new(Counting(AtomicUsize::new(0)));
    let refresher: Arc<dyn Refresher> = counting.clone();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let sessions = if i % 2 == 0 { a.clone() } else { b.clone() };
        let refresher = refresher.clone();
        let id = created.id.clone();
        tasks.push(tokio::spawn(async move {
            let session = sessions.lookup(id.expose()).await.unwrap().expect("live");
            sessions.refresh_if_due(session, &refresher).await.unwrap()
        }));
    }
    for task in tasks {
        let session = task.await.unwrap().expect("live");
        let token = session
            .record
            .tokens
            .access_token
            .as_ref()
            .map(Secret::expose);
        assert_eq!(token, Some("access-2"));
    }
    assert_eq!(counting.0.load(Ordering::SeqCst), 1);
}
