//! From the merged configuration tree to the typed [`Config`], with errors
//! that name one dotted key (and the environment variable that set it).
//!
//! The `config` crate merges the file and the `GATEHOUSE_*` overrides; the
//! merged tree is then taken as JSON and deserialized by serde_json, under
//! `serde_path_to_error` for the key's path. Not the `config` crate's own
//! typed deserializer: it panics on some malformed input (a bare name
//! where an enum needs a value, `keys: jwks`) and names Rust types in its
//! messages, where serde_json lists an enum's variants and a section's keys.

use serde_json::Value;

use super::env::{self, FlowOverride};
use super::{Config, ConfigError, validate};

/// How many scalars may be read as text (`realm: 2024`) before giving up.
const MAX_COERCIONS: usize = 256;

/// The example every duration error gives: the config's one grammar.
pub const DURATION_EXAMPLE: &str = "a duration like 30s, 5m, 1h30m or 2d";

/// Deserializes and validates the merged tree. `overrides` are the
/// `GATEHOUSE_*` variables that were applied, to name the one behind an
/// error.
pub(super) fn decode(
    mut tree: Value,
    overrides: &[(String, String)],
    flows: &[FlowOverride],
) -> Result<Config, ConfigError> {
    for _ in 0..MAX_COERCIONS {
        let error = match serde_path_to_error::deserialize::<_, Config>(&tree) {
            Ok(config) => {
                validate::check(&config).map_err(|(key, reason)| keyed(key, reason, overrides))?;
                return Ok(config);
            }
            Err(error) => error,
        };
        let reason = error.inner().to_string();
        // A number or boolean where text is expected is read as its text,
        // as YAML users expect (`realm: 2024`, `GATEHOUSE_SERVER__REALM=1`).
        if reason.ends_with("expected a string")
            && let Some(node) = node_at(&mut tree, error.path())
            && let Some(text) = scalar_text(node)
        {
            *node = Value::String(text);
            continue;
        }
        // A flow value given for a key that takes text is that text.
        if reason.ends_with("expected a string")
            && let Some(flow) = flows.iter().find(|f| f.key == path_key(error.path()))
            && let Some(node) = node_at(&mut tree, error.path())
            && (node.is_array() || node.is_object())
        {
            *node = Value::String(flow.raw.clone());
            continue;
        }
        return Err(keyed(path_key(error.path()), polish(&reason), overrides));
    }
    Err(ConfigError::invalid(
        "(top level)",
        "too many values to read as text",
    ))
}

/// The dotted key of a serde path (`jwt.issuers[0].audiences`).
fn path_key(path: &serde_path_to_error::Path) -> String {
    let key = path.to_string();
    if key == "." {
        "(top level)".into()
    } else {
        key
    }
}

/// An error about `key`, naming the environment variable that set it.
fn keyed(key: String, reason: String, overrides: &[(String, String)]) -> ConfigError {
    match overrides.iter().find(|(name, _)| env::key_of(name) == key) {
        Some((name, _)) => ConfigError::InvalidOverride {
            key,
            variable: name.clone(),
            reason: if reason.ends_with("expected a list") {
                format!("{reason}; write a list in YAML flow syntax, e.g. [a, b]")
            } else {
                reason
            },
        },
        None => ConfigError::invalid(key, reason),
    }
}

/// serde_json's wording, in the words of a YAML file.
fn polish(reason: &str) -> String {
    let reason = reason
        .replace("expected a sequence", "expected a list")
        .replace("expected a map", "expected a mapping")
        .replace("invalid type: map", "invalid type: mapping")
        .replace("invalid type: sequence", "invalid type: list")
        .replace(
            "unit variant, expected newtype variant",
            "a bare name, expected a mapping with a value (`name: …`)",
        );
    if reason.ends_with("expected a duration") {
        format!(
            "{}{DURATION_EXAMPLE}",
            reason.trim_end_matches("a duration")
        )
    } else {
        reason
    }
}

/// The node a serde path points at, if the tree has it.
fn node_at<'a>(tree: &'a mut Value, path: &serde_path_to_error::Path) -> Option<&'a mut Value> {
    use serde_path_to_error::Segment;
    let mut node = tree;
    for segment in path.iter() {
        node = match segment {
            Segment::Map { key } | Segment::Enum { variant: key } => node.get_mut(key.as_str())?,
            Segment::Seq { index } => node.get_mut(*index)?,
            Segment::Unknown => return None,
        };
    }
    Some(node)
}

/// A number's or boolean's text.
fn scalar_text(node: &Value) -> Option<String> {
    match node {
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, ConfigSource, ConfigWarning, DEMO_CONFIG, load};

    fn error(yaml: &str, env: &[(&str, &str)]) -> String {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        match load(&ConfigSource::Text(yaml.into()), env) {
            Ok(_) => panic!("accepted: {yaml}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_bare_name_where_an_enum_needs_a_value_is_an_error_not_a_panic() {
        let e = error(
            "jwt:\n  issuers:\n    - issuer: https://x\n      audiences: [a]\n      keys: jwks\n",
            &[],
        );
        assert!(e.starts_with("key `jwt.issuers[0].keys.jwks`: "), "{e}");
        assert!(e.contains("a bare name"), "{e}");
    }

    #[test]
    fn enums_and_sections_list_what_they_accept_under_one_dotted_key() {
        assert_eq!(
            error("policy:\n  default: denied\n", &[]),
            "key `policy.default`: unknown variant `denied`, expected `deny` or `authenticated`"
        );
        assert_eq!(
            error("log:\n  levl: x\n", &[]),
            "key `log.levl`: unknown field `levl`, expected one of `format`, `level`, `decisions`"
        );
        assert_eq!(
            error(
                "jwt:\n  issuers:\n    - issuer: https://x\n      audiences: api\n",
                &[]
            ),
            "key `jwt.issuers[0].audiences`: invalid type: string \"api\", expected a list"
        );
    }

    #[test]
    fn durations_give_an_example() {
        assert_eq!(
            error("server:\n  drain_timeout: soon\n", &[]),
            "key `server.drain_timeout`: invalid value: string \"soon\", expected a duration like 30s, 5m, 1h30m or 2d"
        );
    }

    #[test]
    fn an_error_from_the_environment_names_the_variable() {
        let e = error("", &[("GATEHOUSE_SERVER__DRAIN_TIMEOUT", "xx")]);
        assert!(
            e.starts_with("key `server.drain_timeout` (set by environment variable `GATEHOUSE_SERVER__DRAIN_TIMEOUT`): "),
            "{e}"
        );
        let from_file = load(
            &ConfigSource::Text("server:\n  drain_timeout: xx\n".into()),
            [],
        );
        assert!(matches!(from_file, Err(ConfigError::Invalid { .. })));
    }

    #[test]
    fn lists_and_mappings_come_from_the_environment_in_flow_syntax() {
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let config = load(
            &ConfigSource::Text(String::new()),
            env(&[
                (
                    "GATEHOUSE_NETWORK__TRUSTED_PROXIES",
                    "[10.0.0.0/8, 192.168.0.0/16]",
                ),
                ("GATEHOUSE_SERVER__GRPC_ADDR", "[::1]:9191"),
                ("GATEHOUSE_SERVER__REALM", "[not a list]"),
            ]),
        )
        .expect("flow overrides");
        assert_eq!(config.network.trusted_proxies.len(), 2);
        assert_eq!(config.server.grpc_addr.to_string(), "[::1]:9191");
        assert_eq!(config.server.realm, "[not a list]");
        let issuer = "jwt:\n  issuers:\n    - issuer: https://x\n      audiences: [a]\n      algorithms: [RS256]\n      keys: {jwks_uri: https://x/jwks}\n";
        let config = load(
            &ConfigSource::Text(issuer.into()),
            env(&[("GATEHOUSE_JWT__ISSUERS__0__AUDIENCES", "[b, c]")]),
        )
        .expect("a list inside a list element");
        assert_eq!(config.jwt.issuers[0].audiences, ["b", "c"]);
        let e = error(
            "",
            &[(
                "GATEHOUSE_NETWORK__TRUSTED_PROXIES",
                "10.0.0.0/8,10.1.0.0/16",
            )],
        );
        assert!(
            e.starts_with("key `network.trusted_proxies` (set by environment variable `GATEHOUSE_NETWORK__TRUSTED_PROXIES`): "),
            "{e}"
        );
        assert!(
            e.ends_with("write a list in YAML flow syntax, e.g. [a, b]"),
            "{e}"
        );
    }

    #[test]
    fn numbers_are_read_as_text_where_text_is_expected() {
        let config = load(&ConfigSource::Text("server:\n  realm: 2024\n".into()), [])
            .expect("a number as the realm");
        assert_eq!(config.server.realm, "2024");
        let env = [("GATEHOUSE_SERVER__REALM".to_string(), "true".to_string())];
        let config = load(&ConfigSource::Text(String::new()), env).expect("a boolean as the realm");
        assert_eq!(config.server.realm, "true");
    }

    #[test]
    fn an_invalid_log_level_is_a_config_error() {
        let e = error("log:\n  level: warning\n", &[]);
        assert!(
            e.starts_with("key `log.level`: \"warning\" is not a level"),
            "{e}"
        );
        let e = error("", &[("GATEHOUSE_LOG__LEVEL", "info,gatehouse=loud")]);
        assert!(e.contains("GATEHOUSE_LOG__LEVEL"), "{e}");
        load(
            &ConfigSource::Text("log:\n  level: info,gatehouse::decision=debug\n".into()),
            [],
        )
        .expect("directives");
    }

    #[test]
    fn warnings_for_configurations_that_refuse_everything() {
        let empty = load(&ConfigSource::Text(String::new()), []).expect("empty is valid");
        assert_eq!(
            empty.warnings(),
            vec![
                ConfigWarning::NoCredentials,
                ConfigWarning::EverythingDenied
            ]
        );
        let demo = load(&ConfigSource::Text(DEMO_CONFIG.into()), []).expect("demo");
        assert!(demo.warnings().is_empty());
    }
}
