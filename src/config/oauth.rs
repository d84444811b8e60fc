//! Configuration of the calls gatehouse makes to an OAuth 2.0
//! authorization server on a caller's behalf: token introspection
//! (RFC 7662, for opaque access tokens) and token exchange (RFC 8693, a
//! token for the upstream in place of the caller's).

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ClaimsConfig, ConfigError, schema};

/// How gatehouse authenticates itself at the authorization server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// HTTP Basic with the client id and secret (RFC 6749, 2.3.1).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// The client gatehouse is at the authorization server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuthClientConfig {
    /// The endpoint's URL. The client secret and the caller's token travel
    /// in its requests: use `https://` unless the network is trusted (a
    /// mesh's mTLS).
    pub url: String,
    /// The client id registered at the server.
    pub client_id: String,
    /// A file holding the client secret (trailing whitespace ignored).
    pub client_secret_file: String,
    /// `client_secret_basic` (default) or `client_secret_post`.
    #[serde(default)]
    pub auth_method: ClientAuthMethod,
    /// How long one call may take before it fails (503).
    #[schemars(with = "schema::DurationText")]
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// RFC 7662 token introspection: bearer tokens that are not JWTs (nor API
/// tokens) are sent to the server's introspection endpoint, and an active
/// answer names the caller.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// Short name for logs, metrics and `identity.issuer`; default:
    /// `introspection`.
    #[serde(default)]
    pub name: Option<String>,
    /// The introspection endpoint and gatehouse's client there.
    #[serde(flatten)]
    pub client: OAuthClientConfig,
    /// The `iss` an answer must name, when set (an answer without `iss`
    /// is then refused).
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted `aud` values; when set, an answer must name at least one.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Which members of the answer carry identity fields (as for JWTs;
    /// `username` defaults to `username` here, RFC 7662's member).
    #[serde(default = "introspection_claims")]
    pub claims: ClaimsConfig,
    /// How many answers to remember, active and inactive together (0
    /// turns the cache off).
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
    /// An active answer is trusted until the token's `exp`, but no longer
    /// than this: how late a revocation at the server is noticed.
    #[schemars(with = "schema::DurationText")]
    #[serde(default = "default_max_cache_ttl", with = "humantime_serde")]
    pub max_cache_ttl: Duration,
    /// How long an inactive answer (an unknown, expired or revoked token)
    /// is remembered, so a client retrying a dead token does not reach the
    /// server each time.
    #[schemars(with = "schema::DurationText")]
    #[serde(default = "default_negative_ttl", with = "humantime_serde")]
    pub negative_cache_ttl: Duration,
    /// At most this many introspection calls at once; further checks with
    /// an unknown token wait for a free slot (up to `timeout`).
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
}

fn introspection_claims() -> ClaimsConfig {
    ClaimsConfig {
        username: "username".into(),
        ..ClaimsConfig::default()
    }
}

fn default_cache_size() -> usize {
    10_000
}

fn default_max_cache_ttl() -> Duration {
    Duration::from_secs(60)
}

fn default_negative_ttl() -> Duration {
    Duration::from_secs(10)
}

fn default_max_concurrent() -> usize {
    64
}

/// RFC 8693 token exchange: the endpoint and client that rules with an
/// `exchange` use to trade the caller's token for one meant for the
/// upstream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenExchangeConfig {
    /// The token endpoint and gatehouse's client there.
    #[serde(flatten)]
    pub client: OAuthClientConfig,
    /// How many exchanged tokens to remember (per caller token, audience
    /// and scope; 0 turns the cache off).
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
    /// An exchanged token is reused until this long before it expires.
    #[schemars(with = "schema::DurationText")]
    #[serde(default = "default_refresh_margin", with = "humantime_serde")]
    pub refresh_margin: Duration,
}

fn default_refresh_margin() -> Duration {
    Duration::from_secs(30)
}

/// A rule's token exchange: the caller's token is traded at
/// `token_exchange.url` for one for `audience`, sent upstream as
/// `Authorization: Bearer …` in place of the caller's credential.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// The upstream the new token is for (RFC 8693 `audience`).
    pub audience: String,
    /// Scopes asked for (space-joined `scope`); empty: the server decides.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl OAuthClientConfig {
    /// Checks the URL and the client id; errors name `key`'s sub-keys.
    pub fn validate(&self, key: &str) -> Result<url::Url, ConfigError> {
        if self.client_id.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.client_id"),
                "must not be empty",
            ));
        }
        let url = url::Url::parse(&self.url)
            .map_err(|e| ConfigError::invalid(format!("{key}.url"), e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(ConfigError::invalid(
                format!("{key}.url"),
                "must be an http:// or https:// URL with a host",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid(
                format!("{key}.timeout"),
                "must be above zero",
            ));
        }
        Ok(url)
    }
}

impl ExchangeConfig {
    /// Checks the audience and the scopes; errors name `key`'s sub-keys.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| (b'!'..=b'~').contains(&b));
        if !printable(&self.audience) {
            return Err(ConfigError::invalid(
                format!("{key}.audience"),
                "must be non-empty printable ASCII without spaces",
            ));
        }
        if let Some(bad) = self.scopes.iter().find(|s| !printable(s)) {
            return Err(ConfigError::invalid(
                format!("{key}.scopes"),
                format!("{bad:?} is not a scope token"),
            ));
        }
        Ok(())
    }
}
