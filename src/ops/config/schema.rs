//! The JSON Schema of the configuration file, derived from the config
//! types (`schemars`: their doc comments are the descriptions), and the
//! walk over its keys that the reference and the tests share.

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::config::Config;

/// The `x-reload` extension: how a change of a key reaches a running
/// gatehouse. Set on a key in `src/config/` with
/// `#[schemars(extend("x-reload" = "restart"))]`; a key without it has its
/// section's value, and every top-level section says it explicitly.
pub const RELOAD_KEYWORD: &str = "x-reload";

/// How a change of a key reaches a running gatehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// A hot reload (SIGHUP or a change of the watched file) applies it.
    Live,
    /// Read only at start: a reload keeps the value in force and reports
    /// the key (log, `gatehouse_config_restart_required`).
    Restart,
}

impl Reload {
    /// `live` or `restart`, as written in the schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Reload::Live => "live",
            Reload::Restart => "restart",
        }
    }

    fn parse(value: &Value) -> Option<Reload> {
        match value.as_str()? {
            "live" => Some(Reload::Live),
            "restart" => Some(Reload::Restart),
            _ => None,
        }
    }
}

/// The configuration's JSON Schema (draft 2020-12), what
/// `gatehouse config schema` prints: editors complete and check a config
/// file with it.
pub fn schema() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator();
    let mut root = generator.into_root_schema_for::<Config>().to_value();
    finish(&mut root);
    root
}

/// The schema with every definition inlined (no `$ref`), in draft 07 (the
/// chart's `values.schema.json` embeds it).
pub fn inlined_draft07() -> Value {
    let generator = SchemaSettings::draft07()
        .for_deserialize()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let mut root = generator.into_root_schema_for::<Config>().to_value();
    finish(&mut root);
    root
}

/// Title, description, `x-reload` on every top-level section, and no
/// `default: null` (an absent optional key is documented as absent).
fn finish(root: &mut Value) {
    if let Some(object) = root.as_object_mut() {
        object.insert("title".into(), json!("gatehouse configuration"));
        object.insert(
            "description".into(),
            json!(
                "The gatehouse configuration file (YAML). Generated from gatehouse's configuration types by `gatehouse config schema`. `x-reload` on a key: `live` (a hot reload applies a change) or `restart` (read only at start); a key without it has its section's."
            ),
        );
        if let Some(Value::Object(sections)) = object.get_mut("properties") {
            for section in sections.values_mut().filter_map(Value::as_object_mut) {
                section
                    .entry(RELOAD_KEYWORD)
                    .or_insert_with(|| json!(Reload::Live.as_str()));
            }
        }
    }
    drop_null_defaults(root);
}

fn drop_null_defaults(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if object.get("default").is_some_and(Value::is_null) {
                object.remove("default");
            } else if let Some(default) = object.get_mut("default") {
                drop_null_entries(default);
            }
            object.values_mut().for_each(drop_null_defaults);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null_defaults),
        _ => {}
    }
}

/// An object default lists only the keys it sets.
fn drop_null_entries(value: &mut Value) {
    if let Value::Object(entries) = value {
        entries.retain(|_, v| !v.is_null());
        entries.values_mut().for_each(drop_null_entries);
    }
}

/// One key of the configuration file, as the reference lists it.
#[derive(Debug, Clone)]
pub struct Key<'a> {
    /// The dotted path, `[]` for "every element of a list", e.g.
    /// `jwt.issuers[].audiences`.
    pub path: String,
    /// The key's schema, `$ref` and `null` alternatives resolved.
    pub schema: &'a Value,
    /// The description of the key (the field's doc comment, else its
    /// type's).
    pub description: Option<&'a str>,
    /// Its default value, if it has one.
    pub default: Option<&'a Value>,
    /// Whether the key must be present (in its enclosing object).
    pub required: bool,
    /// Whether a `null` is accepted (an optional key).
    pub nullable: bool,
    /// How a change reaches a running gatehouse.
    pub reload: Reload,
    /// The environment variable that sets it, if one can.
    pub env: Option<String>,
    /// Its type in words, e.g. `list of string` or `` `text` | `json` ``.
    pub type_label: String,
    /// Whether keys of its own follow it (a section, an object, a list
    /// of objects).
    pub has_children: bool,
}

/// Every key of `schema` (as [`schema`] returns it), depth first in the
/// order of the types' fields.
pub fn keys(schema: &Value) -> Vec<Key<'_>> {
    let mut out = Vec::new();
    let walk = Walk { root: schema };
    walk.object(schema, &Place::root(), &mut out);
    out
}

/// Where the walk is: the path so far and what it implies.
#[derive(Clone)]
struct Place {
    /// Path segments; `[]` marks a list element, `<name>` a map entry.
    segments: Vec<String>,
    reload: Reload,
    /// Inside a list or a map: no environment variable reaches it.
    in_collection: bool,
}

impl Place {
    fn root() -> Place {
        Place {
            segments: Vec::new(),
            reload: Reload::Live,
            in_collection: false,
        }
    }

    fn path(&self) -> String {
        let mut path = String::new();
        for segment in &self.segments {
            if !path.is_empty() && segment != "[]" {
                path.push('.');
            }
            path.push_str(segment);
        }
        path
    }
}

struct Walk<'a> {
    root: &'a Value,
}

impl<'a> Walk<'a> {
    /// `$ref` followed (within this document).
    fn resolve(&self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => reference
                .strip_prefix('#')
                .and_then(|pointer| self.root.pointer(pointer))
                .map_or(schema, |target| self.resolve(target)),
            None => schema,
        }
    }

    /// The schema with `$ref`s, a `null` alternative and a single-entry
    /// `allOf` looked through; and whether `null` was one of the choices.
    fn unwrap(&self, schema: &'a Value) -> (&'a Value, bool) {
        let schema = self.resolve(schema);
        for keyword in ["anyOf", "oneOf"] {
            if let Some(Value::Array(choices)) = schema.get(keyword) {
                let (nulls, others): (Vec<_>, Vec<_>) = choices
                    .iter()
                    .partition(|c| c.get("type").and_then(Value::as_str) == Some("null"));
                if !nulls.is_empty() && others.len() == 1 {
                    return (self.unwrap(others[0]).0, true);
                }
            }
        }
        if let Some(Value::Array(all)) = schema.get("allOf")
            && all.len() == 1
        {
            return self.unwrap(&all[0]);
        }
        let nullable = match schema.get("type") {
            Some(Value::Array(types)) => types.iter().any(|t| t == "null"),
            _ => false,
        };
        (schema, nullable)
    }

    /// The keys of an object schema (its properties, or the single key of
    /// each object alternative of a tagged enum).
    fn object(&self, schema: &'a Value, place: &Place, out: &mut Vec<Key<'a>>) {
        let (schema, _) = self.unwrap(schema);
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(Value::Object(properties)) = schema.get("properties") {
            for (name, property) in properties {
                let required = required.contains(&name.as_str());
                self.key(name, property, required, None, place, out);
            }
        }
        for keyword in ["oneOf", "anyOf"] {
            for choice in schema
                .get(keyword)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                // A tagged variant: its one key is one of several choices.
                let choice = self.resolve(choice);
                if let Some(Value::Object(properties)) = choice.get("properties") {
                    let about = choice.get("description").and_then(Value::as_str);
                    for (name, property) in properties {
                        self.key(name, property, false, about, place, out);
                    }
                }
            }
        }
    }

    fn key(
        &self,
        name: &str,
        property: &'a Value,
        required: bool,
        variant_description: Option<&'a str>,
        parent: &Place,
        out: &mut Vec<Key<'a>>,
    ) {
        let (schema, nullable) = self.unwrap(property);
        let reload = property
            .get(RELOAD_KEYWORD)
            .or_else(|| schema.get(RELOAD_KEYWORD))
            .and_then(Reload::parse)
            .unwrap_or(parent.reload);
        let mut place = parent.clone();
        place.segments.push(name.to_string());
        place.reload = reload;
        // The field's doc comment, else the enum variant's, else its type's.
        let description = property
            .get("description")
            .and_then(Value::as_str)
            .or(variant_description)
            .or_else(|| schema.get("description").and_then(Value::as_str));
        let default = property.get("default").or_else(|| schema.get("default"));
        out.push(Key {
            path: place.path(),
            schema,
            description,
            default,
            required,
            nullable,
            reload,
            env: env_var(&place, self.is_scalar(schema)),
            type_label: self.label(schema),
            has_children: self.has_keys(schema)
                || schema
                    .get("items")
                    .is_some_and(|items| self.has_keys(items)),
        });
        self.children(schema, &place, out);
    }

    /// The keys below a value: an object's, a list element's, a map
    /// entry's.
    fn children(&self, schema: &'a Value, place: &Place, out: &mut Vec<Key<'a>>) {
        let (schema, _) = self.unwrap(schema);
        if let Some(items) = schema.get("items") {
            let (items, _) = self.unwrap(items);
            if self.has_keys(items) {
                let mut place = place.clone();
                place.segments.push("[]".into());
                place.in_collection = true;
                self.object(items, &place, out);
            }
        } else if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            let (values, _) = self.unwrap(values);
            if self.has_keys(values) {
                let mut place = place.clone();
                place.segments.push("<name>".into());
                place.in_collection = true;
                self.object(values, &place, out);
            }
        } else {
            self.object(schema, place, out);
        }
    }

    /// Whether a schema has keys of its own (properties, or tagged
    /// variants that do).
    fn has_keys(&self, schema: &'a Value) -> bool {
        let (schema, _) = self.unwrap(schema);
        schema.get("properties").is_some()
            || ["oneOf", "anyOf"].iter().any(|keyword| {
                schema
                    .get(*keyword)
                    .and_then(Value::as_array)
                    .is_some_and(|choices| {
                        choices
                            .iter()
                            .any(|c| self.resolve(c).get("properties").is_some())
                    })
            })
    }

    /// A schema's type in words.
    fn label(&self, schema: &'a Value) -> String {
        let (schema, _) = self.unwrap(schema);
        if schema.as_bool() == Some(true) {
            return "any".into();
        }
        if let Some(Value::Array(values)) = schema.get("enum") {
            return values.iter().map(code).collect::<Vec<_>>().join(" | ");
        }
        if let Some(title) = schema.get("title").and_then(Value::as_str) {
            return title.into();
        }
        for keyword in ["oneOf", "anyOf"] {
            if let Some(Value::Array(choices)) = schema.get(keyword) {
                return choices
                    .iter()
                    .map(|choice| self.choice_label(choice))
                    .collect::<Vec<_>>()
                    .join(" | ");
            }
        }
        let kind = match schema.get("type") {
            Some(Value::String(kind)) => kind.as_str(),
            Some(Value::Array(kinds)) => kinds
                .iter()
                .filter_map(Value::as_str)
                .find(|k| *k != "null")
                .unwrap_or("null"),
            _ => "any",
        };
        match kind {
            "array" => match schema.get("items") {
                Some(items) => format!("list of {}", self.label(items)),
                None => "list".into(),
            },
            "object" => match schema.get("additionalProperties") {
                Some(values) if values.is_object() => {
                    format!("map of name → {}", self.label(values))
                }
                _ => "object".into(),
            },
            "integer" if schema.get("minimum").and_then(Value::as_f64) == Some(0.0) => {
                "integer ≥ 0".into()
            }
            "number" => match (
                schema.get("minimum").and_then(Value::as_f64),
                schema.get("maximum").and_then(Value::as_f64),
            ) {
                (Some(min), Some(max)) => format!("number, {min} to {max}"),
                _ => "number".into(),
            },
            other => other.into(),
        }
    }

    /// One alternative of a `oneOf`/`anyOf`: a constant, a tagged
    /// variant (`{name: type}`), or a type.
    fn choice_label(&self, choice: &'a Value) -> String {
        let choice = self.resolve(choice);
        if let Some(constant) = choice.get("const") {
            return code(constant);
        }
        if let Some(Value::Object(properties)) = choice.get("properties")
            && properties.len() == 1
            && let Some((name, value)) = properties.iter().next()
        {
            return format!("`{{{name}: …}}` ({})", self.label(value));
        }
        self.label(choice)
    }

    /// A value one environment variable can hold: not a list, a map or an
    /// object with keys of its own.
    fn is_scalar(&self, schema: &'a Value) -> bool {
        let (schema, _) = self.unwrap(schema);
        let is_type = |t: &str| match schema.get("type") {
            Some(Value::String(s)) => s == t,
            Some(Value::Array(types)) => types.iter().any(|x| x == t),
            _ => false,
        };
        !is_type("array") && !is_type("object") && !self.has_keys(schema)
    }
}

/// The `GATEHOUSE_*` variable that overrides the key at `place`
/// (`crate::config::load`: the `GATEHOUSE_` prefix, `__` between levels,
/// names matched case-insensitively): none for a key inside a list or a
/// map, nor for a list, map or section itself, whose values an environment
/// variable cannot spell.
fn env_var(place: &Place, scalar: bool) -> Option<String> {
    if place.in_collection || !scalar || place.segments.len() < 2 {
        return None;
    }
    Some(format!(
        "{}{}",
        crate::config::ENV_PREFIX,
        place
            .segments
            .join(crate::config::ENV_SEPARATOR)
            .to_ascii_uppercase()
    ))
}

/// A JSON value as inline code: `text`, `30s`, `true`, `[a, b]`.
pub fn code(value: &Value) -> String {
    format!("`{}`", plain(value))
}

/// A JSON value written as in YAML flow style (strings unquoted).
pub fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(plain).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(k, v)| format!("{k}: {}", plain(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}
