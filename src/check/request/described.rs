//! The `CheckRequest` Envoy would send, built from a description of the
//! request by something that is not Envoy: the HTTP check endpoints (a
//! proxy's subrequest), `gatehouse explain` (command-line arguments), the
//! load generator and the benchmarks. One builder, so all of them feed
//! the pipeline the same shape.

use std::collections::HashMap;

use crate::proto::auth::attribute_context::{HttpRequest, Peer, Request};
use crate::proto::auth::{AttributeContext, CheckRequest};
use crate::proto::core::address::Address as AddressKind;
use crate::proto::core::{Address, SocketAddress};

/// One request as described to gatehouse, with its direct peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Described {
    /// Upper-case method.
    pub method: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Host, with the port if the client gave one.
    pub host: String,
    /// Path and query, as the client sent them.
    pub path: String,
    /// Headers with lower-case names; repeated ones joined ([`add_header`]).
    pub headers: HashMap<String, String>,
    /// Address of the direct peer (Envoy's downstream, or the proxy).
    pub peer: String,
    /// The peer's mTLS principal (e.g. a SPIFFE ID), or empty.
    pub principal: String,
    /// The URL-encoded PEM client certificate, or empty.
    pub certificate: String,
    /// The route's `context_extensions`.
    pub context_extensions: HashMap<String, String>,
}

impl Described {
    /// A `GET` over https from peer `peer`, with the given lower-case
    /// headers: the common shape of the load generator's and tests' requests.
    pub fn get(host: &str, path: &str, peer: &str, headers: HashMap<String, String>) -> Described {
        Described {
            method: "GET".into(),
            scheme: "https".into(),
            host: host.into(),
            path: path.into(),
            headers,
            peer: peer.into(),
            ..Default::default()
        }
    }

    /// The `CheckRequest` Envoy would send for this request (HTTP/1.1).
    pub fn into_check_request(self) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Peer {
                    address: Some(Address {
                        address: Some(AddressKind::SocketAddress(SocketAddress {
                            address: self.peer,
                            ..Default::default()
                        })),
                    }),
                    principal: self.principal,
                    certificate: self.certificate,
                    ..Default::default()
                }),
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: self.method,
                        path: self.path,
                        host: self.host,
                        scheme: self.scheme,
                        protocol: "HTTP/1.1".into(),
                        headers: self.headers,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                context_extensions: self.context_extensions,
                ..Default::default()
            }),
        }
    }
}

/// Adds `value` under the lower-case `name`, joining a repeated header as
/// Envoy does: `; ` for cookies, `,` for everything else.
pub fn add_header(headers: &mut HashMap<String, String>, name: &str, value: &str) {
    headers
        .entry(name.to_string())
        .and_modify(|joined| {
            joined.push_str(if name == "cookie" { "; " } else { "," });
            joined.push_str(value);
        })
        .or_insert_with(|| value.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_are_joined_like_envoy() {
        let mut headers = HashMap::new();
        add_header(&mut headers, "cookie", "a=1");
        add_header(&mut headers, "cookie", "b=2");
        add_header(&mut headers, "x-forwarded-for", "10.0.0.1");
        add_header(&mut headers, "x-forwarded-for", "10.0.0.2");
        assert_eq!(headers["cookie"], "a=1; b=2");
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1,10.0.0.2");
    }

    #[test]
    fn every_described_field_lands_where_envoy_puts_it() {
        let described = Described {
            method: "POST".into(),
            scheme: "http".into(),
            host: "h:8080".into(),
            path: "/a?b=c".into(),
            headers: HashMap::from([("x".to_string(), "y".to_string())]),
            peer: "10.1.2.3".into(),
            principal: "spiffe://t/ns/a/sa/b".into(),
            certificate: "PEM".into(),
            context_extensions: HashMap::from([("scope".to_string(), "s".to_string())]),
        };
        let attributes = described.into_check_request().attributes.unwrap();
        let source = attributes.source.unwrap();
        assert_eq!(source.principal, "spiffe://t/ns/a/sa/b");
        assert_eq!(source.certificate, "PEM");
        match source.address.unwrap().address.unwrap() {
            AddressKind::SocketAddress(a) => assert_eq!(a.address, "10.1.2.3"),
            other => panic!("{other:?}"),
        }
        let http = attributes.request.unwrap().http.unwrap();
        assert_eq!(
            (
                http.method.as_str(),
                http.scheme.as_str(),
                http.host.as_str()
            ),
            ("POST", "http", "h:8080")
        );
        assert_eq!(http.path, "/a?b=c");
        assert_eq!(http.headers["x"], "y");
        assert_eq!(attributes.context_extensions["scope"], "s");
    }
}
