//! Configuration of JWT authentication: token sources and issuers.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

/// JWT authentication settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// Accepted issuers.
    pub issuers: Vec<IssuerConfig>,
    /// Where a token is looked for, in order; the first one present is used.
    pub sources: Vec<TokenSourceConfig>,
    /// Clock skew allowed for `exp`, `nbf` and `iat`.
    #[schemars(with = "schema::DurationText")]
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// How many verified tokens to remember (0 turns the cache off). An
    /// entry lives no longer than its token and is dropped when the
    /// issuer's keys change.
    pub cache_size: usize,
    /// The longest token accepted from any source, in bytes; a longer one
    /// is refused (401) without being parsed. At least 1024.
    pub max_token_bytes: usize,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            issuers: Vec::new(),
            sources: vec![TokenSourceConfig::Bearer, TokenSourceConfig::Basic],
            leeway: Duration::from_secs(30),
            cache_size: 100_000,
            max_token_bytes: 64 * 1024,
        }
    }
}

/// Where to look for a token in a request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenSourceConfig {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: Basic`, with the token as the password (or as the
    /// user name when the password is empty or `x-oauth-basic`).
    Basic,
    /// A header holding the bare token (a `Bearer ` prefix is tolerated).
    Header(String),
    /// A cookie holding the token.
    Cookie(String),
    /// A query parameter holding the token.
    Query(String),
}

/// One trusted token issuer.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Short name for logs and metrics; defaults to the `issuer` URL.
    #[serde(default)]
    pub name: Option<String>,
    /// The exact `iss` claim value.
    pub issuer: String,
    /// Accepted `aud` values; a token must carry at least one.
    pub audiences: Vec<String>,
    /// Accepted signature algorithms, by their JWS names (`RS256`, `ES256`,
    /// `EdDSA`, ...). `none` is not an `Algorithm`, so it is refused when
    /// the configuration is read; HS256/384/512 need a `shared_secret_file`.
    #[schemars(with = "Vec<schema::JwsAlgorithm>")]
    pub algorithms: Vec<Algorithm>,
    /// Where the verification keys come from.
    pub keys: KeySourceConfig,
    /// Key refresh behaviour for fetched key sets.
    #[serde(default)]
    pub refresh: RefreshConfig,
    /// Which claims carry identity fields.
    #[serde(default)]
    pub claims: ClaimsConfig,
    /// Accepted JOSE `typ` values (RFC 8725 explicit typing), compared
    /// without case and with the `application/` prefix optional. Any other
    /// `typ` is refused, so a DPoP proof (`dpop+jwt`) or a logout token
    /// (`logout+jwt`) never passes as an access token.
    #[serde(default = "default_token_types")]
    pub token_types: Vec<String>,
    /// Refuse tokens without a `typ` header.
    #[serde(default)]
    pub require_token_type: bool,
    /// The longest lifetime accepted: a token whose `exp` lies further than
    /// this after its `iat` (after now, without `iat`) is refused. Unset:
    /// no limit beyond `exp` being a real date (before the year 10000).
    #[schemars(with = "Option<schema::DurationText>")]
    #[serde(default, with = "humantime_serde")]
    pub max_lifetime: Option<Duration>,
}

fn default_token_types() -> Vec<String> {
    vec!["JWT".into(), "at+jwt".into()]
}

/// Where an issuer's verification keys come from.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KeySourceConfig {
    /// An inline JWKS document (`{"keys": [...]}`).
    Jwks(#[schemars(with = "schema::Jwks")] serde_json::Value),
    /// A JWKS document in a file, read at start-up.
    JwksFile(PathBuf),
    /// A JWKS URL, fetched and refreshed in the background.
    JwksUri(String),
    /// OIDC discovery: `<issuer>/.well-known/openid-configuration` (or the
    /// given URL) names the `jwks_uri`.
    Discovery(DiscoveryConfig),
    /// A file holding the HMAC shared secret (only for HS256/384/512).
    SharedSecretFile(PathBuf),
}

/// OIDC discovery settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// Discovery document URL; defaults to the issuer's well-known URL.
    pub url: Option<String>,
}

/// How fetched key sets are refreshed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RefreshConfig {
    /// Refresh interval when the response has no `Cache-Control: max-age`.
    #[schemars(with = "schema::DurationText")]
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Lower bound for a `max-age`-derived interval.
    #[schemars(with = "schema::DurationText")]
    #[serde(with = "humantime_serde")]
    pub min_interval: Duration,
    /// Upper bound for a `max-age`-derived interval.
    #[schemars(with = "schema::DurationText")]
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Retry delay after a failed fetch. Until the issuer's first key set
    /// has loaded, retries start at 100ms and double up to this.
    #[schemars(with = "schema::DurationText")]
    #[serde(with = "humantime_serde")]
    pub retry_interval: Duration,
    /// At most one refetch per this interval is triggered by unknown `kid`s.
    #[schemars(with = "schema::DurationText")]
    #[serde(with = "humantime_serde")]
    pub unknown_kid_interval: Duration,
    /// HTTP timeout of one fetch.
    #[schemars(with = "schema::DurationText")]
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        RefreshConfig {
            interval: Duration::from_secs(3600),
            min_interval: Duration::from_secs(60),
            max_interval: Duration::from_secs(24 * 3600),
            retry_interval: Duration::from_secs(10),
            unknown_kid_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Which claims carry identity fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimsConfig {
    /// Claim giving the user name (`X-Auth-Request-User`).
    pub username: String,
    /// Claim giving the e-mail address.
    pub email: String,
    /// Claim giving the numeric user id.
    pub uid: String,
    /// Claim listing groups: strings, or objects with a `name`.
    pub groups: String,
}

impl Default for ClaimsConfig {
    fn default() -> Self {
        ClaimsConfig {
            username: "sub".into(),
            email: "email".into(),
            uid: "uidNumber".into(),
            groups: "isMemberOf".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::Algorithm;

    /// The names `algorithms` accepts: exactly these twelve. A jsonwebtoken
    /// upgrade that adds a variant (the enum is `non_exhaustive`) fails here.
    #[test]
    fn accepted_algorithm_names_are_pinned() {
        let names = [
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
            "HS256", "HS384", "HS512",
        ];
        for name in names {
            let alg: Algorithm = serde_json::from_value(name.into()).expect(name);
            assert_eq!(format!("{alg:?}"), name);
        }
        for name in ["none", "None", "ES512", "ES256K", "Ed25519", "rs256", ""] {
            assert!(
                serde_json::from_value::<Algorithm>(name.into()).is_err(),
                "{name} must be refused"
            );
        }
    }
}
