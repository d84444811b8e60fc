//! Configuration of the browser login (`login`): the OpenID providers, the
//! callback URL, the allowed redirect domains and the server-side sessions.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Longest accepted `login.session.cache_ttl`: a logout on one replica
/// must reach every replica within a second.
pub const MAX_SESSION_CACHE_TTL: Duration = Duration::from_secs(1);

/// The session cookie's name when `cookie_domain` is not set. The
/// `__Host-` prefix makes browsers refuse it unless it is `Secure`, has
/// `Path=/` and no `Domain`: no sibling subdomain can set or shadow it.
pub const DEFAULT_HOST_COOKIE: &str = "__Host-gatehouse_session";

/// The session cookie's name when `cookie_domain` is set (a `__Host-`
/// cookie cannot carry a domain).
pub const DEFAULT_DOMAIN_COOKIE: &str = "gatehouse_session";

/// How long a started login may take, and how long the login-binding
/// cookie lives after the response that last set it.
pub const LOGIN_BINDING_TTL: Duration = Duration::from_secs(600);
/// The namespace of the binding cookie's hash (`store::hashed_id`), the
/// same for the login and the backends' authorizations.
pub const LOGIN_BINDING_NAMESPACE: &str = "login-binding";
/// Shortest accepted `login.session.lifetime`.
pub const MIN_SESSION_LIFETIME: Duration = Duration::from_secs(5);

/// Browser login through OpenID providers, with server-side sessions.
/// Absent: off (no session cookie is accepted).
///
/// With `session` only (no `providers`), gatehouse accepts session
/// cookies but serves no login endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LoginConfig {
    /// The OpenID providers users log in at (authorization code flow with
    /// PKCE). Several: `/auth/login` shows a choice page unless the link
    /// names one (`?provider=`).
    pub providers: Vec<LoginProviderConfig>,
    /// The absolute URL of `/auth/callback` as browsers reach it through
    /// the proxy (e.g. `https://app.example.org/auth/callback`): the
    /// `redirect_uri` registered at every provider. Required with
    /// `providers`.
    pub callback_url: Option<String>,
    /// Where the provider sends the browser after an RP-initiated logout
    /// (`post_logout_redirect_uri`, registered at the provider). Absent:
    /// the logout asks for no redirect back.
    pub post_logout_redirect_url: Option<String>,
    /// Hosts an absolute `rd` (return URL) may name: `app.example.org`
    /// (exactly that host) or `.example.org` (any subdomain of it). A
    /// relative `rd` (`/path`) is always allowed.
    pub allowed_redirect_domains: Vec<String>,
    /// The server-side sessions a login creates, and their cookie.
    pub session: SessionConfig,
}

/// One OpenID provider of the browser login.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginProviderConfig {
    /// Short name: in `/auth/login?provider=`, on the choice page, in the
    /// session. Letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// The issuer URL; its discovery document
    /// (`<issuer>/.well-known/openid-configuration`) is read in the
    /// background: until it loads, this provider's login answers 503.
    pub issuer: String,
    /// The client id registered at the provider.
    pub client_id: String,
    /// A file holding the client secret (trailing whitespace ignored).
    pub client_secret_file: String,
    /// Scopes asked for. Must include `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Which ID token (or userinfo) claims carry identity fields.
    #[serde(default)]
    pub claims: super::ClaimsConfig,
    /// When set, only members of one of these groups may log in.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// Extra parameters of the authorization request (e.g. `prompt:
    /// login`, `kc_idp_hint: github`). Cannot override the flow's own
    /// (`state`, `nonce`, `code_challenge`, ...).
    #[serde(default)]
    pub extra_auth_params: BTreeMap<String, String>,
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}

/// Authorization parameters the flow sets itself.
const RESERVED_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

impl LoginConfig {
    /// Checks what serde cannot; every error names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.session.validate()?;
        let absolute = |key: &str, url: &str| {
            let ok = url::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if ok {
                Ok(())
            } else {
                Err(ConfigError::invalid(
                    key,
                    format!("{url:?} is not an absolute http(s) URL"),
                ))
            }
        };
        if let Some(url) = &self.callback_url {
            absolute("login.callback_url", url)?;
        } else if !self.providers.is_empty() {
            return Err(ConfigError::invalid(
                "login.callback_url",
                "required with login.providers (the redirect_uri registered at the providers)",
            ));
        }
        if let Some(url) = &self.post_logout_redirect_url {
            absolute("login.post_logout_redirect_url", url)?;
        }
        for domain in &self.allowed_redirect_domains {
            let bare = domain.strip_prefix('.').unwrap_or(domain);
            let ok = !bare.is_empty()
                && bare
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                && !bare.contains("..");
            if !ok {
                return Err(ConfigError::invalid(
                    "login.allowed_redirect_domains",
                    format!("{domain:?} is not a host name (or .suffix)"),
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let key = format!("login.providers[{i}]");
            let name_ok = !p.name.is_empty()
                && p.name.len() <= 64
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !name_ok {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    "1 to 64 letters, digits, '-', '_' or '.'",
                ));
            }
            if !names.insert(p.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    format!("{:?} is used twice", p.name),
                ));
            }
            absolute(&format!("{key}.issuer"), &p.issuer)?;
            if p.client_id.is_empty() {
                return Err(ConfigError::invalid(format!("{key}.client_id"), "empty"));
            }
            if !p.scopes.iter().any(|s| s == "openid") {
                return Err(ConfigError::invalid(
                    format!("{key}.scopes"),
                    "must include openid",
                ));
            }
            if let Some(bad) = p
                .extra_auth_params
                .keys()
                .find(|k| RESERVED_PARAMS.contains(&k.as_str()))
            {
                return Err(ConfigError::invalid(
                    format!("{key}.extra_auth_params.{bad}"),
                    "set by the login flow itself",
                ));
            }
        }
        Ok(())
    }
}

/// Server-side browser sessions: the cookie holds only a random id; the
/// identity and the provider's tokens stay in the store (encrypted as the
/// store encrypts every value).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// The session cookie's name. Default: `__Host-gatehouse_session`, or
    /// `gatehouse_session` when `cookie_domain` is set (a `__Host-` name
    /// is refused then: browsers drop a `__Host-` cookie with a domain).
    pub cookie_name: Option<String>,
    /// The cookie's `Domain` (e.g. `example.org`, to share one login
    /// between `a.example.org` and `b.example.org`). Absent: host-only,
    /// the safest choice.
    pub cookie_domain: Option<String>,
    /// Absolute lifetime of a session from its login, however active it
    /// is. At least 5s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "super::schema::DurationText")]
    pub lifetime: Duration,
    /// A session unused for this long ends. `0s`: no inactivity limit
    /// (only `lifetime`). Measured to within a tenth of itself (at least
    /// 1s): a session's last use is written at most that often.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "super::schema::DurationText")]
    pub inactivity_timeout: Duration,
    /// How long a replica trusts what it last read about a session (valid
    /// or gone) before reading the store again: the longest delay before a
    /// logout on another replica takes effect here. At most 1s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "super::schema::DurationText")]
    pub cache_ttl: Duration,
    /// Most sessions held in that cache.
    pub cache_size: usize,
    /// Refresh the provider's access token (with its refresh token) this
    /// long before it expires, or at half its life when that is later (a
    /// token shorter-lived than this is not refreshed on every request).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "super::schema::DurationText")]
    pub refresh_before: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            cookie_name: None,
            cookie_domain: None,
            lifetime: Duration::from_secs(12 * 3600),
            inactivity_timeout: Duration::from_secs(30 * 60),
            cache_ttl: Duration::from_millis(500),
            cache_size: 10_000,
            refresh_before: Duration::from_secs(60),
        }
    }
}

impl SessionConfig {
    /// The cookie's name: the configured one, else the default for the
    /// domain setting.
    pub fn cookie_name(&self) -> &str {
        match (&self.cookie_name, &self.cookie_domain) {
            (Some(name), _) => name,
            (None, None) => DEFAULT_HOST_COOKIE,
            (None, Some(_)) => DEFAULT_DOMAIN_COOKIE,
        }
    }

    /// A `Set-Cookie` value for the session cookie holding `value` for
    /// `max_age` seconds (0: the browser drops it). The login sets it, a
    /// logout or a stale-session redirect clears it.
    pub fn set_cookie_header(&self, value: &str, max_age: u64) -> String {
        format!(
            "{}={value}{}",
            self.cookie_name(),
            self.cookie_attributes(max_age)
        )
    }

    /// The login-binding cookie's name: the session cookie's with its
    /// `_session` suffix replaced by `_login` (else `_login` appended), so
    /// `__Host-gatehouse_login` by default. It ties a login's callback to
    /// the browser that started it (see `login`).
    pub fn binding_cookie_name(&self) -> String {
        let name = self.cookie_name();
        let stem = name.strip_suffix("_session").unwrap_or(name);
        format!("{stem}_login")
    }

    /// Everything after `name=value` in a gatehouse cookie: `Path=/;
    /// Secure; HttpOnly; SameSite=Lax; Max-Age=<max_age>`, and `Domain`
    /// when configured. The one place these attributes are written, for
    /// the session and the login-binding cookies alike.
    pub fn cookie_attributes(&self, max_age: u64) -> String {
        let mut attributes = format!("; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}");
        if let Some(domain) = &self.cookie_domain {
            attributes.push_str("; Domain=");
            attributes.push_str(domain);
        }
        attributes
    }

    /// Checks what serde cannot; every error names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const KEY: &str = "login.session";
        let name = self.cookie_name();
        // RFC 6265 cookie-name: an RFC 7230 token.
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || name.len() > 128 || !name.bytes().all(token) {
            return Err(ConfigError::invalid(
                format!("{KEY}.cookie_name"),
                "1 to 128 characters of letters, digits and !#$%&'*+-.^_`|~",
            ));
        }
        if let Some(domain) = &self.cookie_domain {
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            let bare = domain.strip_prefix('.').unwrap_or(domain);
            if bare.len() > 253 || !bare.split('.').all(label_ok) {
                return Err(ConfigError::invalid(
                    format!("{KEY}.cookie_domain"),
                    format!("{domain:?} is not a domain name"),
                ));
            }
            if name.starts_with("__Host-") {
                return Err(ConfigError::invalid(
                    format!("{KEY}.cookie_name"),
                    "a __Host- cookie cannot have a domain: drop cookie_domain or rename the \
                     cookie (the default with a domain is gatehouse_session)",
                ));
            }
        }
        if self.lifetime < MIN_SESSION_LIFETIME {
            return Err(ConfigError::invalid(
                format!("{KEY}.lifetime"),
                "at least 5s",
            ));
        }
        if self.cache_ttl > MAX_SESSION_CACHE_TTL {
            return Err(ConfigError::invalid(
                format!("{KEY}.cache_ttl"),
                "at most 1s (a logout must reach every replica within a second)",
            ));
        }
        if self.cache_size == 0 {
            return Err(ConfigError::invalid(
                format!("{KEY}.cache_size"),
                "at least 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(config: SessionConfig, key: &str) {
        let err = config.validate().expect_err("refused");
        assert!(err.to_string().contains(key), "{err}");
    }

    #[test]
    fn defaults_are_valid_and_host_only() {
        let config = SessionConfig::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.cookie_name(), "__Host-gatehouse_session");
        assert_eq!(config.lifetime, Duration::from_secs(43_200));
        assert_eq!(config.inactivity_timeout, Duration::from_secs(1800));
    }

    #[test]
    fn a_domain_changes_the_default_name_and_refuses_host_prefix() {
        let with_domain = SessionConfig {
            cookie_domain: Some("example.org".into()),
            ..Default::default()
        };
        assert!(with_domain.validate().is_ok());
        assert_eq!(with_domain.cookie_name(), "gatehouse_session");
        refused(
            SessionConfig {
                cookie_name: Some("__Host-mine".into()),
                ..with_domain.clone()
            },
            "login.session.cookie_name",
        );
        assert!(
            SessionConfig {
                cookie_name: Some("__Secure-mine".into()),
                ..with_domain
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for name in ["", "a b", "a;b", "a=b", "é"] {
            refused(
                SessionConfig {
                    cookie_name: Some(name.into()),
                    ..Default::default()
                },
                "login.session.cookie_name",
            );
        }
        for domain in ["", "a..b", "-a.org", "a_b.org", "exa mple.org"] {
            refused(
                SessionConfig {
                    cookie_domain: Some(domain.into()),
                    ..Default::default()
                },
                "login.session.cookie_domain",
            );
        }
        refused(
            SessionConfig {
                lifetime: Duration::from_secs(4),
                ..Default::default()
            },
            "login.session.lifetime",
        );
        refused(
            SessionConfig {
                cache_ttl: Duration::from_millis(1001),
                ..Default::default()
            },
            "login.session.cache_ttl",
        );
        refused(
            SessionConfig {
                cache_size: 0,
                ..Default::default()
            },
            "login.session.cache_size",
        );
        // No inactivity limit is allowed.
        assert!(
            SessionConfig {
                inactivity_timeout: Duration::ZERO,
                ..Default::default()
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn loads_from_yaml() {
        let cfg = crate::config::load(
            &crate::config::ConfigSource::Text(
                "login: {session: {lifetime: 8h, inactivity_timeout: 0s}}\n".into(),
            ),
            [],
        )
        .expect("loads");
        let login = cfg.login.expect("login on");
        assert_eq!(login.session.lifetime, Duration::from_secs(8 * 3600));
        assert!(login.session.inactivity_timeout.is_zero());
        assert_eq!(login.session.cache_ttl, Duration::from_millis(500));
    }
}
