//! The token service on the memory store: create, list, revoke, the rules
//! of creation, verification and the local cache.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::model::identity::{CredentialKind, Identity};
use crate::testkit::flaky::FlakyStore;

const NOW: u64 = 1_700_000_000;
const DAY: u64 = 86_400;

fn flaky() -> Arc<FlakyStore> {
    Arc::new(FlakyStore::new(10_000))
}

fn service_on(store: Arc<dyn Store>, config: ApiTokensConfig) -> ApiTokens {
    ApiTokens::new(&config, store).expect("valid config")
}

fn service() -> ApiTokens {
    service_on(flaky(), ApiTokensConfig::default())
}

fn identity(user: &str, scopes: &[&str]) -> Identity {
    crate::testkit::identity(user, scopes)
}

fn caller(identity: &Identity) -> Caller<'_> {
    Caller {
        identity,
        superuser: false,
    }
}

fn new(name: &str, scopes: &[&str]) -> NewToken {
    NewToken {
        name: name.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn create_verify_list_revoke() {
    let tokens = service();
    let alice = identity("alice", &["read", "write"]);
    let created = tokens
        .create(&caller(&alice), "alice", new("ci", &["read"]), NOW)
        .await
        .expect("created");
    assert_eq!(created.info.expires, NOW + crate::config::YEAR_SECS);
    assert!(format::looks_like(created.token.expose(), "gh"));

    let verified = tokens
        .verify(created.token.expose(), NOW + 10)
        .await
        .expect("valid");
    assert_eq!(verified.key, created.info.key);
    assert_eq!(verified.record.user, "alice");
    assert_eq!(verified.record.email.as_deref(), Some("alice@example.org"));
    assert_eq!(
        verified.record.scopes.iter().collect::<Vec<_>>(),
        vec!["read"]
    );

    let listed = tokens
        .list(&caller(&alice), "alice", NOW + 20)
        .await
        .expect("listed");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "ci");
    assert_eq!(listed[0].last_used, Some(NOW + 10));
    let json = serde_json::to_string(&listed).expect("json");
    let secret = created.token.expose().split_once('.').expect("dot").1;
    assert!(!json.contains(secret), "{json}");

    tokens
        .revoke(&caller(&alice), "alice", &created.info.key)
        .await
        .expect("revoked");
    // The revoking replica forgets at once.
    assert_eq!(
        tokens.verify(created.token.expose(), NOW + 30).await.err(),
        Some(VerifyError::Unknown)
    );
    assert!(
        tokens
            .list(&caller(&alice), "alice", NOW + 30)
            .await
            .expect("listed")
            .is_empty()
    );
    assert_eq!(
        tokens
            .revoke(&caller(&alice), "alice", &created.info.key)
            .await
            .err(),
        Some(TokenError::NotFound(created.info.key.clone()))
    );
    // The name is free again.
    tokens
        .create(&caller(&alice), "alice", new("ci", &["read"]), NOW + 40)
        .await
        .expect("name reusable after revocation");
}

#[tokio::test]
async fn names_are_unique_per_user() {
    let tokens = service();
    let alice = identity("alice", &["read"]);
    let admin = identity("root", &["read", "admin:token"]);
    tokens
        .create(&caller(&alice), "alice", new("ci", &[]), NOW)
        .await
        .expect("created");
    let err = tokens
        .create(&caller(&alice), "alice", new("ci", &["read"]), NOW)
        .await
        .expect_err("taken");
    assert_eq!(err.http_status(), 409);
    assert!(err.to_string().contains("\"ci\""), "{err}");
    // Another user may use the same name.
    tokens
        .create(&caller(&admin), "bob", new("ci", &[]), NOW)
        .await
        .expect("bob's own ci");
}

#[tokio::test]
async fn scopes_must_be_a_subset_of_the_callers() {
    let tokens = service();
    let alice = identity("alice", &["read"]);
    let err = tokens
        .create(
            &caller(&alice),
            "alice",
            new("x", &["read", "write", "admin:token"]),
            NOW,
        )
        .await
        .expect_err("beyond");
    assert_eq!(err.http_status(), 403);
    assert_eq!(
        err.to_string(),
        "scopes the caller does not hold: admin:token write"
    );
    let err = tokens
        .create(&caller(&alice), "alice", new("x", &["a b"]), NOW)
        .await
        .expect_err("bad scope");
    assert_eq!(err.http_status(), 400);
}

#[tokio::test]
async fn only_the_user_or_an_admin_acts_for_a_user() {
    let tokens = service();
    let alice = identity("alice", &["read"]);
    let admin = identity("root", &["read", "admin:token"]);
    let err = tokens
        .create(&caller(&alice), "bob", new("x", &[]), NOW)
        .await
        .expect_err("not alice's");
    assert_eq!(err.http_status(), 403);
    assert_eq!(
        tokens
            .list(&caller(&alice), "bob", NOW)
            .await
            .err()
            .map(|e| e.http_status()),
        Some(403)
    );
    let made = tokens
        .create(&caller(&admin), "bob", new("x", &["read"]), NOW)
        .await
        .expect("admin acts for bob");
    let record = tokens
        .verify(made.token.expose(), NOW)
        .await
        .expect("valid")
        .record;
    assert_eq!(record.user, "bob");
    assert_eq!(record.created_by, "root");
    // The admin's own e-mail is not copied into bob's token.
    assert_eq!(record.email, None);
    assert_eq!(
        tokens
            .list(&caller(&admin), "bob", NOW)
            .await
            .expect("list")
            .len(),
        1
    );
    // Alice cannot revoke bob's token, even knowing its key.
    assert_eq!(
        tokens
            .revoke(&caller(&alice), "alice", &made.info.key)
            .await
            .err(),
        Some(TokenError::NotFound(made.info.key.clone()))
    );
    tokens
        .revoke(&caller(&admin), "bob", &made.info.key)
        .await
        .expect("admin revokes");
}

#[tokio::test]
async fn an_api_token_cannot_create_tokens() {
    let tokens = service();
    let mut via_token = identity("alice", &["read"]);
    via_token.kind = CredentialKind::ApiToken;
    let err = tokens
        .create(&caller(&via_token), "alice", new("x", &[]), NOW)
        .await
        .expect_err("refused");
    assert_eq!(err.http_status(), 403);
    // It may still list its user's tokens.
    assert!(tokens.list(&caller(&via_token), "alice", NOW).await.is_ok());
    // A signed link may do neither.
    let mut via_link = identity("alice", &["read"]);
    via_link.kind = CredentialKind::Link;
    for result in [
        tokens
            .create(&caller(&via_link), "alice", new("x", &[]), NOW)
            .await
            .map(|_| ()),
        tokens
            .list(&caller(&via_link), "alice", NOW)
            .await
            .map(|_| ()),
    ] {
        assert_eq!(result.err().map(|e| e.http_status()), Some(403));
    }
}

#[tokio::test]
async fn expiry_defaults_and_bounds() {
    let tokens = service_on(
        flaky(),
        ApiTokensConfig {
            max_lifetime: Duration::from_secs(30 * DAY),
            ..Default::default()
        },
    );
    let alice = identity("alice", &[]);
    let mut request = new("past", &[]);
    request.expires = Some(NOW);
    let err = tokens.create(&caller(&alice), "alice", request, NOW).await;
    assert_eq!(err.err().map(|e| e.http_status()), Some(400));
    let mut request = new("far", &[]);
    request.expires = Some(NOW + 31 * DAY);
    let err = tokens
        .create(&caller(&alice), "alice", request, NOW)
        .await
        .expect_err("too far");
    assert!(err.to_string().contains("30days"), "{err}");
    let mut request = new("soon", &[]);
    request.expires = Some(NOW + 60);
    let made = tokens
        .create(&caller(&alice), "alice", request, NOW)
        .await
        .expect("within");
    assert_eq!(made.info.expires, NOW + 60);
    assert!(tokens.verify(made.token.expose(), NOW + 59).await.is_ok());
    assert_eq!(
        tokens.verify(made.token.expose(), NOW + 60).await.err(),
        Some(VerifyError::Expired)
    );
}

#[tokio::test]
async fn deploy_tokens_need_the_tool_owner_or_a_superuser() {
    let tokens = service();
    let mut tool_cert = identity("tool-alpha", &["deploy"]);
    tool_cert.kind = CredentialKind::Certificate;
    tool_cert.tool = Some("alpha".into());
    let mut request = new("deploy", &["deploy"]);
    request.tool = Some("alpha".into());
    let made = tokens
        .create(&caller(&tool_cert), "tool-alpha", request.clone(), NOW)
        .await
        .expect("the tool's own certificate");
    assert_eq!(made.info.tool.as_deref(), Some("alpha"));

    let mut other = request.clone();
    other.name = "other".into();
    other.tool = Some("beta".into());
    let err = tokens
        .create(&caller(&tool_cert), "tool-alpha", other.clone(), NOW)
        .await
        .expect_err("not its tool");
    assert_eq!(err.http_status(), 403);

    let maintainer = identity("alice", &["deploy"]);
    assert_eq!(
        tokens
            .create(&caller(&maintainer), "alice", other.clone(), NOW)
            .await
            .err()
            .map(|e| e.http_status()),
        Some(403)
    );
    let superuser = Caller {
        identity: &maintainer,
        superuser: true,
    };
    let made = tokens
        .create(&superuser, "alice", other, NOW)
        .await
        .expect("a superuser");
    assert_eq!(made.info.tool.as_deref(), Some("beta"));
}

#[tokio::test]
async fn stale_index_members_are_pruned_and_the_limit_counts_live_tokens() {
    let store = flaky();
    let tokens = service_on(
        store.clone(),
        ApiTokensConfig {
            max_tokens_per_user: 2,
            ..Default::default()
        },
    );
    let alice = identity("alice", &[]);
    let a = tokens
        .create(&caller(&alice), "alice", new("a", &[]), NOW)
        .await
        .expect("a");
    tokens
        .create(&caller(&alice), "alice", new("b", &[]), NOW)
        .await
        .expect("b");
    let err = tokens
        .create(&caller(&alice), "alice", new("c", &[]), NOW)
        .await
        .expect_err("limit");
    assert_eq!(err.http_status(), 409);
    // The record vanishes behind the service's back (evicted, expired).
    store
        .delete(&record::record_key(&a.info.key))
        .await
        .expect("deleted");
    let index = record::user_index("alice");
    assert_eq!(store.index_members(&index).await.expect("members").len(), 2);
    let listed = tokens
        .list(&caller(&alice), "alice", NOW)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(store.index_members(&index).await.expect("members").len(), 1);
    // Its name, left behind, is taken over.
    tokens
        .create(&caller(&alice), "alice", new("a", &[]), NOW)
        .await
        .expect("room again, and the stale name is free");
}

#[tokio::test]
async fn wrong_secret_unknown_and_malformed_are_refused() {
    let tokens = service();
    let alice = identity("alice", &[]);
    let made = tokens
        .create(&caller(&alice), "alice", new("a", &[]), NOW)
        .await
        .expect("made");
    let text = made.token.expose();
    let (head, secret) = text.split_once('.').expect("dot");
    let flipped: String = secret.chars().rev().collect::<String>();
    assert_ne!(flipped, secret);
    assert_eq!(
        tokens.verify(&format!("{head}.{flipped}"), NOW).await.err(),
        Some(VerifyError::WrongSecret)
    );
    let other = format::generate("gh").expect("random");
    assert_eq!(
        tokens.verify(other.token.expose(), NOW).await.err(),
        Some(VerifyError::Unknown)
    );
    assert_eq!(
        tokens.verify("gh-short.x", NOW).await.err(),
        Some(VerifyError::Malformed)
    );
    assert!(tokens.claims("gh-short.x"));
    assert!(!tokens.claims("eyJhbGciOiJFUzI1NiJ9.e30.sig"));
    // The wrong secret did not touch the valid token.
    assert!(tokens.verify(text, NOW).await.is_ok());
}

#[tokio::test]
async fn store_down_fails_closed() {
    let store = flaky();
    let tokens = service_on(
        store.clone(),
        ApiTokensConfig {
            cache_ttl: Duration::ZERO,
            ..Default::default()
        },
    );
    let alice = identity("alice", &[]);
    let made = tokens
        .create(&caller(&alice), "alice", new("a", &[]), NOW)
        .await
        .expect("made");
    store.set_down(true);
    assert!(matches!(
        tokens.verify(made.token.expose(), NOW).await,
        Err(VerifyError::Unavailable(_))
    ));
    let err = tokens
        .create(&caller(&alice), "alice", new("b", &[]), NOW)
        .await
        .expect_err("down");
    assert_eq!(err.http_status(), 503);
    assert_eq!(
        tokens
            .list(&caller(&alice), "alice", NOW)
            .await
            .err()
            .map(|e| e.http_status()),
        Some(503)
    );
    // Recovery needs nothing.
    store.set_down(false);
    assert!(tokens.verify(made.token.expose(), NOW).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn another_replica_sees_a_revocation_within_the_cache_ttl() {
    let store: Arc<dyn Store> = flaky();
    let config = ApiTokensConfig::default();
    let a = service_on(store.clone(), config.clone());
    let b = service_on(store, config.clone());
    let alice = identity("alice", &[]);
    let made = a
        .create(&caller(&alice), "alice", new("a", &[]), NOW)
        .await
        .expect("made");
    let token = made.token.expose();
    assert!(b.verify(token, NOW).await.is_ok());
    a.revoke(&caller(&alice), "alice", &made.info.key)
        .await
        .expect("revoked");
    // B still trusts what it read a moment ago…
    assert!(b.verify(token, NOW).await.is_ok());
    tokio::time::advance(config.cache_ttl - Duration::from_millis(1)).await;
    assert!(b.verify(token, NOW).await.is_ok());
    // …and no longer once the entry is older than the TTL.
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(b.verify(token, NOW).await.err(), Some(VerifyError::Unknown));
}

#[tokio::test(start_paused = true)]
async fn last_use_is_written_at_most_once_a_minute() {
    let tokens = service();
    let alice = identity("alice", &[]);
    let made = tokens
        .create(&caller(&alice), "alice", new("a", &[]), NOW)
        .await
        .expect("made");
    let token = made.token.expose();
    tokens.verify(token, NOW + 1).await.expect("valid");
    tokens.verify(token, NOW + 2).await.expect("valid");
    assert_eq!(tokens.last_used(&made.info.key).await, Ok(Some(NOW + 1)));
    tokio::time::advance(Duration::from_secs(61)).await;
    tokens.verify(token, NOW + 62).await.expect("valid");
    assert_eq!(tokens.last_used(&made.info.key).await, Ok(Some(NOW + 62)));
}
