//! Configuration of the browser login (`login`): server-side sessions now;
//! the OpenID providers, the allowed redirect domains and the endpoints'
//! settings join this section with the login endpoints.

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

/// Shortest accepted `login.session.lifetime`.
pub const MIN_SESSION_LIFETIME: Duration = Duration::from_secs(60);

/// Browser login through OpenID providers, with server-side sessions.
/// Absent: off (no session cookie is accepted).
///
/// Only `session` exists so far; `providers`, `allowed_redirect_domains`
/// and the other settings of the login endpoints are added to this section
/// (each with its default, so that a configuration with only `session`
/// stays valid).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LoginConfig {
    /// The server-side sessions a login creates, and their cookie.
    pub session: SessionConfig,
}

impl LoginConfig {
    /// Checks what serde cannot; every error names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.session.validate()
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
    /// is. At least 1m.
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
    /// long before it expires.
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
    /// `max_age` seconds (0: the browser drops it): `Path=/; Secure;
    /// HttpOnly; SameSite=Lax`, and `Domain` when configured. The one
    /// place the cookie's attributes are written (the login sets it, a
    /// logout or a stale-session redirect clears it).
    pub fn set_cookie_header(&self, value: &str, max_age: u64) -> String {
        let mut cookie = format!(
            "{}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}",
            self.cookie_name()
        );
        if let Some(domain) = &self.cookie_domain {
            cookie.push_str("; Domain=");
            cookie.push_str(domain);
        }
        cookie
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
                "at least 1m",
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
                lifetime: Duration::from_secs(59),
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
