//! The login redirect: a browser navigation without a credential, on a
//! route whose rule says `login: redirect`, is sent to the login page with
//! the URL it asked for in `rd`. The policy has already decided that the
//! request is a navigation (it keeps [`LoginRedirect`] only then); this
//! builds the refusal.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::model::deny::Deny;
use crate::model::request::Request;
use crate::model::requirement::LoginRedirect;

/// The query parameter naming where to return after the login.
pub const RETURN_PARAMETER: &str = "rd";

/// Everything but RFC 3986's unreserved characters is escaped in `rd`, so
/// the original URL's own `?`, `&`, `#` and `%` stay inside the parameter.
const RD: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The 302 for a request without a credential: `Location` is the login
/// page with `rd=<original URL>`; a session cookie the request presented
/// (stale, since no credential was found) is expired, and the
/// login-binding cookie is set when the request lacks it (the login page
/// would set it too; doing it here lets one response carry both cookies,
/// which Envoy passes on as two headers).
pub fn required(login: &LoginRedirect, request: &Request) -> Deny {
    let cookie = login.session_cookie.as_ref();
    Deny::LoginRequired {
        location: location(&login.login_path, request),
        set_cookies: cookie
            .filter(|c| presents_cookie(request, &c.name))
            .map(|c| c.clear.to_string())
            .into_iter()
            .collect(),
        binding: cookie
            .filter(|c| !presents_cookie(request, &c.binding.name))
            .map(|c| c.binding.clone()),
    }
}

/// `<login_path>?rd=<percent-encoded original URL>`.
pub fn location(login_path: &str, request: &Request) -> String {
    let original = original_url(request);
    format!(
        "{login_path}?{RETURN_PARAMETER}={}",
        utf8_percent_encode(&original, RD)
    )
}

/// The URL the client asked for, rebuilt from what Envoy sent: scheme,
/// authority (host and port), the normalized path and the raw query.
pub fn original_url(request: &Request) -> String {
    let scheme = if request.scheme.is_empty() {
        "https"
    } else {
        request.scheme.as_str()
    };
    let authority = if request.authority.is_empty() {
        request.host.as_str()
    } else {
        request.authority.as_str()
    };
    match &request.query {
        Some(query) => format!("{scheme}://{authority}{}?{query}", request.path),
        None => format!("{scheme}://{authority}{}", request.path),
    }
}

/// Whether the request's `Cookie` header holds a cookie named `name`.
fn presents_cookie(request: &Request, name: &str) -> bool {
    request.header("cookie").is_some_and(|cookies| {
        cookies
            .split(';')
            .any(|pair| pair.trim().split_once('=').is_some_and(|(n, _)| n == name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::requirement::{BindingCookie, SessionCookie};

    fn request(authority: &str, path: &str, query: Option<&str>, cookie: Option<&str>) -> Request {
        Request {
            method: "GET".into(),
            scheme: "https".into(),
            host: authority.split(':').next().unwrap_or_default().into(),
            authority: authority.into(),
            path: path.into(),
            query: query.map(Into::into),
            headers: cookie
                .map(|c| ("cookie".to_string(), c.to_string()))
                .into_iter()
                .collect(),
            ..Request::default()
        }
    }

    fn login(cookie: Option<&str>) -> LoginRedirect {
        LoginRedirect {
            login_path: "/auth/login".into(),
            session_cookie: cookie.map(|name| SessionCookie {
                name: name.into(),
                clear: format!("{name}=; cleared").into(),
                binding: BindingCookie {
                    name: "bind".into(),
                    attributes: "; attrs".into(),
                },
            }),
        }
    }

    #[test]
    fn location_carries_the_whole_original_url_encoded() {
        let r = request("app.example:8443", "/a/b%20c", Some("x=1&y=%2F#f"), None);
        assert_eq!(
            original_url(&r),
            "https://app.example:8443/a/b%20c?x=1&y=%2F#f"
        );
        assert_eq!(
            location("/auth/login", &r),
            "/auth/login?rd=https%3A%2F%2Fapp.example%3A8443%2Fa%2Fb%2520c%3Fx%3D1%26y%3D%252F%23f"
        );
        // No query: no `?` in rd; unreserved characters stay as they are.
        let plain = request("app.example", "/x-y_z.~", None, None);
        assert_eq!(
            location("https://login.example/auth/login", &plain),
            "https://login.example/auth/login?rd=https%3A%2F%2Fapp.example%2Fx-y_z.~"
        );
    }

    #[test]
    fn the_decoded_rd_is_the_original_url() {
        let r = request("h.example", "/p", Some("a=b&c=%26"), None);
        let Deny::LoginRequired { location, .. } = required(&login(None), &r) else {
            panic!("not a login redirect");
        };
        let rd = location.strip_prefix("/auth/login?rd=").expect("prefix");
        let decoded = percent_encoding::percent_decode_str(rd)
            .decode_utf8()
            .expect("utf-8");
        assert_eq!(decoded, "https://h.example/p?a=b&c=%26");
    }

    #[test]
    fn a_presented_session_cookie_is_expired_and_a_missing_binding_set() {
        let name = "__Host-gatehouse_session";
        let set = |cookie: Option<&str>| {
            let r = request("h", "/", None, cookie);
            let Deny::LoginRequired {
                set_cookies,
                binding,
                ..
            } = required(&login(Some(name)), &r)
            else {
                panic!("not a login redirect");
            };
            (set_cookies, binding.map(|b| b.name.to_string()))
        };
        let bind = Some("bind".to_string());
        // A stale session and no binding: the one cleared, the other set.
        assert_eq!(
            set(Some("a=1; __Host-gatehouse_session=old; b=2")),
            (
                vec!["__Host-gatehouse_session=; cleared".to_string()],
                bind.clone()
            )
        );
        assert_eq!(set(None), (vec![], bind));
        // A binding already there is kept; a name that only contains the
        // session cookie's is not it.
        assert_eq!(
            set(Some("bind=x; __Host-gatehouse_session=old")),
            (vec!["__Host-gatehouse_session=; cleared".to_string()], None)
        );
        for cookie in ["x__Host-gatehouse_session=1; bind=y", "other=1; bind=y"] {
            assert_eq!(set(Some(cookie)), (vec![], None), "{cookie:?}");
        }
        // A route that does not accept sessions sets and clears nothing.
        let stale = request("h", "/", None, Some("__Host-gatehouse_session=old"));
        assert_eq!(
            required(&login(None), &stale),
            Deny::LoginRequired {
                location: "/auth/login?rd=https%3A%2F%2Fh%2F".into(),
                set_cookies: vec![],
                binding: None,
            }
        );
    }
}
