//! Merging backend documents into one: paths under each backend's mount
//! point, components renamed deterministically on collision (every `$ref`
//! rewritten), operationIds kept unique, tags unioned, and the security
//! schemes gatehouse enforces declared. A pure function: no I/O.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use super::OpenApiError;
use super::refs::{Renames, SECTIONS};
use super::upgrade;
use crate::config::SecuritySchemeConfig;

/// HTTP methods of a path item.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// One backend's document, ready to merge.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Short name, prefixed to colliding component names.
    pub name: String,
    /// Mount point: `/builds`, or empty for the root.
    pub mount: String,
    /// The document.
    pub document: Value,
}

/// What the merged document says about itself.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `info.title`.
    pub title: String,
    /// `info.version`.
    pub version: String,
    /// `info.description`.
    pub description: Option<String>,
    /// `servers[].url`.
    pub servers: Vec<String>,
    /// Security schemes gatehouse enforces (alternatives).
    pub security: Vec<SecuritySchemeConfig>,
}

/// Merges `backends`, in order, into one OpenAPI 3.1 document.
pub fn merge(backends: Vec<Backend>, settings: &Settings) -> Result<Value, OpenApiError> {
    let mut paths = Map::new();
    let mut webhooks = Map::new();
    let mut components: HashMap<&str, Map<String, Value>> = HashMap::new();
    let mut operation_ids: BTreeSet<String> = BTreeSet::new();
    let mut tags: Vec<Value> = Vec::new();

    for backend in backends {
        let name = backend.name.clone();
        let in_backend = |e: OpenApiError| OpenApiError::Backend(name.clone(), Box::new(e));
        let mut doc = backend.document;
        check_version(&doc).map_err(in_backend)?;
        upgrade::upgrade(&mut doc).map_err(in_backend)?;

        let mut renames = Renames {
            mount: backend.mount.clone(),
            ..Renames::default()
        };
        for section in SECTIONS {
            let Some(Value::Object(entries)) = doc.pointer(&format!("/components/{section}"))
            else {
                continue;
            };
            let taken = components.entry(section).or_default();
            let mut changes = HashMap::new();
            for key in entries.keys() {
                if taken.contains_key(key) {
                    let new = unique(&format!("{}_{key}", backend.name), |n| {
                        taken.contains_key(n) || entries.contains_key(n)
                    });
                    changes.insert(key.clone(), new);
                }
            }
            renames.components.insert((*section).to_string(), changes);
        }
        for id in operation_ids_of(&doc) {
            if operation_ids.contains(&id) {
                let new = unique(&format!("{}_{id}", backend.name), |n| {
                    operation_ids.contains(n)
                });
                renames.operation_ids.insert(id, new);
            }
        }
        renames.rewrite(&mut doc).map_err(in_backend)?;

        let Value::Object(mut doc) = doc else {
            return Err(in_backend(OpenApiError::Invalid(
                "not a JSON object".into(),
            )));
        };
        if let Some(Value::Object(items)) = doc.remove("paths") {
            for (path, mut item) in items {
                if !path.starts_with('/') {
                    return Err(in_backend(OpenApiError::Invalid(format!(
                        "path {path:?} does not start with '/'"
                    ))));
                }
                strip_backend_settings(&mut item);
                collect_operation_ids(&item, &mut operation_ids);
                let mounted = format!("{}{path}", backend.mount);
                if paths.insert(mounted.clone(), item).is_some() {
                    return Err(in_backend(OpenApiError::DuplicatePath(mounted)));
                }
            }
        }
        if let Some(Value::Object(items)) = doc.remove("webhooks") {
            for (hook, mut item) in items {
                strip_backend_settings(&mut item);
                collect_operation_ids(&item, &mut operation_ids);
                let key = if webhooks.contains_key(&hook) {
                    unique(&format!("{}_{hook}", backend.name), |n| {
                        webhooks.contains_key(n)
                    })
                } else {
                    hook
                };
                webhooks.insert(key, item);
            }
        }
        if let Some(Value::Object(mut sections)) = doc.remove("components") {
            for section in SECTIONS {
                // Backends' own schemes are not what clients of the
                // gateway use: gatehouse's are declared below.
                if *section == "securitySchemes" {
                    continue;
                }
                let Some(Value::Object(entries)) = sections.remove(*section) else {
                    continue;
                };
                let merged = components.entry(section).or_default();
                for (key, value) in entries {
                    let new = renames.component(section, &key).to_string();
                    merged.insert(new, value);
                }
            }
        }
        if let Some(Value::Array(list)) = doc.remove("tags") {
            for tag in list {
                let name = tag.get("name").and_then(Value::as_str);
                if name.is_some_and(|n| !tags.iter().any(|t| t["name"] == n)) {
                    tags.push(tag);
                }
            }
        }
    }

    let mut out = Map::new();
    out.insert("openapi".into(), json!("3.1.0"));
    let mut info = Map::new();
    info.insert("title".into(), json!(settings.title));
    info.insert("version".into(), json!(settings.version));
    if let Some(d) = &settings.description {
        info.insert("description".into(), json!(d));
    }
    out.insert("info".into(), Value::Object(info));
    if !settings.servers.is_empty() {
        let servers: Vec<Value> = settings.servers.iter().map(|u| json!({"url": u})).collect();
        out.insert("servers".into(), Value::Array(servers));
    }
    out.insert("paths".into(), Value::Object(paths));
    if !webhooks.is_empty() {
        out.insert("webhooks".into(), Value::Object(webhooks));
    }
    let (schemes, requirements) = security(&settings.security);
    let mut comps = Map::new();
    for (section, entries) in components {
        if !entries.is_empty() {
            comps.insert(section.to_string(), Value::Object(entries));
        }
    }
    if !schemes.is_empty() {
        comps.insert("securitySchemes".into(), Value::Object(schemes));
        out.insert("security".into(), Value::Array(requirements));
    }
    if !comps.is_empty() {
        out.insert("components".into(), Value::Object(comps));
    }
    if !tags.is_empty() {
        out.insert("tags".into(), Value::Array(tags));
    }
    Ok(Value::Object(out))
}

/// OpenAPI 3.0.x or 3.1.x.
fn check_version(doc: &Value) -> Result<(), OpenApiError> {
    match doc.get("openapi").and_then(Value::as_str) {
        Some(v) if v.starts_with("3.0.") || v.starts_with("3.1.") => Ok(()),
        Some(v) => Err(OpenApiError::Invalid(format!(
            "OpenAPI {v} is not supported (3.0.x and 3.1.x are)"
        ))),
        None => Err(OpenApiError::Invalid(
            "no `openapi` version field: not an OpenAPI 3 document".into(),
        )),
    }
}

/// `base`, or `base_2`, `base_3`, … : the first name `taken` refuses not.
fn unique(base: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(base) {
        return base.to_string();
    }
    (2..)
        .map(|i| format!("{base}_{i}"))
        .find(|n| !taken(n))
        .unwrap_or_else(|| base.to_string())
}

/// Every operationId in the document's paths and webhooks.
fn operation_ids_of(doc: &Value) -> Vec<String> {
    let mut ids = BTreeSet::new();
    for key in ["paths", "webhooks"] {
        if let Some(Value::Object(items)) = doc.get(key) {
            for item in items.values() {
                collect_operation_ids(item, &mut ids);
            }
        }
    }
    ids.into_iter().collect()
}

fn collect_operation_ids(item: &Value, ids: &mut BTreeSet<String>) {
    for method in METHODS {
        if let Some(id) = item
            .get(method)
            .and_then(|op| op.get("operationId"))
            .and_then(Value::as_str)
        {
            ids.insert(id.to_string());
        }
    }
}

/// Drops what points at the backend itself: `servers` (internal
/// addresses) and `security` (the backend's own schemes).
fn strip_backend_settings(item: &mut Value) {
    let Value::Object(map) = item else { return };
    map.remove("servers");
    for method in METHODS {
        if let Some(Value::Object(op)) = map.get_mut(*method) {
            op.remove("servers");
            op.remove("security");
        }
    }
}

/// The schemes and the top-level `security` (any one of them suffices).
fn security(kinds: &[SecuritySchemeConfig]) -> (Map<String, Value>, Vec<Value>) {
    let mut schemes = Map::new();
    let mut requirements = Vec::new();
    for kind in kinds {
        let (name, scheme) = match kind {
            SecuritySchemeConfig::MutualTls => (
                "mutualTLS",
                json!({"type": "mutualTLS",
                       "description": "A client certificate from a trusted CA, presented in the TLS handshake."}),
            ),
            SecuritySchemeConfig::Bearer => (
                "bearerAuth",
                json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                       "description": "A JWT from a trusted issuer: `Authorization: Bearer <token>`."}),
            ),
        };
        if !schemes.contains_key(name) {
            schemes.insert(name.into(), scheme);
            requirements.push(json!({ name: [] }));
        }
    }
    (schemes, requirements)
}

#[cfg(test)]
mod tests;
