use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use serde_json::{Value, json};

use super::chart::{self, CHART_SCHEMA_PATH};
use super::reference::{self, REFERENCE_PATH};
use super::schema::{self, Key, Reload};
use crate::config::{self, Config, ConfigSource};
use crate::serve::reload::restart_only_changes;

fn repo_file(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn checked_in_reference_is_up_to_date() {
    let fresh = reference::render();
    let checked_in = repo_file(REFERENCE_PATH);
    if checked_in != fresh {
        let line = checked_in
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(fresh.lines().count()));
        panic!(
            "{REFERENCE_PATH} is stale (first difference at line {}): regenerate it with\n    {}\n",
            line + 1,
            reference::REGENERATE
        );
    }
}

#[test]
fn checked_in_chart_schema_is_up_to_date() {
    let text = repo_file(CHART_SCHEMA_PATH);
    let file: Value = serde_json::from_str(&text).expect("values.schema.json is JSON");
    let stale = file.pointer("/properties/config") != Some(&chart::chart_config_schema());
    assert!(
        !stale,
        "the config property of {CHART_SCHEMA_PATH} is stale: regenerate it with\n    {}\n",
        chart::REGENERATE
    );
    // And the generator would write the file as it is.
    assert_eq!(chart::splice(&text).expect("splices"), text);
}

#[test]
fn splice_replaces_only_the_config_property() {
    let text = "{\n  \"properties\": {\n    \"a\": {\n      \"type\": \"string\"\n    },\n    \"config\": {\n      \"type\": \"object\"\n    },\n    \"z\": {}\n  }\n}\n";
    let spliced = chart::splice(text).expect("splices");
    assert!(spliced.starts_with("{\n  \"properties\": {\n    \"a\": {\n      \"type\": \"string\"\n    },\n    \"config\": {\n"));
    assert!(
        spliced.ends_with("\n    },\n    \"z\": {}\n  }\n}\n"),
        "{spliced}"
    );
    let parsed: Value = serde_json::from_str(&spliced).expect("JSON");
    assert_eq!(parsed["properties"]["config"], chart::chart_config_schema());
    assert!(matches!(
        chart::splice("{\"properties\": {}}"),
        Err(chart::ChartSchemaError::NoConfigProperty(_))
    ));
    assert!(matches!(
        chart::splice("not json"),
        Err(chart::ChartSchemaError::Json(_))
    ));
}

/// What the chart's copy changes: enums as `enum`, unsigned integers also
/// as digit strings, no `signing_keys` requirement, the listen addresses
/// described as the chart's.
#[test]
fn chart_copy_adapts_to_the_chart() {
    let config = chart::chart_config_schema();
    assert_eq!(
        config.pointer("/properties/log/properties/format/enum"),
        Some(&json!(["text", "json"]))
    );
    assert_eq!(
        config.pointer("/properties/jwt/properties/cache_size/anyOf/1/pattern"),
        Some(&json!("^[0-9]+$"))
    );
    assert_eq!(
        config.pointer("/properties/issuer/required"),
        Some(&json!(["issuer"]))
    );
    let grpc = config
        .pointer("/properties/server/properties/grpc_addr/description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(grpc.ends_with("Set by the chart from listenAddress and ports.grpc."));
    assert!(!chart::chart_config_schema().to_string().contains("$ref"));
}

#[test]
fn schema_describes_durations_enums_defaults_and_foreign_types() {
    let schema = schema::schema();
    let keys = schema::keys(&schema);
    let key = |path: &str| -> &Key<'_> {
        keys.iter()
            .find(|k| k.path == path)
            .unwrap_or_else(|| panic!("no key {path}"))
    };
    let drain = key("server.drain_timeout");
    assert_eq!(drain.type_label, "duration");
    assert_eq!(drain.default, Some(&json!("15s")));
    assert_eq!(
        drain.env.as_deref(),
        Some("GATEHOUSE_SERVER__DRAIN_TIMEOUT")
    );
    assert_eq!(drain.reload, Reload::Restart);
    assert_eq!(key("jwt.leeway").default, Some(&json!("30s")));
    assert_eq!(key("log.format").type_label, "`text` | `json`");
    assert_eq!(key("log.decisions").default, Some(&json!("deny")));
    assert_eq!(key("network.trusted_proxies").type_label, "list of CIDR");
    assert!(
        key("jwt.issuers[].algorithms")
            .type_label
            .starts_with("list of `RS256` | `RS384`")
    );
    let audiences = key("jwt.issuers[].audiences");
    assert!(audiences.required && audiences.env.is_none());
    assert_eq!(
        key("jwt.sources").default,
        Some(&json!(["bearer", "basic"]))
    );
    assert_eq!(
        key("store.memory.max_entries").env.as_deref(),
        Some("GATEHOUSE_STORE__MEMORY__MAX_ENTRIES")
    );
    assert_eq!(key("tracing.sample_ratio").type_label, "number, 0 to 1");
    assert_eq!(key("tracing.protocol").reload, Reload::Restart);
    assert_eq!(key("reload.keys_timeout").reload, Reload::Live);
    // Every key has a meaning.
    for k in &keys {
        assert!(
            k.description.is_some_and(|d| !d.trim().is_empty()),
            "{} has no description",
            k.path
        );
    }
    // Durations carry the grammar's pattern.
    assert_eq!(
        schema.pointer("/$defs/Duration/pattern"),
        Some(&json!(config::schema::DURATION_PATTERN))
    );
}

/// A value for `key` different from its default, as an environment
/// variable would spell it.
fn changed_value(key: &Key<'_>) -> String {
    let constants: Vec<String> = match (key.schema.get("enum"), key.schema.get("oneOf")) {
        (Some(Value::Array(values)), _) => values.iter().map(schema::plain).collect(),
        (None, Some(Value::Array(choices))) => choices
            .iter()
            .filter_map(|c| c.get("const"))
            .map(schema::plain)
            .collect(),
        _ => Vec::new(),
    };
    let default = key.default.map(schema::plain);
    if let Some(other) = constants.iter().find(|c| Some(*c) != default.as_ref()) {
        return other.clone();
    }
    match key.default {
        Some(Value::Bool(b)) => return (!b).to_string(),
        Some(Value::Number(n)) if n.is_u64() => {
            return (n.as_u64().unwrap_or_default() + 1).to_string();
        }
        Some(Value::Number(n)) => {
            return if n.as_f64() == Some(0.5) {
                "0.25"
            } else {
                "0.5"
            }
            .to_string();
        }
        Some(Value::String(s)) if s.parse::<SocketAddr>().is_ok() => {
            return "127.0.0.1:1".into();
        }
        _ => {}
    }
    if key.path == "log.level" {
        // A level filter is validated: any other valid one.
        return "debug".into();
    }
    match key.type_label.as_str() {
        "duration" => "17s".into(),
        l if l.starts_with("`last`") => "first".into(),
        "integer ≥ 0" => "3".into(),
        _ => "changed".into(),
    }
}

fn load(env: &[(String, String)]) -> Config {
    config::load(&ConfigSource::Text(String::new()), env.iter().cloned())
        .unwrap_or_else(|e| panic!("{env:?}: {e}"))
}

/// Every key an environment variable can set: that variable sets it (the
/// loaded configuration changes), and the reloader reports the change as
/// needing a restart exactly when the schema says `x-reload: restart`.
/// A key marked restart in `src/config/` that the reloader does not
/// compare, or one it compares that is not marked, fails here.
#[test]
fn env_vars_set_their_keys_and_restart_keys_match_the_reloader() {
    let schema = schema::schema();
    let keys = schema::keys(&schema);
    let mut tested = BTreeSet::new();
    for key in keys.iter().filter(|k| k.env.is_some()) {
        // Optional objects above the key need their required keys too.
        let mut baseline = Vec::new();
        let mut settable = true;
        for ancestor in keys
            .iter()
            .filter(|a| a.nullable && key.path.starts_with(&format!("{}.", a.path)))
        {
            for sibling in keys.iter().filter(|s| {
                s.required
                    && s.path != key.path
                    && s.path
                        .strip_prefix(&format!("{}.", ancestor.path))
                        .is_some_and(|rest| !rest.contains(['.', '[']))
            }) {
                match &sibling.env {
                    Some(env) => baseline.push((env.clone(), changed_value(sibling))),
                    None => settable = false,
                }
            }
        }
        if !settable {
            continue;
        }
        let env = key.env.clone().unwrap_or_default();
        let mut mutated = baseline.clone();
        mutated.push((env.clone(), changed_value(key)));
        if key.required {
            // The object does not load without it: another value before.
            baseline.push((env.clone(), format!("{}-before", changed_value(key))));
        }
        let (before, after) = (load(&baseline), load(&mutated));
        assert_ne!(
            format!("{before:?}"),
            format!("{after:?}"),
            "{env}={} did not change {}",
            changed_value(key),
            key.path
        );
        let reported = restart_only_changes(&before, &after);
        match key.reload {
            Reload::Live => assert!(
                reported.is_empty(),
                "{} is live in the schema, but a reload reports {reported:?}: mark it #[schemars(extend(\"x-reload\" = \"restart\"))]",
                key.path
            ),
            Reload::Restart => assert!(
                !reported.is_empty()
                    && reported
                        .iter()
                        .all(|r| *r == key.path || key.path.starts_with(&format!("{r}."))),
                "{} is restart in the schema, but a reload reports {reported:?}",
                key.path
            ),
        }
        tested.insert(key.path.clone());
    }
    let restart: BTreeSet<String> = keys
        .iter()
        .filter(|k| k.reload == Reload::Restart && k.env.is_some())
        .map(|k| k.path.clone())
        .collect();
    assert!(
        restart.is_subset(&tested),
        "untested: {:?}",
        restart.difference(&tested).collect::<Vec<_>>()
    );
    for must in [
        "server.grpc_addr",
        "server.realm",
        "log.level",
        "reload.watch",
        "tracing.otlp_endpoint",
        "tracing.sample_ratio",
        "store.memory.max_entries",
        "certificates.xfcc.element",
        "certificates.identity.tool.pattern",
        "jwt.cache_size",
    ] {
        assert!(tested.contains(must), "{must} untested: {tested:?}");
    }
}

/// The reference shows each section and the columns it promises.
#[test]
fn reference_rows_carry_type_default_env_and_reload() {
    let text = reference::render();
    assert!(text.starts_with("<!-- Generated by `gatehouse config reference`"));
    assert!(text.contains(
        "| `server.drain_timeout` | duration | `15s` | `GATEHOUSE_SERVER__DRAIN_TIMEOUT` | restart | How long SIGTERM waits for in-flight checks before exiting. |"
    ));
    assert!(text.contains("| `log.format` | `text` \\| `json` | `text` |"));
    assert!(
        text.contains("| `jwt.issuers[].audiences` | list of string | *required* | — | live |")
    );
    for section in [
        "server",
        "jwt",
        "policy",
        "certificates",
        "issuer",
        "store",
        "reload",
    ] {
        assert!(text.contains(&format!("\n## `{section}`\n")), "{section}");
    }
}

#[test]
fn show_prints_the_effective_configuration_with_secrets_redacted() {
    let demo = super::effective(&ConfigSource::Text(crate::config::DEMO_CONFIG.into()))
        .expect("the demo shows");
    assert!(crate::config::DEMO_CONFIG.contains("PRIVATE KEY"));
    assert!(!demo.contains("PRIVATE KEY"), "{demo}");
    assert!(demo.contains(crate::config::REDACTED));
    // Without inline secrets, what is shown loads back as the same
    // configuration (JSON is YAML), defaults included.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/toolforge.yaml");
    let shown = super::effective(&ConfigSource::File(path.into())).expect("toolforge shows");
    let original = config::load(&ConfigSource::File(path.into()), []).expect("toolforge");
    let reloaded = config::load(&ConfigSource::Text(shown.clone()), []).expect("shown reloads");
    assert_eq!(format!("{original:?}"), format!("{reloaded:?}"), "{shown}");
}
