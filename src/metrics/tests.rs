//! The registry and its exposition: what is counted, under which labels.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::*;
use crate::check::authn::jwt::keys::{IssuerKeys, KeyOrigin, gauges};
use crate::check::pipeline::Engine;
use crate::config::{self, ConfigSource, RefreshConfig};
use crate::store::memory::MemoryStore;
use crate::store::metered::MeteredStore;
use crate::store::{Store, StoreError};
use crate::testkit::jwks_server::JwksServer;
use crate::testkit::{self, TestKey};

/// The value of one series (`name{labels}` exactly as exposed), if present.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(s, _)| *s == series)
        .and_then(|(_, v)| v.parse().ok())
}

fn engine(key: &TestKey) -> Engine {
    engine_with_rules(
        key,
        r#"
    - name: open
      match: {path: {prefix: /open/}}
      auth: anonymous
    - name: read
      match: {path: {prefix: /x/}}
"#,
    )
}

/// An engine with one ES256 issuer (`https://issuer.test`, audience `api`)
/// holding `key`, and `rules` (YAML list items under `policy.rules`).
fn engine_with_rules(key: &TestKey, rules: &str) -> Engine {
    let yaml = format!(
        r#"
jwt:
  issuers:
    - issuer: https://issuer.test
      audiences: [api]
      algorithms: [ES256]
      keys: {{jwks: {jwks}}}
policy:
  rules:{rules}"#,
        jwks = testkit::jwks(&[key])
    );
    let source = ConfigSource::Text(yaml);
    let cfg = config::load(&source, []).expect("config");
    crate::app::build_engine(&cfg, &source).expect("engine")
}

async fn check(engine: &Engine, path: &str, token: Option<&str>) {
    let mut headers = std::collections::HashMap::new();
    if let Some(t) = token {
        headers.insert("authorization".to_string(), format!("Bearer {t}"));
    }
    let request = testkit::check_request("svc.test", path, "10.0.0.1", headers);
    let (_, decision) = engine.check(&request).await;
    engine.metrics.record(&decision, Duration::from_micros(30));
}

fn render(engine: &Engine) -> String {
    engine
        .metrics
        .registry()
        .render(
            &gauges(&engine.authn.key_sets()),
            engine.authn.jwt.cached_tokens(),
        )
        .expect("render")
}

#[tokio::test]
async fn token_cache_lookups_and_size_are_exposed() {
    let key = TestKey::generate(Algorithm::ES256, "k");
    let engine = engine(&key);
    let lookups = |text: &str, result: &str| {
        sample(
            text,
            &format!(r#"gatehouse_token_cache_lookups_total{{result="{result}"}}"#),
        )
    };
    let before = render(&engine);
    for result in ["hit", "miss", "stale"] {
        assert_eq!(lookups(&before, result), Some(0.0), "{result}: {before}");
    }
    assert_eq!(sample(&before, "gatehouse_token_cache_entries"), Some(0.0));

    let alice = key.mint(&testkit::claims("https://issuer.test", "api", "alice"));
    let bob = key.mint(&testkit::claims("https://issuer.test", "api", "bob"));
    check(&engine, "/x/1", Some(&alice)).await;
    check(&engine, "/x/2", Some(&alice)).await;
    check(&engine, "/x/3", Some(&alice)).await;
    check(&engine, "/x/1", Some(&bob)).await;
    // An invalid token is looked up (a miss) and never cached.
    check(&engine, "/x/1", Some("not-a-jwt")).await;

    let text = render(&engine);
    assert_eq!(lookups(&text, "hit"), Some(2.0), "{text}");
    assert_eq!(lookups(&text, "miss"), Some(3.0), "{text}");
    assert_eq!(lookups(&text, "stale"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "gatehouse_token_cache_entries"), Some(2.0));
}

#[tokio::test]
async fn checks_are_counted_by_decision_reason_and_rule() {
    let key = TestKey::generate(Algorithm::ES256, "k");
    let engine = engine(&key);
    let before = render(&engine);
    // Every rule's allow series exists from the start; no deny series yet.
    for rule in ["open", "read", "default", "context_extensions"] {
        let series =
            format!(r#"gatehouse_checks_total{{decision="allow",reason="",rule="{rule}"}}"#);
        assert_eq!(sample(&before, &series), Some(0.0), "{series}");
    }
    assert!(
        !before.contains(r#"gatehouse_checks_total{decision="deny""#),
        "{before}"
    );

    let token = key.mint(&testkit::claims("https://issuer.test", "api", "alice"));
    check(&engine, "/open/a", None).await;
    check(&engine, "/open/b", None).await;
    check(&engine, "/x/1", Some(&token)).await;
    check(&engine, "/x/1", None).await;
    check(&engine, "/x/1", Some("not-a-jwt")).await;
    check(&engine, "/elsewhere", None).await;

    let text = render(&engine);
    let count = |labels: &str| sample(&text, &format!("gatehouse_checks_total{{{labels}}}"));
    assert_eq!(
        count(r#"decision="allow",reason="",rule="open""#),
        Some(2.0)
    );
    assert_eq!(
        count(r#"decision="allow",reason="",rule="read""#),
        Some(1.0)
    );
    assert_eq!(
        count(r#"decision="deny",reason="no_credential",rule="read""#),
        Some(1.0)
    );
    assert_eq!(
        count(r#"decision="deny",reason="invalid_token",rule="read""#),
        Some(1.0)
    );
    assert_eq!(
        count(r#"decision="deny",reason="no_rule",rule="""#),
        Some(1.0)
    );
    // Reasons that did not happen are not exposed.
    assert_eq!(
        count(r#"decision="deny",reason="store_unavailable",rule="read""#),
        None
    );
    let duration = |s: &str| sample(&text, &format!("gatehouse_check_duration_seconds_{s}"));
    assert_eq!(duration(r#"count{decision="allow"}"#), Some(3.0));
    assert_eq!(duration(r#"count{decision="deny"}"#), Some(3.0));
    // 30 µs: above the 25 µs bucket, within the 50 µs one.
    assert_eq!(
        duration(r#"bucket{decision="allow",le="0.000025"}"#),
        Some(0.0)
    );
    assert_eq!(
        duration(r#"bucket{decision="allow",le="0.00005"}"#),
        Some(3.0)
    );
}

#[tokio::test]
async fn engines_sharing_a_registry_add_to_the_same_series() {
    let key = TestKey::generate(Algorithm::ES256, "k");
    let first = engine(&key);
    check(&first, "/open/a", None).await;
    // A reload builds the next engine into the same registry.
    let shared = first.metrics.registry().clone();
    let second = EngineMetrics::new(shared, ["open"]).expect("metrics");
    let (_, decision) = first
        .check(&testkit::check_request(
            "svc.test",
            "/open/b",
            "10.0.0.1",
            Default::default(),
        ))
        .await;
    second.record(&decision, Duration::from_micros(1));
    let text = render(&first);
    assert_eq!(
        sample(
            &text,
            r#"gatehouse_checks_total{decision="allow",reason="",rule="open"}"#
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn store_operations_are_timed_and_failures_counted() {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let store = MeteredStore::new(
        Arc::new(MemoryStore::new(1)),
        metrics.store_metrics().expect("store metrics"),
    );
    let minute = Duration::from_secs(60);
    assert_eq!(store.set_if_absent("a", b"1", minute).await, Ok(true));
    assert!(store.set_if_absent("b", b"1", minute).await.is_err());
    assert_eq!(store.get("a").await, Ok(Some(b"1".to_vec())));
    assert_eq!(store.delete("a").await, Ok(true));
    let text = metrics.render(&[], 0).expect("render");
    let value = |series: &str| sample(&text, series);
    assert_eq!(
        value(r#"gatehouse_store_operation_duration_seconds_count{op="set_if_absent"}"#),
        Some(2.0)
    );
    assert_eq!(
        value(r#"gatehouse_store_errors_total{op="set_if_absent"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(r#"gatehouse_store_errors_total{op="get"}"#),
        Some(0.0)
    );
    assert_eq!(
        value(r#"gatehouse_store_operation_duration_seconds_count{op="delete"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(r#"gatehouse_store_operation_duration_seconds_count{op="purge_expired"}"#),
        Some(0.0)
    );
    assert_eq!(
        value("gatehouse_store_up"),
        Some(1.0),
        "a full store is still up"
    );
}

/// A store whose backend cannot be reached.
struct Unreachable;

#[async_trait::async_trait]
impl Store for Unreachable {
    async fn set(&self, _: &str, _: &[u8], _: Duration) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn set_if_absent(&self, _: &str, _: &[u8], _: Duration) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn compare_and_set(
        &self,
        _: &str,
        _: &[u8],
        _: &[u8],
        _: Duration,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn get(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn take(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn delete(&self, _: &str) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn index_add(&self, _: &str, _: &str, _: Duration) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn index_remove(&self, _: &str, _: &str) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn rate_limit(
        &self,
        _: &str,
        _: u64,
        _: Duration,
    ) -> Result<crate::store::RateDecision, StoreError> {
        Err(StoreError::Unavailable("unreachable".into()))
    }
    async fn index_members(&self, _: &str) -> Result<Vec<String>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    fn health_interval(&self) -> Option<Duration> {
        None
    }
}

#[tokio::test]
async fn an_unreachable_store_is_down_until_an_operation_succeeds() {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let handles = metrics.store_metrics().expect("store metrics");
    let up = || {
        sample(
            &metrics.render(&[], 0).expect("render"),
            "gatehouse_store_up",
        )
    };
    assert_eq!(up(), Some(1.0), "up until something fails");
    let down = MeteredStore::new(Arc::new(Unreachable), handles.clone());
    assert!(down.get("k").await.is_err());
    assert_eq!(up(), Some(0.0));
    let text = metrics.render(&[], 0).expect("render");
    assert_eq!(
        sample(&text, r#"gatehouse_store_errors_total{op="get"}"#),
        Some(1.0)
    );
    let fine = MeteredStore::new(Arc::new(MemoryStore::new(1)), handles);
    assert_eq!(fine.ping().await, Ok(()));
    assert_eq!(up(), Some(1.0), "back up after a success");
}

#[tokio::test]
async fn remote_key_sets_report_fetches_keys_and_age() {
    let key = TestKey::generate(Algorithm::ES256, "k");
    let server = JwksServer::start(testkit::jwks(&[&key]))
        .await
        .expect("server");
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let refresh = RefreshConfig {
        unknown_kid_interval: Duration::ZERO,
        ..RefreshConfig::default()
    };
    let keys = Arc::new(
        IssuerKeys::remote(
            "idp".into(),
            KeyOrigin::JwksUri(server.url.clone()),
            refresh,
            reqwest::Client::new(),
        )
        .with_metrics(metrics.key_metrics("idp").expect("key metrics")),
    );
    // Not loaded yet: no age, zero keys.
    let text = metrics
        .render(&gauges(std::slice::from_ref(&keys)), 0)
        .expect("render");
    assert_eq!(
        sample(&text, r#"gatehouse_jwks_keys_age_seconds{issuer="idp"}"#),
        None
    );
    assert_eq!(
        sample(&text, r#"gatehouse_jwks_keys{issuer="idp"}"#),
        Some(0.0)
    );

    assert!(keys.refetch_for_unknown_kid().await.is_some());
    server.set(serde_json::json!({"keys": []}));
    assert!(keys.refetch_for_unknown_kid().await.is_some(), "kept");
    let text = metrics
        .render(&gauges(std::slice::from_ref(&keys)), 0)
        .expect("render");
    let value = |series: &str| sample(&text, series);
    assert_eq!(
        value(r#"gatehouse_jwks_refresh_total{issuer="idp",result="success"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(r#"gatehouse_jwks_refresh_total{issuer="idp",result="failure"}"#),
        Some(1.0)
    );
    assert_eq!(value(r#"gatehouse_jwks_keys{issuer="idp"}"#), Some(1.0));
    let age = value(r#"gatehouse_jwks_keys_age_seconds{issuer="idp"}"#).expect("age");
    assert!((0.0..5.0).contains(&age), "{age}");
    // An issuer the serving engine no longer has disappears.
    let text = metrics.render(&[], 0).expect("render");
    assert!(
        !text.contains(r#"gatehouse_jwks_keys{issuer="idp"}"#),
        "{text}"
    );
}

#[test]
fn build_info_and_reload_results() {
    let metrics = Metrics::new().expect("metrics");
    metrics.config_started();
    let text = metrics.render(&[], 0).expect("render");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sample(
            &text,
            &format!(r#"gatehouse_build_info{{version="{version}"}}"#)
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "gatehouse_config_last_reload_successful"),
        Some(1.0)
    );
    let started = sample(
        &text,
        "gatehouse_config_last_reload_success_timestamp_seconds",
    )
    .expect("timestamp");
    assert!(started > 1.7e9, "{started}");

    metrics.config_loaded(false, false);
    let text = metrics.render(&[], 0).expect("render");
    let value = |series: &str| sample(&text, series);
    assert_eq!(
        value(r#"gatehouse_config_reloads_total{result="failure"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(r#"gatehouse_config_reloads_total{result="success"}"#),
        Some(0.0)
    );
    assert_eq!(value("gatehouse_config_last_reload_successful"), Some(0.0));

    metrics.config_loaded(true, true);
    let text = metrics.render(&[], 0).expect("render");
    assert_eq!(
        sample(&text, r#"gatehouse_config_reloads_total{result="success"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "gatehouse_config_restart_required"),
        Some(1.0)
    );
}

#[test]
fn every_family_has_help_and_type_and_follows_the_naming_conventions() {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let _checks = EngineMetrics::new(metrics.clone(), ["r"]).expect("checks");
    let _store = metrics.store_metrics().expect("store");
    let _keys = metrics.key_metrics("idp").expect("keys");
    let _cache = metrics.token_cache_metrics().expect("token cache");
    let keys = Arc::new(IssuerKeys::remote(
        "idp".into(),
        KeyOrigin::JwksUri("http://127.0.0.1:1/".into()),
        RefreshConfig::default(),
        reqwest::Client::new(),
    ));
    let text = metrics.render(&gauges(&[keys]), 0).expect("render");
    let families: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    let mut names: Vec<&str> = families.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "gatehouse_build_info",
            "gatehouse_check_duration_seconds",
            "gatehouse_checks_total",
            "gatehouse_config_last_reload_success_timestamp_seconds",
            "gatehouse_config_last_reload_successful",
            "gatehouse_config_reloads_total",
            "gatehouse_config_restart_required",
            "gatehouse_jwks_keys",
            "gatehouse_jwks_refresh_total",
            "gatehouse_store_errors_total",
            "gatehouse_store_operation_duration_seconds",
            "gatehouse_store_up",
            "gatehouse_token_cache_entries",
            "gatehouse_token_cache_lookups_total",
        ]
    );
    for (name, kind) in families {
        assert!(name.starts_with("gatehouse_"), "{name}");
        assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        match kind {
            "counter" => assert!(name.ends_with("_total"), "{name}"),
            "histogram" => assert!(name.ends_with("_seconds"), "{name}"),
            "gauge" => assert!(!name.ends_with("_total"), "{name}"),
            other => panic!("{name}: unexpected type {other}"),
        }
    }
}

/// A `mode: shadow` rule placed before the enforcing ones: the answers
/// stay the enforcing rules', and each check the shadow rule would have
/// answered differently is counted by rule and change.
#[tokio::test]
async fn shadow_disagreements_are_counted_and_change_no_answer() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let engine = engine_with_rules(
        &key,
        r#"
    - name: private-docs
      mode: shadow
      match: {path: {prefix: /docs/private/}}
      scopes: [docs:admin]
    - name: lenient-api
      mode: shadow
      match: {path: {prefix: /api/}}
      auth: anonymous
    - name: docs
      match: {path: {prefix: /docs/}}
      auth: anonymous
    - name: api
      match: {path: {prefix: /api/}}
"#,
    );
    let token = key.mint(&testkit::claims("https://issuer.test", "api", "alice"));
    let answer = |path: &str, token: Option<&str>| {
        let mut headers = std::collections::HashMap::new();
        if let Some(t) = token {
            headers.insert("authorization".to_string(), format!("Bearer {t}"));
        }
        let request = testkit::check_request("svc.test", path, "10.0.0.1", headers);
        let engine = &engine;
        async move { engine.check(&request).await.1 }
    };
    // Enforced: anonymous docs; shadow: docs:admin needed (no token: 401).
    let decision = answer("/docs/private/a", None).await;
    assert_eq!(
        (decision.rule.as_deref(), decision.result.is_ok()),
        (Some("docs"), true)
    );
    // With a token but without the scope: still allowed, shadow 403.
    assert!(answer("/docs/private/b", Some(&token)).await.result.is_ok());
    // Enforced: a token needed; shadow: anonymous would let it through.
    let decision = answer("/api/x", None).await;
    assert_eq!(decision.rule.as_deref(), Some("api"));
    assert!(decision.result.is_err());
    // Both allow: no disagreement.
    assert!(answer("/api/y", Some(&token)).await.result.is_ok());
    assert!(answer("/docs/public", None).await.result.is_ok());
    let text = render(&engine);
    let series = |rule: &str, change: &str| {
        sample(
            &text,
            &format!("gatehouse_shadow_disagreements_total{{change=\"{change}\",rule=\"{rule}\"}}"),
        )
    };
    assert_eq!(series("private-docs", "allow_to_deny"), Some(2.0));
    assert_eq!(series("lenient-api", "deny_to_allow"), Some(1.0));
    assert_eq!(series("lenient-api", "allow_to_deny"), None);
}
