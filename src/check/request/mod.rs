//! The request phase: our own view of the request being checked
//! ([`Request`]), converted once at the edge. Envoy's `CheckRequest` is
//! first read into a [`Described`] (moving its strings); the HTTP check
//! endpoints describe their subrequest directly, with no protobuf in
//! between. Both then end in [`Request::from_described`].

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
use described::Described;

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
        Request::from_described(Described::from_check(check)?, trusted_proxies)
    }

    /// Normalizes a described request: the one conversion every edge
    /// ends in (gRPC through [`Described::from_check`], the HTTP check
    /// endpoints directly). Malformed input is a 400.
    pub fn from_described(
        described: Described,
        trusted_proxies: &[IpNet],
    ) -> Result<Request, Deny> {
        let Described {
            method,
            scheme,
            host,
            path: target,
            mut headers,
            peer,
            principal,
            certificate,
            context_extensions,
        } = described;
        // Envoy sends lower-case names; re-key only the odd one that is not.
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

        let mut method = if method.is_empty() {
            headers.get(":method").cloned().unwrap_or_default()
        } else {
            method
        };
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') {
            return Err(Deny::BadRequest("invalid method".into()));
        }
        method.make_ascii_uppercase();
        let target = if target.is_empty() {
            headers.get(":path").cloned().unwrap_or_default()
        } else {
            target
        };
        let (raw_path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (target.as_str(), None),
        };
        let raw_path = raw_path.split('#').next().unwrap_or_default();
        let path = path::normalize(raw_path).map_err(|e| Deny::BadRequest(e.to_string()))?;

        let host_header = if host.is_empty() {
            headers
                .get(":authority")
                .or(headers.get("host"))
                .map_or("", String::as_str)
        } else {
            host.as_str()
        };
        let authority = host_header.to_ascii_lowercase();
        let host = crate::model::request::host_of(&authority).to_string();

        let source_ip = peer.parse::<IpAddr>().ok();
        let client_ip = client_ip::resolve(
            source_ip,
            headers.get("x-forwarded-for").map(String::as_str),
            trusted_proxies,
        );
        let mut scheme = scheme;
        scheme.make_ascii_lowercase();

        Ok(Request {
            method,
            scheme,
            host,
            authority,
            path,
            query,
            headers,
            source_ip,
            client_ip,
            principal,
            certificate,
            context_extensions,
        })
    }
}

impl Described {
    /// Takes what the pipeline reads out of Envoy's `CheckRequest`,
    /// moving its strings. Headers Envoy sent in `header_map` (raw bytes)
    /// join those in `headers` as a repeated header would
    /// ([`described::add_header`]); a value that is not UTF-8 is a 400.
    pub fn from_check(check: CheckRequest) -> Result<Described, Deny> {
        let mut attrs = check
            .attributes
            .ok_or_else(|| Deny::BadRequest("missing attributes".into()))?;
        let mut http = attrs
            .request
            .take()
            .and_then(|r| r.http)
            .ok_or_else(|| Deny::BadRequest("missing HTTP request attributes".into()))?;
        let mut headers: HashMap<String, String> = std::mem::take(&mut http.headers);
        if let Some(map) = http.header_map.take() {
            for h in map.headers {
                let value = if h.raw_value.is_empty() {
                    h.value
                } else {
                    String::from_utf8(h.raw_value)
                        .map_err(|_| Deny::BadRequest(format!("header {} is not UTF-8", h.key)))?
                };
                described::add_header(&mut headers, &h.key.to_ascii_lowercase(), &value);
            }
        }
        let source = attrs.source.take().unwrap_or_default();
        let peer = match source.address.and_then(|a| a.address) {
            Some(AddressKind::SocketAddress(s)) => s.address,
            _ => String::new(),
        };
        Ok(Described {
            method: http.method,
            scheme: http.scheme,
            host: http.host,
            path: http.path,
            headers,
            peer,
            principal: source.principal,
            certificate: source.certificate,
            context_extensions: attrs.context_extensions,
        })
    }
}

/// Decodes one `application/x-www-form-urlencoded` value (a query
/// parameter): `+` is a space, then percent-escapes. Lenient, like a
/// browser: a malformed escape is kept as it is and invalid UTF-8 is
/// replaced (a token decoded this way then fails verification).
pub fn form_decode(value: &str) -> String {
    percent_encoding::percent_decode_str(&value.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether every `%` in `value` starts a well-formed escape (two hex
/// digits): for callers that refuse what [`form_decode`] would keep.
pub fn escapes_are_well_formed(value: &str) -> bool {
    value.split('%').skip(1).all(|rest| {
        rest.as_bytes()
            .get(..2)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    })
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
        assert_eq!(req.authority, "api.example.com:8443");
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
    fn repeated_headers_join_like_envoy_whichever_field_carries_them() {
        // RFC 9113 §8.2.3 and RFC 6265: cookies join with "; ", every
        // other repeated header with ",".
        use crate::proto::core::{HeaderMap, HeaderValue};
        let mut c = check(
            "/",
            "h",
            &[("cookie", "a=1"), ("x-forwarded-for", "10.0.0.1")],
        );
        let http = c
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
            .expect("built above");
        let header = |key: &str, raw: &str| HeaderValue {
            key: key.into(),
            raw_value: raw.as_bytes().to_vec(),
            ..Default::default()
        };
        http.header_map = Some(HeaderMap {
            headers: vec![
                header("Cookie", "b=2"),
                header("x-forwarded-for", "10.0.0.2"),
            ],
        });
        let req = Request::from_check(&c, &[]).expect("valid");
        assert_eq!(req.header("cookie"), Some("a=1; b=2"));
        assert_eq!(req.header("x-forwarded-for"), Some("10.0.0.1,10.0.0.2"));
    }

    #[test]
    fn form_values_decode_leniently_and_escapes_are_checked() {
        assert_eq!(form_decode("a%41+b%2B"), "aA b+");
        assert_eq!(form_decode("%zz%4"), "%zz%4");
        assert!(escapes_are_well_formed("a%41b%2b"));
        for bad in ["%", "%4", "%zz", "a%4g"] {
            assert!(!escapes_are_well_formed(bad), "{bad}");
        }
    }

    #[test]
    fn hosts_lose_the_port_and_one_trailing_dot() {
        use crate::model::request::host_of;
        assert_eq!(host_of("a.b:80"), "a.b");
        assert_eq!(host_of("a.b"), "a.b");
        assert_eq!(host_of("[::1]:80"), "[::1]");
        assert_eq!(host_of("a.b."), "a.b");
        assert_eq!(host_of("a.b.:8443"), "a.b");
        assert_eq!(host_of("a.b.."), "a.b.");
        assert_eq!(host_of("."), ".");
        assert_eq!(host_of(""), "");
    }
}
