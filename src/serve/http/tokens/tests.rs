//! The API-token REST API on a real socket, driven with reqwest: callers
//! by JWT, by client certificate (XFCC from a trusted proxy) and by API
//! token; the token then used at `/auth` like a JWT.

use reqwest::Method;
use serde_json::{Value, json};

use super::super::tests::{IDP, Running, error_of, start_with};
use crate::testkit;

const EXTRA: &str = r#"
api_tokens: {max_lifetime: 30d}
tools: {superusers: [root]}
certificates:
  xfcc: {trusted_proxies: [127.0.0.1/32], require_cert: false}
  identity:
    user: CN
    tool: {from: CN, pattern: '^tool-(?P<tool>[a-z0-9-]+)$'}
  scopes:
    - {subject: "CN=tool-alpha", scopes: [deploy]}
"#;

async fn start() -> Running {
    start_with(EXTRA).await
}

impl Running {
    /// A JWT for `user` in `groups` (readers → read, writers → write,
    /// admins → admin:token).
    fn jwt(&self, user: &str, groups: &[&str]) -> String {
        let mut claims = testkit::claims(IDP, "api", user);
        claims["groups"] = json!(groups);
        self.idp.mint(&claims)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .request(method, format!("{}/auth/api/v1{path}", self.base));
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("request")
    }

    async fn create(&self, user: &str, bearer: &str, body: Value) -> reqwest::Response {
        self.call(
            Method::POST,
            &format!("/users/{user}/tokens"),
            Some(bearer),
            Some(body),
        )
        .await
    }

    /// `/auth` for `GET https://app.test/path` with `bearer`.
    async fn forward_auth(&self, query: &str, bearer: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/auth{query}", self.base))
            .header("x-original-url", "https://app.test/data")
            .bearer_auth(bearer)
            .send()
            .await
            .expect("request")
    }
}

fn no_store(response: &reqwest::Response) {
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-cache, no-store")
    );
}

async fn created(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 201);
    no_store(&response);
    response.json().await.expect("json")
}

#[tokio::test]
async fn create_use_list_revoke() {
    let r = start().await;
    let alice = r.jwt("alice", &["readers", "writers"]);
    let expires = testkit::now() + 3600;
    let body = created(
        r.create(
            "alice",
            &alice,
            json!({"name": "laptop", "scopes": ["read"], "expires": expires}),
        )
        .await,
    )
    .await;
    let token = body["token"].as_str().expect("token").to_string();
    let key = body["key"].as_str().expect("key").to_string();
    assert!(token.starts_with(&format!("gh-{key}.")), "{body}");
    assert_eq!(body["name"], "laptop");
    assert_eq!(body["scopes"], json!(["read"]));
    assert_eq!(body["expires"], expires);
    assert!(body.get("last_used").is_none() && body.get("tool").is_none());

    // The token works at /auth with its own scopes; satisfy applies.
    let ok = r.forward_auth("?scope=read", &token).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-auth-request-user"], "alice");
    assert_eq!(ok.headers()["x-auth-request-token-scopes"], "read");
    let (err, _) = error_of(r.forward_auth("?scope=read&scope=write", &token).await, 403).await;
    assert_eq!(err["error"], "insufficient_scope");
    let any = r
        .forward_auth("?scope=read&scope=write&satisfy=any", &token)
        .await;
    assert_eq!(any.status(), 200);

    // Listed without its secret, with its last use; the token may list.
    for caller in [alice.as_str(), token.as_str()] {
        let listed = r
            .call(Method::GET, "/users/alice/tokens", Some(caller), None)
            .await;
        assert_eq!(listed.status(), 200);
        no_store(&listed);
        let text = listed.text().await.expect("text");
        let secret = token.split_once('.').expect("dot").1;
        assert!(!text.contains(secret), "{text}");
        let list: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
        assert_eq!(list[0]["key"], key.as_str());
        assert!(list[0]["last_used"].is_u64(), "{list}");
    }

    // Revoked: 204, then refused at once on this replica.
    let revoked = r
        .call(
            Method::DELETE,
            &format!("/users/alice/tokens/{key}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(revoked.status(), 204);
    no_store(&revoked);
    let (err, headers) = error_of(r.forward_auth("", &token).await, 401).await;
    assert_eq!(err["error"], "invalid_token");
    assert!(headers.contains_key("www-authenticate"));
    let again = r
        .call(
            Method::DELETE,
            &format!("/users/alice/tokens/{key}"),
            Some(&alice),
            None,
        )
        .await;
    let (err, _) = error_of(again, 404).await;
    assert_eq!(err["error"], "not_found");
    r.stop().await;
}

#[tokio::test]
async fn the_rules_of_creation() {
    let r = start().await;
    let alice = r.jwt("alice", &["readers"]);
    // No credential: 401 with a challenge.
    let none = r
        .call(
            Method::POST,
            "/users/alice/tokens",
            None,
            Some(json!({"name": "x"})),
        )
        .await;
    let (err, headers) = error_of(none, 401).await;
    assert_eq!(err["error"], "unauthorized");
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"test\"");
    // Scopes beyond the caller's: 403, naming them.
    let (err, _) = error_of(
        r.create(
            "alice",
            &alice,
            json!({"name": "x", "scopes": ["read", "write"]}),
        )
        .await,
        403,
    )
    .await;
    assert_eq!(err["error"], "access_denied");
    assert_eq!(
        err["error_description"],
        "scopes the caller does not hold: write"
    );
    // Another user's tokens: 403.
    let (_, _) = error_of(r.create("bob", &alice, json!({"name": "x"})).await, 403).await;
    let (_, _) = error_of(
        r.call(Method::GET, "/users/bob/tokens", Some(&alice), None)
            .await,
        403,
    )
    .await;
    // Names are unique per user: 409.
    created(r.create("alice", &alice, json!({"name": "x"})).await).await;
    let (err, _) = error_of(r.create("alice", &alice, json!({"name": "x"})).await, 409).await;
    assert_eq!(err["error"], "conflict");
    // Expiry: past, beyond max_lifetime, malformed: 400.
    for expires in [json!(1), json!("2999-01-01T00:00:00Z"), json!("tomorrow")] {
        let (err, _) = error_of(
            r.create("alice", &alice, json!({"name": "y", "expires": expires}))
                .await,
            400,
        )
        .await;
        assert_eq!(err["error"], "invalid_request", "{expires}");
    }
    // RFC 3339 within the lifetime is taken.
    let soon = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let soon_text = soon
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats");
    let body = created(
        r.create("alice", &alice, json!({"name": "y", "expires": soon_text}))
            .await,
    )
    .await;
    assert_eq!(body["expires"], soon.unix_timestamp());
    // Unknown fields and a missing JSON content type.
    let (_, _) = error_of(
        r.create("alice", &alice, json!({"name": "z", "scope": ["read"]}))
            .await,
        400,
    )
    .await;
    let plain = r
        .client
        .post(format!("{}/auth/api/v1/users/alice/tokens", r.base))
        .bearer_auth(&alice)
        .body(r#"{"name": "z"}"#)
        .send()
        .await
        .expect("request");
    let (_, _) = error_of(plain, 415).await;

    // An API token cannot create a token.
    let token = body["token"].as_str().expect("token");
    let (err, _) = error_of(r.create("alice", token, json!({"name": "z"})).await, 403).await;
    assert!(
        err["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("cannot create")),
        "{err}"
    );
    // A malformed token with our prefix is a 401, not a JWT error.
    let (err, _) = error_of(
        r.create("alice", "gh-nope", json!({"name": "z"})).await,
        401,
    )
    .await;
    assert_eq!(
        err["error_description"],
        "invalid token: malformed API token"
    );
    r.stop().await;
}

#[tokio::test]
async fn an_admin_acts_for_anyone() {
    let r = start().await;
    let admin = r.jwt("root", &["admins", "readers"]);
    let body = created(
        r.create("bob", &admin, json!({"name": "ci", "scopes": ["read"]}))
            .await,
    )
    .await;
    let key = body["key"].as_str().expect("key");
    let ok = r
        .forward_auth("?scope=read", body["token"].as_str().expect("token"))
        .await;
    assert_eq!(ok.headers()["x-auth-request-user"], "bob");
    let listed: Value = r
        .call(Method::GET, "/users/bob/tokens", Some(&admin), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed[0]["key"], key);
    // Bob himself sees and revokes it.
    let bob = r.jwt("bob", &[]);
    let revoked = r
        .call(
            Method::DELETE,
            &format!("/users/bob/tokens/{key}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(revoked.status(), 204);
    r.stop().await;
}

#[tokio::test]
async fn a_tool_certificate_creates_its_deploy_token() {
    let r = start().await;
    let xfcc = "Subject=\"CN=tool-alpha\"";
    let info: Value = r
        .client
        .get(format!("{}/auth/api/v1/user-info", r.base))
        .header("x-forwarded-client-cert", xfcc)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(info["username"], "tool-alpha");
    assert_eq!(info["tool"], "alpha");
    assert_eq!(info["credential"], "certificate");
    let create = |tool: &str| {
        r.client
            .post(format!("{}/auth/api/v1/users/tool-alpha/tokens", r.base))
            .header("x-forwarded-client-cert", xfcc)
            .json(&json!({"name": format!("deploy-{tool}"), "scopes": ["deploy"], "tool": tool}))
            .send()
    };
    let body = created(create("alpha").await.expect("request")).await;
    assert_eq!(body["tool"], "alpha");
    let (err, _) = error_of(create("beta").await.expect("request"), 403).await;
    assert_eq!(err["error"], "access_denied");
    // A JWT user who is neither the tool nor a superuser cannot.
    let alice = r.jwt("alice", &[]);
    let (_, _) = error_of(
        r.create("alice", &alice, json!({"name": "d", "tool": "alpha"}))
            .await,
        403,
    )
    .await;
    // A superuser (by JWT) can, for any tool.
    let root = r.jwt("root", &[]);
    let body = created(
        r.create("root", &root, json!({"name": "d", "tool": "beta"}))
            .await,
    )
    .await;
    assert_eq!(body["tool"], "beta");
    r.stop().await;
}

#[tokio::test]
async fn not_configured_is_404() {
    let r = start_with("").await;
    let alice = r.jwt("alice", &[]);
    let (err, _) = error_of(
        r.call(Method::GET, "/users/alice/tokens", Some(&alice), None)
            .await,
        404,
    )
    .await;
    assert_eq!(err["error"], "not_found");
    r.stop().await;
}
