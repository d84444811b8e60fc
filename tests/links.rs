//! Signed links through the whole check (request → policy → authn → authz
//! → one-time use → response), in-process, with links minted by the
//! internal issuer and checked by the same engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use gatehouse::app;
use gatehouse::check::pipeline::Engine;
use gatehouse::config::{self, ConfigSource};
use gatehouse::issuer::keys::{SigningAlgorithm, SigningKey};
use gatehouse::issuer::link::{LinkRequest, LinkSubject};
use gatehouse::proto::auth::attribute_context::{HttpRequest, Request as AttrRequest};
use gatehouse::proto::auth::check_response::HttpResponse;
use gatehouse::proto::auth::{AttributeContext, CheckRequest, CheckResponse};
use serde_json::{Value, json};

struct Fixture {
    engine: Arc<Engine>,
    dir: std::path::PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture(name: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("gatehouse-links-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (_, pem) = SigningKey::generate(SigningAlgorithm::ES256).unwrap();
    std::fs::write(dir.join("issuer.pem"), pem.expose()).unwrap();
    std::fs::write(dir.join("sa.token"), "service-account-token").unwrap();
    let yaml = r#"
server: {grpc_addr: "127.0.0.1:0", http_addr: "127.0.0.1:0"}
jwt:
  sources: [bearer, {cookie: gh}, {query: access_token}]
issuer:
  issuer: https://gatehouse.test
  signing_keys: [{file: issuer.pem}]
policy:
  default: deny
  rules:
    - name: k8s
      match: {path: {prefix: /k8s/}}
      upstream_credential: {bearer_file: sa.token}
    - name: scoped
      match: {path: {prefix: /scoped/}}
      scopes: [read]
"#;
    let path = dir.join("gatehouse.yaml");
    std::fs::write(&path, yaml).unwrap();
    let source = ConfigSource::File(path);
    let cfg = config::load(&source, []).unwrap();
    let engine = Arc::new(app::build_engine(&cfg, &source).unwrap());
    Fixture { engine, dir }
}

fn now() -> u64 {
    gatehouse::testkit::now()
}

fn mint(engine: &Engine, body: Value, scopes: &[&str]) -> String {
    let issuer = engine.issuer.as_ref().unwrap();
    let request: LinkRequest = serde_json::from_value(body).unwrap();
    let who = LinkSubject {
        subject: "minter".into(),
        username: Some("ci".into()),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
    };
    let (token, _) = issuer
        .links()
        .mint(issuer, &who, &request, None, now())
        .unwrap();
    token.expose().to_string()
}

fn check(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    host: "h".into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<HashMap<_, _>>(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn status(resp: &CheckResponse) -> u16 {
    match &resp.http_response {
        Some(HttpResponse::OkResponse(_)) => 200,
        Some(HttpResponse::DeniedResponse(d)) => d.status.as_ref().unwrap().code as u16,
        None => 0,
    }
}

fn error(resp: &CheckResponse) -> Value {
    match &resp.http_response {
        Some(HttpResponse::DeniedResponse(d)) => serde_json::from_str(&d.body).unwrap(),
        other => panic!("not a denial: {other:?}"),
    }
}

async fn status_of(engine: &Engine, method: &str, path: &str, token: &str) -> u16 {
    let auth = format!("Bearer {token}");
    status(
        &engine
            .check(&check(method, path, &[("authorization", &auth)]))
            .await
            .0,
    )
}

#[tokio::test]
async fn a_link_is_good_for_its_paths_and_verbs_only() {
    let f = fixture("grant");
    let e = &f.engine;
    let link = mint(
        e,
        json!({"URLs": ["/k8s/pods/*", "/k8s/version"], "verbs": ["get"]}),
        &[],
    );
    assert_eq!(status_of(e, "GET", "/k8s/pods/a", &link).await, 200);
    assert_eq!(status_of(e, "HEAD", "/k8s/pods/a", &link).await, 200);
    assert_eq!(status_of(e, "GET", "/k8s/version", &link).await, 200);
    // Normalized before matching: the dot segment cannot climb out.
    assert_eq!(
        status_of(e, "GET", "/k8s/pods/../version", &link).await,
        200
    );
    assert_eq!(
        status_of(e, "GET", "/k8s/pods/../secrets", &link).await,
        403
    );
    assert_eq!(status_of(e, "GET", "/k8s/version/x", &link).await, 403);
    assert_eq!(status_of(e, "POST", "/k8s/pods/a", &link).await, 403);
    let denied = e
        .check(&check(
            "DELETE",
            "/k8s/pods/a",
            &[("authorization", &format!("Bearer {link}"))],
        ))
        .await
        .0;
    assert_eq!(error(&denied)["error"], "access_denied");
    assert!(
        error(&denied)["error_description"]
            .as_str()
            .unwrap()
            .contains("method")
    );

    // From a cookie and from the query parameter alike.
    let cookie = format!("other=1; gh={link}");
    let resp = e
        .check(&check("GET", "/k8s/pods/a", &[("cookie", &cookie)]))
        .await
        .0;
    assert_eq!(status(&resp), 200);
    let resp = e
        .check(&check(
            "GET",
            &format!("/k8s/pods/a?access_token={link}"),
            &[],
        ))
        .await
        .0;
    assert_eq!(status(&resp), 200);
}

#[tokio::test]
async fn not_yet_valid_expired_and_tampered_links_are_401() {
    let f = fixture("invalid");
    let e = &f.engine;
    let soon = chrono_like(now() + 3600);
    let future = mint(e, json!({"URLs": ["/k8s/x"], "from": soon}), &[]);
    assert_eq!(status_of(e, "GET", "/k8s/x", &future).await, 401);

    let issuer = e.issuer.as_ref().unwrap();
    let mut claims = serde_json::Map::new();
    claims.insert("iss".into(), json!(issuer.issuer()));
    claims.insert("aud".into(), json!(issuer.issuer()));
    claims.insert("sub".into(), json!("minter"));
    claims.insert("URLs".into(), json!(["/k8s/x"]));
    claims.insert("nbf".into(), json!(now() - 7200));
    claims.insert("exp".into(), json!(now() - 3600));
    let expired = issuer.sign(&claims).unwrap();
    let resp = e
        .check(&check(
            "GET",
            "/k8s/x",
            &[("authorization", &format!("Bearer {}", expired.expose()))],
        ))
        .await
        .0;
    assert_eq!(status(&resp), 401);
    assert!(
        error(&resp)["error_description"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // Widening the grant breaks the signature.
    let link = mint(e, json!({"URLs": ["/k8s/x"]}), &[]);
    let mut parts: Vec<String> = link.split('.').map(str::to_string).collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut body: Value = serde_json::from_slice(&b64.decode(&parts[1]).unwrap()).unwrap();
    body["URLs"] = json!(["/*"]);
    parts[1] = b64.encode(serde_json::to_vec(&body).unwrap());
    assert_eq!(status_of(e, "GET", "/k8s/y", &parts.join(".")).await, 401);
}

/// RFC 3339 for a Unix time (UTC), without a date library.
fn chrono_like(unix: u64) -> String {
    let days = unix / 86400;
    let secs = unix % 86400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_one_time_link_is_allowed_once_even_concurrently() {
    let f = fixture("once");
    let link = mint(&f.engine, json!({"URLs": ["/k8s/x"], "once": true}), &[]);
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let engine = f.engine.clone();
            let link = link.clone();
            tokio::spawn(async move { status_of(&engine, "GET", "/k8s/x", &link).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        23,
        "{statuses:?}"
    );
    // A request the link does not cover does not use it up.
    let other = mint(&f.engine, json!({"URLs": ["/k8s/x"], "once": true}), &[]);
    assert_eq!(status_of(&f.engine, "POST", "/k8s/x", &other).await, 403);
    assert_eq!(status_of(&f.engine, "GET", "/k8s/x", &other).await, 200);
    assert_eq!(status_of(&f.engine, "GET", "/k8s/x", &other).await, 401);
}

#[tokio::test]
async fn scopes_still_apply_and_the_upstream_gets_the_swapped_credential() {
    let f = fixture("swap");
    let e = &f.engine;
    let without = mint(e, json!({"URLs": ["/scoped/*"]}), &[]);
    assert_eq!(status_of(e, "GET", "/scoped/x", &without).await, 403);
    let with = mint(e, json!({"URLs": ["/scoped/*"]}), &["read"]);
    assert_eq!(status_of(e, "GET", "/scoped/x", &with).await, 200);

    let link = mint(e, json!({"URLs": ["/k8s/*"]}), &[]);
    let cookie = format!("theme=dark; gh={link}");
    let resp = e
        .check(&check("GET", "/k8s/pods", &[("cookie", &cookie)]))
        .await
        .0;
    let Some(HttpResponse::OkResponse(ok)) = resp.http_response else {
        panic!("not allowed");
    };
    let headers: HashMap<String, String> = ok
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect();
    assert_eq!(headers["authorization"], "Bearer service-account-token");
    assert_eq!(headers["cookie"], "theme=dark");
    assert!(!headers.values().any(|v| v.contains(&link)));
    assert_eq!(headers["x-auth-request-user"], "ci");
}
