//! No input panics the pipeline: arbitrary methods, paths, hosts, headers,
//! tokens and context extensions always produce a well-formed CheckResponse.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use gatehouse::app;
use gatehouse::check::pipeline::Engine;
use gatehouse::config::{self, ConfigSource};
use gatehouse::proto::auth::attribute_context::{HttpRequest, Peer, Request as AttrRequest};
use gatehouse::proto::auth::check_response::HttpResponse;
use gatehouse::proto::auth::{AttributeContext, CheckRequest};
use gatehouse::proto::core::address::Address as AddressKind;
use gatehouse::proto::core::{Address, SocketAddress};
use gatehouse::testkit::{self, TestKey};
use jsonwebtoken::Algorithm;
use proptest::prelude::*;

fn engine(key: &TestKey) -> Engine {
    let yaml = format!(
        r#"
network: {{trusted_proxies: [10.0.0.0/8]}}
jwt:
  sources: [bearer, basic, {{cookie: tok}}, {{query: access_token}}, {{header: x-token}}]
  issuers:
    - issuer: https://issuer.test
      audiences: [api]
      algorithms: [ES256]
      keys: {{jwks: {jwks}}}
policy:
  default: authenticated
  rules:
    - name: open
      match: {{path: {{prefix: /open}}}}
      auth: anonymous
    - name: glob
      match: {{hosts: ["*.example.com"], path: {{glob: "/g/*/x/**"}}, methods: [GET]}}
      scopes: [a, b]
      satisfy: any
"#,
        jwks = testkit::jwks(&[key])
    );
    let source = ConfigSource::Text(yaml);
    let cfg = config::load(&source, []).unwrap();
    app::build_engine(&cfg, &source).unwrap()
}

#[allow(clippy::too_many_arguments)]
fn request(
    method: String,
    path: String,
    host: String,
    headers: HashMap<String, String>,
    source: String,
    extensions: HashMap<String, String>,
) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(AddressKind::SocketAddress(SocketAddress {
                        address: source,
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    method,
                    path,
                    host,
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: extensions,
            ..Default::default()
        }),
    }
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("authorization".to_string()),
        Just("cookie".to_string()),
        Just("x-forwarded-for".to_string()),
        Just("x-token".to_string()),
        Just("x-auth-request-user".to_string()),
        "[a-z-]{1,12}",
    ]
}

fn header_value(token: String) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(format!("Bearer {token}")),
        Just(format!("tok={token}")),
        "Bearer [A-Za-z0-9._-]{0,80}",
        "Basic [A-Za-z0-9+/=]{0,40}",
        "\\PC{0,60}",
        "[0-9.:, a-f\\[\\]]{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_request_gets_a_well_formed_answer(
        method in prop_oneof![Just("GET".to_string()), Just("HEAD".to_string()), "\\PC{0,8}"],
        path in prop_oneof!["/[a-z/%.;2eEfF5cC0]{0,30}", "\\PC{0,40}", Just("/g/a/x/b/c".to_string())],
        host in prop_oneof![Just("a.example.com".to_string()), "\\PC{0,20}"],
        headers in proptest::collection::vec((header_name(), header_value("x".into())), 0..5),
        source in prop_oneof![Just("10.1.2.3".to_string()), Just("203.0.113.1".to_string()), "\\PC{0,15}"],
        extensions in proptest::collection::hash_map(
            prop_oneof![Just("scope".to_string()), Just("satisfy".to_string()), Just("auth_type".to_string()), "[a-z]{1,5}"],
            "\\PC{0,20}",
            0..3,
        ),
        query in proptest::option::of("[a-z_=&%0-9A-F]{0,30}"),
    ) {
        let key = TestKey::generate(Algorithm::ES256, "k");
        let engine = engine(&key);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let path = match query { Some(q) => format!("{path}?{q}"), None => path };
        let req = request(method, path, host, headers.into_iter().collect(), source, extensions);
        let (resp, decision) = rt.block_on(engine.check(&req));
        let code = resp.status.as_ref().map(|s| s.code).unwrap();
        match resp.http_response {
            Some(HttpResponse::OkResponse(_)) => {
                prop_assert_eq!(code, 0);
                prop_assert!(decision.result.is_ok());
            }
            Some(HttpResponse::DeniedResponse(d)) => {
                prop_assert_ne!(code, 0);
                let status = d.status.unwrap().code;
                prop_assert!([400, 401, 403, 500, 503].contains(&status), "status {}", status);
                let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
                prop_assert!(body["error"].is_string());
            }
            None => prop_assert!(false, "no http_response"),
        }
    }
}

#[tokio::test]
async fn a_valid_token_passes_through_the_same_engine() {
    // Guards the property test above against an engine that denies everything.
    let key = TestKey::generate(Algorithm::ES256, "k");
    let engine = engine(&key);
    let mut claims = testkit::claims("https://issuer.test", "api", "alice");
    claims["scope"] = serde_json::json!("b");
    let token = key.mint(&claims);
    let headers = HashMap::from([("authorization".to_string(), format!("Bearer {token}"))]);
    let req = request(
        "GET".into(),
        "/g/a/x/b/c".into(),
        "a.example.com".into(),
        headers,
        "10.1.2.3".into(),
        HashMap::new(),
    );
    let (resp, decision) = engine.check(&req).await;
    assert!(decision.result.is_ok(), "{decision:?}");
    assert_eq!(decision.rule.as_deref(), Some("glob"));
    assert!(matches!(
        resp.http_response,
        Some(HttpResponse::OkResponse(_))
    ));
}
