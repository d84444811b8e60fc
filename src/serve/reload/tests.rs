//! Reloading from a real file: what changes, what is kept, what refuses.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::*;
use crate::metrics::tests::sample;
use crate::testkit::TempDir;
use crate::testkit::jwks_server::JwksServer;
use crate::testkit::{self, TestKey};

/// Rules: `open` (anonymous, /open/), plus `extra` (YAML list items).
fn yaml(extra_rules: &str, more: &str) -> String {
    format!(
        r#"
server: {{realm: file}}
policy:
  rules:
    - name: open
      match: {{path: {{prefix: /open/}}}}
      auth: anonymous
{extra_rules}
{more}
"#
    )
}

const NEW_RULE: &str = r#"
    - name: new
      match: {path: {prefix: /new/}}
      auth: anonymous
"#;

struct Setup {
    reloader: Arc<Reloader>,
    metrics: Arc<Metrics>,
    file: PathBuf,
    _dir: TempDir,
}

fn start_with(text: &str, env: Vec<(String, String)>) -> Setup {
    let dir = TempDir::new("reload");
    let file = dir.0.join("gatehouse.yaml");
    std::fs::write(&file, text).expect("write");
    let source = ConfigSource::File(file.clone());
    let config = config::load(&source, env.clone()).expect("config");
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let engine =
        app::build_engine_with(&config, &source, &Carry::fresh(metrics.clone())).expect("engine");
    let reloader = Reloader::start(config, source, env, engine, metrics.clone());
    Setup {
        reloader,
        metrics,
        file,
        _dir: dir,
    }
}

fn start(text: &str) -> Setup {
    start_with(text, Vec::new())
}

/// `allow`, or the deny reason.
async fn decide(engine: &Engine, path: &str) -> &'static str {
    decide_as(engine, path, None).await
}

/// [`decide`], presenting `token` as a bearer token if given.
async fn decide_as(engine: &Engine, path: &str, token: Option<&str>) -> &'static str {
    let mut headers = std::collections::HashMap::new();
    if let Some(token) = token {
        headers.insert("authorization".to_string(), format!("Bearer {token}"));
    }
    let request = testkit::check_request("svc.test", path, "10.0.0.1", headers);
    match engine.check(&request).await.1.result {
        Ok(()) => "allow",
        Err(deny) => deny.reason_label(),
    }
}

fn reloads(metrics: &Metrics, result: &str) -> Option<f64> {
    let text = metrics.render(&[], 0).expect("render");
    sample(
        &text,
        &format!(r#"gatehouse_config_reloads_total{{result="{result}"}}"#),
    )
}

fn write(file: &Path, text: &str) {
    std::fs::write(file, text).expect("write");
}

#[tokio::test]
async fn a_changed_rule_applies_and_checks_in_flight_keep_their_engine() {
    let s = start(&yaml("", ""));
    let live = s.reloader.live();
    assert_eq!(decide(&live.load(), "/new/x").await, "no_rule");
    let in_flight = live.load();

    write(&s.file, &yaml(NEW_RULE, ""));
    let done = s.reloader.reload("test").await.expect("reload");
    assert!(done.restart_required.is_empty());
    assert_eq!(decide(&live.load(), "/new/x").await, "allow");
    assert_eq!(decide(&live.load(), "/open/x").await, "allow");
    // A check that loaded the engine before the swap finishes on it.
    assert_eq!(decide(&in_flight, "/new/x").await, "no_rule");
    assert_eq!(reloads(&s.metrics, "success"), Some(1.0));
    assert_eq!(reloads(&s.metrics, "failure"), Some(0.0));
    let text = s.metrics.render(&[], 0).expect("render");
    assert_eq!(
        sample(
            &text,
            r#"gatehouse_checks_total{decision="allow",reason="",rule="new"}"#
        ),
        Some(0.0),
        "the new rule's series exists"
    );
}

#[tokio::test]
async fn a_bad_file_keeps_the_running_engine_and_is_counted() {
    let s = start(&yaml("", ""));
    let live = s.reloader.live();
    let before = live.current();

    // Does not load: an unknown key.
    write(&s.file, &yaml("", "reload: {wach: false}"));
    let err = s.reloader.reload("test").await.unwrap_err();
    assert!(err.to_string().contains("wach"), "{err}");
    // Loads, but does not build: a rule name used twice.
    let twice = NEW_RULE.replace("name: new", "name: open");
    write(&s.file, &yaml(&twice, ""));
    let err = s.reloader.reload("test").await.unwrap_err();
    assert!(
        err.to_string().contains("policy.rules[1].name"),
        "the error names the key: {err}"
    );
    // Not YAML at all.
    write(&s.file, "policy: [unclosed");
    assert!(s.reloader.reload("test").await.is_err());

    assert!(Arc::ptr_eq(&before, &live.current()), "old engine kept");
    assert_eq!(decide(&live.load(), "/open/x").await, "allow");
    assert_eq!(reloads(&s.metrics, "failure"), Some(3.0));
    assert_eq!(reloads(&s.metrics, "success"), Some(0.0));
    let text = s.metrics.render(&[], 0).expect("render");
    assert_eq!(
        sample(&text, "gatehouse_config_last_reload_successful"),
        Some(0.0)
    );

    // Fixed: the next reload applies.
    write(&s.file, &yaml(NEW_RULE, ""));
    s.reloader.reload("test").await.expect("reload");
    assert_eq!(decide(&live.load(), "/new/x").await, "allow");
}

#[tokio::test]
async fn the_store_is_kept_unless_its_configuration_changes() {
    let s = start(&yaml("", "store: {memory: {max_entries: 100}}"));
    let live = s.reloader.live();
    let store = live.current().store.clone();
    store
        .set_if_absent("gatehouse:link-use:j1", b"1", Duration::from_secs(60))
        .await
        .expect("set");

    write(
        &s.file,
        &yaml(NEW_RULE, "store: {memory: {max_entries: 100}}"),
    );
    let done = s.reloader.reload("test").await.expect("reload");
    assert!(done.store_kept);
    assert!(Arc::ptr_eq(&store, &live.current().store));
    assert_eq!(
        live.current()
            .store
            .set_if_absent("gatehouse:link-use:j1", b"2", Duration::from_secs(60))
            .await,
        Ok(false),
        "a one-time link used before the reload stays used"
    );

    write(
        &s.file,
        &yaml(NEW_RULE, "store: {memory: {max_entries: 5}}"),
    );
    let done = s.reloader.reload("test").await.expect("reload");
    assert!(!done.store_kept);
    assert!(!Arc::ptr_eq(&store, &live.current().store));
}

fn issuer(name: &str, url: &str) -> String {
    format!(
        "    - {{issuer: https://{name}.test, name: {name}, audiences: [api], algorithms: [ES256], keys: {{jwks_uri: \"{url}\"}}}}\n"
    )
}

fn with_issuers(issuers: &str, more: &str) -> String {
    yaml("", &format!("jwt:\n  issuers:\n{issuers}{more}"))
}

#[tokio::test]
async fn unchanged_key_sets_are_kept_and_new_ones_loaded_before_the_swap() {
    let key = TestKey::generate(Algorithm::ES256, "k");
    let a = JwksServer::start(testkit::jwks(&[&key])).await.expect("a");
    let b = JwksServer::start(testkit::jwks(&[&key])).await.expect("b");
    let s = start(&with_issuers(&issuer("one", &a.url), ""));
    let live = s.reloader.live();
    assert!(super::keys_loaded(&live.current().authn.key_sets(), Duration::from_secs(5)).await);
    let kept = live.current().authn.key_sets()[0].clone();
    assert_eq!(a.hits(), 1);

    // Same issuer, another rule: the key set (and its refresh) carry over.
    let text = yaml(
        NEW_RULE,
        &format!("jwt:\n  issuers:\n{}", issuer("one", &a.url)),
    );
    write(&s.file, &text);
    let done = s.reloader.reload("test").await.expect("reload");
    assert_eq!(done.new_key_sets, 0);
    assert!(Arc::ptr_eq(&kept, &live.current().authn.key_sets()[0]));
    assert!(live.load().ready());
    assert_eq!(a.hits(), 1, "no refetch for an unchanged issuer");
    assert_eq!(s.reloader.refreshing().await, 1);

    // A new issuer: loaded before the swap, so the engine is ready at once.
    let two = format!("{}{}", issuer("one", &a.url), issuer("two", &b.url));
    write(&s.file, &with_issuers(&two, ""));
    let done = s.reloader.reload("test").await.expect("reload");
    assert_eq!(done.new_key_sets, 1);
    assert!(live.load().ready());
    assert_eq!(b.hits(), 1);
    assert_eq!(s.reloader.refreshing().await, 2);

    // An issuer whose keys cannot load: the reload fails, nothing changes.
    let before = live.current();
    let bad = format!(
        "{}{}",
        issuer("one", &a.url),
        issuer("two", "http://127.0.0.1:1/jwks")
    );
    write(
        &s.file,
        &with_issuers(&bad, "reload: {keys_timeout: 300ms}\n"),
    );
    let err = s.reloader.reload("test").await.unwrap_err();
    assert!(
        matches!(&err, ReloadError::KeysNotLoaded { issuers, .. } if issuers == "two"),
        "{err}"
    );
    assert!(Arc::ptr_eq(&before, &live.current()));
    assert_eq!(s.reloader.refreshing().await, 2, "the failed fetch stopped");
    assert_eq!(reloads(&s.metrics, "failure"), Some(1.0));

    // An issuer removed: its refresh stops.
    write(&s.file, &with_issuers(&issuer("one", &a.url), ""));
    s.reloader.reload("test").await.expect("reload");
    assert_eq!(s.reloader.refreshing().await, 1);
    assert!(Arc::ptr_eq(&kept, &live.current().authn.key_sets()[0]));
}

#[tokio::test]
async fn tracing_waits_for_a_restart_and_decision_logging_reloads() {
    let s = start(&yaml("", ""));
    assert!(!s.reloader.live().load().telemetry.spans);
    let traced = yaml(
        "",
        "log: {decisions: all}\ntracing: {otlp_endpoint: \"http://127.0.0.1:4317\"}",
    );
    write(&s.file, &traced);
    let done = s.reloader.reload("test").await.expect("reload");
    assert_eq!(done.restart_required, ["tracing"]);
    let live = s.reloader.live().load();
    assert!(!live.telemetry.spans, "no exporter runs: no spans");
    assert_eq!(
        live.telemetry.decisions,
        crate::config::DecisionLogMode::All
    );
}

#[tokio::test]
async fn settings_read_at_start_are_reported_and_the_rest_applies() {
    let s = start(&yaml("", ""));
    let changed = yaml("", "log: {level: debug}").replace(
        "server: {realm: file}",
        "server: {realm: other, grpc_addr: \"127.0.0.1:1\"}",
    );
    write(&s.file, &changed);
    let done = s.reloader.reload("test").await.expect("reload");
    assert_eq!(done.restart_required, ["server.grpc_addr", "log"]);
    assert_eq!(s.reloader.live().load().realm, "other");
    let text = s.metrics.render(&[], 0).expect("render");
    assert_eq!(
        sample(&text, "gatehouse_config_restart_required"),
        Some(1.0)
    );

    // Back to the values in force: nothing waits for a restart any more.
    write(&s.file, &yaml("", ""));
    let done = s.reloader.reload("test").await.expect("reload");
    assert!(done.restart_required.is_empty());
    let text = s.metrics.render(&[], 0).expect("render");
    assert_eq!(
        sample(&text, "gatehouse_config_restart_required"),
        Some(0.0)
    );
}

#[tokio::test]
async fn environment_overrides_still_apply_after_a_reload() {
    let env = vec![("GATEHOUSE_SERVER__REALM".to_string(), "env".to_string())];
    let s = start_with(&yaml("", ""), env);
    write(&s.file, &yaml(NEW_RULE, ""));
    s.reloader.reload("test").await.expect("reload");
    assert_eq!(s.reloader.live().load().realm, "env");
}

#[tokio::test]
async fn the_embedded_configuration_is_not_reloaded() {
    let source = ConfigSource::Text(yaml("", ""));
    let config = config::load(&source, []).expect("config");
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let engine =
        app::build_engine_with(&config, &source, &Carry::fresh(metrics.clone())).expect("engine");
    let reloader = Reloader::start(config, source, Vec::new(), engine, metrics.clone());
    assert!(matches!(
        reloader.reload("test").await,
        Err(ReloadError::NoFile)
    ));
    assert_eq!(reloads(&metrics, "failure"), Some(0.0), "not counted");
}

/// Waits up to 5 s for `reloads_total{result}` to reach `want`.
async fn wait_for_reloads(metrics: &Metrics, result: &str, want: f64) {
    for _ in 0..100 {
        if reloads(metrics, result) == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{result} reloads never reached {want}: {:?}",
        reloads(metrics, result)
    );
}

#[tokio::test]
async fn the_watcher_follows_a_kubernetes_style_symlink_swap_once_per_change() {
    // <dir>/gatehouse.yaml -> ..data/gatehouse.yaml, ..data -> v1 (as a
    // ConfigMap volume); an update writes v2 and swaps ..data.
    let dir = TempDir::new("reload");
    let version = |name: &str, text: &str| {
        std::fs::create_dir_all(dir.0.join(name)).expect("dir");
        write(&dir.0.join(name).join("gatehouse.yaml"), text);
    };
    version("v1", &yaml("", "reload: {interval: 100ms}"));
    std::os::unix::fs::symlink("v1", dir.0.join("..data")).expect("link");
    let file = dir.0.join("gatehouse.yaml");
    std::os::unix::fs::symlink("..data/gatehouse.yaml", &file).expect("link");
    let source = ConfigSource::File(file);
    let config = config::load(&source, []).expect("config");
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let engine =
        app::build_engine_with(&config, &source, &Carry::fresh(metrics.clone())).expect("engine");
    let reloader = Reloader::start(config.clone(), source, Vec::new(), engine, metrics.clone());
    let tasks = watch::spawn(reloader.clone(), &config.reload);

    version("v2", &yaml(NEW_RULE, "reload: {interval: 100ms}"));
    std::os::unix::fs::symlink("v2", dir.0.join("..data_tmp")).expect("link");
    std::fs::rename(dir.0.join("..data_tmp"), dir.0.join("..data")).expect("swap");
    wait_for_reloads(&metrics, "success", 1.0).await;
    assert_eq!(decide(&reloader.live().load(), "/new/x").await, "allow");

    // A bad version is tried once, not at every read.
    version("v3", "policy: [unclosed");
    std::os::unix::fs::symlink("v3", dir.0.join("..data_tmp")).expect("link");
    std::fs::rename(dir.0.join("..data_tmp"), dir.0.join("..data")).expect("swap");
    wait_for_reloads(&metrics, "failure", 1.0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reloads(&metrics, "failure"), Some(1.0));
    assert_eq!(reloads(&metrics, "success"), Some(1.0));
    assert_eq!(decide(&reloader.live().load(), "/new/x").await, "allow");
    for task in tasks {
        task.abort();
    }
}

#[tokio::test]
async fn the_watcher_follows_a_referenced_key_file() {
    let old = TestKey::generate(Algorithm::ES256, "old");
    let new = TestKey::generate(Algorithm::ES256, "new");
    let rule = r#"
    - name: api
      match: {path: {prefix: /api/}}
"#;
    let text = yaml(
        rule,
        "reload: {interval: 100ms}\njwt:\n  issuers:\n    - {issuer: https://file.test, name: file, audiences: [api], algorithms: [ES256], keys: {jwks_file: keys/jwks.json}}\n",
    );
    let dir = TempDir::new("reload");
    std::fs::create_dir_all(dir.0.join("keys")).expect("dir");
    let jwks = dir.0.join("keys/jwks.json");
    write(&jwks, &testkit::jwks(&[&old]).to_string());
    let file = dir.0.join("gatehouse.yaml");
    write(&file, &text);
    let source = ConfigSource::File(file);
    let config = config::load(&source, []).expect("config");
    assert_eq!(config.referenced_files(&source), vec![jwks.clone()]);
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let engine =
        app::build_engine_with(&config, &source, &Carry::fresh(metrics.clone())).expect("engine");
    let reloader = Reloader::start(config.clone(), source, Vec::new(), engine, metrics.clone());
    let tasks = watch::spawn(reloader.clone(), &config.reload);

    let token = new.mint(&testkit::claims("https://file.test", "api", "alice"));
    assert_eq!(
        decide_as(&reloader.live().load(), "/api/x", Some(&token)).await,
        "invalid_token"
    );

    // The key file alone changes (the configuration file does not).
    write(&jwks, &testkit::jwks(&[&old, &new]).to_string());
    wait_for_reloads(&metrics, "success", 1.0).await;
    assert_eq!(
        decide_as(&reloader.live().load(), "/api/x", Some(&token)).await,
        "allow"
    );

    // Rewritten with the same content: nothing to reload.
    write(&jwks, &testkit::jwks(&[&old, &new]).to_string());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reloads(&metrics, "success"), Some(1.0));

    // Gone: one failed reload, the running keys stay; back: reloaded.
    std::fs::remove_file(&jwks).expect("remove");
    wait_for_reloads(&metrics, "failure", 1.0).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(reloads(&metrics, "failure"), Some(1.0));
    assert_eq!(
        decide_as(&reloader.live().load(), "/api/x", Some(&token)).await,
        "allow"
    );
    write(&jwks, &testkit::jwks(&[&new]).to_string());
    wait_for_reloads(&metrics, "success", 2.0).await;
    let old_token = old.mint(&testkit::claims("https://file.test", "api", "bob"));
    assert_eq!(
        decide_as(&reloader.live().load(), "/api/x", Some(&old_token)).await,
        "invalid_token"
    );
    assert_eq!(
        decide_as(&reloader.live().load(), "/api/x", Some(&token)).await,
        "allow"
    );
    for task in tasks {
        task.abort();
    }
}
