//! The CheckRequest → request conversion (`Request::from_owned_check`),
//! on a protobuf-shaped input built with `arbitrary`: Envoy's
//! `CheckRequest` with `headers`, `header_map` (raw bytes too), peer
//! address, principal, certificate and context extensions. With the first
//! input byte odd, the rest is instead decoded as protobuf bytes.
//!
//! Properties of an accepted request: an upper-case method of letters and
//! `-`, a path already in normalized form, a lower-case host without the
//! port, lower-case header names, and a client IP only when there is a
//! peer address.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use gatehouse::model::path::normalize;
use gatehouse::model::request::Request;
use gatehouse::proto::auth::attribute_context::{HttpRequest, Peer, Request as HttpAttrs};
use gatehouse::proto::auth::{AttributeContext, CheckRequest};
use gatehouse::proto::core::address::Address as AddressKind;
use gatehouse::proto::core::{Address, HeaderMap, HeaderValue, SocketAddress};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

#[derive(Debug, Arbitrary)]
struct Shape {
    method: String,
    path: String,
    host: String,
    scheme: String,
    headers: Vec<(String, String)>,
    header_map: Option<Vec<(String, String, Vec<u8>)>>,
    peer: Option<String>,
    principal: String,
    certificate: String,
    context_extensions: Vec<(String, String)>,
    no_attributes: bool,
    no_http: bool,
}

impl Shape {
    fn into_check(self) -> CheckRequest {
        if self.no_attributes {
            return CheckRequest::default();
        }
        let http = (!self.no_http).then(|| HttpRequest {
            method: self.method,
            path: self.path,
            host: self.host,
            scheme: self.scheme,
            headers: self.headers.into_iter().collect::<HashMap<_, _>>(),
            header_map: self.header_map.map(|list| HeaderMap {
                headers: list
                    .into_iter()
                    .map(|(key, value, raw_value)| HeaderValue {
                        key,
                        value,
                        raw_value,
                    })
                    .collect(),
            }),
            ..Default::default()
        });
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Peer {
                    address: self.peer.map(|peer| Address {
                        address: Some(AddressKind::SocketAddress(SocketAddress {
                            address: peer,
                            ..Default::default()
                        })),
                    }),
                    principal: self.principal,
                    certificate: self.certificate,
                    ..Default::default()
                }),
                request: Some(HttpAttrs {
                    http,
                    ..Default::default()
                }),
                context_extensions: self.context_extensions.into_iter().collect(),
                ..Default::default()
            }),
        }
    }
}

fn trusted() -> &'static [IpNet] {
    static TRUSTED: OnceLock<Vec<IpNet>> = OnceLock::new();
    TRUSTED.get_or_init(|| {
        ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]
            .iter()
            .map(|n| n.parse().expect("fixed network"))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let check = if mode & 1 == 1 {
        let Ok(check) = CheckRequest::decode(rest) else {
            return;
        };
        check
    } else {
        let Ok(shape) = Shape::arbitrary_take_rest(Unstructured::new(rest)) else {
            return;
        };
        shape.into_check()
    };
    let Ok(request) = Request::from_owned_check(check, trusted()) else {
        return;
    };
    assert!(!request.method.is_empty());
    assert!(
        request
            .method
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-'),
        "method {:?}",
        request.method
    );
    assert_eq!(
        normalize(&request.path).as_deref(),
        Ok(request.path.as_str())
    );
    assert!(!request.host.bytes().any(|b| b.is_ascii_uppercase()));
    assert!(!request.authority.bytes().any(|b| b.is_ascii_uppercase()));
    assert!(
        request
            .headers
            .keys()
            .all(|k| !k.bytes().any(|b| b.is_ascii_uppercase())),
        "a header name with upper case"
    );
    if request.source_ip.is_none() {
        assert!(request.client_ip.is_none(), "a client IP without a peer");
    }
    let _ = request.header("authorization");
});
