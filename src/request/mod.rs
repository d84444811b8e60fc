//! Our own view of the request being checked, converted once from Envoy's
//! `CheckRequest` at the edge. Nothing after this module sees protobuf.

pub mod client_ip;
pub mod described;

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::deny::Deny;
use crate::model::path;
use crate::model::request::Request;
use crate::proto::auth::CheckRequest;
use crate::proto::core::address::Address as AddressKind;

impl Request {
    /// Converts Envoy's `CheckRequest`; malformed input is a 400.
    pub fn from_check(check: &CheckRequest, trusted_proxies: &[IpNet]) -> Result<Request, Deny> {
        Request::from_owned_check(check.clone(), trusted_proxies)
    }

    /// Converts Envoy's `CheckRequest`, moving its strings instead of
    /// copying them (the server's path: the message is not needed after).
    pub fn from_owned_check(
        check: CheckRequest,
        trusted_proxies: &[IpNet],
    ) -> Result<Request, Deny> {
        let mut attrs = check
            .attributes
            .ok_or_else(|| Deny::BadRequest("missing attributes".into()))?;
        let mut http = attrs
            .request
            .take()
            .and_then(|r| r.http)
            .ok_or_else(|| Deny::BadRequest("missing HTTP request attributes".into()))?;

        // Envoy sends lower-case names; re-key only the odd one that is not.
        let mut headers: HashMap<String, String> = std::mem::take(&mut http.headers);
        let odd: Vec<String> = headers
            .keys()
            .filter(|k| k.bytes().any(|b| b.is_ascii_uppercase()))
            .cloned()
            .collect();
        for name in odd {
            if let Some(value) = headers.remove(&name) {
                headers.insert(name.to_ascii_lowercase(), value);
            }
        }
        if let Some(map) = http.header_map.take() {
            for h in map.headers {
                let value = if h.raw_value.is_empty() {
                    h.value
                } else {
                    String::from_utf8(h.raw_value)
                        .map_err(|_| Deny::BadRequest(format!("header {} is not UTF-8", h.key)))?
                };
                headers
                    .entry(h.key.to_ascii_lowercase())
                    .and_modify(|v| {
                        v.push(',');
                        v.push_str(&value);
                    })
                    .or_insert(value);
            }
        }

        let mut method = if http.method.is_empty() {
            headers.get(":method").cloned().unwrap_or_default()
        } else {
            std::mem::take(&mut http.method)
        };
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') {
            return Err(Deny::BadRequest("invalid method".into()));
        }
        method.make_ascii_uppercase();
        let target = if http.path.is_empty() {
            headers.get(":path").cloned().unwrap_or_default()
        } else {
            std::mem::take(&mut http.path)
        };
        let (raw_path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (target.as_str(), None),
        };
        let raw_path = raw_path.split('#').next().unwrap_or_default();
        let path = path::normalize(raw_path).map_err(|e| Deny::BadRequest(e.to_string()))?;

        let host_header = if http.host.is_empty() {
            headers
                .get(":authority")
                .or(headers.get("host"))
                .map_or("", String::as_str)
        } else {
            http.host.as_str()
        };
        let host = strip_port(host_header).to_ascii_lowercase();

        let source = attrs.source.take().unwrap_or_default();
        let source_ip = source.address.as_ref().and_then(|a| match &a.address {
            Some(AddressKind::SocketAddress(s)) => s.address.parse::<IpAddr>().ok(),
            _ => None,
        });
        let client_ip = client_ip::resolve(
            source_ip,
            headers.get("x-forwarded-for").map(String::as_str),
            trusted_proxies,
        );
        let mut scheme = http.scheme;
        scheme.make_ascii_lowercase();

        Ok(Request {
            method,
            scheme,
            host,
            path,
            query,
            headers,
            source_ip,
            client_ip,
            principal: source.principal,
            certificate: source.certificate,
            context_extensions: attrs.context_extensions,
        })
    }
}

/// `example.com:8443` → `example.com`; `[::1]:80` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::auth::AttributeContext;
    use crate::proto::auth::attribute_context::{HttpRequest, Peer, Request as AttrRequest};
    use crate::proto::core::{Address, SocketAddress};

    fn check(path: &str, host: &str, headers: &[(&str, &str)]) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Peer {
                    address: Some(Address {
                        address: Some(AddressKind::SocketAddress(SocketAddress {
                            address: "10.0.0.7".into(),
                            ..Default::default()
                        })),
                    }),
                    ..Default::default()
                }),
                request: Some(AttrRequest {
                    http: Some(HttpRequest {
                        method: "get".into(),
                        path: path.into(),
                        host: host.into(),
                        scheme: "HTTPS".into(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn converts_and_normalizes() {
        let req = Request::from_check(
            &check(
                "/a//b/../c?x=1",
                "API.Example.com:8443",
                &[("X-Thing", "v")],
            ),
            &[],
        )
        .expect("valid");
        assert_eq!(req.method, "GET");
        assert_eq!(req.scheme, "https");
        assert_eq!(req.host, "api.example.com");
        assert_eq!(req.path, "/a/c");
        assert_eq!(req.query.as_deref(), Some("x=1"));
        assert_eq!(req.header("x-thing"), Some("v"));
        assert_eq!(req.source_ip, Some("10.0.0.7".parse().unwrap()));
        assert_eq!(req.client_ip, Some("10.0.0.7".parse().unwrap()));
    }

    #[test]
    fn missing_attributes_is_bad_request() {
        let err = Request::from_check(&CheckRequest::default(), &[]).unwrap_err();
        assert_eq!(err.http_status(), 400);
    }

    #[test]
    fn traversal_is_bad_request() {
        let err = Request::from_check(&check("/../etc/passwd", "h", &[]), &[]).unwrap_err();
        assert_eq!(err.http_status(), 400);
    }

    #[test]
    fn strips_ports() {
        assert_eq!(strip_port("a.b:80"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
