//! The Helm chart's copy of the schema: the `config` property of
//! `charts/gatehouse/values.schema.json` (the configuration file the chart
//! renders), generated from [`super::schema`] and written into the file
//! by `gatehouse config schema --chart FILE`. The rest of the file (the
//! chart's own values) is kept byte for byte.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::schema;

/// Where the chart's values schema is checked in, relative to the
/// repository.
pub const CHART_SCHEMA_PATH: &str = "charts/gatehouse/values.schema.json";

/// The command that regenerates its `config` property.
pub const REGENERATE: &str =
    "cargo run -- config schema --chart charts/gatehouse/values.schema.json";

/// The opening line of the `config` property in the values schema (a
/// top-level property, so indented twice).
const CONFIG_OPENING: &str = "\n    \"config\": {\n";

/// Why the chart's values schema could not be updated.
#[derive(Debug, thiserror::Error)]
pub enum ChartSchemaError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The values schema.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("not a JSON document: {0}")]
    Json(#[from] serde_json::Error),
    /// The file has no `properties.config` written as this generator
    /// writes it (one top-level property, two-space indentation).
    #[error(
        "no top-level `\"config\": {{ … }}` property (indented by four spaces) to replace: {0}"
    )]
    NoConfigProperty(&'static str),
}

/// The `config` property of the chart's values schema: the configuration
/// schema in draft 07, definitions inlined, adapted to what the chart
/// does with it.
pub fn chart_config_schema() -> Value {
    let mut config = schema::inlined_draft07();
    if let Some(object) = config.as_object_mut() {
        object.remove("$schema");
        object.remove("title");
        object.insert(
            "description".into(),
            json!(
                "gatehouse's configuration file. Generated from gatehouse's configuration types by `gatehouse config schema --chart` (docs/configuration.md lists every key). The chart sets server.grpc_addr and server.http_addr from listenAddress and ports, and issuer.signing_keys from secrets.signingKeys."
            ),
        );
    }
    adapt(&mut config);
    if let Some(server) = config.pointer_mut("/properties/server/properties") {
        for (key, port) in [("grpc_addr", "grpc"), ("http_addr", "http")] {
            append_description(
                server.get_mut(key),
                &format!("Set by the chart from listenAddress and ports.{port}."),
            );
        }
    }
    // The chart fills `signing_keys` from `secrets.signingKeys`.
    if let Some(Value::Array(required)) = config.pointer_mut("/properties/issuer/required") {
        required.retain(|key| key != "signing_keys");
    }
    config
}

/// Per schema: an enum of constants as `enum` (so Helm's error lists the
/// values); an unsigned integer also as a string of digits (Helm prints
/// large integers in exponent form unless they are quoted, and gatehouse
/// reads a quoted number as a number); no non-standard `format`.
fn adapt(value: &mut Value) {
    match value {
        Value::Object(object) => {
            object.values_mut().for_each(adapt);
            constants_as_enum(object);
            if object.get("format").and_then(Value::as_str).is_some() {
                object.remove("format");
            }
            integer_or_digits(object);
        }
        Value::Array(items) => items.iter_mut().for_each(adapt),
        _ => {}
    }
}

fn constants_as_enum(object: &mut Map<String, Value>) {
    let Some(Value::Array(choices)) = object.get("oneOf") else {
        return;
    };
    let constants: Option<Vec<Value>> = choices.iter().map(|c| c.get("const").cloned()).collect();
    if let Some(constants) = constants {
        object.remove("oneOf");
        object.insert("type".into(), json!("string"));
        object.insert("enum".into(), Value::Array(constants));
    }
}

fn integer_or_digits(object: &mut Map<String, Value>) {
    let unsigned = object.get("type") == Some(&json!("integer"))
        && object.get("minimum").and_then(Value::as_f64) == Some(0.0);
    if !unsigned {
        return;
    }
    let integer = json!({"type": "integer", "minimum": 0});
    let digits = json!({"type": "string", "pattern": "^[0-9]+$"});
    object.remove("type");
    object.remove("minimum");
    object.insert("anyOf".into(), json!([integer, digits]));
}

fn append_description(schema: Option<&mut Value>, text: &str) {
    if let Some(Value::Object(object)) = schema {
        let description = match object.get("description").and_then(Value::as_str) {
            Some(own) => format!("{own} {text}"),
            None => text.to_string(),
        };
        object.insert("description".into(), json!(description));
    }
}

/// The chart's values schema `text` with its `config` property replaced by
/// [`chart_config_schema`], everything else as it was.
pub fn splice(text: &str) -> Result<String, ChartSchemaError> {
    let original: Value = serde_json::from_str(text)?;
    let generated = chart_config_schema();
    let start = match text.match_indices(CONFIG_OPENING).collect::<Vec<_>>()[..] {
        [(at, _)] => at + 1,
        [] => return Err(ChartSchemaError::NoConfigProperty("none found")),
        _ => return Err(ChartSchemaError::NoConfigProperty("more than one")),
    };
    let body = start + CONFIG_OPENING.len() - 1;
    let end = text[body..]
        .find("\n    }")
        .map(|at| body + at + "\n    }".len())
        .ok_or(ChartSchemaError::NoConfigProperty("no closing brace"))?;
    let rendered = serde_json::to_string_pretty(&generated)?.replace('\n', "\n    ");
    let spliced = format!(
        "{}    \"config\": {rendered}{}",
        &text[..start],
        &text[end..]
    );
    // The splice replaced exactly the `config` property.
    let mut expected = original;
    if let Some(config) = expected.pointer_mut("/properties/config") {
        *config = generated;
    }
    if serde_json::from_str::<Value>(&spliced).ok().as_ref() != Some(&expected) {
        return Err(ChartSchemaError::NoConfigProperty(
            "replacing it would change more than that property",
        ));
    }
    Ok(spliced)
}

/// Rewrites the `config` property of the values schema at `path`; `false`
/// when it was already up to date.
pub fn update_file(path: &Path) -> Result<bool, ChartSchemaError> {
    let io = |source| ChartSchemaError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let spliced = splice(&text)?;
    if spliced == text {
        return Ok(false);
    }
    std::fs::write(path, spliced).map_err(io)?;
    Ok(true)
}
