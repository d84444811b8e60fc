//! Configuration of the aggregated OpenAPI document
//! (`gatehouse openapi merge`).

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

/// How the aggregated document is built.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenApiConfig {
    /// `info.title` of the merged document.
    #[serde(default = "default_title")]
    pub title: String,
    /// `info.version` of the merged document.
    #[serde(default = "default_version")]
    pub version: String,
    /// `info.description` of the merged document.
    #[serde(default)]
    pub description: Option<String>,
    /// Public base URLs (`servers`) of the gateway.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Timeout of one backend fetch.
    #[schemars(with = "schema::DurationText")]
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Security schemes declared; default: `mutual_tls` when certificates
    /// are configured, `bearer` when JWT issuers are.
    #[serde(default)]
    pub security: Option<Vec<SecuritySchemeConfig>>,
    /// The backends, in order (on a name collision the first one keeps it).
    pub backends: Vec<OpenApiBackendConfig>,
}

fn default_title() -> String {
    "API".into()
}

fn default_version() -> String {
    "1.0.0".into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A security scheme gatehouse enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecuritySchemeConfig {
    /// Client certificates (`type: mutualTLS`).
    MutualTls,
    /// `Authorization: Bearer` JWTs.
    Bearer,
}

/// One backend API.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenApiBackendConfig {
    /// Short name (`[A-Za-z0-9_.-]`), used to rename colliding components.
    pub name: String,
    /// Where the gateway serves it, e.g. `/builds` (`/` for the root).
    pub mount: String,
    /// Its OpenAPI document over HTTP(S) (JSON or YAML).
    #[serde(default)]
    pub url: Option<String>,
    /// Its OpenAPI document in a file (JSON or YAML), relative to the
    /// configuration file.
    #[serde(default)]
    pub file: Option<PathBuf>,
}
