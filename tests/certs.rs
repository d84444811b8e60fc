//! Client certificates through the whole pipeline: a Toolforge-style
//! configuration (tool ownership, superusers, `X-Toolforge-*` headers) with
//! certificates issued by `rcgen` at test time, and the exact CheckRequest
//! an Istio sidecar's `envoyExtAuthzGrpc` provider sends, over gRPC.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use gatehouse::app;
use gatehouse::check::pipeline::Engine;
use gatehouse::config::{self, ConfigSource};
use gatehouse::proto::auth::attribute_context::{HttpRequest, Peer, Request as AttrRequest};
use gatehouse::proto::auth::authorization_client::AuthorizationClient;
use gatehouse::proto::auth::check_response::HttpResponse;
use gatehouse::proto::auth::{AttributeContext, CheckRequest, CheckResponse, OkHttpResponse};
use gatehouse::proto::core::address::Address as AddressKind;
use gatehouse::proto::core::{Address, SocketAddress};
use gatehouse::serve::grpc::Listener;
use gatehouse::testkit::certs::{Leaf, TestCa, url_encoded};

fn ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| TestCa::new("toolforge test CA"))
}

const TOOLFORGE: &str = r#"
server: {grpc_addr: "127.0.0.1:0", realm: toolforge}
certificates:
  xfcc:
    trusted_proxies: [10.64.0.0/16]
  identity:
    user: CN
    groups: [O]
    tool: {from: CN, pattern: '^[a-z0-9][a-z0-9-]{0,31}$'}
tools:
  superusers: [components-api]
  act_as_header: X-Toolforge-Act-As
identity_headers:
  extra:
    - {name: X-Toolforge-User, from: user}
    - {name: X-Toolforge-Tool, from: tool}
policy:
  default: deny
  rules:
    - name: jobs
      match: {path: {template: "/jobs/v1/tool/{tool}/**"}}
      tool_from_path: tool
      credentials: [certificate]
    - name: builds
      match: {path: {prefix: /builds/}}
      credentials: [certificate]
    - name: public
      match: {path: {prefix: /public/}}
      auth: anonymous
"#;

fn engine(yaml: &str) -> Engine {
    let source = ConfigSource::Text(yaml.to_string());
    let cfg = config::load(&source, []).expect("config");
    app::build_engine(&cfg, &source).expect("engine")
}

fn cert(cn: &str) -> String {
    ca().issue(&Leaf {
        subject: vec![("O", "toolforge"), ("CN", cn)],
        ..Leaf::default()
    })
}

/// A CheckRequest as Envoy's edge listener sends it: the direct peer's
/// address, and the peer certificate when the client presented one.
fn check(path: &str, peer: &str, pem: Option<&str>, headers: &[(&str, &str)]) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(socket(peer, 40000)),
                certificate: pem.map(url_encoded).unwrap_or_default(),
                ..Default::default()
            }),
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: path.into(),
                    host: "api.svc.toolforge.org".into(),
                    scheme: "https".into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn socket(ip: &str, port: u32) -> Address {
    Address {
        address: Some(AddressKind::SocketAddress(SocketAddress {
            address: ip.into(),
            port_specifier: Some(
                gatehouse::proto::core::socket_address::PortSpecifier::PortValue(port),
            ),
            ..Default::default()
        })),
    }
}

fn status(resp: &CheckResponse) -> u16 {
    match &resp.http_response {
        Some(HttpResponse::OkResponse(_)) => 200,
        Some(HttpResponse::DeniedResponse(d)) => d.status.as_ref().map_or(0, |s| s.code as u16),
        None => 0,
    }
}

fn ok(resp: &CheckResponse) -> &OkHttpResponse {
    match &resp.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("expected an allow, got {other:?}"),
    }
}

fn set_headers(resp: &CheckResponse) -> HashMap<String, String> {
    ok(resp)
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect()
}

fn denial_error(resp: &CheckResponse) -> String {
    let Some(HttpResponse::DeniedResponse(d)) = &resp.http_response else {
        panic!("expected a denial");
    };
    let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
    body["error"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn tool_certificates_own_their_tool_paths() {
    let e = engine(TOOLFORGE);
    let alpha = cert("alpha");
    let (resp, _) = e
        .check(&check(
            "/jobs/v1/tool/alpha/jobs",
            "192.0.2.7",
            Some(&alpha),
            &[],
        ))
        .await;
    let headers = set_headers(&resp);
    assert_eq!(headers["x-toolforge-user"], "alpha");
    assert_eq!(headers["x-toolforge-tool"], "alpha");
    assert_eq!(headers["x-auth-request-tool"], "alpha");
    assert_eq!(headers["x-auth-request-groups"], "toolforge");

    let (resp, decision) = e
        .check(&check(
            "/jobs/v1/tool/beta/jobs",
            "192.0.2.7",
            Some(&alpha),
            &[],
        ))
        .await;
    assert_eq!(status(&resp), 403);
    assert_eq!(denial_error(&resp), "access_denied");
    assert_eq!(decision.result.unwrap_err().reason_label(), "tool_mismatch");
}

#[tokio::test]
async fn superusers_act_for_any_tool() {
    let e = engine(TOOLFORGE);
    let su = cert("components-api");
    let (resp, _) = e
        .check(&check(
            "/jobs/v1/tool/beta/jobs",
            "192.0.2.7",
            Some(&su),
            &[],
        ))
        .await;
    let headers = set_headers(&resp);
    assert_eq!(headers["x-toolforge-user"], "components-api");
    assert_eq!(headers["x-toolforge-tool"], "beta");

    // Naming the tool in the act-as header: on a route without a tool in
    // its path, the named tool is the one sent upstream (and the act-as
    // header itself is not).
    let (resp, _) = e
        .check(&check(
            "/builds/v1/build",
            "192.0.2.7",
            Some(&su),
            &[("X-Toolforge-Act-As", "gamma")],
        ))
        .await;
    assert_eq!(set_headers(&resp)["x-toolforge-tool"], "gamma");
    assert!(
        ok(&resp)
            .headers_to_remove
            .contains(&"x-toolforge-act-as".to_string())
    );
    // ... and it must agree with the path.
    let (resp, _) = e
        .check(&check(
            "/jobs/v1/tool/beta/x",
            "192.0.2.7",
            Some(&su),
            &[("X-Toolforge-Act-As", "gamma")],
        ))
        .await;
    assert_eq!(status(&resp), 403);
    // A tool naming another tool is refused.
    let (resp, _) = e
        .check(&check(
            "/builds/v1/build",
            "192.0.2.7",
            Some(&cert("alpha")),
            &[("X-Toolforge-Act-As", "beta")],
        ))
        .await;
    assert_eq!(status(&resp), 403);
}

#[tokio::test]
async fn certificate_routes_need_a_certificate() {
    let e = engine(TOOLFORGE);
    let (resp, _) = e
        .check(&check("/jobs/v1/tool/alpha/jobs", "192.0.2.7", None, &[]))
        .await;
    assert_eq!(status(&resp), 401);
    assert_eq!(denial_error(&resp), "unauthorized");
    // A bearer token is not a credential these routes accept.
    let (resp, _) = e
        .check(&check(
            "/builds/x",
            "192.0.2.7",
            None,
            &[("Authorization", "Bearer abc.def.ghi")],
        ))
        .await;
    assert_eq!(status(&resp), 401);
    let expired = ca().issue(&Leaf {
        subject: vec![("CN", "alpha")],
        not_before: Some((2020, 1, 1)),
        not_after: Some((2021, 1, 1)),
        ..Leaf::default()
    });
    let (resp, _) = e
        .check(&check("/builds/x", "192.0.2.7", Some(&expired), &[]))
        .await;
    assert_eq!(status(&resp), 401);
    assert_eq!(denial_error(&resp), "invalid_certificate");
}

#[tokio::test]
async fn spoofed_identity_headers_and_xfcc_have_no_effect() {
    let e = engine(TOOLFORGE);
    let beta_cert = url_encoded(&cert("beta"));
    let spoofed_xfcc = format!("Cert=\"{beta_cert}\"");
    let spoof = [
        ("X-Toolforge-User", "beta"),
        ("X-Toolforge-Tool", "beta"),
        ("x-forwarded-client-cert", spoofed_xfcc.as_str()),
    ];
    // With alpha's certificate: alpha, whatever the headers claim.
    let (resp, _) = e
        .check(&check(
            "/builds/x",
            "192.0.2.7",
            Some(&cert("alpha")),
            &spoof,
        ))
        .await;
    let headers = set_headers(&resp);
    assert_eq!(headers["x-toolforge-user"], "alpha");
    assert_eq!(headers["x-toolforge-tool"], "alpha");
    assert!(
        ok(&resp)
            .headers_to_remove
            .contains(&"x-forwarded-client-cert".to_string())
    );
    // Without a certificate, the spoofed XFCC does not authenticate.
    let (resp, _) = e
        .check(&check("/builds/x", "192.0.2.7", None, &spoof))
        .await;
    assert_eq!(status(&resp), 401);
    // On an anonymous route the spoofed headers are still removed.
    let (resp, _) = e
        .check(&check("/public/x", "192.0.2.7", None, &spoof))
        .await;
    let removed = &ok(&resp).headers_to_remove;
    for name in [
        "x-toolforge-user",
        "x-toolforge-tool",
        "x-forwarded-client-cert",
    ] {
        assert!(removed.contains(&name.to_string()), "{name}: {removed:?}");
    }
    // From the trusted proxy the same XFCC is believed (and kept).
    let (resp, _) = e
        .check(&check("/builds/x", "10.64.3.4", None, &spoof))
        .await;
    assert_eq!(set_headers(&resp)["x-toolforge-user"], "beta");
    assert!(
        !ok(&resp)
            .headers_to_remove
            .contains(&"x-forwarded-client-cert".to_string())
    );
}

#[test]
fn rule_errors_name_their_key() {
    let cases = [
        (
            "policy: {rules: [{name: r, match: {path: {prefix: /x/}}, tool_from_path: tool}]}",
            "policy.rules[0].tool_from_path",
        ),
        (
            "policy: {rules: [{name: r, match: {path: {template: '/x/{t}'}}, tool_from_path: tool}]}",
            "policy.rules[0].tool_from_path",
        ),
        (
            "policy: {rules: [{name: r, auth: anonymous, match: {path: {template: '/x/{tool}'}}, tool_from_path: tool}]}",
            "policy.rules[0].tool_from_path",
        ),
        (
            "policy: {rules: [{name: r, match: {path: {template: '/x/{tool}/**/y'}}}]}",
            "policy.rules[0].match.path",
        ),
        (
            "identity_headers: {extra: [{name: 'X-Auth-Request-Tool', from: tool}]}",
            "identity_headers.extra[0].name",
        ),
        (
            "identity_headers: {extra: [{name: Authorization, from: user}]}",
            "identity_headers.extra[0].name",
        ),
        (
            "identity_headers: {extra: [{name: X-A, from: user}, {name: x-a, from: tool}]}",
            "identity_headers.extra[1].name",
        ),
    ];
    for (yaml, key) in cases {
        let source = ConfigSource::Text(yaml.to_string());
        let cfg = config::load(&source, []).expect(yaml);
        let err = app::build_engine(&cfg, &source)
            .err()
            .unwrap_or_else(|| panic!("{yaml} should fail"))
            .to_string();
        assert!(err.contains(key), "{yaml}: {err}");
    }
}

/// The CheckRequest an Istio sidecar (inbound, `action: CUSTOM` with an
/// `envoyExtAuthzGrpc` provider) sends: the calling workload's SPIFFE ID in
/// `source.principal`, this workload's in `destination.principal`, pod
/// addresses, the sidecar's own `x-forwarded-client-cert`, HTTP/2 pseudo
/// headers, and no `context_extensions`.
fn istio_check(method: &str, path: &str, source_principal: &str) -> CheckRequest {
    let headers: HashMap<String, String> = [
        (":authority", "jobs-api.jobs.svc.cluster.local:8000"),
        (":method", method),
        (":path", path),
        (":scheme", "http"),
        ("user-agent", "Go-http-client/1.1"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "3f1c2a5e-6a0d-4f55-9b7e-2e6c1c0b8a11"),
        (
            "x-forwarded-client-cert",
            "By=spiffe://cluster.local/ns/jobs/sa/jobs;Hash=9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e;Subject=\"\";URI=spiffe://cluster.local/ns/builds/sa/builds-api",
        ),
        ("x-envoy-attempt-count", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(socket("10.244.1.17", 51234)),
                principal: source_principal.into(),
                ..Default::default()
            }),
            destination: Some(Peer {
                address: Some(socket("10.244.2.9", 8000)),
                principal: "spiffe://cluster.local/ns/jobs/sa/jobs".into(),
                ..Default::default()
            }),
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    id: "12345678901234567890".into(),
                    method: method.into(),
                    headers,
                    path: path.into(),
                    host: "jobs-api.jobs.svc.cluster.local:8000".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/2".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: HashMap::new(),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn istio_sidecar_check_over_grpc() {
    // The shipped example configuration, on an ephemeral port.
    let source = ConfigSource::File(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("envoy/istio/gatehouse.yaml"),
    );
    let env = [(
        "GATEHOUSE_SERVER__GRPC_ADDR".to_string(),
        "127.0.0.1:0".to_string(),
    )];
    let cfg = config::load(&source, env).expect("config");
    let engine = Arc::new(app::build_engine(&cfg, &source).expect("engine"));
    let listener = Listener::bind(cfg.server.grpc_addr).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(listener.serve(engine, Duration::from_secs(1), async {
        let _ = stopped.await;
    }));
    let mut client = AuthorizationClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");

    let builds = "spiffe://cluster.local/ns/builds/sa/builds-api";
    let admin = "spiffe://cluster.local/ns/ops/sa/admin";
    let cases = [
        ("GET", "/v1/jobs", builds, 200),
        ("POST", "/v1/jobs", builds, 403),
        ("POST", "/v1/jobs", admin, 200),
        (
            "GET",
            "/v1/jobs",
            "spiffe://other.domain/ns/builds/sa/builds-api",
            401,
        ),
        (
            "GET",
            "/v1/jobs",
            "spiffe://cluster.local/ns/unknown/sa/x",
            401, // require_mapping: an unknown workload is not authenticated
        ),
        ("GET", "/v1/jobs", "", 401),
        ("GET", "/healthz", builds, 403),
    ];
    for (method, path, principal, want) in cases {
        let resp = client
            .check(istio_check(method, path, principal))
            .await
            .expect("a denial is not a gRPC error")
            .into_inner();
        assert_eq!(status(&resp), want, "{method} {path} as {principal:?}");
    }
    let resp = client
        .check(istio_check("GET", "/v1/jobs", builds))
        .await
        .expect("check")
        .into_inner();
    let headers = set_headers(&resp);
    assert_eq!(headers["x-auth-request-user"], "builds");
    assert_eq!(headers["x-auth-request-token-scopes"], "jobs:read");
    // The sidecar's XFCC came from a peer that is not a trusted proxy: it
    // authenticates nothing (the principal did); this configuration keeps
    // it for the application (`strip_untrusted: false`).
    assert!(ok(&resp).headers_to_remove.is_empty());
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}
