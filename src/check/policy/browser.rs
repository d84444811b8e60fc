//! Browsers and other origins, compiled from `browser` and `cors`: which
//! request is a browser navigation (sent to log in rather than refused),
//! which is a CORS preflight (let through without a credential when
//! `cors` is configured), and which origins may send credentialed
//! requests. The policy applies the first two to a requirement
//! ([`Browser::apply`]); authz reads [`Origins`] (`authz::origin`,
//! `authz::csrf`).

use crate::config::SessionConfig;
use crate::model::requirement::{BindingCookie, SessionCookie};
use std::sync::Arc;

use crate::config::{BrowserConfig, ConfigError, CorsConfig, LoginMode};
use crate::model::request::Request;
use crate::model::requirement::{Access, LoginRedirect, Requirement};

/// The compiled `browser` and `cors` sections.
#[derive(Debug, Clone)]
pub struct Browser {
    login: LoginMode,
    login_path: Arc<str>,
    session_cookie: SessionCookie,
    methods: Box<[String]>,
    accept: Box<[String]>,
    absent_headers: Box<[String]>,
    origins: Option<Origins>,
}

/// The origins other than a request's own that may call protected routes
/// (`cors`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origins {
    /// Exact origins, normalized ([`normalize_origin`]).
    exact: Box<[String]>,
    /// `*`: any origin (never with `allow_credentials`).
    any: bool,
    /// Whether listed origins may send the session cookie.
    allow_credentials: bool,
}

impl Browser {
    /// Validates and compiles the sections with the default session
    /// cookie; errors name the key.
    pub fn compile(
        config: &BrowserConfig,
        cors: Option<&CorsConfig>,
    ) -> Result<Browser, ConfigError> {
        Browser::compile_for(config, cors, &SessionConfig::default())
    }

    /// Validates and compiles the sections; a stale-session redirect
    /// clears `session`'s cookie (name, domain) the way the login sets it.
    pub fn compile_for(
        config: &BrowserConfig,
        cors: Option<&CorsConfig>,
        session: &SessionConfig,
    ) -> Result<Browser, ConfigError> {
        check_login_path(&config.login_path)?;
        let nav = &config.navigation;
        let mut methods = Vec::with_capacity(nav.methods.len());
        for (i, m) in nav.methods.iter().enumerate() {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(ConfigError::invalid(
                    format!("browser.navigation.methods[{i}]"),
                    format!("{m:?} is not an HTTP method"),
                ));
            }
            methods.push(m.to_ascii_uppercase());
        }
        let mut accept = Vec::with_capacity(nav.accept.len());
        for (i, t) in nav.accept.iter().enumerate() {
            let lower = t.trim().to_ascii_lowercase();
            let valid = lower.split_once('/').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a != "*"
                    && b != "*"
                    && !lower.contains([';', ',', ' '])
            });
            if !valid {
                return Err(ConfigError::invalid(
                    format!("browser.navigation.accept[{i}]"),
                    format!("{t:?} is not a media type like text/html (no wildcards)"),
                ));
            }
            accept.push(lower);
        }
        let mut absent_headers = Vec::with_capacity(nav.absent_headers.len());
        for (i, h) in nav.absent_headers.iter().enumerate() {
            let name = http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                ConfigError::invalid(
                    format!("browser.navigation.absent_headers[{i}]"),
                    format!("{h:?} is not an HTTP header name"),
                )
            })?;
            absent_headers.push(name.as_str().to_string());
        }
        Ok(Browser {
            login: config.login,
            login_path: config.login_path.as_str().into(),
            session_cookie: SessionCookie {
                name: session.cookie_name().into(),
                clear: session.set_cookie_header("", 0).into(),
                binding: BindingCookie {
                    name: session.binding_cookie_name().into(),
                    attributes: session
                        .cookie_attributes(crate::config::LOGIN_BINDING_TTL.as_secs())
                        .into(),
                },
            },
            methods: methods.into(),
            accept: accept.into(),
            absent_headers: absent_headers.into(),
            origins: cors.map(Origins::compile).transpose()?,
        })
    }

    /// The login redirect of a rule whose `login` is `mode` (absent: the
    /// global default), accepting sessions or not; `None` for `deny`.
    pub fn login_redirect(&self, mode: Option<LoginMode>, sessions: bool) -> Option<LoginRedirect> {
        match mode.unwrap_or(self.login) {
            LoginMode::Deny => None,
            LoginMode::Redirect => Some(LoginRedirect {
                login_path: self.login_path.clone(),
                session_cookie: sessions.then(|| self.session_cookie.clone()),
            }),
        }
    }

    /// The cross-origin settings, if `cors` is configured.
    pub fn origins(&self) -> Option<&Origins> {
        self.origins.as_ref()
    }

    /// What depends on the request being a navigation or a preflight: a
    /// rule's login redirect is kept only for a browser navigation, and
    /// with `cors` configured a preflight needs no credential (Envoy's CORS
    /// filter or the upstream answers it; authz checks its origin).
    pub fn apply(&self, request: &Request, mut requirement: Requirement) -> Requirement {
        if requirement.login.is_some() && !self.is_navigation(request) {
            requirement.login = None;
        }
        if self.origins.is_some() && is_preflight(request) {
            requirement.access = Access::Anonymous;
            requirement.login = None;
        }
        requirement
    }

    /// A browser navigation: one of the methods, an `Accept` naming one of
    /// the media types (quality above zero), none of the absent headers.
    pub fn is_navigation(&self, request: &Request) -> bool {
        self.methods.contains(&request.method)
            && !self
                .absent_headers
                .iter()
                .any(|h| request.headers.contains_key(h))
            && request
                .header("accept")
                .is_some_and(|accept| accepts_any(accept, &self.accept))
    }
}

/// Whether an `Accept` header names one of `types` with a quality above 0.
fn accepts_any(accept: &str, types: &[String]) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !refused && types.iter().any(|t| t.eq_ignore_ascii_case(media))
    })
}

/// A CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`.
pub fn is_preflight(request: &Request) -> bool {
    request.method == "OPTIONS"
        && request.headers.contains_key("origin")
        && request
            .headers
            .contains_key("access-control-request-method")
}

impl Origins {
    fn compile(config: &CorsConfig) -> Result<Origins, ConfigError> {
        let mut exact = Vec::with_capacity(config.allowed_origins.len());
        let mut any = false;
        for (i, raw) in config.allowed_origins.iter().enumerate() {
            let key = format!("cors.allowed_origins[{i}]");
            if raw == "*" {
                if config.allow_credentials {
                    return Err(ConfigError::invalid(
                        key,
                        "`*` cannot be combined with `cors.allow_credentials: true`: list the origins that may send credentials",
                    ));
                }
                any = true;
                continue;
            }
            match normalize_origin(raw) {
                Some(origin) if !raw.ends_with('/') => exact.push(origin),
                _ => {
                    return Err(ConfigError::invalid(
                        key,
                        format!(
                            "{raw:?} is not an origin: write scheme://host[:port] (http or https, no path, no trailing slash) or `*`"
                        ),
                    ));
                }
            }
        }
        Ok(Origins {
            exact: exact.into(),
            any,
            allow_credentials: config.allow_credentials,
        })
    }

    /// Whether `origin` (normalized) may send a request; `ambient`: the
    /// request is authenticated by the browser's own credential (the
    /// session cookie), which only listed origins with
    /// `allow_credentials` may send.
    pub fn allows(&self, origin: &str, ambient: bool) -> bool {
        if ambient {
            self.allow_credentials && self.exact.iter().any(|o| o == origin)
        } else {
            self.any || self.exact.iter().any(|o| o == origin)
        }
    }
}

/// The request's own origin, `scheme://authority`, normalized like an
/// `Origin` header (default port dropped).
pub fn request_origin(request: &Request) -> Option<String> {
    let scheme = if request.scheme.is_empty() {
        "https"
    } else {
        request.scheme.as_str()
    };
    let authority = if request.authority.is_empty() {
        &request.host
    } else {
        &request.authority
    };
    normalize_origin(&format!("{scheme}://{authority}"))
}

/// An origin (`scheme://host[:port]`) in the form browsers send it: lower
/// case, default port dropped. `None` for anything else (`null`, a path,
/// user info, another scheme).
pub fn normalize_origin(raw: &str) -> Option<String> {
    let (scheme, rest) = raw.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest).to_ascii_lowercase();
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if authority.is_empty() || !authority.chars().all(valid) {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !p.contains(']') => (h, Some(p)),
        _ => (authority.as_str(), None),
    };
    if host.is_empty()
        || port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    Some(match port {
        Some(p) if p != default_port => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// The origin of a `Referer` URL (its scheme and authority).
pub fn referer_origin(referer: &str) -> Option<String> {
    let (scheme, rest) = referer.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    normalize_origin(&format!("{scheme}://{}", &rest[..end]))
}

/// `/path` (not `//host` nor `/\host`) or an absolute http(s) URL, with no
/// query, fragment, space or control character.
fn check_login_path(path: &str) -> Result<(), ConfigError> {
    let absolute_url = ["https://", "http://"].iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
    });
    let local = path.starts_with('/') && !path.starts_with("//") && !path.starts_with("/\\");
    let clean = !path.contains(['?', '#', '\\', ' ']) && !path.chars().any(char::is_control);
    if (absolute_url || local) && clean {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            "browser.login_path",
            format!(
                "{path:?} must be a path (/auth/login) or an absolute http(s) URL, without a query"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NavigationConfig;

    fn browser() -> Browser {
        Browser::compile(&BrowserConfig::default(), None).expect("defaults are valid")
    }

    fn request(method: &str, headers: &[(&str, &str)]) -> Request {
        crate::testkit::request(method, "/", headers)
    }

    const FIREFOX: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

    #[test]
    fn a_navigation_is_a_get_accepting_html_without_its_own_credential() {
        let b = browser();
        assert!(b.is_navigation(&request("GET", &[("accept", FIREFOX)])));
        assert!(b.is_navigation(&request("HEAD", &[("accept", "TEXT/HTML")])));
        assert!(b.is_navigation(&request(
            "GET",
            &[("accept", "application/json, text/html;q=0.5")]
        )));
        for (method, headers) in [
            ("GET", vec![("accept", "application/json")]),
            ("GET", vec![("accept", "*/*")]),
            ("GET", vec![]),
            ("GET", vec![("accept", "text/html;q=0")]),
            (
                "GET",
                vec![("accept", "text/html"), ("authorization", "Bearer x")],
            ),
            (
                "GET",
                vec![
                    ("accept", "text/html"),
                    ("x-requested-with", "XMLHttpRequest"),
                ],
            ),
            ("POST", vec![("accept", FIREFOX)]),
            ("DELETE", vec![("accept", FIREFOX)]),
        ] {
            assert!(
                !b.is_navigation(&request(method, &headers)),
                "{method} {headers:?}"
            );
        }
    }

    #[test]
    fn the_predicate_is_configurable() {
        let config = BrowserConfig {
            navigation: NavigationConfig {
                methods: vec!["get".into(), "post".into()],
                accept: vec!["application/xhtml+xml".into()],
                absent_headers: vec!["X-Api-Client".into()],
            },
            ..BrowserConfig::default()
        };
        let b = Browser::compile(&config, None).expect("valid");
        assert!(b.is_navigation(&request("POST", &[("accept", FIREFOX)])));
        assert!(!b.is_navigation(&request("GET", &[("accept", "text/html")])));
        assert!(!b.is_navigation(&request(
            "GET",
            &[("accept", FIREFOX), ("x-api-client", "1")]
        )));
        // Authorization is no longer in the list: it no longer matters here.
        assert!(b.is_navigation(&request(
            "GET",
            &[("accept", FIREFOX), ("authorization", "Bearer x")]
        )));
    }

    #[test]
    fn bad_browser_settings_name_their_key() {
        let bad = |config: BrowserConfig| Browser::compile(&config, None).unwrap_err().to_string();
        for path in [
            "auth/login",
            "//evil.example/x",
            "/\\evil",
            "/auth/login?x=1",
            "javascript:alert(1)",
            "https://",
        ] {
            let err = bad(BrowserConfig {
                login_path: path.into(),
                ..BrowserConfig::default()
            });
            assert!(err.contains("browser.login_path"), "{path}: {err}");
        }
        assert!(
            Browser::compile(
                &BrowserConfig {
                    login_path: "https://login.example/auth/login".into(),
                    ..BrowserConfig::default()
                },
                None
            )
            .is_ok()
        );
        let nav = |n: NavigationConfig| BrowserConfig {
            navigation: n,
            ..BrowserConfig::default()
        };
        let err = bad(nav(NavigationConfig {
            accept: vec!["*/*".into()],
            ..NavigationConfig::default()
        }));
        assert!(err.contains("browser.navigation.accept[0]"), "{err}");
        let err = bad(nav(NavigationConfig {
            methods: vec!["GET".into(), "G T".into()],
            ..NavigationConfig::default()
        }));
        assert!(err.contains("browser.navigation.methods[1]"), "{err}");
        let err = bad(nav(NavigationConfig {
            absent_headers: vec!["bad header".into()],
            ..NavigationConfig::default()
        }));
        assert!(
            err.contains("browser.navigation.absent_headers[0]"),
            "{err}"
        );
    }

    #[test]
    fn origins_are_exact_and_star_excludes_credentials() {
        let cors = |list: &[&str], allow_credentials| CorsConfig {
            allowed_origins: list.iter().map(|s| s.to_string()).collect(),
            allow_credentials,
        };
        let compile = |c: &CorsConfig| Browser::compile(&BrowserConfig::default(), Some(c));
        let err = compile(&cors(&["*"], true)).unwrap_err().to_string();
        assert!(
            err.contains("cors.allowed_origins[0]") && err.contains("allow_credentials"),
            "{err}"
        );
        for bad in [
            "https://ui.example/",
            "https://ui.example/app",
            "null",
            "ui.example",
            "ftp://ui.example",
            "https://user@ui.example",
        ] {
            let err = compile(&cors(&["https://ok.example", bad], false))
                .unwrap_err()
                .to_string();
            assert!(err.contains("cors.allowed_origins[1]"), "{bad}: {err}");
        }
        let b = compile(&cors(
            &["HTTPS://UI.Example:443", "http://localhost:3000"],
            true,
        ))
        .expect("valid");
        let o = b.origins().expect("configured");
        assert!(o.allows("https://ui.example", true));
        assert!(o.allows("http://localhost:3000", false));
        assert!(!o.allows("http://localhost:3001", false));
        assert!(!o.allows("https://ui.example.evil", false));
        assert!(browser().origins().is_none());
    }

    #[test]
    fn origins_normalize_like_browsers_send_them() {
        assert_eq!(
            normalize_origin("https://A.example:443").as_deref(),
            Some("https://a.example")
        );
        assert_eq!(
            normalize_origin("http://a.example:80").as_deref(),
            Some("http://a.example")
        );
        assert_eq!(
            normalize_origin("http://a.example:8080").as_deref(),
            Some("http://a.example:8080")
        );
        assert_eq!(
            normalize_origin("http://[::1]:8080").as_deref(),
            Some("http://[::1]:8080")
        );
        assert_eq!(
            normalize_origin("http://[::1]").as_deref(),
            Some("http://[::1]")
        );
        for bad in [
            "null",
            "https://",
            "https://a.example:x",
            "https://a/b",
            "https://a b",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
        assert_eq!(
            referer_origin("https://a.example:443/p?q#f").as_deref(),
            Some("https://a.example")
        );
        assert_eq!(
            referer_origin("https://a.example?q").as_deref(),
            Some("https://a.example")
        );
        assert_eq!(referer_origin("/relative"), None);
        let mut r = request("GET", &[]);
        assert_eq!(request_origin(&r).as_deref(), Some("https://app.example"));
        r.authority = "app.example:8443".into();
        r.scheme = "http".into();
        assert_eq!(
            request_origin(&r).as_deref(),
            Some("http://app.example:8443")
        );
    }

    #[test]
    fn apply_keeps_the_login_only_for_navigations_and_frees_preflights() {
        let requirement = Requirement {
            rule: "r".into(),
            access: Access::Authenticated {
                scopes: Arc::from([]),
                satisfy: crate::config::Satisfy::All,
            },
            auth_type: crate::config::AuthType::Bearer,
            headers: Arc::from([]),
            credentials: crate::model::identity::AcceptedCredentials::ALL,
            tool: None,
            login: browser().login_redirect(Some(LoginMode::Redirect), true),
            condition: None,
        };
        assert_eq!(
            requirement
                .login
                .as_ref()
                .and_then(|l| l.session_cookie.as_ref())
                .map(|c| &*c.name),
            Some("__Host-gatehouse_session")
        );
        let b = browser();
        let nav = b.apply(
            &request("GET", &[("accept", "text/html")]),
            requirement.clone(),
        );
        assert!(nav.login.is_some());
        let api = b.apply(
            &request("GET", &[("accept", "application/json")]),
            requirement.clone(),
        );
        assert!(api.login.is_none());
        // Without cors a preflight is checked like any request.
        let preflight = request(
            "OPTIONS",
            &[
                ("origin", "https://ui.example"),
                ("access-control-request-method", "PUT"),
            ],
        );
        assert!(is_preflight(&preflight));
        assert!(!is_preflight(&request(
            "OPTIONS",
            &[("origin", "https://ui.example")]
        )));
        assert_eq!(
            b.apply(&preflight, requirement.clone()).access,
            requirement.access
        );
        let with_cors = Browser::compile(&BrowserConfig::default(), Some(&CorsConfig::default()))
            .expect("valid");
        assert_eq!(
            with_cors.apply(&preflight, requirement.clone()).access,
            Access::Anonymous
        );
        // The global default is deny; a rule may say redirect, or deny.
        assert!(b.login_redirect(None, true).is_none());
        assert!(b.login_redirect(Some(LoginMode::Deny), true).is_none());
        assert!(
            b.login_redirect(Some(LoginMode::Redirect), false)
                .is_some_and(|l| l.session_cookie.is_none())
        );
    }
}
