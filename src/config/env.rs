//! `GATEHOUSE_*` environment overrides: which variables are ours, the key
//! each one sets, and values written as YAML flow lists or mappings.
//!
//! A variable names a key by its path in upper case with `__` between
//! levels; a number picks an element of a list the file already has:
//! `GATEHOUSE_LOG__LEVEL` sets `log.level`,
//! `GATEHOUSE_JWT__ISSUERS__0__AUDIENCES` sets `jwt.issuers[0].audiences`.
//! A value is one scalar, or, for a key that takes a list or a mapping,
//! YAML flow syntax that replaces the file's value whole:
//! `GATEHOUSE_NETWORK__TRUSTED_PROXIES='[10.0.0.0/8, 192.168.0.0/16]'`,
//! `GATEHOUSE_SCOPES__GROUP_MAPPING='{admins: [admin:all]}'`, `[]` for an
//! empty list. A value that only looks like flow syntax (`[::1]:9191`)
//! stays text; so does a flow value given for a key that takes text.

use yaml_rust2::{Yaml, YamlLoader};

/// Prefix of every override variable.
pub const ENV_PREFIX: &str = "GATEHOUSE_";
/// Separator between the levels of a key in a variable's name.
pub const ENV_SEPARATOR: &str = "__";

/// Whether an environment variable is a configuration override: the
/// prefix and at least one `__`, because every key lives in a section
/// (`GATEHOUSE_SERVER__GRPC_ADDR`). Other `GATEHOUSE_*` variables, such as
/// `GATEHOUSE_CONFIG` or the `GATEHOUSE_SERVICE_HOST` / `GATEHOUSE_PORT`
/// links Kubernetes injects for a Service named `gatehouse`, are not ours.
pub(super) fn is_override(name: &str) -> bool {
    name.strip_prefix(ENV_PREFIX)
        .is_some_and(|rest| rest.contains(ENV_SEPARATOR))
}

/// An override whose value is a YAML flow list or mapping.
#[derive(Debug, Clone)]
pub(super) struct FlowOverride {
    /// The key it sets, as the `config` crate and error messages write
    /// it: `jwt.issuers[0].audiences`.
    pub key: String,
    /// The value as given, used as text if the key takes text.
    pub raw: String,
    /// The variable.
    pub variable: String,
    /// The parsed value.
    pub value: serde_json::Value,
}

/// The key a variable sets: `GATEHOUSE_JWT__ISSUERS__0__AUDIENCES` →
/// `jwt.issuers[0].audiences`.
pub(super) fn key_of(variable: &str) -> String {
    let rest = variable.strip_prefix(ENV_PREFIX).unwrap_or(variable);
    let mut key = String::new();
    for part in rest.split(ENV_SEPARATOR).map(str::to_ascii_lowercase) {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            key.push_str(&format!("[{part}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(&part);
        }
    }
    key
}

/// The flow value of an override, if its text is a YAML flow list or
/// mapping (and nothing else).
pub(super) fn flow(variable: &str, text: &str) -> Option<FlowOverride> {
    let trimmed = text.trim_start();
    if !(trimmed.starts_with('[') || trimmed.starts_with('{')) {
        return None;
    }
    let docs = YamlLoader::load_from_str(text).ok()?;
    let [doc] = docs.as_slice() else {
        return None;
    };
    if !matches!(doc, Yaml::Array(_) | Yaml::Hash(_)) {
        return None;
    }
    Some(FlowOverride {
        key: key_of(variable),
        raw: text.to_string(),
        variable: variable.to_string(),
        value: to_value(doc),
    })
}

/// A YAML node as JSON.
fn to_value(yaml: &Yaml) -> serde_json::Value {
    use serde_json::Value;
    match yaml {
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(text.clone()), Value::Number),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(to_value).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (scalar_key(k), to_value(v)))
                .collect(),
        ),
        Yaml::Null | Yaml::Alias(_) | Yaml::BadValue => Value::Null,
    }
}

impl FlowOverride {
    /// Sets the value in the merged tree. Sections on the way are created;
    /// a list index must name an element the tree has.
    pub(super) fn apply(&self, tree: &mut serde_json::Value) -> Result<(), String> {
        let name = self
            .variable
            .strip_prefix(ENV_PREFIX)
            .unwrap_or(&self.variable);
        let mut node = tree;
        for part in name.split(ENV_SEPARATOR).map(str::to_ascii_lowercase) {
            if node.is_null() {
                *node = serde_json::Value::Object(serde_json::Map::new());
            }
            node = match node {
                serde_json::Value::Array(items) => {
                    let index: usize = part
                        .parse()
                        .map_err(|_| format!("`{part}` is not an index of a list"))?;
                    let len = items.len();
                    items.get_mut(index).ok_or_else(|| {
                        format!("index {index} is out of range: the list has {len} element(s)")
                    })?
                }
                serde_json::Value::Object(map) => {
                    map.entry(part).or_insert(serde_json::Value::Null)
                }
                _ => return Err("it names a key below a single value".into()),
            };
        }
        *node = self.value.clone();
        Ok(())
    }
}

/// A mapping key as text.
fn scalar_key(yaml: &Yaml) -> String {
    match yaml {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        _ => String::new(),
    }
}
