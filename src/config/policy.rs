//! Configuration of route rules.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Route rules and what happens when none matches.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// What a request matching no rule gets.
    pub default: DefaultAction,
    /// Ordered rules; the first match wins.
    pub rules: Vec<RuleConfig>,
}

/// What a request matching no rule gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DefaultAction {
    /// 403: no rule allows this request.
    #[default]
    Deny,
    /// Any valid credential, no scopes.
    Authenticated,
}

/// One route rule.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Name shown in logs, metrics and headers.
    pub name: String,
    /// Which requests this rule covers.
    #[serde(default, rename = "match")]
    pub matcher: MatchConfig,
    /// Whether a credential is needed.
    #[serde(default)]
    pub auth: AuthMode,
    /// Scopes demanded of the caller.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Whether all or any of `scopes` must be held.
    #[serde(default)]
    pub satisfy: Satisfy,
    /// The challenge scheme of a 401.
    #[serde(default)]
    pub auth_type: AuthType,
    /// Identity headers emitted upstream on allow.
    #[serde(default = "IdentityHeader::default_set")]
    pub headers: Vec<IdentityHeader>,
    /// Credential kinds accepted; empty: every configured kind.
    #[serde(default)]
    pub credentials: Vec<super::CredentialKindConfig>,
    /// The name of a `{segment}` of a `template` path whose value must be
    /// the caller's tool (superusers excepted).
    #[serde(default)]
    pub tool_from_path: Option<String>,
    /// Replaces the caller's credential upstream (`Authorization: Bearer`
    /// from a file); gatehouse's token cookies are removed.
    #[serde(default)]
    pub upstream_credential: Option<super::UpstreamCredentialConfig>,
    /// Reissues the caller's identity as a token for this internal
    /// audience (one of `issuer.reissue.audiences`), sent upstream in
    /// `X-Auth-Request-Token`.
    #[serde(default)]
    pub audience: Option<String>,
    /// Trades the caller's token for one meant for the upstream (RFC 8693,
    /// at `token_exchange.url`), sent as `Authorization: Bearer …` in place
    /// of the caller's credential; cached until shortly before it expires.
    /// Not with `upstream_credential`.
    #[serde(default)]
    pub exchange: Option<super::ExchangeConfig>,
    /// What a request without a credential gets: `redirect` (a browser
    /// navigation is sent to the login page, anything else gets a 401) or
    /// `deny` (a 401 for everyone). Absent: `browser.login`.
    #[serde(default)]
    pub login: Option<super::LoginMode>,
    /// A CEL expression over `request`, `identity` and `route` that must
    /// be true, checked after the rule's scopes, e.g.
    /// `request.method == "GET" || "admins" in identity.groups`. False, or
    /// an error while evaluating it, is a 403. See the policy guide for the
    /// variables.
    #[serde(default)]
    pub when: Option<String>,
    /// `enforce` (default), or `shadow`: the rule is evaluated in its place
    /// next to the enforcing policy and never changes an answer; where it
    /// would have, the disagreement is logged and counted
    /// (`gatehouse_shadow_disagreements_total`).
    #[serde(default)]
    pub mode: RuleMode,
    /// A rate limit per caller, e.g. `{per: user, limit: 100, window: 1m}`:
    /// at most `limit` requests per `window`, bursts up to `limit`, counted
    /// in the store (shared by every replica with `store.redis`). Over it:
    /// 429 with `Retry-After`. A store failure refuses (503).
    #[serde(default)]
    pub quota: Option<QuotaConfig>,
}

/// A rule's rate limit: `limit` requests per `window` for each caller
/// (GCRA: the allowance refills steadily, one request every
/// `window / limit`, and a caller who has been idle may use all `limit` at
/// once).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Whom the limit counts: `user` (the authenticated subject; not on an
    /// anonymous rule) or `client_ip`.
    pub per: QuotaPer,
    /// Requests allowed per window (at least 1).
    pub limit: u64,
    /// The window, e.g. `1m` (at least 1 second).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "super::schema::DurationText")]
    pub window: std::time::Duration,
}

/// Whom a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuotaPer {
    /// The authenticated caller's subject: one allowance per user, across
    /// all their credentials.
    User,
    /// The client's address (after `network.trusted_proxies`); IPv6
    /// addresses count per /64.
    ClientIp,
}

impl QuotaPer {
    /// The configuration name (`user`, `client_ip`).
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaPer::User => "user",
            QuotaPer::ClientIp => "client_ip",
        }
    }
}

/// Whether a rule decides requests or is only observed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleMode {
    /// The rule decides the requests it matches.
    #[default]
    Enforce,
    /// The rule is evaluated beside the enforcing rules, never enforced.
    Shadow,
}

/// Which requests a rule covers; an absent field matches anything.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MatchConfig {
    /// Hosts: exact (`api.example.com`) or wildcard (`*.example.com`).
    pub hosts: Vec<String>,
    /// Path matcher on the normalized path.
    pub path: Option<PathMatchConfig>,
    /// HTTP methods (upper case).
    pub methods: Vec<String>,
}

/// A path matcher.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PathMatchConfig {
    /// The whole path.
    Exact(String),
    /// A prefix of the path, always at a segment boundary: `/api` and
    /// `/api/` both match `/api/x`, and `/api` matches `/api` itself, but
    /// neither matches `/apix`.
    Prefix(String),
    /// A glob: `*` within a segment, `**` across segments.
    Glob(String),
    /// A template: literal segments, `{name}` (one named segment), `*`
    /// (one segment) and a final `**` (any rest, also none), e.g.
    /// `/jobs/v1/tool/{tool}/**`.
    Template(String),
}

/// Whether a rule needs a credential.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// A valid credential is required.
    #[default]
    Required,
    /// No credential is looked at; anyone passes.
    Anonymous,
}

/// How several required scopes combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Satisfy {
    /// Every scope is needed.
    #[default]
    All,
    /// One of them is enough.
    Any,
}

impl Satisfy {
    /// The lower-case name used in headers and context extensions.
    pub fn as_str(self) -> &'static str {
        match self {
            Satisfy::All => "all",
            Satisfy::Any => "any",
        }
    }
}

/// The challenge scheme in a 401's `WWW-Authenticate`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    /// `Bearer realm=…`.
    #[default]
    Bearer,
    /// `Basic realm=…`.
    Basic,
}

/// An identity header gatehouse can set on an allowed request.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum IdentityHeader {
    /// `X-Auth-Request-User`.
    User,
    /// `X-Auth-Request-Email`.
    Email,
    /// `X-Auth-Request-Uid`.
    Uid,
    /// `X-Auth-Request-Groups`: the names joined with `,`; a `,` or `%`
    /// inside a name is percent-encoded (`%2C`, `%25`).
    Groups,
    /// `X-Auth-Request-Token-Scopes`, `-Token-Scopes-Accepted`, `-Token-Scopes-Satisfy`.
    Scopes,
    /// `X-Auth-Request-Client-Ip`.
    ClientIp,
    /// `X-Auth-Request-Token`: the caller's token itself (opt-in).
    Token,
    /// `X-Auth-Request-Tool`: the tool the caller acts for.
    Tool,
}

impl IdentityHeader {
    /// The headers a rule emits unless it lists its own: all but the token.
    pub fn default_set() -> Vec<IdentityHeader> {
        vec![
            IdentityHeader::User,
            IdentityHeader::Email,
            IdentityHeader::Uid,
            IdentityHeader::Groups,
            IdentityHeader::Scopes,
            IdentityHeader::ClientIp,
            IdentityHeader::Tool,
        ]
    }
}
