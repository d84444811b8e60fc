use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::testkit::form_server::FormServer;

const SECRET: &str = "s3cret/with+odd=chars";

/// An introspection endpoint: answers per token from its table
/// (`{"active": false}` for others), or with `status` when set; checks
/// the client's credentials like a server would.
struct Server {
    url: String,
    answers: Arc<Mutex<HashMap<String, Value>>>,
    status: Arc<Mutex<Option<u16>>>,
    endpoint: FormServer,
}

impl Server {
    async fn start() -> Server {
        let answers: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
        let status: Arc<Mutex<Option<u16>>> = Arc::default();
        let (table, forced) = (answers.clone(), status.clone());
        let endpoint = FormServer::start(move |req| {
            if req.client() != ("gatehouse".to_string(), SECRET.to_string()) {
                return (401, json!({"error": "invalid_client"}));
            }
            if let Some(status) = *forced.lock().unwrap() {
                return (status, json!({"error": "server_error"}));
            }
            let answer = table.lock().unwrap().get(req.field("token")).cloned();
            (200, answer.unwrap_or_else(|| json!({"active": false})))
        })
        .await
        .unwrap();
        Server {
            url: endpoint.url.clone(),
            answers,
            status,
            endpoint,
        }
    }

    fn answer(&self, token: &str, answer: Value) {
        self.answers.lock().unwrap().insert(token.into(), answer);
    }

    fn calls(&self) -> usize {
        self.endpoint.calls()
    }

    /// How each call authenticated: "basic" or "post".
    fn auth_methods(&self) -> Vec<&'static str> {
        self.endpoint
            .received()
            .iter()
            .map(|r| if r.basic.is_some() { "basic" } else { "post" })
            .collect()
    }
}

fn config(url: &str) -> IntrospectionConfig {
    // Through serde, so the defaults are the configuration's own.
    serde_json::from_value(json!({
        "name": "idp", "url": url, "client_id": "gatehouse",
        "client_secret_file": "unused", "timeout": "2s", "cache_size": 100,
        "max_concurrent": 8,
    }))
    .unwrap()
}

fn introspector(config: &IntrospectionConfig) -> Introspector {
    let mapping = BTreeMap::from([("admin".to_string(), vec!["admins".to_string()])]);
    Introspector::new(config, Secret::new(SECRET), 30, &mapping).unwrap()
}

fn active(sub: &str) -> Value {
    json!({
        "active": true, "sub": sub, "username": format!("{sub}-name"),
        "email": format!("{sub}@example.org"), "isMemberOf": ["admins", "staff"],
        "scope": "read write", "client_id": "app", "exp": crate::testkit::now() + 300,
        "iss": "https://idp.example", "aud": ["api", "other"],
    })
}

#[tokio::test]
async fn an_active_answer_names_the_caller_with_mapped_scopes() {
    let server = Server::start().await;
    server.answer("opaque-1", active("alice"));
    let id = introspector(&config(&server.url))
        .authenticate(&Secret::new("opaque-1"))
        .await
        .unwrap();
    assert_eq!(id.subject, "alice");
    assert_eq!(id.username.as_deref(), Some("alice-name"));
    assert_eq!(id.email.as_deref(), Some("alice@example.org"));
    assert_eq!(id.groups, ["admins", "staff"]);
    let scopes: Vec<&str> = id.scopes.iter().map(String::as_str).collect();
    assert_eq!(scopes, ["admin", "read", "write"]);
    assert_eq!(id.kind, CredentialKind::Introspected);
    assert_eq!(id.issuer, "idp");
    assert_eq!(id.token.expose(), "opaque-1");
    assert!(id.claims.is_none());
    assert_eq!(server.auth_methods(), ["basic"]);
    assert_eq!(
        server.endpoint.received()[0].field("token_type_hint"),
        "access_token"
    );
}

#[tokio::test]
async fn client_secret_post_sends_the_credentials_in_the_body() {
    let server = Server::start().await;
    server.answer("opaque-1", active("alice"));
    let mut cfg = config(&server.url);
    cfg.client.auth_method = ClientAuthMethod::ClientSecretPost;
    introspector(&cfg)
        .authenticate(&Secret::new("opaque-1"))
        .await
        .unwrap();
    assert_eq!(server.auth_methods(), ["post"]);
}

#[tokio::test]
async fn answers_are_remembered_active_and_inactive() {
    let server = Server::start().await;
    server.answer("opaque-1", active("alice"));
    let authn = introspector(&config(&server.url));
    for _ in 0..3 {
        assert!(authn.authenticate(&Secret::new("opaque-1")).await.is_ok());
    }
    assert_eq!(server.calls(), 1);
    for _ in 0..3 {
        assert_eq!(
            authn.authenticate(&Secret::new("dead")).await.unwrap_err(),
            IntrospectionError::Inactive
        );
    }
    assert_eq!(server.calls(), 2, "the inactive answer is remembered too");
    // The presented token is the one carried, never the cached one's.
    let id = authn.authenticate(&Secret::new("opaque-1")).await.unwrap();
    assert_eq!(id.token.expose(), "opaque-1");
}

#[tokio::test]
async fn without_a_cache_or_past_max_cache_ttl_every_check_calls() {
    let server = Server::start().await;
    server.answer("opaque-1", active("alice"));
    let mut cfg = config(&server.url);
    cfg.cache_size = 0;
    let authn = introspector(&cfg);
    for _ in 0..2 {
        authn.authenticate(&Secret::new("opaque-1")).await.unwrap();
    }
    assert_eq!(server.calls(), 2);
    let mut cfg = config(&server.url);
    cfg.max_cache_ttl = Duration::ZERO;
    let authn = introspector(&cfg);
    for _ in 0..2 {
        authn.authenticate(&Secret::new("opaque-1")).await.unwrap();
    }
    assert_eq!(server.calls(), 4, "max_cache_ttl 0 remembers nothing");
}

#[tokio::test]
async fn concurrent_checks_with_one_new_token_make_one_call() {
    let server = Server::start().await;
    server.answer("opaque-1", active("alice"));
    server.endpoint.set_delay(Duration::from_millis(200));
    let authn = Arc::new(introspector(&config(&server.url)));
    let checks: Vec<_> = (0..16)
        .map(|_| {
            let authn = authn.clone();
            tokio::spawn(async move { authn.authenticate(&Secret::new("opaque-1")).await })
        })
        .collect();
    for check in checks {
        assert_eq!(check.await.unwrap().unwrap().subject, "alice");
    }
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn failures_are_unavailable_and_never_remembered() {
    let server = Server::start().await;
    server.answer("opaque-1", active("alice"));
    *server.status.lock().unwrap() = Some(500);
    let authn = introspector(&config(&server.url));
    for _ in 0..2 {
        let err = authn
            .authenticate(&Secret::new("opaque-1"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, IntrospectionError::Unavailable(r) if r.contains("server_error")),
            "{err}"
        );
    }
    assert_eq!(server.calls(), 2);
    *server.status.lock().unwrap() = None;
    assert!(authn.authenticate(&Secret::new("opaque-1")).await.is_ok());

    // A wrong client secret: the server's invalid_client, not a refusal
    // of the caller's token.
    let wrong = Introspector::new(
        &config(&server.url),
        Secret::new("nope"),
        30,
        &BTreeMap::new(),
    )
    .unwrap();
    let err = wrong
        .authenticate(&Secret::new("opaque-2"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, IntrospectionError::Unavailable(r) if r.contains("invalid_client")),
        "{err}"
    );

    // Nobody listening, and a timeout.
    let mut cfg = config("http://127.0.0.1:9/introspect");
    cfg.client.timeout = Duration::from_millis(300);
    let err = introspector(&cfg)
        .authenticate(&Secret::new("opaque-1"))
        .await
        .unwrap_err();
    assert!(matches!(err, IntrospectionError::Unavailable(_)), "{err}");
    server.endpoint.set_delay(Duration::from_secs(2));
    let mut cfg = config(&server.url);
    cfg.client.timeout = Duration::from_millis(200);
    let err = introspector(&cfg)
        .authenticate(&Secret::new("opaque-3"))
        .await
        .unwrap_err();
    assert!(matches!(err, IntrospectionError::Unavailable(_)), "{err}");
}

#[tokio::test]
async fn an_answer_that_is_not_rfc_7662_is_unavailable() {
    let server = Server::start().await;
    server.answer("opaque-1", json!({"active": "yes"}));
    server.answer(
        "opaque-2",
        json!({"active": true, "sub": "a", "exp": "soon"}),
    );
    let authn = introspector(&config(&server.url));
    for token in ["opaque-1", "opaque-2"] {
        let err = authn.authenticate(&Secret::new(token)).await.unwrap_err();
        assert!(matches!(err, IntrospectionError::Unavailable(_)), "{err}");
    }
}

#[tokio::test]
async fn issuer_audience_lifetime_and_claims_are_checked() {
    let server = Server::start().await;
    let now = crate::testkit::now();
    let with = |patch: Value| {
        let mut answer = active("alice");
        for (k, v) in patch.as_object().unwrap() {
            answer[k] = v.clone();
        }
        answer
    };
    server.answer("ok", active("alice"));
    server.answer("expired", with(json!({"exp": now - 100})));
    server.answer("early", with(json!({"nbf": now + 100})));
    server.answer("other-iss", with(json!({"iss": "https://evil.example"})));
    server.answer("other-aud", with(json!({"aud": "elsewhere"})));
    server.answer("crlf", with(json!({"username": "alice\r\nX-Admin: 1"})));
    server.answer(
        "no-sub",
        json!({"active": true, "exp": now + 60, "iss": "https://idp.example", "aud": "api"}),
    );
    let mut cfg = config(&server.url);
    cfg.issuer = Some("https://idp.example".into());
    cfg.audiences = vec!["api".into()];
    let authn = introspector(&cfg);
    assert!(authn.authenticate(&Secret::new("ok")).await.is_ok());
    let refused = |token: &'static str| {
        let authn = &authn;
        async move { authn.authenticate(&Secret::new(token)).await.unwrap_err() }
    };
    assert_eq!(
        refused("expired").await,
        IntrospectionError::OutsideLifetime
    );
    assert_eq!(refused("early").await, IntrospectionError::OutsideLifetime);
    assert_eq!(
        refused("other-iss").await,
        IntrospectionError::UnknownIssuer
    );
    assert_eq!(refused("other-aud").await, IntrospectionError::BadAudience);
    assert_eq!(
        refused("crlf").await.to_string(),
        "invalid username claim: control character"
    );
    assert_eq!(refused("no-sub").await, IntrospectionError::MissingSubject);
}

#[tokio::test]
async fn a_client_credentials_token_is_named_by_its_client() {
    let server = Server::start().await;
    server.answer(
        "machine",
        json!({"active": true, "client_id": "ci-runner", "scope": "deploy",
               "exp": crate::testkit::now() + 60}),
    );
    let id = introspector(&config(&server.url))
        .keeping_claims(true)
        .authenticate(&Secret::new("machine"))
        .await
        .unwrap();
    assert_eq!(id.subject, "ci-runner");
    assert_eq!(id.username, None);
    assert!(id.scopes.contains("deploy"));
    let claims = id.claims.unwrap();
    assert_eq!(claims["client_id"], "ci-runner");
}

#[test]
fn only_tokens_not_shaped_like_a_jws_are_introspected() {
    for opaque in [
        "2YotnFZFEjr1zCsicMWpAA",
        "a.b",
        "a.b.c.d",
        "a..c",
        ".b.c",
        "",
    ] {
        assert!(Introspector::claims_token(opaque), "{opaque:?}");
    }
    for jws in ["a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"] {
        assert!(!Introspector::claims_token(jws), "{jws:?}");
    }
}

#[test]
fn configuration_errors_name_the_key() {
    let mut cfg = config("ftp://idp.example/introspect");
    let err = Introspector::new(&cfg, Secret::new(SECRET), 30, &BTreeMap::new())
        .err()
        .unwrap();
    assert!(err.to_string().contains("introspection.url"), "{err}");
    cfg = config("https://idp.example/introspect");
    cfg.max_concurrent = 0;
    let err = Introspector::new(&cfg, Secret::new(SECRET), 30, &BTreeMap::new())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("introspection.max_concurrent"),
        "{err}"
    );
}
