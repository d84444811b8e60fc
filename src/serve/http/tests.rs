//! The side port on a real socket (127.0.0.1:0), driven with reqwest.

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use super::*;
use crate::check::pipeline::Engine;
use crate::config::{self, ConfigSource};
use crate::issuer::keys::{SigningAlgorithm, SigningKey};
use crate::secret::Secret;
use crate::testkit::{self, TestKey};

pub(super) const IDP: &str = "https://idp.test";

pub(super) struct Running {
    pub(super) base: String,
    pub(super) engine: Arc<Engine>,
    pub(super) idp: TestKey,
    pub(super) client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), std::io::Error>>,
}

async fn start() -> Running {
    start_with("").await
}

/// The side port on the test configuration plus `extra` (top-level YAML
/// sections).
pub(super) async fn start_with(extra: &str) -> Running {
    let idp = TestKey::generate(Algorithm::ES256, "idp-key");
    let (_, pem) = SigningKey::generate(SigningAlgorithm::ES256).expect("key");
    let indented: String = pem
        .expose()
        .lines()
        .map(|l| format!("          {l}\n"))
        .collect();
    let yaml = format!(
        r#"
server: {{grpc_addr: "127.0.0.1:0", http_addr: "127.0.0.1:0", realm: test}}
jwt:
  sources: [bearer, {{cookie: gh}}]
  issuers:
    - issuer: {IDP}
      audiences: [api]
      algorithms: [ES256]
      keys: {{jwks: {jwks}}}
      claims: {{groups: groups}}
scopes:
  group_mapping: {{"links:mint": [minters], "read": [minters, readers], "write": [writers], "admin:token": [admins]}}
issuer:
  issuer: https://gatehouse.test
  signing_keys:
    - pem: |
{indented}  links:
    max_duration: 2h
    mint: [{{scope: "links:mint", prefixes: [/k8s/]}}]
policy:
  default: authenticated
{extra}
"#,
        jwks = testkit::jwks(&[&idp])
    );
    let source = ConfigSource::Text(yaml);
    let cfg = config::load(&source, []).expect("config");
    let engine = Arc::new(crate::app::build_engine(&cfg, &source).expect("engine"));
    let listener = HttpListener::bind(cfg.server.http_addr)
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        listener.serve(engine.clone(), Duration::from_secs(1), async {
            let _ = stopped.await;
        }),
    );
    Running {
        base: format!("http://{addr}"),
        engine,
        idp,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("client"),
        stop: Some(stop),
        server,
    }
}

impl Running {
    fn caller(&self, groups: &[&str]) -> String {
        let mut claims = testkit::claims(IDP, "api", "alice-sub");
        claims["groups"] = json!(groups);
        self.idp.mint(&claims)
    }

    async fn mint(&self, bearer: Option<&str>, body: &str) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/auth/jwt/request", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("request")
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request")
    }

    pub(super) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(5), self.server)
            .await
            .expect("stops in time");
        result.expect("joins").expect("serves cleanly");
    }
}

pub(super) async fn error_of(
    response: reqwest::Response,
    status: u16,
) -> (Value, reqwest::header::HeaderMap) {
    assert_eq!(response.status().as_u16(), status);
    let headers = response.headers().clone();
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-cache, no-store")
    );
    let body: Value = response.json().await.expect("JSON body");
    assert!(
        body["error"].is_string() && body["error_description"].is_string(),
        "{body}"
    );
    (body, headers)
}

#[tokio::test]
async fn jwks_discovery_and_health() {
    let r = start().await;
    let jwks = r.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.status(), 200);
    assert_eq!(
        jwks.headers()["cache-control"].to_str().expect("ascii"),
        "public, max-age=300"
    );
    let body: Value = jwks.json().await.expect("json");
    let issuer = r.engine.issuer.as_ref().expect("issuer");
    assert_eq!(body, *issuer.jwks());
    assert_eq!(body["keys"][0]["kid"], issuer.signing_key().kid());

    let doc: Value = r
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        doc["jwks_uri"],
        "https://gatehouse.test/.well-known/jwks.json"
    );

    let health = r.get("/healthz").await;
    assert_eq!(health.status(), 200);
    let (body, _) = error_of(r.get("/nope").await, 404).await;
    assert_eq!(body["error"], "not_found");
    r.stop().await;
}

#[tokio::test]
async fn minting_requires_a_credential_and_a_mint_scope() {
    let r = start().await;
    let body = r#"{"URLs": ["/k8s/pods"]}"#;
    let (err, headers) = error_of(r.mint(None, body).await, 401).await;
    assert_eq!(err["error"], "unauthorized");
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"test\"");

    let (err, headers) = error_of(r.mint(Some("not.a.jwt"), body).await, 401).await;
    assert_eq!(err["error"], "invalid_token");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .expect("ascii")
            .contains("invalid_token")
    );

    let reader = r.caller(&["readers"]);
    let (err, _) = error_of(r.mint(Some(&reader), body).await, 403).await;
    assert_eq!(err["error"], "insufficient_scope");
    r.stop().await;
}

#[tokio::test]
async fn an_authorized_caller_gets_a_link_that_verifies() {
    let r = start().await;
    let minter = r.caller(&["minters"]);
    let response = r
        .mint(
            Some(&minter),
            r#"{"URLs": ["/k8s/pods/*"], "verbs": ["get", "post"], "duration": "30m"}"#,
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-cache, no-store");
    let body: Value = response.json().await.expect("json");
    let token = body["Token"].as_str().expect("Token");
    assert_eq!(body.as_object().map(|o| o.len()), Some(1));
    let id = r
        .engine
        .authn
        .jwt
        .verify(&Secret::new(token))
        .await
        .expect("our own verifier accepts it");
    let grant = id.grant.expect("a link");
    assert_eq!(grant.verbs, vec!["get", "post"]);
    assert_eq!(grant.expires_at - grant.not_before.expect("nbf"), 1800);
    assert!(id.scopes.contains("read") && !id.scopes.contains("links:mint"));

    // The link itself cannot mint.
    let (err, _) = error_of(r.mint(Some(token), r#"{"URLs": ["/k8s/x"]}"#).await, 403).await;
    assert_eq!(err["error"], "access_denied");
    r.stop().await;
}

#[tokio::test]
async fn bad_mint_requests_get_clear_errors() {
    let r = start().await;
    let minter = r.caller(&["minters"]);
    for (body, status, needle) in [
        ("{", 400, "invalid JSON"),
        ("[]", 400, "invalid JSON"),
        (r#"{"verbs": ["get"]}"#, 400, "URLs"),
        (r#"{"URLs": ["/k8s/x"], "extra": 1}"#, 400, "extra"),
        (
            r#"{"URLs": ["/k8s/x"], "duration": "3h"}"#,
            400,
            "maximum of 2h",
        ),
        (
            r#"{"URLs": ["/k8s/x"], "duration": "soon"}"#,
            400,
            "duration",
        ),
        (
            r#"{"URLs": ["/k8s/x"], "from": "yesterday"}"#,
            400,
            "RFC 3339",
        ),
        (r#"{"URLs": ["/k8s/../etc"]}"#, 400, "normalized"),
        (r#"{"URLs": ["/etc/passwd"]}"#, 403, "outside"),
        (r#"{"URLs": ["/k8s/x"], "verbs": ["g e t"]}"#, 400, "method"),
    ] {
        let (err, _) = error_of(r.mint(Some(&minter), body).await, status).await;
        let text = err["error_description"].as_str().unwrap_or_default();
        assert!(text.contains(needle), "{body}: {text}");
    }
    let wrong_type = r
        .client
        .post(format!("{}/auth/jwt/request", r.base))
        .bearer_auth(&minter)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"URLs": ["/k8s/x"]}"#)
        .send()
        .await
        .expect("request");
    error_of(wrong_type, 415).await;
    let huge = format!(r#"{{"URLs": ["/k8s/{}"]}}"#, "a".repeat(MAX_BODY_BYTES));
    error_of(r.mint(Some(&minter), &huge).await, 413).await;
    r.stop().await;
}

#[tokio::test]
async fn cookie_hand_off_sets_the_link_and_redirects_same_origin_only() {
    let r = start().await;
    let minter = r.caller(&["minters"]);
    let link: Value = r
        .mint(Some(&minter), r#"{"URLs": ["/k8s/*"], "duration": "10m"}"#)
        .await
        .json()
        .await
        .expect("json");
    let link = link["Token"].as_str().expect("Token").to_string();

    let ok = r
        .get(&format!(
            "/auth/jwt/set?token={link}&then=%2Fk8s%2Fpods%3Fwatch%3D1&name=vm"
        ))
        .await;
    assert_eq!(ok.status(), 302);
    assert_eq!(ok.headers()["location"], "/k8s/pods?watch=1");
    assert_eq!(ok.headers()["referrer-policy"], "no-referrer");
    let cookie = ok.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(cookie.starts_with(&format!("gh={link}; ")), "{cookie}");
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let max_age: u64 = cookie
        .rsplit("Max-Age=")
        .next()
        .and_then(|v| v.parse().ok())
        .expect("Max-Age");
    assert!((590..=600).contains(&max_age), "{max_age}");

    let default = r.get(&format!("/auth/jwt/set?token={link}")).await;
    assert_eq!(default.headers()["location"], "/");

    for then in [
        "https://evil.example/",
        "//evil.example",
        "/%5Cevil",
        "%2F%2Fevil",
    ] {
        let (err, _) = error_of(
            r.get(&format!("/auth/jwt/set?token={link}&then={then}"))
                .await,
            400,
        )
        .await;
        assert_eq!(err["error"], "invalid_request", "{then}");
    }
    error_of(r.get("/auth/jwt/set?then=/").await, 400).await;
    error_of(r.get("/auth/jwt/set?token=bad&then=/").await, 401).await;
    // A valid token that is not a link is not stored.
    let plain = r.caller(&["readers"]);
    error_of(r.get(&format!("/auth/jwt/set?token={plain}")).await, 400).await;
    r.stop().await;
}

#[tokio::test]
async fn a_one_time_link_is_used_up_by_the_hand_off() {
    let r = start().await;
    let minter = r.caller(&["minters"]);
    let link: Value = r
        .mint(Some(&minter), r#"{"URLs": ["/k8s/x"], "once": true}"#)
        .await
        .json()
        .await
        .expect("json");
    let link = link["Token"].as_str().expect("Token").to_string();
    let first = r
        .get(&format!("/auth/jwt/set?token={link}&then=/k8s/x"))
        .await;
    assert_eq!(first.status(), 302);
    let cookie = first.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_string();
    let stored = cookie
        .strip_prefix("gh=")
        .and_then(|c| c.split(';').next())
        .expect("cookie value");
    assert_ne!(stored, link, "the cookie holds a reusable copy");
    let copy = r
        .engine
        .authn
        .jwt
        .verify(&Secret::new(stored))
        .await
        .expect("verifies");
    let grant = copy.grant.expect("a link");
    assert!(!grant.once);
    assert_eq!(grant.urls[0].to_claim(), "/k8s/x");

    let (err, _) = error_of(r.get(&format!("/auth/jwt/set?token={link}")).await, 401).await;
    assert!(
        err["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("already been used")
    );
    r.stop().await;
}
