//! The return URL (`rd`) of a login or logout: no open redirect.
//!
//! Accepted: a path on this site (`/…`, but not `//…` or `/\…`, which
//! browsers read as another host), or an absolute `http(s)://` URL whose
//! host is in `login.allowed_redirect_domains` (`host` exactly, `.suffix`
//! for its subdomains), without user info. Refused outright: control
//! characters, whitespace and backslashes anywhere (browsers strip or
//! rewrite them), and scheme-relative tricks like `https:evil`.

/// Why a return URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    /// Control characters, whitespace or a backslash.
    #[error("the return URL holds forbidden characters")]
    Characters,
    /// Neither a local path nor an absolute http(s) URL.
    #[error("the return URL must be a path starting with a single / or an http(s) URL")]
    Shape,
    /// User info (`https://user@host`) in an absolute URL.
    #[error("the return URL must not carry user info")]
    UserInfo,
    /// A host outside `login.allowed_redirect_domains`.
    #[error("the return URL's host is not in login.allowed_redirect_domains")]
    Host,
}

/// `rd` if it is a safe place to send the browser back to, as it will be
/// sent (an absolute URL normalized by the URL parser).
pub fn validate(rd: &str, allowed_domains: &[String]) -> Result<String, RedirectError> {
    if rd.is_empty()
        || rd
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return Err(RedirectError::Characters);
    }
    if rd.starts_with('/') {
        return if rd.starts_with("//") {
            Err(RedirectError::Shape)
        } else {
            Ok(rd.to_string())
        };
    }
    // Only the two spelled-out schemes with their `//`: the URL parser
    // would read `https:evil` as `https://evil/`.
    let lower = rd.get(..8).unwrap_or(rd).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(RedirectError::Shape);
    }
    let url = url::Url::parse(rd).map_err(|_| RedirectError::Shape)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RedirectError::UserInfo);
    }
    let Some(host) = url.host() else {
        return Err(RedirectError::Host);
    };
    let is_domain = matches!(host, url::Host::Domain(_));
    let host = host.to_string().to_ascii_lowercase();
    let allowed = allowed_domains.iter().any(|d| {
        let d = d.to_ascii_lowercase();
        match d.strip_prefix('.') {
            // Subdomains of a name; an IP address has none.
            Some(suffix) => {
                is_domain
                    && host
                        .strip_suffix(suffix)
                        .is_some_and(|head| head.ends_with('.') && head.len() > 1)
            }
            None => host == d,
        }
    });
    if allowed {
        Ok(url.to_string())
    } else {
        Err(RedirectError::Host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec!["app.example.org".into(), ".example.net".into()]
    }

    fn ok(rd: &str) -> String {
        validate(rd, &allowed()).unwrap_or_else(|e| panic!("{rd:?} refused: {e}"))
    }

    fn refused(rd: &str, expected: RedirectError) {
        assert_eq!(validate(rd, &allowed()), Err(expected), "{rd:?}");
    }

    #[test]
    fn local_paths_are_accepted() {
        assert_eq!(ok("/"), "/");
        assert_eq!(ok("/app/page?x=1#top"), "/app/page?x=1#top");
    }

    #[test]
    fn allowed_hosts_are_accepted() {
        assert_eq!(ok("https://app.example.org/x"), "https://app.example.org/x");
        assert_eq!(ok("HTTP://APP.example.org"), "http://app.example.org/");
        assert_eq!(ok("https://a.example.net/"), "https://a.example.net/");
        assert_eq!(
            ok("https://a.b.example.net:8443/p"),
            "https://a.b.example.net:8443/p"
        );
    }

    #[test]
    fn scheme_relative_and_backslash_tricks_are_refused() {
        refused("//evil.org/x", RedirectError::Shape);
        refused("///evil.org", RedirectError::Shape);
        refused("/\\evil.org", RedirectError::Characters);
        refused("\\\\evil.org", RedirectError::Characters);
        refused("https:evil.org", RedirectError::Shape);
        refused("https:/evil.org", RedirectError::Shape);
        refused("javascript:alert(1)", RedirectError::Shape);
        refused(
            "JavaScript://app.example.org/%0aalert(1)",
            RedirectError::Shape,
        );
        refused("data:text/html,x", RedirectError::Shape);
        refused("evil.org", RedirectError::Shape);
        refused("", RedirectError::Characters);
    }

    #[test]
    fn user_info_is_refused() {
        refused("https://app.example.org@evil.org/", RedirectError::UserInfo);
        refused("https://user:pw@app.example.org/", RedirectError::UserInfo);
    }

    #[test]
    fn control_characters_are_refused() {
        refused("/a\r\nSet-Cookie: x=y", RedirectError::Characters);
        refused("/\t/evil.org", RedirectError::Characters);
        refused("https://app.example.org/\u{0}", RedirectError::Characters);
        refused("/ /evil.org", RedirectError::Characters);
    }

    #[test]
    fn other_hosts_are_refused() {
        refused("https://evil.org/", RedirectError::Host);
        refused("https://app.example.org.evil.org/", RedirectError::Host);
        refused("https://evilapp.example.org/", RedirectError::Host);
        // A `.suffix` entry covers subdomains, not a look-alike or itself.
        refused("https://badexample.net/", RedirectError::Host);
        refused("https://example.net/", RedirectError::Host);
        refused("https://127.0.0.1/", RedirectError::Host);
        refused("https://[::1]/", RedirectError::Host);
    }

    #[test]
    fn a_listed_ip_address_is_accepted() {
        let list = vec!["127.0.0.1".to_string(), ".0.0.1".to_string()];
        assert_eq!(
            validate("http://127.0.0.1:8080/x", &list),
            Ok("http://127.0.0.1:8080/x".into())
        );
        assert_eq!(
            validate("http://10.0.0.1/", &list),
            Err(RedirectError::Host)
        );
    }
}
