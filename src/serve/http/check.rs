//! Checks over plain HTTP, for proxies that ask with a subrequest rather
//! than gRPC. Both routes describe the original request
//! ([`Described`]) and run the same pipeline as gRPC
//! ([`crate::serve::live::LiveEngine::decide`]), then render its answer
//! straight to HTTP: no protobuf in between.
//!
//! | route | asked by | the original request is |
//! |---|---|---|
//! | `/ext_authz/<path>` | Envoy's ext_authz `http_service` with `path_prefix: /ext_authz` | this request: its method, `Host`, the path after the prefix, the headers Envoy forwards |
//! | `/auth` | nginx `auth_request`, ingress-nginx `auth-url`, Traefik `forwardAuth` | `X-Original-URL`, or `X-Forwarded-Proto`/`-Host`/`-Uri`; method from `X-Original-Method` or `X-Forwarded-Method` |
//!
//! `/auth` takes Gafaelfawr's query parameters `scope` (repeatable),
//! `satisfy`, `auth_type` and `audience`, with the meaning of the same
//! `context_extensions` keys.
//!
//! An allowed request is answered `200` with the identity headers to set
//! upstream, and `x-envoy-auth-headers-to-remove` naming the client's
//! copies to strip (Envoy applies it; with nginx, copy the headers with
//! `auth_request_set`). A denial is answered with its own status, headers
//! and JSON body, exactly as in gRPC mode.
//!
//! The peer is the proxy: list its address in `network.trusted_proxies` so
//! that the client address comes from its `X-Forwarded-For`.
//!
//! Why an HTTP mode at all: it is what nginx and Traefik speak, and
//! Envoy's HTTP client costs it less CPU per check than its gRPC client
//! (BENCHMARKS.md). What it cannot do: remove a token from the query
//! string on the way upstream (Envoy applies only header changes from an
//! HTTP authorization service), so keep query-parameter token sources on
//! gRPC.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;

use super::AppState;
use crate::check::policy::overrides::{AUTH_TYPE, SATISFY, SCOPE};
use crate::check::request::described::{Described, add_header};
use crate::check::request::form_decode;
use crate::check::response::Denial;
use crate::check::upstream::AUDIENCE_EXTENSION;
use crate::model::outcome::HeaderPlan;

/// The prefix Envoy's `http_service.path_prefix` must be set to.
pub const ENVOY_PREFIX: &str = "/ext_authz";
/// The response header through which Envoy removes request headers.
const HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

/// Why a subrequest could not be turned into a check.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubrequestError {
    /// `/auth` without `X-Original-URL` or `X-Forwarded-Host`.
    #[error("the proxy sent neither X-Original-URL nor X-Forwarded-Host and X-Forwarded-Uri")]
    NoOriginalUrl,
    /// `X-Original-URL` is not an absolute URL.
    #[error("X-Original-URL is not an absolute http(s) URL")]
    BadOriginalUrl,
    /// A header value is not valid UTF-8.
    #[error("header {0} is not valid UTF-8")]
    NotUtf8(String),
}

/// `/ext_authz/<path>`: Envoy's HTTP authorization request.
pub(super) async fn envoy(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let full = uri.path_and_query().map_or("/", |p| p.as_str());
    let rest = full.strip_prefix(ENVOY_PREFIX).unwrap_or(full);
    let path = if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or_default()
        .to_string();
    let original = Original {
        method: method.as_str().to_string(),
        scheme: forwarded_proto(&headers),
        host,
        path,
    };
    answer(&state, original, &headers, peer, HashMap::new()).await
}

/// `/auth`: a forward-auth subrequest (nginx, Traefik, Gafaelfawr's API).
pub(super) async fn forward_auth(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let original = match original_from_forwarded(&headers) {
        Ok(o) => o,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let extensions = extensions_from_query(query.as_deref().unwrap_or_default());
    answer(&state, original, &headers, peer, extensions).await
}

/// The request being authorized, as the proxy described it.
#[derive(Debug, PartialEq, Eq)]
struct Original {
    method: String,
    scheme: String,
    host: String,
    path: String,
}

async fn answer(
    state: &AppState,
    original: Original,
    headers: &HeaderMap,
    peer: SocketAddr,
    extensions: HashMap<String, String>,
) -> Response {
    let described = match describe(original, headers, peer, extensions) {
        Ok(d) => d,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    into_http(state.engine.decide(described).await)
}

/// The original request from nginx's `X-Original-URL` (and
/// `X-Original-Method`) or Traefik's `X-Forwarded-*` headers.
fn original_from_forwarded(headers: &HeaderMap) -> Result<Original, SubrequestError> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let method = get("x-original-method")
        .or_else(|| get("x-forwarded-method"))
        .unwrap_or("GET")
        .to_ascii_uppercase();
    if let Some(url) = get("x-original-url") {
        let uri: Uri = url.parse().map_err(|_| SubrequestError::BadOriginalUrl)?;
        let scheme = uri.scheme_str().ok_or(SubrequestError::BadOriginalUrl)?;
        if !matches!(scheme, "http" | "https") {
            return Err(SubrequestError::BadOriginalUrl);
        }
        let host = uri.authority().ok_or(SubrequestError::BadOriginalUrl)?;
        return Ok(Original {
            method,
            scheme: scheme.to_string(),
            host: host.as_str().to_string(),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        });
    }
    let host = get("x-forwarded-host").ok_or(SubrequestError::NoOriginalUrl)?;
    let path = get("x-forwarded-uri").ok_or(SubrequestError::NoOriginalUrl)?;
    Ok(Original {
        method,
        scheme: forwarded_proto(headers),
        host: host.to_string(),
        path: path.to_string(),
    })
}

fn forwarded_proto(headers: &HeaderMap) -> String {
    match headers.get("x-forwarded-proto").map(HeaderValue::as_bytes) {
        Some(b"http") => "http".into(),
        _ => "https".into(),
    }
}

/// Gafaelfawr's query parameters as `context_extensions`: `scope` may be
/// repeated; unknown parameters are ignored, like unknown extension keys.
fn extensions_from_query(query: &str) -> HashMap<String, String> {
    let mut extensions = HashMap::new();
    let mut scopes: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = form_decode(value);
        if key == SCOPE {
            scopes.push(value);
        } else if key == SATISFY || key == AUTH_TYPE || key == AUDIENCE_EXTENSION {
            extensions.insert(key.to_string(), value);
        }
    }
    if !scopes.is_empty() {
        extensions.insert(SCOPE.to_string(), scopes.join(" "));
    }
    extensions
}

/// The request `original` describes, as the pipeline reads it.
fn describe(
    original: Original,
    headers: &HeaderMap,
    peer: SocketAddr,
    context_extensions: HashMap<String, String>,
) -> Result<Described, SubrequestError> {
    let mut map: HashMap<String, String> = HashMap::with_capacity(headers.keys_len());
    for (name, value) in headers {
        let value = std::str::from_utf8(value.as_bytes())
            .map_err(|_| SubrequestError::NotUtf8(name.as_str().to_string()))?;
        add_header(&mut map, name.as_str(), value);
    }
    map.insert("host".into(), original.host.clone());
    Ok(Described {
        method: original.method,
        scheme: original.scheme,
        host: original.host,
        path: original.path,
        headers: map,
        peer: peer.ip().to_string(),
        context_extensions,
        ..Default::default()
    })
}

/// The HTTP form of the pipeline's answer: `200` with the headers to set
/// and the names to remove, or the denial's status, headers and body.
fn into_http(answer: Result<HeaderPlan, Denial>) -> Response {
    match answer {
        Ok(plan) => {
            let mut http = Response::new(Body::empty());
            set_headers(
                http.headers_mut(),
                plan.set.iter().map(|(k, v)| (k.as_ref(), v.as_str())),
            );
            // For the client (a quota's `RateLimit`): Envoy's http_service
            // passes them on with `allowed_client_headers_on_success`.
            set_headers(
                http.headers_mut(),
                plan.client.iter().map(|(k, v)| (*k, v.as_str())),
            );
            if !plan.remove.is_empty()
                && let Ok(value) = HeaderValue::from_str(&plan.remove.join(","))
            {
                http.headers_mut().insert(HEADERS_TO_REMOVE, value);
            }
            http
        }
        Err(denial) => {
            let status = StatusCode::from_u16(denial.status).unwrap_or(StatusCode::FORBIDDEN);
            let mut http = Response::new(Body::from(denial.body));
            *http.status_mut() = status;
            // Appended, not inserted: a denial may carry a name twice
            // (two `set-cookie`s), and the map starts empty.
            for (name, value) in header_pairs(denial.headers.iter().map(|(k, v)| (*k, v.as_str())))
            {
                http.headers_mut().append(name, value);
            }
            http
        }
    }
}

fn set_headers<'a>(target: &mut HeaderMap, headers: impl Iterator<Item = (&'a str, &'a str)>) {
    for (name, value) in header_pairs(headers) {
        target.insert(name, value);
    }
}

/// The pairs that are a valid header name and value (the others are
/// skipped: the pipeline already drops unsafe values).
fn header_pairs<'a>(
    headers: impl Iterator<Item = (&'a str, &'a str)>,
) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
    headers.filter_map(|(name, value)| {
        Some((
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            HeaderValue::from_str(value).ok()?,
        ))
    })
}

fn plain(status: StatusCode, text: &str) -> Response {
    let mut response = Response::new(Body::from(format!("{text}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn original_url_wins_over_forwarded_headers() {
        let h = headers(&[
            ("x-original-url", "https://app.example/a/b?c=d"),
            ("x-original-method", "post"),
            ("x-forwarded-host", "other.example"),
            ("x-forwarded-uri", "/other"),
        ]);
        let original = original_from_forwarded(&h).unwrap();
        assert_eq!(
            original,
            Original {
                method: "POST".into(),
                scheme: "https".into(),
                host: "app.example".into(),
                path: "/a/b?c=d".into(),
            }
        );
    }

    #[test]
    fn traefik_forwarded_headers() {
        let h = headers(&[
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "app.example:8443"),
            ("x-forwarded-uri", "/x/1"),
        ]);
        let original = original_from_forwarded(&h).unwrap();
        assert_eq!(original.method, "DELETE");
        assert_eq!(original.scheme, "http");
        assert_eq!(original.host, "app.example:8443");
        assert_eq!(original.path, "/x/1");
    }

    #[test]
    fn missing_or_bad_original_url_is_an_error() {
        assert_eq!(
            original_from_forwarded(&headers(&[("x-forwarded-host", "a")])),
            Err(SubrequestError::NoOriginalUrl)
        );
        for bad in ["/relative", "ftp://a/b", "not a url"] {
            assert_eq!(
                original_from_forwarded(&headers(&[("x-original-url", bad)])),
                Err(SubrequestError::BadOriginalUrl),
                "{bad}"
            );
        }
    }

    #[test]
    fn gafaelfawr_query_parameters_become_extensions() {
        let ext = extensions_from_query("scope=read%3Aall&scope=exec+notebook&satisfy=any&x=1");
        assert_eq!(
            ext.get(SCOPE).map(String::as_str),
            Some("read:all exec notebook")
        );
        assert_eq!(ext.get(SATISFY).map(String::as_str), Some("any"));
        assert!(!ext.contains_key("x"));
        assert!(extensions_from_query("").is_empty());
    }

    /// `GET https://h/` from a loopback peer.
    fn get_root() -> (Original, SocketAddr) {
        let original = Original {
            method: "GET".into(),
            scheme: "https".into(),
            host: "h".into(),
            path: "/".into(),
        };
        (original, SocketAddr::from(([127, 0, 0, 1], 1)))
    }

    #[test]
    fn repeated_headers_are_joined_like_envoy() {
        let h = headers(&[
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        let (original, peer) = get_root();
        let http = describe(original, &h, peer, HashMap::new()).unwrap();
        assert_eq!(http.headers["cookie"], "a=1; b=2");
        assert_eq!(http.headers["x-forwarded-for"], "10.0.0.1,10.0.0.2");
        assert_eq!(http.headers["host"], "h");
    }

    #[test]
    fn non_utf8_header_is_refused() {
        let mut h = HeaderMap::new();
        h.insert("x-bad", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        let (original, peer) = get_root();
        assert_eq!(
            describe(original, &h, peer, HashMap::new()).unwrap_err(),
            SubrequestError::NotUtf8("x-bad".into())
        );
    }

    #[test]
    fn a_login_redirect_sends_location_and_both_set_cookies() {
        let deny = crate::model::deny::Deny::LoginRequired {
            location: "/auth/login?rd=https%3A%2F%2Fh%2F".into(),
            set_cookies: vec!["a=; Max-Age=0".into(), "b=; Max-Age=0".into()],
            binding: None,
        };
        let response = into_http(Err(crate::check::response::denial(&deny, "r")));
        assert_eq!(response.status(), StatusCode::FOUND);
        let h = response.headers();
        assert_eq!(h["location"], "/auth/login?rd=https%3A%2F%2Fh%2F");
        let cookies: Vec<&str> = h
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(cookies, ["a=; Max-Age=0", "b=; Max-Age=0"]);
        assert_eq!(h.get_all("cache-control").iter().count(), 1);
    }
}
