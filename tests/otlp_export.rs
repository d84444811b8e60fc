//! Check spans exported over OTLP to a real receiver started in the test:
//! a tonic `TraceService` for OTLP/gRPC and an axum `POST /v1/traces` for
//! OTLP/HTTP. Checks carry a W3C `traceparent`; the test asserts the span
//! names, their attributes, the parent links, and that no credential is in
//! the export.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use tokio::sync::mpsc;

use gatehouse::app;
use gatehouse::check::pipeline::Engine;
use gatehouse::config::{self, ConfigSource, TracingConfig};
use gatehouse::telemetry;
use gatehouse::testkit::{self, TestKey};
use jsonwebtoken::Algorithm;

const ISS: &str = "https://idp.test";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const DENIED_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const UNSAMPLED_TRACE: &str = "11111111111111111111111111111111";

/// The OTLP/gRPC receiver: forwards every export to the test.
struct Receiver(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn grpc_receiver() -> (String, mpsc::UnboundedReceiver<ExportTraceServiceRequest>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver(tx)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (format!("http://{addr}"), rx)
}

async fn http_receiver() -> (String, mpsc::UnboundedReceiver<ExportTraceServiceRequest>) {
    use axum::http::{StatusCode, header};
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let tx = tx.clone();
                async move {
                    let protobuf = headers
                        .get(header::CONTENT_TYPE)
                        .is_some_and(|v| v == "application/x-protobuf");
                    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                        return (StatusCode::BAD_REQUEST, Vec::new());
                    };
                    if !protobuf {
                        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
                    }
                    let _ = tx.send(request);
                    (
                        StatusCode::OK,
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    // No path: gatehouse appends /v1/traces.
    (format!("http://{addr}"), rx)
}

fn engine(key: &TestKey, endpoint: &str, protocol: &str) -> (Engine, TracingConfig) {
    let yaml = format!(
        r#"
log: {{decisions: all}}
tracing: {{otlp_endpoint: "{endpoint}", protocol: {protocol}, service_name: gatehouse-test, export_timeout: 5s}}
jwt:
  issuers:
    - {{issuer: "{ISS}", audiences: [api], algorithms: [ES256], keys: {{jwks: {jwks}}}}}
policy:
  rules:
    - name: data
      match: {{path: {{prefix: /data/}}}}
"#,
        jwks = testkit::jwks(&[key])
    );
    let source = ConfigSource::Text(yaml);
    let cfg = config::load(&source, []).unwrap();
    let engine = app::build_engine(&cfg, &source).unwrap();
    assert!(engine.telemetry.spans, "a tracing section turns spans on");
    (engine, cfg.tracing.unwrap())
}

fn request(
    path: &str,
    traceparent: Option<String>,
    token: Option<&str>,
) -> gatehouse::proto::auth::CheckRequest {
    let mut headers = HashMap::new();
    if let Some(tp) = traceparent {
        headers.insert("traceparent".to_string(), tp);
        headers.insert("tracestate".to_string(), "vendor=opaque".to_string());
    }
    if let Some(token) = token {
        headers.insert("authorization".to_string(), format!("Bearer {token}"));
    }
    testkit::check_request("api.example.com", path, "10.0.0.9", headers)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            Value::StringValue(s) => s.clone(),
            Value::IntValue(i) => i.to_string(),
            Value::BoolValue(b) => b.to_string(),
            other => format!("{other:?}"),
        })
}

/// Runs an allowed, a denied, an untraced and an unsampled check through
/// an engine exporting to `endpoint`, then checks what the receiver got.
async fn exports_check_spans(
    protocol: &str,
    (endpoint, mut received): (String, mpsc::UnboundedReceiver<ExportTraceServiceRequest>),
) {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let (engine, tracing_config) = engine(&key, &endpoint, protocol);
    let provider = telemetry::otel::provider(&tracing_config).unwrap();
    let log = config::LogConfig {
        level: "info".into(),
        ..Default::default()
    };
    let token = key.mint(&testkit::claims(ISS, "api", "alice"));
    {
        // This thread runs the checks (the test's block_on thread).
        let _subscriber =
            tracing::subscriber::set_default(telemetry::subscriber(&log, Some(&provider)));
        let allowed = request(
            "/data/1",
            Some(format!("00-{TRACE}-{PARENT}-01")),
            Some(&token),
        );
        let (_, decision) = engine.check_owned(allowed).await;
        assert!(decision.result.is_ok(), "{decision:?}");
        let denied = request(
            "/data/2",
            Some(format!("00-{DENIED_TRACE}-{PARENT}-01")),
            None,
        );
        let (_, decision) = engine.check_owned(denied).await;
        assert!(decision.result.is_err());
        let (_, decision) = engine
            .check_owned(request("/data/3", None, Some(&token)))
            .await;
        assert!(decision.result.is_ok());
        // The caller decided not to sample: gatehouse follows.
        let unsampled = request(
            "/data/4",
            Some(format!("00-{UNSAMPLED_TRACE}-{PARENT}-00")),
            Some(&token),
        );
        engine.check_owned(unsampled).await;
    }
    let flushing = provider.clone();
    tokio::task::spawn_blocking(move || flushing.force_flush())
        .await
        .unwrap()
        .unwrap();

    let mut spans: Vec<Span> = Vec::new();
    let mut service_names = Vec::new();
    // 2 allowed checks × (check + 6 phases) + the denied one (check + 5
    // phases: upstream is not reached); the unsampled check is absent.
    while spans.len() < 20 {
        let export = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .expect("the receiver got spans in time")
            .expect("receiver open");
        for resource_spans in export.resource_spans {
            if let Some(resource) = &resource_spans.resource {
                for kv in &resource.attributes {
                    if kv.key == "service.name" {
                        service_names.push(format!("{:?}", kv.value));
                    }
                }
            }
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans);
            }
        }
    }
    assert!(
        service_names.iter().all(|s| s.contains("gatehouse-test")),
        "{service_names:?}"
    );
    // Nothing more arrives.
    if let Ok(Some(more)) = tokio::time::timeout(Duration::from_millis(300), received.recv()).await
    {
        assert!(more.resource_spans.is_empty(), "unexpected spans: {more:?}");
    }
    assert_eq!(
        spans.len(),
        20,
        "{:#?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    assert!(
        spans.iter().all(|s| hex(&s.trace_id) != UNSAMPLED_TRACE),
        "an unsampled caller's trace is not exported"
    );

    let checks: Vec<&Span> = spans.iter().filter(|s| s.name == "check").collect();
    assert_eq!(checks.len(), 3);
    let by_trace = |trace: &str| {
        *checks
            .iter()
            .find(|s| hex(&s.trace_id) == trace)
            .unwrap_or_else(|| panic!("no check span in trace {trace}"))
    };

    // The allowed check: inside the caller's trace, child of its span.
    let allowed = by_trace(TRACE);
    assert_eq!(hex(&allowed.parent_span_id), PARENT);
    assert_eq!(allowed.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(allowed.trace_state, "vendor=opaque");
    for (key, value) in [
        ("gatehouse.decision", "allow"),
        ("gatehouse.rule", "data"),
        ("gatehouse.credential", "jwt"),
        ("http.response.status_code", "200"),
        ("http.request.method", "GET"),
        ("server.address", "api.example.com"),
        ("url.path", "/data/1"),
    ] {
        assert_eq!(attr(allowed, key).as_deref(), Some(value), "{key}");
    }
    let phases: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id == allowed.span_id)
        .collect();
    let mut names: Vec<&str> = phases.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "authn", "authz", "policy", "request", "response", "upstream"
        ]
    );
    for phase in &phases {
        assert_eq!(phase.trace_id, allowed.trace_id);
        assert_eq!(attr(phase, "gatehouse.outcome").as_deref(), Some("ok"));
        assert!(phase.start_time_unix_nano >= allowed.start_time_unix_nano);
        assert!(phase.end_time_unix_nano <= allowed.end_time_unix_nano);
    }
    // The decision line is an event of the check span.
    let event = allowed
        .events
        .iter()
        .find(|e| e.name == "allow")
        .expect("decision event");
    let fp = gatehouse::secret::fingerprint(token.as_bytes());
    assert!(
        event
            .attributes
            .iter()
            .any(|kv| kv.key == "token_fp" && format!("{:?}", kv.value).contains(&fp)),
        "{event:?}"
    );
    assert!(
        event
            .attributes
            .iter()
            .any(|kv| kv.key == "trace_id" && format!("{:?}", kv.value).contains(TRACE))
    );

    // The denied check: the phase that refused says why.
    let denied = by_trace(DENIED_TRACE);
    assert_eq!(attr(denied, "gatehouse.decision").as_deref(), Some("deny"));
    assert_eq!(
        attr(denied, "gatehouse.reason").as_deref(),
        Some("no_credential")
    );
    assert_eq!(
        attr(denied, "http.response.status_code").as_deref(),
        Some("401")
    );
    let authz = spans
        .iter()
        .find(|s| s.parent_span_id == denied.span_id && s.name == "authz")
        .expect("authz span");
    assert_eq!(attr(authz, "gatehouse.outcome").as_deref(), Some("deny"));
    assert_eq!(
        attr(authz, "gatehouse.reason").as_deref(),
        Some("no_credential")
    );
    assert!(
        !spans
            .iter()
            .any(|s| s.parent_span_id == denied.span_id && s.name == "upstream"),
        "phases after the refusal do not run"
    );

    // No traceparent: a new root trace.
    let root = checks
        .iter()
        .find(|s| ![TRACE, DENIED_TRACE].contains(&hex(&s.trace_id).as_str()))
        .expect("root check span");
    assert!(root.parent_span_id.is_empty());

    // Never the credential, nor its signature.
    let dump = format!("{spans:?}");
    let signature = token.rsplit('.').next().unwrap();
    assert!(!dump.contains(&token) && !dump.contains(signature));

    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_check_spans_over_otlp_grpc() {
    exports_check_spans("grpc", grpc_receiver().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_check_spans_over_otlp_http() {
    exports_check_spans("http", http_receiver().await).await;
}
