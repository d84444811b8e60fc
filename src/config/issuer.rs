//! Configuration of gatehouse as a token issuer: signing keys, signed
//! links, and audience-restricted reissued tokens.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

/// The internal issuer (`issuer:`). Absent: gatehouse issues nothing.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InternalIssuerConfig {
    /// The `iss` of every token gatehouse signs, an `http(s)` URL: the
    /// public base URL under which Envoy routes gatehouse's side port
    /// (`<issuer>/.well-known/jwks.json`). Link tokens carry it as `aud`.
    pub issuer: String,
    /// Private keys (PEM). The first one signs; all of them verify, so a
    /// new key goes first and the old one stays listed until every token
    /// it signed has expired.
    pub signing_keys: Vec<SigningKeyConfig>,
    /// Signed links.
    #[serde(default)]
    pub links: LinksConfig,
    /// Audience-restricted tokens for upstreams.
    #[serde(default)]
    pub reissue: ReissueConfig,
}

/// Where one signing key comes from.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SigningKeyConfig {
    /// A PEM file (PKCS#8 `PRIVATE KEY`, or `RSA PRIVATE KEY` /
    /// `EC PRIVATE KEY`), as written by `gatehouse keys generate`.
    File(PathBuf),
    /// The PEM text inline (demo and tests; prefer a file).
    Pem(InlinePem),
}

/// Inline PEM text; never printed (not in logs, not by `config show`).
#[derive(Clone, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct InlinePem(pub String);

impl Serialize for InlinePem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// What `config show` prints in place of a secret.
pub const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for InlinePem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InlinePem(<redacted>)")
    }
}

/// Signed links (`POST /auth/jwt/request`, `GET /auth/jwt/set`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LinksConfig {
    /// Longest `duration` a link may be minted for.
    #[schemars(with = "schema::DurationText")]
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
    /// How far in the future a link's `from` may lie.
    #[schemars(with = "schema::DurationText")]
    #[serde(with = "humantime_serde")]
    pub max_start_delay: Duration,
    /// The cookie `/auth/jwt/set` stores a link in: one of the `cookie`
    /// entries of `jwt.sources` (default: the first of them).
    pub cookie: Option<String>,
    /// Who may mint links over HTTP, and for which paths. Empty: nobody
    /// (operators can still use `gatehouse token issue`).
    pub mint: Vec<MintGrantConfig>,
}

impl Default for LinksConfig {
    fn default() -> Self {
        LinksConfig {
            max_duration: Duration::from_secs(24 * 3600),
            max_start_delay: Duration::from_secs(30 * 24 * 3600),
            cookie: None,
            mint: Vec::new(),
        }
    }
}

/// Callers holding `scope` may mint links for paths under `prefixes`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MintGrantConfig {
    /// The scope a caller must hold.
    pub scope: String,
    /// Path prefixes, at segment boundaries (`/api` covers `/api` and
    /// `/api/x`, not `/apis`); `/` covers everything.
    pub prefixes: Vec<String>,
}

/// Reissued tokens: `aud` restricted to an internal audience, sent
/// upstream in `X-Auth-Request-Token` (rule `audience:` or the `audience`
/// context extension).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReissueConfig {
    /// The audiences a route may ask for.
    pub audiences: Vec<String>,
    /// Lifetime of a reissued token (never beyond the caller's own expiry).
    #[schemars(with = "schema::DurationText")]
    #[serde(with = "humantime_serde")]
    pub lifetime: Duration,
    /// Most reissued tokens cached for reuse.
    pub cache_entries: usize,
}

impl Default for ReissueConfig {
    fn default() -> Self {
        ReissueConfig {
            audiences: Vec::new(),
            lifetime: Duration::from_secs(300),
            cache_entries: 10_000,
        }
    }
}
