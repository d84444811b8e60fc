//! Configuration of client-certificate authentication, tool ownership and
//! extra identity headers.

use std::time::Duration;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

use super::IdentityHeader;

/// Client-certificate authentication: who a peer certificate, a trusted
/// proxy's `x-forwarded-client-cert` or an mTLS principal names.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificatesConfig {
    /// Clock skew allowed for the certificate's validity window.
    #[schemars(with = "schema::DurationText")]
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// When `x-forwarded-client-cert` is believed.
    #[serde(default)]
    pub xfcc: XfccConfig,
    /// Which parts of the certificate become identity fields.
    #[serde(default)]
    pub identity: CertIdentityConfig,
    /// Subject DN patterns granting scopes: a subject holding every
    /// attribute of `subject` (in any order) holds `scopes`.
    #[serde(default)]
    pub scopes: Vec<SubjectScopesConfig>,
    /// SPIFFE IDs (URI SANs, Istio principals): trust domains and mappings.
    #[serde(default)]
    pub spiffe: SpiffeConfig,
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

/// When `x-forwarded-client-cert` is believed, and which element.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct XfccConfig {
    /// Direct peers (CIDRs) whose XFCC header is believed. Empty: never.
    #[schemars(with = "Vec<schema::Cidr>")]
    pub trusted_proxies: Vec<IpNet>,
    /// Direct peers, by their mTLS principal (e.g. a gateway's SPIFFE ID),
    /// whose XFCC header is believed.
    pub trusted_principals: Vec<String>,
    /// Which element: `last` (default: the one the nearest proxy added),
    /// `first`, or a position (0 = first, -1 = last).
    #[schemars(with = "schema::XfccElement")]
    pub element: XfccElementConfig,
    /// Refuse an element without `Cert=` (whose validity window cannot be
    /// checked). `false` believes `Subject=`/`URI=`/`DNS=` alone.
    pub require_cert: bool,
    /// Remove an XFCC header that is not believed from the upstream request.
    pub strip_untrusted: bool,
}

impl Default for XfccConfig {
    fn default() -> Self {
        XfccConfig {
            trusted_proxies: Vec::new(),
            trusted_principals: Vec::new(),
            element: XfccElementConfig::default(),
            require_cert: true,
            strip_untrusted: true,
        }
    }
}

/// `last`, `first`, or an index (negative from the end).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum XfccElementConfig {
    /// A position.
    Index(i64),
    /// `last`, `first`, or a position written as text.
    Name(String),
}

impl Default for XfccElementConfig {
    fn default() -> Self {
        XfccElementConfig::Name("last".into())
    }
}

/// Where identity fields come from. A source is a DN attribute type
/// (`CN`, `OU`, `UID`, `2.5.4.45`, …) or a SAN: `san:dns`, `san:uri`,
/// `san:email`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CertIdentityConfig {
    /// The user name (must appear exactly once).
    pub user: String,
    /// The e-mail address (first value).
    pub email: Option<String>,
    /// The numeric user id (first value).
    pub uid: Option<String>,
    /// Groups: every value of every listed source.
    pub groups: Vec<String>,
    /// The tool the caller acts as.
    pub tool: Option<ToolFromConfig>,
}

impl Default for CertIdentityConfig {
    fn default() -> Self {
        CertIdentityConfig {
            user: "CN".into(),
            email: None,
            uid: None,
            groups: Vec::new(),
            tool: None,
        }
    }
}

/// The tool, from a pattern over a certificate field.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolFromConfig {
    /// The source (as for `user`), e.g. `CN`.
    pub from: String,
    /// A regular expression over the value; the tool is its `tool` named
    /// group, or the whole match. Default: the whole value.
    #[serde(default)]
    pub pattern: Option<String>,
}

/// One subject DN pattern and the scopes it grants.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectScopesConfig {
    /// An RFC 4514 DN; every attribute must be in the subject.
    pub subject: String,
    /// Scopes granted.
    pub scopes: Vec<String>,
}

/// SPIFFE settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SpiffeConfig {
    /// Accepted trust domains; empty: any.
    pub trust_domains: Vec<String>,
    /// Refuse a SPIFFE ID no mapping matches.
    pub require_mapping: bool,
    /// SPIFFE ID → principal mappings; every matching one contributes
    /// groups and scopes, the first with a `user` names the principal.
    pub principals: Vec<SpiffeMappingConfig>,
}

/// One SPIFFE mapping: exactly one of `id` and `prefix`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpiffeMappingConfig {
    /// An exact SPIFFE ID.
    #[serde(default)]
    pub id: Option<String>,
    /// A prefix, matched at a path-segment boundary.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The principal (user name); default: the SPIFFE ID itself.
    #[serde(default)]
    pub user: Option<String>,
    /// Groups granted.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Scopes granted.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// Tool ownership: superusers and acting for a tool.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ToolsConfig {
    /// User names that may act for any tool.
    pub superusers: Vec<String>,
    /// A request header in which a superuser names the tool it acts for.
    pub act_as_header: Option<String>,
    /// What a tool name looks like (a regular expression matched against
    /// the whole name): an act-as value or a tool named by the path that
    /// does not match is refused with a 400 naming it. Default:
    /// Toolforge's rule, lower-case letters, digits and `-`, starting
    /// with a letter or digit, at most 32 characters.
    pub name_pattern: Option<String>,
}

/// The default `tools.name_pattern`.
pub const DEFAULT_TOOL_NAME_PATTERN: &str = "^[a-z0-9][a-z0-9-]{0,31}$";

/// Extra identity headers, beside `X-Auth-Request-*`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityHeadersConfig {
    /// Headers set from identity fields (sent where the rule's `headers`
    /// list the field), every client-supplied one removed first.
    pub extra: Vec<ExtraHeaderConfig>,
}

/// One extra identity header.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtraHeaderConfig {
    /// The header name, e.g. `X-Toolforge-User`.
    pub name: String,
    /// The identity field: `user`, `tool`, `email`, `uid`, `groups`, …
    pub from: IdentityHeader,
}

/// Which kinds of credential a rule accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKindConfig {
    /// A JWT (bearer, basic, header, cookie, query).
    Jwt,
    /// A client certificate identified by its subject DN.
    Certificate,
    /// A SPIFFE ID (URI SAN or mTLS principal).
    Spiffe,
    /// A user-issued API token (`api_tokens`), from the same sources as
    /// JWTs.
    ApiToken,
    /// A browser session from a login (`login`), in the session cookie.
    Session,
    /// An opaque token checked at the introspection endpoint
    /// (`introspection`), from the same sources as JWTs.
    Introspected,
}
