//! Configuration: one YAML file plus `GATEHOUSE_` environment overrides,
//! deserialized into typed structs that reject unknown keys.
//!
//! These types describe what the operator wrote. [`crate::app`] turns a
//! [`Config`] into the runtime engine, validating everything that serde
//! cannot (CIDRs already parse here; algorithm/key pairings, globs and
//! URLs are checked when the engine is built). Every error names the key.

mod api_tokens;
mod backends;
mod browser;
mod certs;
mod cli;
mod decode;
mod env;
mod header;
mod issuer;
mod jwt;
mod login;
mod oauth;
mod openapi;
mod policy;
mod reload;
pub mod schema;
mod store;
mod telemetry;
mod upstream;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use api_tokens::*;
pub use backends::*;
pub use browser::*;
pub use certs::*;
pub use cli::*;
pub use decode::DURATION_EXAMPLE;
pub use env::{ENV_PREFIX, ENV_SEPARATOR};
pub use header::header_name;
pub use issuer::*;
pub use jwt::*;
pub use login::*;
pub use oauth::*;
pub use openapi::*;
pub use policy::*;
pub use reload::*;
pub use store::*;
pub use telemetry::*;
pub use upstream::*;
pub use validate::ConfigWarning;

/// The demo configuration compiled into the binary: `gatehouse serve --demo`
/// runs on it, with nothing else running.
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.yaml");

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment value could not be read or parsed.
    #[error("{0}")]
    Source(#[from] config::ConfigError),
    /// A key has a value of the wrong shape, or is unknown.
    #[error("key `{key}`: {reason}")]
    Invalid {
        /// Dotted path of the offending key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key set by a `GATEHOUSE_*` environment variable has a bad value.
    #[error("key `{key}` (set by environment variable `{variable}`): {reason}")]
    InvalidOverride {
        /// Dotted path of the offending key.
        key: String,
        /// The variable that set it.
        variable: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The engine's metrics could not be set up (a bug, not the file's fault).
    /// (The text of a `metrics::MetricsError`: config does not import
    /// metrics, which sits above it.)
    #[error("{0}")]
    Metrics(String),
}

impl ConfigError {
    /// An error about one key.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Where the YAML comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A file on disk.
    File(PathBuf),
    /// YAML text (the embedded demo config, or tests).
    Text(String),
}

/// Loads configuration from `source`, overridden by `env` entries whose
/// names start with `GATEHOUSE_` (`__` separates nesting levels, e.g.
/// `GATEHOUSE_SERVER__GRPC_ADDR`). `env` is passed in rather than read here
/// so that tests never touch the process environment.
pub fn load(
    source: &ConfigSource,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let overrides: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| env::is_override(k))
        .collect();
    // Flow lists and mappings are set whole; the rest go through the
    // `config` crate's environment source, as text it may parse.
    let flows: Vec<env::FlowOverride> = overrides
        .iter()
        .filter_map(|(name, value)| env::flow(name, value))
        .collect();
    let env_map: config::Map<String, String> = overrides
        .iter()
        .filter(|(name, _)| !flows.iter().any(|f| f.variable == *name))
        .cloned()
        .collect();
    let builder = config::Config::builder();
    let builder = match source {
        ConfigSource::File(path) => builder.add_source(
            config::File::from(path.as_path())
                .format(config::FileFormat::Yaml)
                .required(true),
        ),
        ConfigSource::Text(text) => {
            builder.add_source(config::File::from_str(text, config::FileFormat::Yaml))
        }
    }
    .add_source(
        config::Environment::with_prefix("GATEHOUSE")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .source(Some(env_map)),
    );
    let mut tree: serde_json::Value = builder.build()?.try_deserialize()?;
    for flow in &flows {
        flow.apply(&mut tree)
            .map_err(|reason| ConfigError::InvalidOverride {
                key: flow.key.clone(),
                variable: flow.variable.clone(),
                reason,
            })?;
    }
    decode::decode(tree, &overrides, &flows)
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listening addresses and shutdown behaviour.
    #[serde(default)]
    pub server: ServerConfig,
    /// Which peers are trusted proxies for `X-Forwarded-For`.
    #[serde(default)]
    pub network: NetworkConfig,
    /// JWT issuers and where tokens are looked for.
    #[serde(default)]
    pub jwt: JwtConfig,
    /// Group → scope mapping.
    #[serde(default)]
    pub scopes: ScopesConfig,
    /// Route rules.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// OpenTelemetry trace export; absent: off.
    #[serde(default)]
    #[schemars(extend("x-reload" = "restart"))]
    pub tracing: Option<TracingConfig>,
    /// Client-certificate authentication; absent: off.
    #[serde(default)]
    pub certificates: Option<CertificatesConfig>,
    /// Tool ownership: superusers, acting for a tool.
    #[serde(default)]
    pub tools: ToolsConfig,
    /// Extra identity headers (e.g. `X-Toolforge-User`).
    #[serde(default)]
    pub identity_headers: IdentityHeadersConfig,
    /// The aggregated OpenAPI document (`gatehouse openapi merge`).
    #[serde(default)]
    pub openapi: Option<OpenApiConfig>,
    /// Gatehouse as a token issuer (links, reissued tokens); absent: off.
    #[serde(default)]
    pub issuer: Option<InternalIssuerConfig>,
    /// User-issued API tokens and Toolforge deploy tokens; absent: off.
    #[serde(default)]
    pub api_tokens: Option<ApiTokensConfig>,
    /// Browser login with server-side sessions (the session cookie as a
    /// credential); absent: off.
    #[serde(default)]
    pub login: Option<LoginConfig>,
    /// Downstream services whose own OAuth2 tokens gatehouse collects per
    /// user and sends upstream (`upstream_credential: {backend: …}`).
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
    /// Command-line login (`POST /auth/cli/login`, approved in a browser,
    /// answered with an API token); needs `login.providers` and
    /// `api_tokens`. Absent: off.
    #[serde(default)]
    pub cli: Option<CliLoginConfig>,
    /// RFC 7662 introspection of opaque bearer tokens at an authorization
    /// server; absent: a token that is not a JWT is refused.
    #[serde(default)]
    pub introspection: Option<IntrospectionConfig>,
    /// RFC 8693 token exchange for rules with `exchange`; absent: off.
    #[serde(default)]
    pub token_exchange: Option<TokenExchangeConfig>,
    /// Where shared state lives.
    #[serde(default)]
    #[schemars(extend("x-reload" = "restart"))]
    pub store: StoreConfig,
    /// Hot reload: watching this file.
    #[serde(default)]
    pub reload: ReloadConfig,
    /// Browsers: the login redirect (302) and what counts as a navigation.
    #[serde(default)]
    pub browser: BrowserConfig,
    /// Cross-origin requests: allowed origins; absent: no origin checks.
    #[serde(default)]
    pub cors: Option<CorsConfig>,
}

/// Listening addresses and shutdown behaviour.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// gRPC address for `Authorization/Check`, health and reflection.
    #[schemars(extend("x-reload" = "restart"))]
    pub grpc_addr: SocketAddr,
    /// How long SIGTERM waits for in-flight checks before exiting.
    #[schemars(with = "schema::DurationText")]
    #[serde(with = "humantime_serde")]
    #[schemars(extend("x-reload" = "restart"))]
    pub drain_timeout: Duration,
    /// The realm named in `WWW-Authenticate` challenges.
    pub realm: String,
    /// HTTP side port: `/.well-known/jwks.json`, `/.well-known/openid-configuration`,
    /// `/auth/jwt/request`, `/auth/jwt/set`, `/auth/api/v1` (API tokens),
    /// `/auth/login`, `/auth/callback`, `/auth/logout`, `/auth/userinfo`,
    /// `/auth/backchannel-logout` (browser login), `/auth/cli/*`
    /// (command-line login), `/healthz`.
    #[schemars(extend("x-reload" = "restart"))]
    pub http_addr: SocketAddr,
    /// Also serve gRPC on this Unix domain socket (for an Envoy in the same
    /// pod or host: no TCP stack per check). Absent: TCP only.
    #[schemars(extend("x-reload" = "restart"))]
    pub grpc_socket: Option<PathBuf>,
    /// Threads serving gRPC checks, each with its own single-threaded
    /// runtime (`0`: one per CPU gatehouse may run on).
    #[schemars(extend("x-reload" = "restart"))]
    pub grpc_threads: usize,
    /// The largest CheckRequest accepted, in bytes (at least 64 KiB): a
    /// larger one is refused (`OUT_OF_RANGE`) before it is decoded, and
    /// Envoy then answers as its `failure_mode_allow` says (403 or
    /// `status_on_error`). Keep it above Envoy's `max_request_headers_kb`
    /// plus any `with_request_body.max_request_bytes`.
    #[schemars(extend("x-reload" = "restart"))]
    pub max_request_bytes: usize,
    /// Checks in flight per gRPC connection (HTTP/2
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`); more wait in the client.
    #[schemars(extend("x-reload" = "restart"))]
    pub max_concurrent_streams: u32,
}

impl ServerConfig {
    /// [`Self::grpc_threads`] with `0` resolved to the CPUs available to
    /// this process (its affinity mask and cgroup quota included).
    pub fn grpc_thread_count(&self) -> usize {
        match self.grpc_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 9191)),
            drain_timeout: Duration::from_secs(15),
            realm: "gatehouse".into(),
            http_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            grpc_threads: 0,
            grpc_socket: None,
            max_request_bytes: 256 * 1024,
            max_concurrent_streams: 1024,
        }
    }
}

/// Network trust settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// CIDRs of proxies whose `X-Forwarded-For` entries are believed. The
    /// client IP is the right-most address not in these ranges.
    #[schemars(with = "Vec<schema::Cidr>")]
    pub trusted_proxies: Vec<IpNet>,
}

/// Scope settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ScopesConfig {
    /// scope → groups whose members hold it.
    pub group_mapping: BTreeMap<String, Vec<String>>,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    #[schemars(extend("x-reload" = "restart"))]
    pub format: LogFormat,
    /// A `tracing` filter directive, e.g. `info` or `gatehouse=debug`.
    #[schemars(extend("x-reload" = "restart"))]
    pub level: String,
    /// Which checks get a decision log line: `deny` (default), `all`, `none`.
    pub decisions: DecisionLogMode,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
            decisions: DecisionLogMode::Deny,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// The files an engine reads besides the configuration itself (JWKS
    /// files, shared-secret files, signing keys), resolved like
    /// [`resolve_path`]: a hot reload follows their changes too. Not
    /// included: upstream credential files, which re-read themselves when
    /// they change (a projected token rotates hourly; a whole reload for it
    /// would be wasted).
    pub fn referenced_files(&self, source: &ConfigSource) -> Vec<PathBuf> {
        let keys = self.jwt.issuers.iter().filter_map(|i| match &i.keys {
            KeySourceConfig::JwksFile(path) | KeySourceConfig::SharedSecretFile(path) => Some(path),
            _ => None,
        });
        let signing = self.issuer.iter().flat_map(|i| {
            i.signing_keys.iter().filter_map(|k| match k {
                SigningKeyConfig::File(path) => Some(path),
                SigningKeyConfig::Pem(_) => None,
            })
        });
        keys.chain(signing)
            .map(|path| resolve_path(source, path))
            .collect()
    }
}

/// Resolves `path` against the directory of the config file, so relative
/// paths in a config mean the same wherever gatehouse is started.
pub fn resolve_path(source: &ConfigSource, path: &Path) -> PathBuf {
    match source {
        ConfigSource::File(file) if path.is_relative() => file
            .parent()
            .map(|dir| dir.join(path))
            .unwrap_or_else(|| path.to_path_buf()),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(yaml: &str) -> ConfigSource {
        ConfigSource::Text(yaml.to_string())
    }

    #[test]
    fn demo_config_loads() {
        let cfg = load(&text(DEMO_CONFIG), []).expect("demo config must load");
        assert!(!cfg.jwt.issuers.is_empty());
        assert!(!cfg.policy.rules.is_empty());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load(&text("server:\n  grpc_adr: 127.0.0.1:1\n"), []).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("grpc_adr"), "{msg}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let err = load(&text("server:\n  drain_timeout: soon\n"), []).unwrap_err();
        assert!(err.to_string().contains("server.drain_timeout"), "{err}");
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let env = [
            (
                "GATEHOUSE_SERVER__GRPC_ADDR".to_string(),
                "127.0.0.1:7000".to_string(),
            ),
            ("GATEHOUSE_SERVER__REALM".to_string(), "example".to_string()),
            ("OTHER_VAR".to_string(), "ignored".to_string()),
            (
                "GATEHOUSE_PORT".to_string(),
                "tcp://10.0.0.1:9191".to_string(),
            ),
            ("GATEHOUSE_SERVICE_HOST".to_string(), "10.0.0.1".to_string()),
        ];
        let cfg = load(&text("server:\n  realm: file\n"), env).expect("loads");
        assert_eq!(cfg.server.grpc_addr.to_string(), "127.0.0.1:7000");
        assert_eq!(cfg.server.realm, "example");
    }

    #[test]
    fn misspelled_override_section_is_an_error() {
        let env = [("GATEHOUSE_SERVR__REALM".to_string(), "x".to_string())];
        let err = load(&text(""), env).unwrap_err();
        assert!(err.to_string().contains("servr"), "{err}");
    }

    #[test]
    fn rules_and_enums_parse() {
        let yaml = r#"
jwt:
  issuers:
    - issuer: https://issuer.example
      audiences: [api]
      algorithms: [RS256, ES256]
      keys:
        jwks_uri: https://issuer.example/jwks
  sources: [bearer, {cookie: session}, {query: token}, basic]
policy:
  default: authenticated
  rules:
    - name: api
      match: {hosts: ["*.example.com"], path: {prefix: /api/}, methods: [GET]}
      scopes: [read]
      satisfy: any
      auth_type: basic
      headers: [user, token]
"#;
        let cfg = load(&text(yaml), []).expect("loads");
        assert_eq!(
            cfg.jwt.sources[1],
            TokenSourceConfig::Cookie("session".into())
        );
        let rule = &cfg.policy.rules[0];
        assert_eq!(
            rule.matcher.path,
            Some(PathMatchConfig::Prefix("/api/".into()))
        );
        assert_eq!(rule.satisfy, Satisfy::Any);
        assert_eq!(
            rule.headers,
            vec![IdentityHeader::User, IdentityHeader::Token]
        );
        assert!(matches!(
            cfg.jwt.issuers[0].keys,
            KeySourceConfig::JwksUri(_)
        ));
    }

    #[test]
    fn tracing_and_decisions_parse() {
        let cfg = load(&text(""), []).expect("loads");
        assert!(cfg.tracing.is_none());
        assert_eq!(cfg.log.decisions, DecisionLogMode::Deny);
        let yaml = "log: {decisions: all}\ntracing: {otlp_endpoint: \"http://c:4318\", protocol: http, sample_ratio: 0.25}\n";
        let cfg = load(&text(yaml), []).expect("loads");
        assert_eq!(cfg.log.decisions, DecisionLogMode::All);
        let tracing = cfg.tracing.expect("tracing section");
        assert_eq!(tracing.protocol, OtlpProtocol::Http);
        assert_eq!(tracing.sample_ratio, 0.25);
        assert_eq!(tracing.service_name, "gatehouse");
        let err = load(&text("tracing: {otlp_endpoint: x, sampling: 1}\n"), []).unwrap_err();
        assert!(err.to_string().contains("sampling"), "{err}");
    }

    #[test]
    fn none_algorithm_is_rejected() {
        let yaml = r#"
jwt:
  issuers:
    - issuer: x
      audiences: [a]
      algorithms: [none]
      keys: {jwks_uri: http://x}
"#;
        let err = load(&text(yaml), []).unwrap_err();
        assert!(err.to_string().contains("algorithms"), "{err}");
    }
}
