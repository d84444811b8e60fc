use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::testkit::form_server::{FormServer, Received};

const SECRET: &str = "ex-secret:with/odd+chars";

/// A token endpoint that exchanges `subject-*` tokens for
/// `exchanged-<n>` tokens for the audiences in `audiences`, answering
/// `invalid_target` for others; `answer` overrides it when set.
struct Endpoint {
    server: FormServer,
    answer: Arc<Mutex<Option<(u16, Value)>>>,
}

impl Endpoint {
    async fn start(expires_in: u64) -> Endpoint {
        let answer: Arc<Mutex<Option<(u16, Value)>>> = Arc::default();
        let forced = answer.clone();
        let issued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let server = FormServer::start(move |req: &Received| {
            if req.client() != ("gatehouse".to_string(), SECRET.to_string()) {
                return (401, json!({"error": "invalid_client"}));
            }
            if let Some(answer) = forced.lock().unwrap().clone() {
                return answer;
            }
            if req.field("grant_type") != GRANT_TYPE
                || req.field("subject_token_type") != ACCESS_TOKEN_TYPE
                || !req.field("subject_token").starts_with("subject-")
            {
                return (400, json!({"error": "invalid_grant"}));
            }
            if !["https://api.internal", "https://other.internal"].contains(&req.field("audience"))
            {
                return (400, json!({"error": "invalid_target"}));
            }
            let n = issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            (
                200,
                json!({"access_token": format!("exchanged-{n}"), "token_type": "Bearer",
                       "issued_token_type": ACCESS_TOKEN_TYPE, "expires_in": expires_in}),
            )
        })
        .await
        .unwrap();
        Endpoint { server, answer }
    }

    fn force(&self, status: u16, body: Value) {
        *self.answer.lock().unwrap() = Some((status, body));
    }
}

fn client(url: &str, method: &str, cache_size: usize) -> TokenExchange {
    let config: TokenExchangeConfig = serde_json::from_value(json!({
        "url": url, "client_id": "gatehouse", "client_secret_file": "unused",
        "auth_method": method, "timeout": "1s", "cache_size": cache_size,
        "refresh_margin": "30s",
    }))
    .unwrap();
    TokenExchange::new(&config, Secret::new(SECRET)).unwrap()
}

fn target(audience: &str, scopes: &[&str]) -> ExchangeTarget {
    let config = ExchangeConfig {
        audience: audience.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
    };
    ExchangeTarget::compile(&config, "policy.rules[0].exchange").unwrap()
}

const NOW: u64 = 1_800_000_000;

#[tokio::test]
async fn the_request_is_rfc_8693s_and_the_answer_is_remembered() {
    let endpoint = Endpoint::start(300).await;
    let exchange = client(&endpoint.server.url, "client_secret_basic", 100);
    let api = target("https://api.internal", &["read", "write"]);
    let subject = Secret::new("subject-alice");
    for _ in 0..3 {
        let token = exchange.exchange(&subject, None, &api, NOW).await.unwrap();
        assert_eq!(token.expose(), "exchanged-1");
    }
    let received = endpoint.server.received();
    assert_eq!(received.len(), 1);
    let form = &received[0];
    assert_eq!(form.field("grant_type"), GRANT_TYPE);
    assert_eq!(form.field("subject_token"), "subject-alice");
    assert_eq!(form.field("subject_token_type"), ACCESS_TOKEN_TYPE);
    assert_eq!(form.field("requested_token_type"), ACCESS_TOKEN_TYPE);
    assert_eq!(form.field("audience"), "https://api.internal");
    assert_eq!(form.field("scope"), "read write");
    assert_eq!(
        form.basic,
        Some(("gatehouse".to_string(), SECRET.to_string()))
    );
    assert!(!form.form.contains_key("client_secret"));

    // Another audience, scope or caller is another exchange.
    let other = target("https://other.internal", &[]);
    let token = exchange
        .exchange(&subject, None, &other, NOW)
        .await
        .unwrap();
    assert_eq!(token.expose(), "exchanged-2");
    assert!(!endpoint.server.received()[1].form.contains_key("scope"));
    let narrower = target("https://api.internal", &["read"]);
    exchange
        .exchange(&subject, None, &narrower, NOW)
        .await
        .unwrap();
    let bob = Secret::new("subject-bob");
    exchange.exchange(&bob, None, &api, NOW).await.unwrap();
    assert_eq!(endpoint.server.calls(), 4);
}

#[tokio::test]
async fn client_secret_post_puts_the_client_in_the_form() {
    let endpoint = Endpoint::start(300).await;
    let exchange = client(&endpoint.server.url, "client_secret_post", 100);
    let api = target("https://api.internal", &[]);
    exchange
        .exchange(&Secret::new("subject-a"), None, &api, NOW)
        .await
        .unwrap();
    let form = &endpoint.server.received()[0];
    assert_eq!(form.basic, None);
    assert_eq!(form.field("client_id"), "gatehouse");
    assert_eq!(form.field("client_secret"), SECRET);
}

#[tokio::test]
async fn a_token_is_reused_until_its_margin_and_never_past_the_callers() {
    let endpoint = Endpoint::start(300).await;
    let exchange = client(&endpoint.server.url, "client_secret_basic", 100);
    let api = target("https://api.internal", &[]);
    let subject = Secret::new("subject-a");
    exchange.exchange(&subject, None, &api, NOW).await.unwrap();
    // 300 s lifetime, 30 s margin: reused at +269 s, exchanged again at +270 s.
    exchange
        .exchange(&subject, None, &api, NOW + 269)
        .await
        .unwrap();
    assert_eq!(endpoint.server.calls(), 1);
    let again = exchange
        .exchange(&subject, None, &api, NOW + 270)
        .await
        .unwrap();
    assert_eq!(again.expose(), "exchanged-2");

    // A caller token that expires first bounds the reuse.
    let short = Secret::new("subject-short");
    exchange
        .exchange(&short, Some(NOW + 10), &api, NOW)
        .await
        .unwrap();
    exchange
        .exchange(&short, Some(NOW + 10), &api, NOW + 10)
        .await
        .unwrap();
    assert_eq!(endpoint.server.calls(), 4);

    // Without a cache, every check exchanges.
    let uncached = client(&endpoint.server.url, "client_secret_basic", 0);
    for _ in 0..2 {
        uncached.exchange(&subject, None, &api, NOW).await.unwrap();
    }
    assert_eq!(endpoint.server.calls(), 6);
}

#[tokio::test]
async fn refusals_and_failures_are_told_apart_and_never_remembered() {
    let endpoint = Endpoint::start(300).await;
    let exchange = client(&endpoint.server.url, "client_secret_basic", 100);
    let subject = Secret::new("subject-a");
    let elsewhere = target("https://elsewhere", &[]);
    for _ in 0..2 {
        assert_eq!(
            exchange
                .exchange(&subject, None, &elsewhere, NOW)
                .await
                .err(),
            Some(ExchangeError::Refused("invalid_target".into()))
        );
    }
    assert_eq!(endpoint.server.calls(), 2);
    let api = target("https://api.internal", &[]);
    assert_eq!(
        exchange
            .exchange(&Secret::new("jwt-not-ours"), None, &api, NOW)
            .await
            .err(),
        Some(ExchangeError::Refused("invalid_grant".into()))
    );
    assert_eq!(
        exchange
            .exchange(&Secret::default(), None, &api, NOW)
            .await
            .err(),
        Some(ExchangeError::NoSubjectToken)
    );
    assert_eq!(endpoint.server.calls(), 3, "no call without a caller token");

    let wrong = TokenExchange::new(
        &serde_json::from_value(json!({
            "url": endpoint.server.url, "client_id": "gatehouse", "client_secret_file": "x"
        }))
        .unwrap(),
        Secret::new("wrong"),
    )
    .unwrap();
    let err = wrong.exchange(&subject, None, &api, NOW).await.unwrap_err();
    assert!(
        matches!(&err, ExchangeError::Unavailable(r) if r.contains("invalid_client")),
        "{err}"
    );

    for (status, body) in [
        (500, json!("<html>oops</html>")),
        (503, json!({"error": "temporarily_unavailable"})),
        (200, json!({"token_type": "Bearer"})),
        (200, json!({"access_token": "a b", "token_type": "Bearer"})),
        (200, json!({"access_token": "x", "token_type": "DPoP"})),
    ] {
        endpoint.force(status, body.clone());
        let err = exchange
            .exchange(&subject, None, &api, NOW)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ExchangeError::Unavailable(_)),
            "{body}: {err}"
        );
    }
    let silent = client("http://127.0.0.1:9/token", "client_secret_basic", 100);
    let err = silent
        .exchange(&subject, None, &api, NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, ExchangeError::Unavailable(_)), "{err}");
}

#[tokio::test]
async fn concurrent_checks_needing_one_exchange_make_one_call() {
    let endpoint = Endpoint::start(300).await;
    endpoint.server.set_delay(Duration::from_millis(200));
    let exchange = Arc::new(client(&endpoint.server.url, "client_secret_basic", 100));
    let api = target("https://api.internal", &[]);
    let checks: Vec<_> = (0..12)
        .map(|_| {
            let (exchange, api) = (exchange.clone(), api.clone());
            tokio::spawn(async move {
                exchange
                    .exchange(&Secret::new("subject-a"), None, &api, NOW)
                    .await
            })
        })
        .collect();
    for check in checks {
        assert_eq!(check.await.unwrap().unwrap().expose(), "exchanged-1");
    }
    assert_eq!(endpoint.server.calls(), 1);
}

#[test]
fn targets_are_validated() {
    let bad = |audience: &str, scopes: &[&str]| {
        let config = ExchangeConfig {
            audience: audience.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        };
        ExchangeTarget::compile(&config, "policy.rules[2].exchange")
            .unwrap_err()
            .to_string()
    };
    assert!(bad("", &[]).contains("policy.rules[2].exchange.audience"));
    assert!(bad("a b", &[]).contains("exchange.audience"));
    assert!(bad("api", &["read", "wr ite"]).contains("exchange.scopes"));
}
