//! The aggregated OpenAPI document: `gatehouse openapi merge` fetches (or
//! reads) every backend's OpenAPI 3 document and merges them into one,
//! served by Envoy (see `envoy/envoy-mtls.yaml`, route `/openapi.json`).

pub mod merge;
pub mod refs;
pub mod upgrade;
pub mod yaml;

use std::path::Path;

use serde_json::Value;

use crate::config::{Config, ConfigSource, OpenApiConfig, SecuritySchemeConfig, resolve_path};
use crate::model::path;

/// Deepest nesting walked in a document.
pub const MAX_DEPTH: usize = 256;
/// Largest backend document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 16 << 20;

/// Why the merged document could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    /// The configuration has no `openapi` section, or an invalid one.
    #[error("key `{key}`: {reason}")]
    Config {
        /// The offending key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A backend's document could not be fetched or read.
    #[error("{0}")]
    Fetch(String),
    /// A document is neither JSON nor YAML.
    #[error("not JSON or YAML: {0}")]
    Parse(String),
    /// A document is not a usable OpenAPI 3 document.
    #[error("{0}")]
    Invalid(String),
    /// A `$ref` to another document.
    #[error("external $ref {0:?} is not supported: bundle the document first")]
    ExternalRef(String),
    /// Two backends serve the same path.
    #[error("path {0} is served by two backends")]
    DuplicatePath(String),
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("document nested too deeply")]
    TooDeep,
    /// An error in one backend's document.
    #[error("backend {0}: {1}")]
    Backend(String, Box<OpenApiError>),
}

/// Keys whose value is a map of user-chosen names (property names,
/// component names, paths, status codes, media types), not keywords;
/// every component section ([`refs::SECTIONS`]) is one too.
const NAME_MAPS: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
    "components",
    "paths",
    "webhooks",
    "content",
    "encoding",
    "variables",
];

/// Keywords whose value is data (an example, a default, an enumeration),
/// never document structure.
const DATA_KEYS: &[&str] = &["example", "default", "enum", "const", "value"];

/// Whether the children of `key` are names rather than keywords.
pub(crate) fn holds_names(key: &str) -> bool {
    NAME_MAPS.contains(&key) || refs::SECTIONS.contains(&key)
}

/// Whether `key`, in an object whose keys are keywords (`!names`), holds
/// data that must not be rewritten.
pub(crate) fn is_data(key: &str, names: bool) -> bool {
    !names && DATA_KEYS.contains(&key)
}

fn config_error(key: impl Into<String>, reason: impl Into<String>) -> OpenApiError {
    OpenApiError::Config {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Validates the `openapi` section; returns the backends' (name, mount).
fn validate(config: &OpenApiConfig) -> Result<Vec<(String, String)>, OpenApiError> {
    if config.backends.is_empty() {
        return Err(config_error(
            "openapi.backends",
            "list at least one backend",
        ));
    }
    let mut seen = Vec::with_capacity(config.backends.len());
    for (i, b) in config.backends.iter().enumerate() {
        let key = format!("openapi.backends[{i}]");
        let name_ok = !b.name.is_empty()
            && b.name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c));
        if !name_ok {
            return Err(config_error(format!("{key}.name"), "use [A-Za-z0-9_.-]"));
        }
        if seen.iter().any(|(n, _)| n == &b.name) {
            return Err(config_error(format!("{key}.name"), "used twice"));
        }
        if b.url.is_some() == b.file.is_some() {
            return Err(config_error(key, "give exactly one of `url` and `file`"));
        }
        let mount = if b.mount == "/" {
            String::new()
        } else {
            let normal = b.mount.starts_with('/')
                && !b.mount.ends_with('/')
                && path::normalize(&b.mount).ok().as_deref() == Some(b.mount.as_str());
            if !normal {
                return Err(config_error(
                    format!("{key}.mount"),
                    "a normalized path starting with '/', without a trailing '/' (or `/`)",
                ));
            }
            b.mount.clone()
        };
        seen.push((b.name.clone(), mount));
    }
    Ok(seen)
}

/// The security schemes to declare: as configured, else derived from
/// what gatehouse is configured to accept.
fn security(config: &Config, openapi: &OpenApiConfig) -> Vec<SecuritySchemeConfig> {
    if let Some(explicit) = &openapi.security {
        return explicit.clone();
    }
    let mut out = Vec::new();
    if config.certificates.is_some() {
        out.push(SecuritySchemeConfig::MutualTls);
    }
    if !config.jwt.issuers.is_empty() {
        out.push(SecuritySchemeConfig::Bearer);
    }
    out
}

/// Parses a document: JSON, else YAML.
pub fn parse_document(text: &str) -> Result<Value, OpenApiError> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(json_error) => yaml::parse(text).map_err(|yaml_error| {
            OpenApiError::Parse(format!("as JSON: {json_error}; as YAML: {yaml_error}"))
        }),
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, OpenApiError> {
    let fail = |e: String| OpenApiError::Fetch(format!("GET {url}: {e}"));
    let mut resp = client
        .get(url)
        .header(
            "accept",
            "application/json, application/yaml;q=0.9, */*;q=0.1",
        )
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(fail("document too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| fail("not UTF-8".into()))
}

fn read(file: &Path) -> Result<String, OpenApiError> {
    let meta = std::fs::metadata(file)
        .map_err(|e| OpenApiError::Fetch(format!("reading {}: {e}", file.display())))?;
    if meta.len() > MAX_DOCUMENT_BYTES as u64 {
        return Err(OpenApiError::Fetch(format!(
            "{}: document too large",
            file.display()
        )));
    }
    std::fs::read_to_string(file)
        .map_err(|e| OpenApiError::Fetch(format!("reading {}: {e}", file.display())))
}

/// Builds the merged document from the configuration's `openapi` section:
/// every backend fetched or read, in order, then merged.
pub async fn build(config: &Config, source: &ConfigSource) -> Result<Value, OpenApiError> {
    let openapi = config
        .openapi
        .as_ref()
        .ok_or_else(|| config_error("openapi", "the configuration has no `openapi` section"))?;
    let names = validate(openapi)?;
    let client = reqwest::Client::builder()
        .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
        .timeout(openapi.timeout)
        .build()
        .map_err(|e| OpenApiError::Fetch(format!("HTTP client: {e}")))?;
    let mut backends = Vec::with_capacity(openapi.backends.len());
    for (backend, (name, mount)) in openapi.backends.iter().zip(names) {
        let in_backend = |e: OpenApiError| OpenApiError::Backend(name.clone(), Box::new(e));
        let text = match (&backend.url, &backend.file) {
            (Some(url), _) => fetch(&client, url).await,
            (None, Some(file)) => read(&resolve_path(source, file)),
            (None, None) => Err(config_error("openapi.backends", "no url or file")),
        }
        .map_err(in_backend)?;
        let document = parse_document(&text).map_err(in_backend)?;
        backends.push(merge::Backend {
            name: name.clone(),
            mount,
            document,
        });
    }
    let settings = merge::Settings {
        title: openapi.title.clone(),
        version: openapi.version.clone(),
        description: openapi.description.clone(),
        servers: openapi.servers.clone(),
        security: security(config, openapi),
    };
    merge::merge(backends, &settings)
}
