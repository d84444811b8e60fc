//! The side port's view of a request: the same [`Request`] the check
//! builds from Envoy's `CheckRequest`, so that the same authenticators
//! (token sources, JWT, and any other credential kind) decide who calls.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use ipnet::IpNet;

use super::error::ApiError;
use crate::check::request::{client_ip, escapes_are_well_formed};
use crate::model::path;
use crate::model::request::Request;

/// Longest query string accepted.
const MAX_QUERY_BYTES: usize = 32 * 1024;

/// Converts the HTTP request; malformed input is a 400.
pub fn from_http(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    peer: SocketAddr,
    trusted_proxies: &[IpNet],
) -> Result<Request, ApiError> {
    let path = path::normalize(uri.path()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let mut map: HashMap<String, String> = HashMap::with_capacity(headers.len());
    for (name, value) in headers {
        let value = value
            .to_str()
            .map_err(|_| ApiError::BadRequest(format!("header {name} is not visible ASCII")))?;
        // Lower-case already (the `http` crate normalizes names).
        let separator = if name == "cookie" { "; " } else { "," };
        map.entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(separator);
                v.push_str(value);
            })
            .or_insert_with(|| value.to_string());
    }
    let authority = map
        .get("host")
        .map(|h| h.to_ascii_lowercase())
        .unwrap_or_default();
    let host = crate::model::request::host_of(&authority).to_string();
    let source_ip = Some(peer.ip());
    let client_ip = client_ip::resolve(
        source_ip,
        map.get("x-forwarded-for").map(String::as_str),
        trusted_proxies,
    );
    Ok(Request {
        method: method.as_str().to_ascii_uppercase(),
        // Envoy's X-Forwarded-Proto is believed from a trusted proxy only.
        scheme: map
            .get("x-forwarded-proto")
            .filter(|_| trusted_proxies.iter().any(|net| net.contains(&peer.ip())))
            .map(|p| p.to_ascii_lowercase())
            .unwrap_or_else(|| "http".into()),
        host,
        authority,
        path,
        query: uri.query().map(str::to_string),
        headers: map,
        source_ip,
        client_ip,
        principal: String::new(),
        certificate: String::new(),
        context_extensions: HashMap::new(),
    })
}

/// A JSON request body: declared `Content-Type: application/json` (415
/// otherwise), within the side port's size limit (413), and parsing as
/// `T` (400 naming what is wrong).
pub fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest("the request body could not be read".into())
        }
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// Parses an `application/x-www-form-urlencoded` query strictly: every
/// name at most once, escapes well-formed, values UTF-8.
pub fn parse_query(query: Option<&str>) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(out);
    };
    if query.len() > MAX_QUERY_BYTES {
        return Err(ApiError::BadRequest("query string too long".into()));
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name)?;
        let value = decode(value)?;
        if out.insert(name.clone(), value).is_some() {
            return Err(ApiError::BadRequest(format!(
                "query parameter {name:?} given more than once"
            )));
        }
    }
    Ok(out)
}

/// Percent-decoding (`+` is a space); malformed escapes and invalid
/// UTF-8 are an error.
fn decode(text: &str) -> Result<String, ApiError> {
    if !escapes_are_well_formed(text) {
        return Err(ApiError::BadRequest(
            "malformed percent-encoding in the query".into(),
        ));
    }
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| ApiError::BadRequest("query is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_like_the_check() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "API.example.com:8080".parse().unwrap());
        headers.append("cookie", "a=1".parse().unwrap());
        headers.append("cookie", "b=2".parse().unwrap());
        headers.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        headers.insert("x-forwarded-proto", "HTTPS".parse().unwrap());
        let uri: Uri = "/auth//jwt/./request?x=1".parse().unwrap();
        let peer: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let r = from_http(&Method::POST, &uri, &headers, peer, &trusted).unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/auth/jwt/request");
        assert_eq!(r.host, "api.example.com");
        assert_eq!(r.query.as_deref(), Some("x=1"));
        assert_eq!(r.header("cookie"), Some("a=1; b=2"));
        assert_eq!(r.client_ip, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(r.scheme, "https");
        // An untrusted peer is the client, whatever it forwards.
        let r = from_http(
            &Method::GET,
            &uri,
            &headers,
            "192.0.2.1:1".parse().unwrap(),
            &trusted,
        )
        .unwrap();
        assert_eq!(r.client_ip, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(r.scheme, "http");
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        let uri: Uri = "/a/%2F/b".parse().unwrap();
        let err = from_http(
            &Method::GET,
            &uri,
            &HeaderMap::new(),
            "127.0.0.1:1".parse().unwrap(),
            &[],
        )
        .unwrap_err();
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn strict_query_parsing() {
        let q = parse_query(Some("token=a.b.c&then=%2Fx%3Fy%3D1&name=vm+1")).unwrap();
        assert_eq!(q["token"], "a.b.c");
        assert_eq!(q["then"], "/x?y=1");
        assert_eq!(q["name"], "vm 1");
        assert!(parse_query(None).unwrap().is_empty());
        assert!(parse_query(Some("token=a&token=b")).is_err());
        assert!(parse_query(Some("then=%zz")).is_err());
        assert!(parse_query(Some("then=%")).is_err());
        assert!(parse_query(Some("then=%ff")).is_err());
    }
}
