use super::*;
use crate::store::memory::MemoryStore;

fn service(store: Arc<dyn Store>) -> Backends {
    let config: BackendConfig = serde_json::from_value(serde_json::json!({
        "name": "gitlab", "authorize_url": "https://gl.example/oauth/authorize",
        "token_url": "https://gl.example/oauth/token", "client_id": "c",
        "client_secret_file": "s", "scopes": ["api"],
    }))
    .expect("json");
    Backends::new(
        &[config],
        vec![Secret::new("secret")],
        "https://app.example/auth/callback",
        store,
    )
    .expect("valid")
}

async fn put(store: &dyn Store, subject: &str, token: StoredToken) {
    let raw = serde_json::to_vec(&token).expect("json");
    store
        .set(&token_key("gitlab", subject), &raw, TOKEN_TTL)
        .await
        .expect("stored");
}

fn stored(access: &str, expires_at: Option<u64>, refresh: Option<&str>) -> StoredToken {
    StoredToken {
        access_token: Some(Secret::new(access)),
        refresh_token: refresh.map(Secret::new),
        expires_at,
        issued_at: crate::clock::now_secs(),
    }
}

#[tokio::test]
async fn tokens_are_per_user_and_never_keyed_by_subject_or_token() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
    let backends = service(store.clone());
    let now = crate::clock::now_secs();
    put(
        store.as_ref(),
        "alice",
        stored("gl-alice", Some(now + 3600), None),
    )
    .await;
    put(store.as_ref(), "bob", stored("gl-bob", None, None)).await;
    let get = |s: &'static str| backends.token("gitlab", s);
    assert_eq!(get("alice").await.unwrap().unwrap().expose(), "gl-alice");
    assert_eq!(get("bob").await.unwrap().unwrap().expose(), "gl-bob");
    assert!(get("carol").await.unwrap().is_none());
    assert!(matches!(
        backends.token("jupyterhub", "alice").await,
        Err(BackendError::Unknown(_))
    ));
    let key = token_key("gitlab", "alice");
    assert!(!key.contains("alice") && !key.contains("gitlab\0"), "{key}");
    // Logout drops them.
    backends.forget("alice").await.unwrap();
    assert!(get("alice").await.unwrap().is_none());
    assert_eq!(get("bob").await.unwrap().unwrap().expose(), "gl-bob");
}

#[tokio::test]
async fn an_expired_token_without_refresh_is_none() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
    let backends = service(store.clone());
    let now = crate::clock::now_secs();
    let mut old = stored("gl-old", Some(now - 1), None);
    old.issued_at = now - 100;
    put(store.as_ref(), "alice", old).await;
    assert!(backends.token("gitlab", "alice").await.unwrap().is_none());
}

#[test]
fn a_token_is_due_within_the_margin_or_half_its_life() {
    let t = |issued: u64, exp: u64| StoredToken {
        access_token: None,
        refresh_token: None,
        expires_at: Some(exp),
        issued_at: issued,
    };
    // One hour: due 30s before.
    assert!(!t(0, 3600).due(3569));
    assert!(t(0, 3600).due(3570));
    // Ten seconds: due at half its life.
    assert!(!t(0, 10).due(4));
    assert!(t(0, 10).due(5));
}

#[tokio::test]
async fn a_backend_login_starts_with_pkce_and_finishes_only_for_its_browser_and_user() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
    let backends = service(store.clone());
    let binding = Secret::new("b".repeat(43));
    let url = backends
        .start("gitlab", "alice", "/ui/".into(), &binding)
        .await
        .unwrap();
    let url = url::Url::parse(&url).unwrap();
    let q: HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(url.host_str(), Some("gl.example"));
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["scope"], "api");
    assert_eq!(
        q["redirect_uri"],
        "https://app.example/auth/backends/gitlab/callback"
    );
    let state = q["state"].clone();
    // Another user's session: refused, and the state is spent.
    let other = backends
        .finish(
            "gitlab",
            Some("code"),
            Some(&state),
            None,
            Some(&binding),
            "mallory",
        )
        .await;
    assert_eq!(other, Err(BackendError::Binding));
    let again = backends
        .finish(
            "gitlab",
            Some("code"),
            Some(&state),
            None,
            Some(&binding),
            "alice",
        )
        .await;
    assert_eq!(again, Err(BackendError::State));
    // Another browser.
    let url = backends
        .start("gitlab", "alice", "/ui/".into(), &binding)
        .await
        .unwrap();
    let state = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let elsewhere = Secret::new("c".repeat(43));
    let r = backends
        .finish(
            "gitlab",
            Some("code"),
            Some(&state),
            None,
            Some(&elsewhere),
            "alice",
        )
        .await;
    assert_eq!(r, Err(BackendError::Binding));
}
