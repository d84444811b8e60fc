use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use super::*;
use crate::check::response::{
    self,
    upstream::{Stripped, apply_prepared, strip_cookies},
};
use crate::config::{self, AuthType, IdentityHeader, Satisfy};
use crate::issuer::keys::{SigningAlgorithm, SigningKey};
use crate::model::identity::CredentialKind;
use crate::model::requirement::Access;
use crate::proto::auth::CheckResponse;
use crate::proto::auth::OkHttpResponse;
use crate::proto::auth::check_response::HttpResponse;

struct Setup {
    dir: PathBuf,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let dir =
            std::env::temp_dir().join(format!("gatehouse-upstream-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("sa.token"), "sa-token-1\n").expect("write");
        Setup { dir }
    }

    fn yaml(&self, rules: &str, with_issuer: bool) -> (Config, ConfigSource) {
        let issuer = if with_issuer {
            let (_, pem) = SigningKey::generate(SigningAlgorithm::ES256).expect("key");
            let indented: String = pem
                .expose()
                .lines()
                .map(|l| format!("          {l}\n"))
                .collect();
            format!(
                "issuer:\n  issuer: https://gh.test\n  signing_keys:\n    - pem: |\n{indented}  reissue: {{audiences: [internal, other]}}\n"
            )
        } else {
            String::new()
        };
        let yaml = format!(
            "jwt:\n  sources: [bearer, {{cookie: gh}}, {{header: x-token}}]\n{issuer}policy:\n  rules:\n{rules}"
        );
        let path = self.dir.join("gatehouse.yaml");
        std::fs::write(&path, &yaml).expect("write");
        let source = ConfigSource::File(path);
        (config::load(&source, []).expect("loads"), source)
    }

    fn actions(&self, rules: &str, with_issuer: bool) -> Result<UpstreamActions, ConfigError> {
        let (cfg, source) = self.yaml(rules, with_issuer);
        let issuer = cfg
            .issuer
            .as_ref()
            .map(|i| Arc::new(InternalIssuer::build(i, &source, &["gh".into()]).expect("issuer")));
        UpstreamActions::build(&cfg, &source, issuer, None, None)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const RULES: &str = "    - name: k8s\n      match: {path: {prefix: /k8s/}}\n      upstream_credential: {bearer_file: sa.token}\n    - name: svc\n      match: {path: {prefix: /svc/}}\n      audience: internal\n    - name: plain\n      match: {path: {prefix: /}}\n";

fn requirement(rule: &str) -> Requirement {
    Requirement {
        rule: rule.into(),
        access: Access::Authenticated {
            scopes: Arc::from([]),
            satisfy: Satisfy::All,
        },
        auth_type: AuthType::Bearer,
        headers: IdentityHeader::default_set().into(),
        credentials: crate::model::identity::AcceptedCredentials::ALL,
        tool: None,
        login: None,
        condition: None,
    }
}

fn identity(token: &str) -> Identity {
    Identity {
        subject: "alice-sub".into(),
        username: Some("alice".into()),
        email: Some("alice@example.org".into()),
        uid: Some("4242".into()),
        groups: vec!["readers".into()],
        scopes: BTreeSet::from(["read".to_string()]),
        kind: CredentialKind::Jwt,
        issuer: "idp".into(),
        expires_at: Some(crate::serve::http::now_secs() + 3600),
        token: Secret::new(token),
        query_parameter: None,
        tool: None,
        grant: None,
        csrf: None,
        claims: None,
    }
}

fn request(headers: &[(&str, &str)], extensions: &[(&str, &str)]) -> Request {
    Request {
        method: "GET".into(),
        path: "/x".into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        context_extensions: extensions
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        ..Request::default()
    }
}

fn ok(response: &CheckResponse) -> &OkHttpResponse {
    match response.http_response.as_ref() {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("not an allow: {other:?}"),
    }
}

fn header<'a>(ok: &'a OkHttpResponse, name: &str) -> Vec<&'a str> {
    ok.headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .filter(|h| h.key == name)
        .map(|h| h.value.as_str())
        .collect()
}

fn run(
    actions: &UpstreamActions,
    rule: &str,
    req: &Request,
    id: &Identity,
) -> Result<CheckResponse, Deny> {
    let requirement = requirement(rule);
    // A file credential never waits: a current-thread runtime suffices.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let prepared = runtime.block_on(actions.prepare(req, &requirement, Some(id)))?;
    let mut plan = response::plan(req, &requirement, Some(id), id.tool.as_deref());
    apply_prepared(actions, prepared, req, &mut plan);
    Ok(response::render_allow(plan))
}

#[test]
fn credential_swap_replaces_authorization_and_strips_our_tokens() {
    let setup = Setup::new("swap");
    let actions = setup.actions(RULES, true).expect("valid");
    let req = request(
        &[
            ("authorization", "Bearer caller-token"),
            ("cookie", "theme=dark; gh=link-token; lang=en"),
            ("x-token", "another"),
            ("x-auth-request-token", "spoofed"),
        ],
        &[],
    );
    let response = run(&actions, "k8s", &req, &identity("caller-token")).expect("allowed");
    let allow = ok(&response);
    assert_eq!(header(allow, "authorization"), vec!["Bearer sa-token-1"]);
    assert_eq!(header(allow, "cookie"), vec!["theme=dark; lang=en"]);
    assert!(allow.headers_to_remove.contains(&"x-token".to_string()));
    assert!(
        allow
            .headers_to_remove
            .contains(&"x-auth-request-token".to_string())
    );

    // Only our cookie: the Cookie header goes.
    let req = request(&[("cookie", "gh=link")], &[]);
    let response = run(&actions, "k8s", &req, &identity("t")).expect("allowed");
    assert!(
        ok(&response)
            .headers_to_remove
            .contains(&"cookie".to_string())
    );
    assert!(header(ok(&response), "cookie").is_empty());

    // Other rules leave credentials alone.
    let response = run(&actions, "plain", &req, &identity("t")).expect("allowed");
    assert!(header(ok(&response), "authorization").is_empty());
    assert!(
        !ok(&response)
            .headers_to_remove
            .contains(&"cookie".to_string())
    );
}

#[test]
fn reissue_for_an_audience_is_cached_and_replaces_the_token_header() {
    let setup = Setup::new("reissue");
    let actions = setup.actions(RULES, true).expect("valid");
    let req = request(&[("x-auth-request-token", "spoofed")], &[]);
    let id = identity("caller-1");
    let first = run(&actions, "svc", &req, &id).expect("allowed");
    let tokens = header(ok(&first), "x-auth-request-token");
    assert_eq!(tokens.len(), 1);
    assert!(
        !ok(&first)
            .headers_to_remove
            .contains(&"x-auth-request-token".to_string())
    );
    let claims = decode_claims(tokens[0]);
    assert_eq!(claims["aud"], "internal");
    assert_eq!(claims["iss"], "https://gh.test");
    assert_eq!(claims["sub"], "alice-sub");
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["uidNumber"], 4242);
    assert_eq!(claims["groups"], serde_json::json!(["readers"]));
    assert_eq!(claims["scope"], "read");
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 300);

    // Reused for the same credential and audience …
    let second = run(&actions, "svc", &req, &id).expect("allowed");
    assert_eq!(header(ok(&second), "x-auth-request-token"), tokens);
    // … not for another credential, nor for another audience.
    let other = run(&actions, "svc", &req, &identity("caller-2")).expect("allowed");
    assert_ne!(header(ok(&other), "x-auth-request-token"), tokens);
    let ext = request(&[], &[("audience", "other")]);
    let by_extension = run(&actions, "svc", &ext, &id).expect("allowed");
    let claims = decode_claims(header(ok(&by_extension), "x-auth-request-token")[0]);
    assert_eq!(claims["aud"], "other");
    // The extension also works on rules without an audience.
    let plain = run(&actions, "plain", &ext, &id).expect("allowed");
    assert_eq!(header(ok(&plain), "x-auth-request-token").len(), 1);
}

#[test]
fn reissue_never_outlives_the_callers_token() {
    let setup = Setup::new("short");
    let actions = setup.actions(RULES, true).expect("valid");
    let mut id = identity("short-lived");
    id.expires_at = Some(crate::serve::http::now_secs() + 20);
    let response = run(&actions, "svc", &request(&[], &[]), &id).expect("allowed");
    let claims = decode_claims(header(ok(&response), "x-auth-request-token")[0]);
    assert_eq!(claims["exp"].as_u64(), id.expires_at);
}

#[test]
fn unknown_audiences_are_misconfigurations() {
    let setup = Setup::new("unknown");
    let actions = setup.actions(RULES, true).expect("valid");
    let ext = request(&[], &[("audience", "nope")]);
    let err = run(&actions, "plain", &ext, &identity("t")).unwrap_err();
    assert_eq!(err.http_status(), 500);
    let without_issuer = setup
        .actions(
            RULES.replace("      audience: internal\n", "").as_str(),
            false,
        )
        .expect("valid");
    let err = run(
        &without_issuer,
        "plain",
        &request(&[], &[("audience", "internal")]),
        &identity("t"),
    )
    .unwrap_err();
    assert_eq!(err.http_status(), 500);
}

#[test]
fn configuration_errors_name_the_key() {
    let setup = Setup::new("config");
    let err = |rules: &str, issuer: bool| setup.actions(rules, issuer).unwrap_err().to_string();
    let e = err(
        "    - name: a\n      auth: anonymous\n      upstream_credential: {bearer_file: sa.token}\n",
        false,
    );
    assert!(e.contains("policy.rules[0].upstream_credential"), "{e}");
    let e = err(
        "    - name: a\n      upstream_credential: {bearer_file: missing.token}\n",
        false,
    );
    assert!(
        e.contains("policy.rules[0].upstream_credential.bearer_file"),
        "{e}"
    );
    let e = err("    - name: a\n      audience: internal\n", false);
    assert!(e.contains("policy.rules[0].audience"), "{e}");
    let e = err("    - name: a\n      audience: elsewhere\n", true);
    assert!(e.contains("policy.rules[0].audience"), "{e}");
    let e = err(
        "    - name: a\n      auth: anonymous\n      audience: internal\n",
        true,
    );
    assert!(e.contains("policy.rules[0].audience"), "{e}");
}

#[test]
fn cookie_stripping() {
    let names = ["gh".to_string()];
    assert_eq!(strip_cookies("a=1; b=2", &names), Stripped::Unchanged);
    assert_eq!(strip_cookies("gh=x", &names), Stripped::Empty);
    assert_eq!(
        strip_cookies("a=1;gh=x ;  b=2", &names),
        Stripped::Kept("a=1; b=2".into())
    );
    assert_eq!(strip_cookies("ghx=1; xgh=2", &names), Stripped::Unchanged);
}

fn decode_claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let part = token.split('.').nth(1).expect("claims part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// A token-exchange client of `url` (no call is made until a check).
fn token_exchange(url: &str) -> Arc<TokenExchange> {
    let config = serde_json::from_value(serde_json::json!({
        "url": url, "client_id": "gatehouse", "client_secret_file": "unused"
    }))
    .expect("config");
    Arc::new(TokenExchange::new(&config, Secret::new("s")).expect("client"))
}

#[test]
fn exchange_rules_are_checked_at_load() {
    let setup = Setup::new("exchange-load");
    let build = |rules: &str, exchange: Option<Arc<TokenExchange>>| {
        let (cfg, source) = setup.yaml(rules, false);
        UpstreamActions::build(&cfg, &source, None, None, exchange).map(|_| ())
    };
    let client = || Some(token_exchange("https://idp.test/token"));
    let rule = "    - name: x\n      exchange: {audience: https://api.internal, scopes: [read]}\n";
    assert!(build(rule, client()).is_ok());
    let err = |rules: &str, exchange| build(rules, exchange).unwrap_err().to_string();
    assert!(err(rule, None).contains("needs a `token_exchange` section"));
    let both = format!("{rule}      upstream_credential: {{bearer_file: sa.token}}\n");
    assert!(err(&both, client()).contains("policy.rules[0].exchange"));
    let anonymous = format!("{rule}      auth: anonymous\n");
    assert!(err(&anonymous, client()).contains("no caller token to exchange"));
    let spaced = "    - name: x\n      exchange: {audience: 'a b'}\n";
    assert!(err(spaced, client()).contains("policy.rules[0].exchange.audience"));
}

#[tokio::test]
async fn an_exchange_rule_swaps_the_callers_token_for_the_exchanged_one() {
    use crate::testkit::form_server::FormServer;
    let server = FormServer::start(|req| match req.field("subject_token") {
        "caller-token" => (
            200,
            serde_json::json!({"access_token": "for-the-api", "token_type": "Bearer", "expires_in": 120}),
        ),
        _ => (400, serde_json::json!({"error": "invalid_grant"})),
    })
    .await
    .expect("server");
    let setup = Setup::new("exchange-prepare");
    let (cfg, source) = setup.yaml(
        "    - name: x\n      exchange: {audience: https://api.internal}\n",
        false,
    );
    let actions =
        UpstreamActions::build(&cfg, &source, None, None, Some(token_exchange(&server.url)))
            .expect("builds");
    let prepared = actions
        .prepare(
            &request(&[], &[]),
            &requirement("x"),
            Some(&identity("caller-token")),
        )
        .await
        .expect("exchanged");
    let (header, value) = prepared.credential.expect("a credential");
    assert_eq!(
        (header.as_str(), value.expose()),
        ("authorization", "Bearer for-the-api")
    );
    assert!(prepared.strip_credentials);
    let refused = actions
        .prepare(
            &request(&[], &[]),
            &requirement("x"),
            Some(&identity("stolen")),
        )
        .await
        .unwrap_err();
    assert_eq!(refused, Deny::ExchangeRefused("invalid_grant".into()));
    assert_eq!(
        (refused.http_status(), refused.reason_label()),
        (403, "exchange_refused")
    );
    let certificate = Identity {
        token: Secret::default(),
        ..identity("")
    };
    let no_token = actions
        .prepare(&request(&[], &[]), &requirement("x"), Some(&certificate))
        .await
        .unwrap_err();
    assert_eq!(no_token.reason_label(), "exchange_refused");
    // Nobody answers at the token endpoint: 503, fail closed.
    let silent = UpstreamActions::build(
        &cfg,
        &source,
        None,
        None,
        Some(token_exchange("http://127.0.0.1:9/t")),
    )
    .expect("builds");
    let gone = silent
        .prepare(
            &request(&[], &[]),
            &requirement("x"),
            Some(&identity("other-token")),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (gone.http_status(), gone.reason_label()),
        (503, "provider_unavailable")
    );
}

const QUOTA_RULES: &str = "    - name: api\n      match: {path: {prefix: /api/}}\n      quota: {per: user, limit: 2, window: 1m}\n    - name: open\n      auth: anonymous\n      match: {path: {prefix: /open/}}\n      quota: {per: client_ip, limit: 1, window: 10s}\n    - name: plain\n      match: {path: {prefix: /}}\n";

#[test]
fn quota_configuration_errors_name_the_rule_and_key() {
    let setup = Setup::new("quota-config");
    for (quota, auth, key, text) in [
        (
            "{per: user, limit: 5, window: 1m}",
            "anonymous",
            "policy.rules[0].quota.per",
            "no user to count",
        ),
        (
            "{per: user, limit: 0, window: 1m}",
            "required",
            "policy.rules[0].quota.limit",
            "at least 1",
        ),
        (
            "{per: client_ip, limit: 5, window: 500ms}",
            "required",
            "policy.rules[0].quota.window",
            "from 1s",
        ),
        (
            "{per: client_ip, limit: 5, window: 400d}",
            "anonymous",
            "policy.rules[0].quota.window",
            "366d",
        ),
        (
            "{per: user, limit: 2000000, window: 1s}",
            "required",
            "policy.rules[0].quota.limit",
            "microsecond",
        ),
    ] {
        let rules = format!(
            "    - name: limited\n      auth: {auth}\n      match: {{path: {{prefix: /}}}}\n      quota: {quota}\n"
        );
        let err = setup.actions(&rules, false).expect_err(quota).to_string();
        assert!(err.contains(key), "{quota}: {err}");
        assert!(err.contains("rule `limited`"), "{quota}: {err}");
        assert!(err.contains(text), "{quota}: {err}");
    }
    let actions = setup.actions(QUOTA_RULES, false).expect("valid");
    let api = actions.quota("api").expect("compiled");
    assert_eq!(
        (api.per(), api.limit(), api.window()),
        (
            config::QuotaPer::User,
            2,
            std::time::Duration::from_secs(60)
        )
    );
    assert!(actions.quota("plain").is_none());
}

#[test]
fn unknown_quota_kinds_and_keys_do_not_load() {
    let setup = Setup::new("quota-serde");
    for quota in [
        "{per: tool, limit: 5, window: 1m}",
        "{per: user, limit: 5, window: 1m, burst: 9}",
        "{per: user, limit: 5}",
        "{per: user, limit: -1, window: 1m}",
    ] {
        let yaml = format!(
            "policy:\n  rules:\n    - name: x\n      match: {{path: {{prefix: /}}}}\n      quota: {quota}\n"
        );
        let path = setup.dir.join("bad.yaml");
        std::fs::write(&path, yaml).expect("write");
        assert!(
            config::load(&ConfigSource::File(path), []).is_err(),
            "{quota} loaded"
        );
    }
}

/// Runs `prepare` for `rule` on a current-thread runtime.
fn prepare(
    actions: &UpstreamActions,
    rule: &str,
    access: Access,
    req: &Request,
    id: Option<&Identity>,
) -> Result<Prepared, Deny> {
    let requirement = Requirement {
        access,
        ..requirement(rule)
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
        .block_on(actions.prepare(req, &requirement, id))
}

fn authenticated() -> Access {
    Access::Authenticated {
        scopes: Arc::from([]),
        satisfy: Satisfy::All,
    }
}

#[test]
fn quotas_count_per_user_and_refuse_with_429_and_ratelimit_headers() {
    let setup = Setup::new("quota-user");
    let store = Arc::new(crate::store::memory::MemoryStore::new(100));
    let actions = setup
        .actions(QUOTA_RULES, false)
        .expect("valid")
        .with_store(store.clone());
    let req = request(&[], &[]);
    let alice = identity("t");
    for _ in 0..2 {
        prepare(&actions, "api", authenticated(), &req, Some(&alice)).expect("within");
    }
    let refused = prepare(&actions, "api", authenticated(), &req, Some(&alice)).unwrap_err();
    let Deny::QuotaExceeded(status) = &refused else {
        panic!("not a quota refusal: {refused:?}");
    };
    assert_eq!(
        (
            status.limit,
            status.window_secs,
            status.remaining,
            status.retry_after_secs
        ),
        (2, 60, 0, 30)
    );
    assert_eq!(status.reset_secs, 60);
    let denial = response::denial(&refused, "gatehouse");
    assert_eq!(denial.status, 429);
    let get = |name: &str| {
        denial
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("retry-after"), Some("30"));
    assert_eq!(get("ratelimit-policy"), Some("\"api\";q=2;w=60"));
    assert_eq!(get("ratelimit"), Some("\"api\";r=0;t=60"));
    assert_eq!(get("www-authenticate"), None);
    assert!(denial.body.contains("\"rate_limited\""), "{}", denial.body);
    // Another user has their own allowance; other rules count nothing.
    let bob = Identity {
        subject: "bob-sub".into(),
        ..identity("t")
    };
    prepare(&actions, "api", authenticated(), &req, Some(&bob)).expect("bob");
    for _ in 0..5 {
        prepare(&actions, "plain", authenticated(), &req, Some(&alice)).expect("no quota");
    }
    // Two keys (alice, bob), neither showing who.
    assert_eq!(store.len(), 2);
    let key = actions
        .quota("api")
        .and_then(|q| q.store_key("api", &req, Some(&alice)))
        .expect("a key");
    assert!(key.starts_with("quota:") && !key.contains("alice"), "{key}");
}

#[test]
fn quotas_count_per_client_ip_on_anonymous_rules() {
    let setup = Setup::new("quota-ip");
    let actions = setup
        .actions(QUOTA_RULES, false)
        .expect("valid")
        .with_store(Arc::new(crate::store::memory::MemoryStore::new(100)));
    let from = |ip: &str| Request {
        client_ip: Some(ip.parse().expect("ip")),
        ..request(&[], &[])
    };
    let a = from("192.0.2.1");
    prepare(&actions, "open", Access::Anonymous, &a, None).expect("first");
    let refused = prepare(&actions, "open", Access::Anonymous, &a, None).unwrap_err();
    assert_eq!(refused.http_status(), 429);
    assert_eq!(refused.reason_label(), "quota_exceeded");
    prepare(
        &actions,
        "open",
        Access::Anonymous,
        &from("192.0.2.2"),
        None,
    )
    .expect("other ip");
    // Unknown addresses share one allowance rather than none.
    let unknown = request(&[], &[]);
    prepare(&actions, "open", Access::Anonymous, &unknown, None).expect("first unknown");
    assert_eq!(
        prepare(&actions, "open", Access::Anonymous, &unknown, None)
            .unwrap_err()
            .http_status(),
        429
    );
}

#[test]
fn quotas_fail_closed_when_the_store_fails() {
    let setup = Setup::new("quota-down");
    let flaky = Arc::new(crate::testkit::flaky::FlakyStore::new(100));
    flaky.set_down(true);
    let actions = setup
        .actions(QUOTA_RULES, false)
        .expect("valid")
        .with_store(flaky);
    let req = request(&[], &[]);
    assert_eq!(
        prepare(&actions, "api", authenticated(), &req, Some(&identity("t"))).unwrap_err(),
        Deny::StoreUnavailable
    );
    // A full memory store refuses a new caller the same way.
    let full = setup
        .actions(QUOTA_RULES, false)
        .expect("valid")
        .with_store(Arc::new(crate::store::memory::MemoryStore::new(1)));
    prepare(&full, "api", authenticated(), &req, Some(&identity("t"))).expect("room");
    let bob = Identity {
        subject: "bob-sub".into(),
        ..identity("t")
    };
    assert_eq!(
        prepare(&full, "api", authenticated(), &req, Some(&bob)).unwrap_err(),
        Deny::StoreUnavailable
    );
    // No store at all: a misconfiguration, never an allow.
    let bare = setup.actions(QUOTA_RULES, false).expect("valid");
    assert_eq!(
        prepare(&bare, "api", authenticated(), &req, Some(&identity("t")))
            .unwrap_err()
            .http_status(),
        500
    );
}
