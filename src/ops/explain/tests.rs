use super::*;
use crate::model::observe::Phase;
use crate::testkit::{self, TestKey};
use jsonwebtoken::Algorithm;

const ISS: &str = "https://idp.test";

fn yaml(key: &TestKey) -> String {
    format!(
        r#"
jwt:
  issuers:
    - issuer: {ISS}
      audiences: [api]
      algorithms: [ES256]
      keys: {{jwks: {jwks}}}
      claims: {{username: preferred_username, groups: groups}}
    - issuer: https://remote.test
      audiences: [api]
      algorithms: [RS256]
      keys: {{jwks_uri: "https://remote.test/jwks"}}
      claims: {{groups: groups}}
  sources: [bearer, {{cookie: session}}]
scopes:
  group_mapping: {{"read:data": [readers]}}
policy:
  default: deny
  rules:
    - name: data
      match: {{hosts: [api.example.com], path: {{prefix: /data/}}}}
      scopes: [read:data]
      headers: [user, token]
    - name: admin
      match: {{hosts: [api.example.com], path: {{prefix: /admin/}}}}
      scopes: [admin:all]
"#,
        jwks = testkit::jwks(&[key])
    )
}

fn engine(key: &TestKey) -> Engine {
    let source = ConfigSource::Text(yaml(key));
    let cfg = config::load(&source, []).expect("config");
    app::build_engine(&cfg, &source).expect("engine")
}

fn args(url: &str, headers: &[&str]) -> ExplainArgs {
    ExplainArgs {
        config: PathBuf::from("unused.yaml"),
        method: "get".into(),
        url: url.into(),
        headers: headers.iter().map(|h| h.to_string()).collect(),
        cert: None,
        principal: None,
        peer: "10.1.2.3".parse().expect("ip"),
        context: vec![],
        jwks: vec![],
    }
}

fn token(key: &TestKey, groups: &[&str]) -> String {
    let mut claims = testkit::claims(ISS, "api", "alice-sub");
    claims["preferred_username"] = serde_json::json!("alice");
    claims["groups"] = serde_json::json!(groups);
    key.mint(&claims)
}

async fn explain_url(engine: &Engine, url: &str, headers: &[&str]) -> (Explanation, String) {
    let check = check_request(&args(url, headers)).expect("request");
    let explanation = explain_check(engine, check, &[]).await;
    let text = explanation.to_string();
    (explanation, text)
}

fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in\n{text}"))
}

#[tokio::test]
async fn allowed_request_shows_rule_credential_and_redacted_headers() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let engine = engine(&key);
    let tok = token(&key, &["readers"]);
    let bearer = format!("Authorization: Bearer {tok}");
    let (explanation, text) =
        explain_url(&engine, "https://api.example.com/data/1?x=2", &[&bearer]).await;
    assert!(explanation.allowed(), "{text}");
    let fp = crate::secret::fingerprint(tok.as_bytes());
    assert_eq!(
        line(&text, "request:"),
        "request:     GET https://api.example.com/data/1?x=…"
    );
    assert_eq!(
        line(&text, "client:"),
        "client:      10.1.2.3 (peer 10.1.2.3)"
    );
    assert_eq!(line(&text, "rule:"), "rule:        data");
    assert!(
        line(&text, "requires:").contains("all of [read:data]"),
        "{text}"
    );
    assert_eq!(
        line(&text, "credential:"),
        format!("credential:  bearer (sha256:{fp})")
    );
    assert!(
        line(&text, "caller:").contains(r#"jwt "alice-sub" from https://idp.test, user "alice""#),
        "{text}"
    );
    for phase in Phase::ALL {
        assert!(
            text.contains(&format!("  {:<9}  ok", phase.name())),
            "{phase:?} in\n{text}"
        );
    }
    assert_eq!(line(&text, "decision:"), "decision:    ALLOW");
    assert_eq!(
        line(&text, "x-auth-request-user:"),
        "x-auth-request-user: alice"
    );
    // The token header is shown as a fingerprint, the token nowhere.
    assert!(
        line(&text, "x-auth-request-token:").contains("<redacted sha256:"),
        "{text}"
    );
    assert!(!text.contains(&tok), "token printed:\n{text}");
    let signature = tok.rsplit('.').next().expect("signature");
    assert!(!text.contains(signature), "signature printed:\n{text}");
    // The remote issuer is named, with the way out.
    assert!(
        text.contains(
            "keys not loaded: issuer https://remote.test uses a remote key set (jwks_uri)"
        ),
        "{text}"
    );
    assert!(text.contains("--jwks https://remote.test=FILE"), "{text}");
}

#[tokio::test]
async fn missing_credential_is_a_401_at_authn() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let engine = engine(&key);
    let (explanation, text) = explain_url(&engine, "https://api.example.com/data/1", &[]).await;
    assert!(!explanation.allowed());
    assert_eq!(line(&text, "credential:"), "credential:  none found");
    assert!(
        text.contains("  authn      ok    no credential (authz decides)"),
        "no credential passes authn:\n{text}"
    );
    assert!(
        text.contains("  authz      DENY  no_credential: authentication required"),
        "{text}"
    );
    assert!(text.contains("  upstream   -     not reached"), "{text}");
    assert_eq!(
        line(&text, "decision:"),
        "decision:    DENY 401 (no_credential)"
    );
    assert_eq!(
        line(&text, "response:"),
        "response:    HTTP 401 (gRPC code 16)"
    );
    assert_eq!(
        line(&text, "www-authenticate:"),
        r#"www-authenticate: Bearer realm="gatehouse""#
    );
}

#[tokio::test]
async fn insufficient_scope_names_the_scopes() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let engine = engine(&key);
    let tok = token(&key, &["readers"]);
    let cookie = format!("Cookie: theme=dark; session={tok}");
    let (explanation, text) =
        explain_url(&engine, "https://api.example.com/admin/x", &[&cookie]).await;
    assert!(!explanation.allowed());
    assert_eq!(line(&text, "rule:"), "rule:        admin");
    assert!(line(&text, "credential:").starts_with("credential:  cookie (sha256:"));
    assert!(line(&text, "scopes:").contains("read:data"), "{text}");
    assert!(
        text.contains(
            "  authz      DENY  insufficient_scope: insufficient scope: requires all of admin:all"
        ),
        "{text}"
    );
    assert_eq!(
        line(&text, "decision:"),
        "decision:    DENY 403 (insufficient_scope)"
    );
    assert!(!text.contains(&tok), "token printed:\n{text}");
}

#[tokio::test]
async fn no_rule_stops_at_policy() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let engine = engine(&key);
    let (explanation, text) = explain_url(&engine, "https://other.example.com/x", &[]).await;
    assert!(!explanation.allowed());
    assert_eq!(line(&text, "rule:"), "rule:        (none)");
    assert!(text.contains("  request    ok"), "{text}");
    assert!(
        text.contains("  policy     DENY  no_rule: no rule allows this request"),
        "{text}"
    );
    assert!(text.contains("  authn      -     not reached"), "{text}");
    assert_eq!(line(&text, "decision:"), "decision:    DENY 403 (no_rule)");
}

#[tokio::test]
async fn remote_issuer_tokens_need_jwks_and_never_fetch() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let remote = TestKey::generate(Algorithm::RS256, "r1");
    let engine = engine(&key);
    let mut claims = testkit::claims("https://remote.test", "api", "bob");
    claims["groups"] = serde_json::json!(["readers"]);
    let tok = remote.mint(&claims);
    let bearer = format!("Authorization: Bearer {tok}");
    let (explanation, text) =
        explain_url(&engine, "https://api.example.com/data/1", &[&bearer]).await;
    assert!(!explanation.allowed());
    assert!(
        text.contains("  authn      DENY  keys_unavailable"),
        "{text}"
    );

    // With the key set supplied, the same token is verified, offline.
    let keys = engine
        .authn
        .jwt
        .issuer_keys("https://remote.test")
        .expect("issuer");
    keys.install(KeySet::from_jwks(&testkit::jwks(&[&remote])).expect("jwks"));
    let check = check_request(&args("https://api.example.com/data/1", &[&bearer])).expect("req");
    let explanation = explain_check(&engine, check, &["https://remote.test".into()]).await;
    let text = explanation.to_string();
    assert!(explanation.allowed(), "{text}");
    assert!(
        text.contains("keys of issuer https://remote.test loaded from --jwks"),
        "{text}"
    );
}

#[test]
fn request_is_built_like_envoys() {
    let mut a = args(
        "http://API.example.com:8080/p/a%20b?q=1",
        &["X-A: 1", "x-a: 2"],
    );
    a.context = vec!["audience=internal".into()];
    let check = check_request(&a).expect("request");
    let attrs = check.attributes.expect("attributes");
    let http = attrs.request.and_then(|r| r.http).expect("http");
    assert_eq!(http.method, "GET");
    assert_eq!(http.host, "api.example.com:8080");
    assert_eq!(http.path, "/p/a%20b?q=1");
    assert_eq!(http.scheme, "http");
    assert_eq!(http.headers["x-a"], "1,2");
    assert_eq!(http.headers[":authority"], "api.example.com:8080");
    assert_eq!(attrs.context_extensions["audience"], "internal");
    let bad = check_request(&args("https://h/", &["Authorization Bearer secret-value"]))
        .unwrap_err()
        .to_string();
    assert!(!bad.contains("secret-value"), "{bad}");
}

#[tokio::test]
async fn client_certificate_from_a_pem_file() {
    let ca = crate::testkit::certs::TestCa::new("explain test CA");
    let pem = ca.issue(&crate::testkit::certs::Leaf {
        subject: vec![("O", "acme"), ("CN", "build-bot")],
        ..Default::default()
    });
    let dir = std::env::temp_dir().join(format!("gatehouse-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cert = dir.join("client.pem");
    std::fs::write(&cert, &pem).expect("write PEM");
    let yaml = r#"
certificates:
  identity: {user: CN}
policy:
  rules:
    - {name: builds, match: {path: {prefix: /builds/}}, credentials: [certificate]}
"#;
    let source = ConfigSource::Text(yaml.into());
    let cfg = config::load(&source, []).expect("config");
    let engine = app::build_engine(&cfg, &source).expect("engine");
    let mut a = args("https://ci.example.com/builds/1", &[]);
    a.cert = Some(cert);
    let check = check_request(&a).expect("request");
    let explanation = explain_check(&engine, check, &[]).await;
    let text = explanation.to_string();
    std::fs::remove_dir_all(&dir).ok();
    assert!(explanation.allowed(), "{text}");
    assert!(
        line(&text, "credential:").starts_with("credential:  peer-certificate (sha256:"),
        "{text}"
    );
    assert_eq!(
        line(&text, "caller:"),
        r#"caller:      certificate "CN=build-bot,O=acme" from peer-certificate, user "build-bot""#
    );
    assert!(
        line(&text, "requires:").contains("accepts certificate;"),
        "{text}"
    );
}

#[tokio::test]
async fn opaque_tokens_and_exchanges_never_call_the_authorization_server() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = crate::testkit::form_server::FormServer::start(|_| {
        (200, serde_json::json!({"active": true, "sub": "alice"}))
    })
    .await
    .expect("server");
    let dir = std::env::temp_dir().join(format!("gatehouse-explain-oauth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let secret = dir.join("secret");
    std::fs::write(&secret, "s").expect("secret");
    let yaml = format!(
        "{}    - name: api\n      match: {{path: {{prefix: /api/}}}}\n      exchange: {{audience: https://api.internal}}\nintrospection: {{url: {url}, client_id: g, client_secret_file: {file}}}\ntoken_exchange: {{url: {url}, client_id: g, client_secret_file: {file}}}\n",
        yaml(&key),
        url = server.url,
        file = secret.display()
    );
    let source = ConfigSource::Text(yaml);
    let engine =
        app::build_engine(&config::load(&source, []).expect("config"), &source).expect("engine");
    let (explanation, text) = explain_url(
        &engine,
        "https://api.example.com/data/1",
        &["Authorization: Bearer opaque-token"],
    )
    .await;
    assert!(!explanation.allowed());
    assert!(text.contains("DENY  provider_unavailable"), "{text}");
    assert!(
        text.contains("explain does not call the authorization server"),
        "{text}"
    );
    let bearer = format!("Authorization: Bearer {}", token(&key, &["readers"]));
    let (explanation, text) =
        explain_url(&engine, "https://api.example.com/api/x", &[&bearer]).await;
    assert!(!explanation.allowed());
    assert!(text.contains("provider_unavailable"), "{text}");
    assert_eq!(server.calls(), 0, "explain made a call");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn explain_never_reaches_the_configured_store() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let dir = std::env::temp_dir().join(format!("gatehouse-explain-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("gatehouse.yaml");
    // A Redis nobody listens on, and a quota of one request: explained
    // twice, both allowed, quickly (a private memory store, counted anew).
    let yaml = format!(
        "{}    - name: q\n      match: {{path: {{prefix: /q/}}}}\n      quota: {{per: user, limit: 1, window: 1h}}\nstore: {{redis: {{url: 'redis://127.0.0.1:1', connect_timeout: 5s}}}}\n",
        yaml(&key)
    );
    std::fs::write(&path, yaml).expect("write");
    let bearer = format!("Authorization: Bearer {}", token(&key, &["readers"]));
    let started = std::time::Instant::now();
    let mut args = args("https://api.example.com/q/1", &[&bearer]);
    args.config = path.clone();
    for _ in 0..2 {
        let explanation = explain(&args).await.expect("explains");
        assert!(explanation.allowed(), "{explanation}");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    let _ = std::fs::remove_dir_all(&dir);
}
