//! Where a bearer token is found in a request: the `Authorization` header
//! (Bearer or Basic), another header, a cookie or a query parameter.

use base64::Engine as _;

use crate::check::request::form_decode;
use crate::config::TokenSourceConfig;
use crate::model::request::Request;
use crate::secret::Secret;

/// The default `jwt.max_token_bytes`: the longest token accepted from
/// any source (longer is refused, not parsed). Envoy accepts request
/// headers up to 60 KiB by default, and identity providers issue 20 KB
/// tokens (Keycloak with many roles or groups).
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// A compiled token source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: Basic base64(user:password)`, token as the password
    /// (or as the user when the password is empty or `x-oauth-basic`).
    Basic,
    /// A header (lower-case name) holding the bare token.
    Header(String),
    /// A cookie holding the token.
    Cookie(String),
    /// A query parameter holding the token.
    Query(String),
}

impl From<&TokenSourceConfig> for TokenSource {
    fn from(config: &TokenSourceConfig) -> Self {
        match config {
            TokenSourceConfig::Bearer => TokenSource::Bearer,
            TokenSourceConfig::Basic => TokenSource::Basic,
            TokenSourceConfig::Header(name) => TokenSource::Header(name.to_ascii_lowercase()),
            TokenSourceConfig::Cookie(name) => TokenSource::Cookie(name.clone()),
            TokenSourceConfig::Query(name) => TokenSource::Query(name.clone()),
        }
    }
}

/// A credential that is present but cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// `Authorization: Bearer` with nothing after it.
    #[error("empty bearer token")]
    EmptyBearer,
    /// `Authorization: Basic` that is not base64 of `user:password`.
    #[error("malformed basic credentials")]
    MalformedBasic,
    /// Longer than `jwt.max_token_bytes`.
    #[error("token too long: {len} bytes, more than jwt.max_token_bytes ({max})")]
    TooLong {
        /// The token's length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Finds the token: the first source that holds one wins. Returns the
/// token with the source it came from; one longer than `max_bytes` is an
/// error.
pub fn find_token<'s>(
    sources: &'s [TokenSource],
    request: &Request,
    max_bytes: usize,
) -> Result<Option<(Secret, &'s TokenSource)>, SourceError> {
    for source in sources {
        if let Some(token) = source.extract(request)? {
            if token.len() > max_bytes {
                return Err(SourceError::TooLong {
                    len: token.len(),
                    max: max_bytes,
                });
            }
            return Ok(Some((Secret::new(token), source)));
        }
    }
    Ok(None)
}

impl TokenSource {
    /// Where the token was found, for logs (`bearer`, `basic`, `header`,
    /// `cookie`, `query`): never the header, cookie or parameter value.
    pub fn label(&self) -> &'static str {
        match self {
            TokenSource::Bearer => "bearer",
            TokenSource::Basic => "basic",
            TokenSource::Header(_) => "header",
            TokenSource::Cookie(_) => "cookie",
            TokenSource::Query(_) => "query",
        }
    }

    /// The token from this source, if present.
    fn extract(&self, request: &Request) -> Result<Option<String>, SourceError> {
        match self {
            TokenSource::Bearer => {
                let Some((scheme, rest)) = authorization(request) else {
                    return Ok(None);
                };
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Ok(None);
                }
                let token = rest.trim();
                if token.is_empty() {
                    return Err(SourceError::EmptyBearer);
                }
                Ok(Some(token.to_string()))
            }
            TokenSource::Basic => {
                let Some((scheme, rest)) = authorization(request) else {
                    return Ok(None);
                };
                if !scheme.eq_ignore_ascii_case("basic") {
                    return Ok(None);
                }
                basic_token(rest.trim()).map(Some)
            }
            TokenSource::Header(name) => Ok(request.header(name).and_then(|v| {
                let v = v.trim();
                let v = strip_bearer(v).unwrap_or(v);
                (!v.is_empty()).then(|| v.to_string())
            })),
            TokenSource::Cookie(name) => Ok(request
                .header("cookie")
                .and_then(|c| cookie_value(c, name))
                .filter(|v| !v.is_empty())
                .map(str::to_string)),
            TokenSource::Query(name) => Ok(request
                .query
                .as_deref()
                .and_then(|q| query_value(q, name))
                .filter(|v| !v.is_empty())),
        }
    }
}

/// Splits `Authorization` into scheme and the rest.
fn authorization(request: &Request) -> Option<(&str, &str)> {
    let value = request.header("authorization")?.trim_start();
    Some(value.split_once(' ').unwrap_or((value, "")))
}

fn strip_bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The token inside HTTP Basic credentials.
fn basic_token(encoded: &str) -> Result<String, SourceError> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| SourceError::MalformedBasic)?;
    let text = String::from_utf8(decoded).map_err(|_| SourceError::MalformedBasic)?;
    let (user, password) = text.split_once(':').ok_or(SourceError::MalformedBasic)?;
    let token = if password.is_empty() || password == "x-oauth-basic" {
        user
    } else {
        password
    };
    if token.is_empty() {
        return Err(SourceError::MalformedBasic);
    }
    Ok(token.to_string())
}

/// A cookie's value from a `Cookie` header (`a=1; b=2`); the first of
/// that name wins. Shared with the session cookie (`session.rs`).
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// A query parameter's percent-decoded value (`+` is a space).
fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| form_decode(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], query: Option<&str>) -> Request {
        Request {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            query: query.map(str::to_string),
            ..Default::default()
        }
    }

    fn all() -> Vec<TokenSource> {
        vec![
            TokenSource::Bearer,
            TokenSource::Basic,
            TokenSource::Header("x-token".into()),
            TokenSource::Cookie("tok".into()),
            TokenSource::Query("access_token".into()),
        ]
    }

    fn found(headers: &[(&str, &str)], query: Option<&str>) -> Option<String> {
        find_token(&all(), &request(headers, query), MAX_TOKEN_BYTES)
            .unwrap()
            .map(|(s, _)| s.expose().to_string())
    }

    #[test]
    fn bearer() {
        assert_eq!(
            found(&[("authorization", "Bearer abc")], None).as_deref(),
            Some("abc")
        );
        assert_eq!(
            found(&[("authorization", "bearer   abc ")], None).as_deref(),
            Some("abc")
        );
        let err = find_token(
            &all(),
            &request(&[("authorization", "Bearer ")], None),
            MAX_TOKEN_BYTES,
        )
        .unwrap_err();
        assert_eq!(err, SourceError::EmptyBearer);
    }

    #[test]
    fn basic_password_or_user() {
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let h = format!("Basic {}", enc("user:tok"));
        assert_eq!(
            found(&[("authorization", &h)], None).as_deref(),
            Some("tok")
        );
        let h = format!("Basic {}", enc("tok:x-oauth-basic"));
        assert_eq!(
            found(&[("authorization", &h)], None).as_deref(),
            Some("tok")
        );
        let h = format!("Basic {}", enc("tok:"));
        assert_eq!(
            found(&[("authorization", &h)], None).as_deref(),
            Some("tok")
        );
        for bad in ["Basic !!!", "Basic", &format!("Basic {}", enc("nocolon"))] {
            let r = find_token(
                &all(),
                &request(&[("authorization", bad)], None),
                MAX_TOKEN_BYTES,
            )
            .unwrap_err();
            assert_eq!(r, SourceError::MalformedBasic, "{bad}");
        }
    }

    #[test]
    fn other_schemes_are_not_ours() {
        assert_eq!(found(&[("authorization", "Negotiate xyz")], None), None);
    }

    #[test]
    fn header_cookie_query() {
        assert_eq!(
            found(&[("x-token", "Bearer h1")], None).as_deref(),
            Some("h1")
        );
        assert_eq!(found(&[("x-token", "h2")], None).as_deref(), Some("h2"));
        assert_eq!(
            found(&[("cookie", "a=1; tok=c1; b=2")], None).as_deref(),
            Some("c1")
        );
        assert_eq!(found(&[("cookie", "tokx=1")], None), None);
        assert_eq!(
            found(&[], Some("x=1&access_token=q%2E1")).as_deref(),
            Some("q.1")
        );
        assert_eq!(found(&[], Some("access_token=")), None);
    }

    #[test]
    fn order_decides() {
        let got = found(
            &[("authorization", "Bearer first"), ("x-token", "second")],
            None,
        );
        assert_eq!(got.as_deref(), Some("first"));
    }

    #[test]
    fn too_long_is_refused() {
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        let r = find_token(
            &all(),
            &request(&[("authorization", &long)], None),
            MAX_TOKEN_BYTES,
        )
        .unwrap_err();
        assert_eq!(
            r,
            SourceError::TooLong {
                len: MAX_TOKEN_BYTES + 1,
                max: MAX_TOKEN_BYTES
            }
        );
    }

    #[test]
    fn percent_decoding_is_lenient() {
        assert_eq!(form_decode("a%41+b"), "aA b");
        assert_eq!(form_decode("%"), "%");
        assert_eq!(form_decode("%4"), "%4");
        assert_eq!(form_decode("%zz"), "%zz");
    }
}
