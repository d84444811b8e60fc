//! Sessions on the memory store (through `FlakyStore`), in tokio's paused
//! time: create, lookup, lifetimes, touch, ending by id, subject and
//! `sid`, the local cache across two instances, outages, and the
//! single-flight refresh.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::record::{record_key, refresh_key, sid_index, subject_index};
use super::*;
use crate::testkit::flaky::FlakyStore;

const NOW: u64 = 1_700_000_000;
const MINUTE: Duration = Duration::from_secs(60);

/// Seconds since the epoch that follow tokio's (paused) clock.
fn clock() -> Clock {
    let start = Instant::now();
    Arc::new(move || NOW + start.elapsed().as_secs())
}

fn config() -> SessionConfig {
    SessionConfig {
        lifetime: Duration::from_secs(12 * 3600),
        inactivity_timeout: 10 * MINUTE,
        ..Default::default()
    }
}

fn store() -> Arc<FlakyStore> {
    Arc::new(FlakyStore::new(10_000))
}

fn sessions_on(store: Arc<FlakyStore>, config: SessionConfig, clock: Clock) -> Arc<Sessions> {
    Arc::new(Sessions::with_clock(&config, store, clock).expect("valid config"))
}

fn new(provider: &str, subject: &str, sid: Option<&str>) -> NewSession {
    NewSession {
        provider: provider.into(),
        identity: SessionIdentity {
            subject: subject.into(),
            username: Some(format!("{subject}-name")),
            email: Some(format!("{subject}@example.org")),
            groups: vec!["staff".into()],
            scopes: ["read".to_string()].into(),
            ..Default::default()
        },
        sid: sid.map(Into::into),
        tokens: SessionTokens {
            access_token: Some(Secret::new("access-1")),
            access_expires: Some(NOW + 3600),
            access_issued: None,
            refresh_token: Some(Secret::new("refresh-1")),
            id_token: Some(Secret::new("id-1")),
        },
        replaces: None,
    }
}

async fn alive(sessions: &Sessions, id: &Secret) -> bool {
    sessions
        .lookup(id.expose())
        .await
        .expect("store up")
        .is_some()
}

async fn stored(store: &FlakyStore, handle: &str) -> Option<SessionRecord> {
    let raw = store.get(&record_key(handle)).await.expect("store up")?;
    Some(serde_json::from_slice(&raw).expect("a record"))
}

#[tokio::test(start_paused = true)]
async fn create_lookup_end() {
    let store = store();
    let sessions = sessions_on(store.clone(), config(), clock());
    let created = sessions
        .create(new("kc", "alice", None))
        .await
        .expect("created");
    let id = created.id.expose();
    assert_eq!(id.len(), record::ID_CHARS);
    let found = sessions.lookup(id).await.expect("up").expect("live");
    assert_eq!(found.handle, created.session.handle);
    assert_eq!(found.record.provider, "kc");
    assert_eq!(
        found.record.identity.username.as_deref(),
        Some("alice-name")
    );
    assert_eq!(found.record.created, NOW);
    assert_eq!(sessions.expires_at(&found), NOW + 12 * 3600);
    assert_eq!(found.record.csrf_token.expose().len(), record::ID_CHARS);
    // The store knows the session by its hash only.
    let raw = store
        .get(&record_key(&found.handle))
        .await
        .unwrap()
        .unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains(id));
    assert!(!found.handle.contains(id));

    assert!(sessions.end(id).await.expect("ended"));
    assert!(!alive(&sessions, &created.id).await, "gone at once here");
    assert!(!sessions.end(id).await.expect("nothing to end"));
    assert!(stored(&store, &found.handle).await.is_none());
}

#[tokio::test(start_paused = true)]
async fn unknown_and_malformed_cookies_are_no_session() {
    let sessions = sessions_on(store(), config(), clock());
    for value in ["", "abc", &"A".repeat(43), &"!".repeat(43)] {
        assert!(
            sessions.lookup(value).await.expect("up").is_none(),
            "{value}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_login_rotates_the_id_and_ends_the_old_session() {
    let sessions = sessions_on(store(), config(), clock());
    let first = sessions
        .create(new("kc", "alice", None))
        .await
        .expect("created");
    let second = sessions
        .create(NewSession {
            replaces: Some(first.id.clone()),
            ..new("kc", "alice", None)
        })
        .await
        .expect("created");
    assert_ne!(first.id.expose(), second.id.expose());
    assert!(!alive(&sessions, &first.id).await);
    assert!(alive(&sessions, &second.id).await);
}

#[tokio::test(start_paused = true)]
async fn a_new_session_needs_a_provider_and_a_subject() {
    let sessions = sessions_on(store(), config(), clock());
    assert!(matches!(
        sessions.create(new("", "alice", None)).await,
        Err(SessionError::Invalid(_))
    ));
    assert!(matches!(
        sessions.create(new("kc", "", None)).await,
        Err(SessionError::Invalid(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn the_absolute_lifetime_ends_an_active_session() {
    let store = store();
    let config = SessionConfig {
        lifetime: Duration::from_secs(3600),
        inactivity_timeout: 10 * MINUTE,
        cache_ttl: Duration::ZERO,
        ..Default::default()
    };
    let sessions = sessions_on(store.clone(), config, clock());
    let created = sessions
        .create(new("kc", "alice", None))
        .await
        .expect("created");
    // Used every 5 minutes: never idle, but the hour is the hour.
    for _ in 0..11 {
        tokio::time::advance(5 * MINUTE).await;
        assert!(alive(&sessions, &created.id).await);
    }
    tokio::time::advance(5 * MINUTE).await;
    assert!(!alive(&sessions, &created.id).await);
    assert!(
        stored(&store, &created.session.handle).await.is_none(),
        "the store dropped it too"
    );
}

#[tokio::test(start_paused = true)]
async fn inactivity_ends_a_session_and_use_extends_it() {
    let store = store();
    let config = SessionConfig {
        cache_ttl: Duration::ZERO,
        ..config()
    };
    let sessions = sessions_on(store.clone(), config, clock());
    let created = sessions
        .create(new("kc", "alice", None))
        .await
        .expect("created");
    let handle = &created.session.handle;
    // Within a tenth of the timeout (60s) last_seen is not written.
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(alive(&sessions, &created.id).await);
    assert_eq!(stored(&store, handle).await.unwrap().last_seen, NOW);
    tokio::time::advance(Duration::from_secs(31)).await;
    assert!(alive(&sessions, &created.id).await);
    assert_eq!(stored(&store, handle).await.unwrap().last_seen, NOW + 61);
    // Used every 9 minutes for an hour: alive.
    for _ in 0..7 {
        tokio::time::advance(9 * MINUTE).await;
        assert!(alive(&sessions, &created.id).await);
    }
    // Then idle for the timeout: gone.
    tokio::time::advance(10 * MINUTE).await;
    assert!(!alive(&sessions, &created.id).await);
}

#[tokio::test(start_paused = true)]
async fn lifetimes_are_enforced_on_lookup_not_only_by_the_store() {
    // Created under a 12h lifetime (and a store TTL to match); read by an
    // instance configured for 1h without inactivity limit.
    let store = store();
    let clock = clock();
    let long = sessions_on(
        store.clone(),
        SessionConfig {
            inactivity_timeout: Duration::ZERO,
            ..config()
        },
        clock.clone(),
    );
    let short = sessions_on(
        store.clone(),
        SessionConfig {
            lifetime: Duration::from_secs(3600),
            inactivity_timeout: Duration::ZERO,
            ..config()
        },
        clock,
    );
    let created = long
        .create(new("kc", "alice", None))
        .await
        .expect("created");
    tokio::time::advance(Duration::from_secs(3601)).await;
    assert!(stored(&store, &created.session.handle).await.is_some());
    assert!(!alive(&short, &created.id).await);
    assert!(alive(&long, &created.id).await);
    // A cached entry is judged again on every lookup: the wall clock
    // moves past the inactivity timeout while tokio's clock (the cache's
    // age and the store's TTL) stands still.
    let wall = Arc::new(std::sync::atomic::AtomicU64::new(NOW));
    let read = wall.clone();
    let sessions = sessions_on(
        store.clone(),
        config(),
        Arc::new(move || read.load(Ordering::SeqCst)),
    );
    let cached = sessions
        .create(new("kc", "bob", None))
        .await
        .expect("created");
    assert!(alive(&sessions, &cached.id).await);
    wall.store(NOW + 601, Ordering::SeqCst);
    assert!(!alive(&sessions, &cached.id).await);
    assert!(stored(&store, &cached.session.handle).await.is_some());
}

#[tokio::test(start_paused = true)]
async fn no_inactivity_timeout_means_no_writes_on_use() {
    let store = store();
    let config = SessionConfig {
        inactivity_timeout: Duration::ZERO,
        cache_ttl: Duration::ZERO,
        ..config()
    };
    let sessions = sessions_on(store.clone(), config, clock());
    let created = sessions
        .create(new("kc", "alice", None))
        .await
        .expect("created");
    tokio::time::advance(Duration::from_secs(6 * 3600)).await;
    assert!(alive(&sessions, &created.id).await);
    assert_eq!(
        stored(&store, &created.session.handle)
            .await
            .unwrap()
            .last_seen,
        NOW
    );
}

#[tokio::test(start_paused = true)]
async fn a_touch_or_update_never_brings_back_an_ended_session() {
    let store = store();
    let clock = clock();
    let a = sessions_on(store.clone(), config(), clock.clone());
    let b = sessions_on(store.clone(), config(), clock);
    let created = a.create(new("kc", "alice", None)).await.expect("created");
    let stale = a.lookup(created.id.expose()).await.unwrap().expect("live");
    assert!(b.end(created.id.expose()).await.expect("ended"));
    tokio::time::advance(2 * MINUTE).await;
    // A's touch is due and holds the bytes it read: the compare-and-set
    // finds nothing and writes nothing.
    assert!(a.touch(stale.clone(), a.now()).await.is_none());
    assert!(
        a.update_tokens(&stale, SessionTokens::default())
            .await
            .expect("store up")
            .is_none()
    );
    assert!(stored(&store, &stale.handle).await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_lost_race_reads_again_and_applies_the_change_to_the_fresh_record() {
    let store = store();
    let sessions = sessions_on(store.clone(), config(), clock());
    let created = sessions
        .create(new("kc", "alice", None))
        .await
        .expect("created");
    let stale = created.session.clone();
    tokio::time::advance(2 * MINUTE).await;
    // Another replica touched it meanwhile.
    let touched = sessions
        .touch(stale.clone(), sessions.now())
        .await
        .expect("live");
    assert_eq!(touched.record.last_seen, NOW + 120);
    let tokens = SessionTokens {
        access_token: Some(Secret::new("access-2")),
        ..Default::default()
    };
    let updated = sessions
        .update_tokens(&stale, tokens)
        .await
        .expect("up")
        .expect("live");
    let record = stored(&store, &updated.handle).await.expect("stored");
    assert_eq!(record.last_seen, NOW + 120, "the touch is kept");
    assert_eq!(
        record.tokens.access_token.as_ref().map(Secret::expose),
        Some("access-2")
    );
}

#[tokio::test(start_paused = true)]
async fn back_channel_logout_by_subject_and_by_sid() {
    let store = store();
    let sessions = sessions_on(store.clone(), config(), clock());
    let a1 = sessions
        .create(new("kc", "alice", Some("s1")))
        .await
        .unwrap();
    let a2 = sessions
        .create(new("kc", "alice", Some("s2")))
        .await
        .unwrap();
    let a_other = sessions
        .create(new("gh", "alice", Some("s1")))
        .await
        .unwrap();
    let bob = sessions.create(new("kc", "bob", Some("s3"))).await.unwrap();
    // Indexes name hashes, never ids.
    let members = store
        .index_members(&subject_index("kc", "alice"))
        .await
        .unwrap();
    assert_eq!(members.len(), 2);
    assert!(members.contains(&a1.session.handle));
    assert!(
        !members
            .iter()
            .any(|m| m == a1.id.expose() || m == a2.id.expose())
    );

    assert_eq!(sessions.end_by_sid("kc", "s1").await.expect("up"), 1);
    assert!(!alive(&sessions, &a1.id).await);
    assert!(alive(&sessions, &a2.id).await);
    assert!(alive(&sessions, &a_other.id).await, "another provider's s1");
    // a1 left the subject's index with its session.
    let members = store
        .index_members(&subject_index("kc", "alice"))
        .await
        .unwrap();
    assert_eq!(members, vec![a2.session.handle.clone()]);

    assert_eq!(sessions.end_by_subject("kc", "alice").await.expect("up"), 1);
    assert!(!alive(&sessions, &a2.id).await);
    assert!(alive(&sessions, &bob.id).await);
    assert!(alive(&sessions, &a_other.id).await);
    assert!(
        store
            .index_members(&sid_index("kc", "s2"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(sessions.end_by_subject("kc", "alice").await.expect("up"), 0);
}

#[tokio::test(start_paused = true)]
async fn another_replica_sees_a_logout_within_the_cache_ttl() {
    let store = store();
    let clock = clock();
    let a = sessions_on(store.clone(), config(), clock.clone());
    let b = sessions_on(store.clone(), config(), clock);
    let created = a.create(new("kc", "alice", None)).await.unwrap();
    assert!(alive(&b, &created.id).await, "b caches it");
    assert!(a.end(created.id.expose()).await.unwrap());
    assert!(
        alive(&b, &created.id).await,
        "b trusts its cache for cache_ttl"
    );
    tokio::time::advance(Duration::from_millis(500)).await;
    assert!(!alive(&b, &created.id).await);
}

#[tokio::test(start_paused = true)]
async fn a_store_outage_is_an_error_never_a_session() {
    let store = store();
    let sessions = sessions_on(store.clone(), config(), clock());
    let created = sessions
        .create(new("kc", "alice", Some("s")))
        .await
        .unwrap();
    store.set_down(true);
    // Within cache_ttl the cached session stands.
    assert!(alive(&sessions, &created.id).await);
    tokio::time::advance(Duration::from_millis(500)).await;
    assert!(matches!(
        sessions.lookup(created.id.expose()).await,
        Err(SessionError::Unavailable(_))
    ));
    assert!(matches!(
        sessions.create(new("kc", "bob", None)).await,
        Err(SessionError::Unavailable(_))
    ));
    assert!(matches!(
        sessions.end_by_sid("kc", "s").await,
        Err(SessionError::Unavailable(_))
    ));
    store.set_down(false);
    assert!(alive(&sessions, &created.id).await);
}

#[test]
fn cookies_carry_the_contract_attributes() {
    let sessions = Sessions::new(&SessionConfig::default(), store()).expect("valid");
    let id = Secret::new("X".repeat(43));
    assert_eq!(
        sessions.set_cookie(&id),
        format!(
            "__Host-gatehouse_session={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=43200",
            "X".repeat(43)
        )
    );
    let shared = SessionConfig {
        cookie_domain: Some("example.org".into()),
        ..Default::default()
    };
    let sessions = Sessions::new(&shared, store()).expect("valid");
    assert_eq!(
        sessions.clear_cookie(),
        "gatehouse_session=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0; Domain=example.org"
    );
}

/// A provider that counts its refreshes, takes 100ms, and answers `answer`.
struct Counting {
    calls: AtomicUsize,
    answer: Result<(), RefreshError>,
    rotate: bool,
}

impl Counting {
    fn ok() -> Arc<Counting> {
        Arc::new(Counting {
            calls: AtomicUsize::new(0),
            answer: Ok(()),
            rotate: false,
        })
    }

    fn failing(error: RefreshError) -> Arc<Counting> {
        Arc::new(Counting {
            calls: AtomicUsize::new(0),
            answer: Err(error),
            rotate: false,
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Refresher for Counting {
    async fn refresh(
        &self,
        provider: &str,
        refresh_token: &Secret,
    ) -> Result<RefreshedTokens, RefreshError> {
        assert_eq!(provider, "kc");
        assert!(refresh_token.expose().starts_with("refresh-"));
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.answer.clone()?;
        Ok(RefreshedTokens {
            access_token: Secret::new(format!("access-{}", n + 1)),
            access_expires: Some(NOW + 7200),
            refresh_token: self
                .rotate
                .then(|| Secret::new(format!("refresh-{}", n + 1))),
            id_token: None,
        })
    }
}

fn access(session: &Session) -> Option<&str> {
    session
        .record
        .tokens
        .access_token
        .as_ref()
        .map(Secret::expose)
}

/// A session whose access token expires `expires_in` seconds from NOW.
async fn due_session(sessions: &Sessions, expires_in: u64) -> Created {
    let mut new = new("kc", "alice", Some("s"));
    new.tokens.access_expires = Some(NOW + expires_in);
    sessions.create(new).await.expect("created")
}

/// `n` concurrent refreshes of the session `id`, spread over `replicas`.
async fn race(
    replicas: &[Arc<Sessions>],
    id: &Secret,
    refresher: Arc<Counting>,
    n: usize,
) -> Vec<Option<Session>> {
    let refresher: Arc<dyn Refresher> = refresher;
    let mut tasks = Vec::new();
    for i in 0..n {
        let sessions = replicas[i % replicas.len()].clone();
        let refresher = refresher.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let session = sessions
                .lookup(id.expose())
                .await
                .expect("up")
                .expect("live");
            sessions
                .refresh_if_due(session, &refresher)
                .await
                .expect("up")
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("task"));
    }
    out
}

#[tokio::test(start_paused = true)]
async fn twenty_racing_requests_refresh_once_on_one_replica() {
    let sessions = sessions_on(store(), config(), clock());
    // Expires in 30s, within refresh_before (60s).
    let created = due_session(&sessions, 30).await;
    let refresher = Counting::ok();
    let results = race(
        std::slice::from_ref(&sessions),
        &created.id,
        refresher.clone(),
        20,
    )
    .await;
    assert_eq!(refresher.calls(), 1);
    // Every queued request re-read the record and got the new token.
    for result in &results {
        assert_eq!(access(result.as_ref().expect("live")), Some("access-2"));
    }
    let refreshed = sessions.lookup(created.id.expose()).await.unwrap().unwrap();
    assert_eq!(refreshed.record.tokens.access_expires, Some(NOW + 7200));
    assert_eq!(
        refreshed
            .record
            .tokens
            .refresh_token
            .as_ref()
            .map(Secret::expose),
        Some("refresh-1"),
        "not rotated: the old refresh token is kept"
    );
    assert!(
        sessions.refreshing.lock().unwrap().is_empty(),
        "no lock left behind"
    );
}

#[tokio::test(start_paused = true)]
async fn twenty_racing_requests_refresh_once_across_two_replicas() {
    let store = store();
    let clock = clock();
    let replicas = [
        sessions_on(store.clone(), config(), clock.clone()),
        sessions_on(store.clone(), config(), clock),
    ];
    // Still valid for 30s: the losers on the other replica go on with it.
    let created = due_session(&replicas[0], 30).await;
    let refresher = Counting::ok();
    let results = race(&replicas, &created.id, refresher.clone(), 20).await;
    assert_eq!(refresher.calls(), 1);
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_some_and(|s| access(s).is_some()))
    );
    // Already expired: the losers wait for the winner's new token.
    let created = due_session(&replicas[0], 0).await;
    let refresher = Counting::ok();
    let results = race(&replicas, &created.id, refresher.clone(), 20).await;
    assert_eq!(refresher.calls(), 1);
    for result in &results {
        assert_eq!(access(result.as_ref().expect("live")), Some("access-2"));
    }
    assert!(
        store
            .get(&refresh_key(&created.session.handle))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(start_paused = true)]
async fn nothing_is_refreshed_before_it_is_due_or_without_a_refresh_token() {
    let sessions = sessions_on(store(), config(), clock());
    let refresher = Counting::ok();
    let dynamic: Arc<dyn Refresher> = refresher.clone();
    let created = due_session(&sessions, 3600).await;
    let same = sessions
        .refresh_if_due(created.session.clone(), &dynamic)
        .await
        .unwrap()
        .expect("live");
    assert_eq!(access(&same), Some("access-1"));
    let mut no_refresh = new("kc", "bob", None);
    no_refresh.tokens.refresh_token = None;
    no_refresh.tokens.access_expires = Some(NOW);
    let created = sessions.create(no_refresh).await.unwrap();
    assert!(!sessions.refresh_due(&created.session.record, NOW));
    sessions
        .refresh_if_due(created.session, &dynamic)
        .await
        .unwrap()
        .expect("live");
    assert_eq!(refresher.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_rotated_refresh_token_replaces_the_old_one() {
    let sessions = sessions_on(store(), config(), clock());
    let created = due_session(&sessions, 10).await;
    let refresher: Arc<dyn Refresher> = Arc::new(Counting {
        calls: AtomicUsize::new(0),
        answer: Ok(()),
        rotate: true,
    });
    let session = sessions
        .refresh_if_due(created.session, &refresher)
        .await
        .unwrap()
        .expect("live");
    assert_eq!(
        session
            .record
            .tokens
            .refresh_token
            .as_ref()
            .map(Secret::expose),
        Some("refresh-2")
    );
    assert_eq!(
        session.record.tokens.id_token.as_ref().map(Secret::expose),
        Some("id-1"),
        "no new ID token: the old one is kept"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_refresh_ends_the_session() {
    let store = store();
    let sessions = sessions_on(store.clone(), config(), clock());
    let created = due_session(&sessions, 10).await;
    let refresher = Counting::failing(RefreshError::Rejected("invalid_grant".into()));
    let results = race(
        std::slice::from_ref(&sessions),
        &created.id,
        refresher.clone(),
        5,
    )
    .await;
    assert_eq!(refresher.calls(), 1);
    assert!(results.iter().all(Option::is_none));
    assert!(!alive(&sessions, &created.id).await);
    assert!(
        store
            .index_members(&subject_index("kc", "alice"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_provider_keeps_the_session_and_is_asked_again_later() {
    let sessions = sessions_on(store(), config(), clock());
    let created = due_session(&sessions, 0).await;
    let refresher = Counting::failing(RefreshError::Unavailable("503".into()));
    let dynamic: Arc<dyn Refresher> = refresher.clone();
    let kept = sessions
        .refresh_if_due(created.session.clone(), &dynamic)
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(access(&kept), Some("access-1"));
    assert!(kept.record.tokens.access_token_at(sessions.now()).is_none());
    // Backing off: not asked again at once, and nobody waits.
    let started = Instant::now();
    sessions
        .refresh_if_due(kept.clone(), &dynamic)
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(refresher.calls(), 1);
    assert!(started.elapsed() < REFRESH_WAIT);
    tokio::time::advance(REFRESH_RETRY_AFTER).await;
    sessions
        .refresh_if_due(kept, &dynamic)
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(refresher.calls(), 2);
}

/// A provider that never answers.
struct Silent;

#[async_trait]
impl Refresher for Silent {
    async fn refresh(&self, _: &str, _: &Secret) -> Result<RefreshedTokens, RefreshError> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_provider_that_does_not_answer_is_given_up_on() {
    let sessions = sessions_on(store(), config(), clock());
    let created = due_session(&sessions, 0).await;
    let refresher: Arc<dyn Refresher> = Arc::new(Silent);
    let started = Instant::now();
    let kept = sessions
        .refresh_if_due(created.session, &refresher)
        .await
        .unwrap()
        .expect("kept");
    assert!(started.elapsed() >= REFRESH_TIMEOUT);
    assert!(started.elapsed() < REFRESH_TIMEOUT + Duration::from_secs(1));
    assert_eq!(access(&kept), Some("access-1"));
}

#[tokio::test(start_paused = true)]
async fn a_short_lived_token_is_refreshed_at_half_its_life_not_at_once() {
    // refresh_before is 60s; the provider's tokens live 10s.
    let sessions = sessions_on(store(), config(), clock());
    let mut short = new("kc", "alice", None);
    short.tokens.access_issued = Some(NOW);
    short.tokens.access_expires = Some(NOW + 10);
    let record = sessions.create(short).await.unwrap().session.record;
    assert!(!sessions.refresh_due(&record, NOW));
    assert!(!sessions.refresh_due(&record, NOW + 4));
    assert!(sessions.refresh_due(&record, NOW + 5));
    // Without a known issue time, refresh_before alone decides.
    let mut unknown = new("kc", "bob", None);
    unknown.tokens.access_expires = Some(NOW + 10);
    let record = sessions.create(unknown).await.unwrap().session.record;
    assert!(sessions.refresh_due(&record, NOW));
    // A long-lived token: refresh_before (60s) is the shorter margin.
    let mut long = new("kc", "carol", None);
    long.tokens.access_issued = Some(NOW);
    long.tokens.access_expires = Some(NOW + 3600);
    let record = sessions.create(long).await.unwrap().session.record;
    assert!(!sessions.refresh_due(&record, NOW + 3539));
    assert!(sessions.refresh_due(&record, NOW + 3540));
}
