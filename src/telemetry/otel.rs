//! The OpenTelemetry side: the tracer provider with its OTLP exporter
//! (gRPC through tonic, or HTTP/protobuf through our reqwest client), and
//! W3C trace context read from the checked request's headers.

use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

use crate::config::{ConfigError, OtlpProtocol, TracingConfig};
use std::collections::HashMap;

/// The path OTLP/HTTP receivers take spans on.
const HTTP_TRACES_PATH: &str = "/v1/traces";

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    /// The OTLP exporter rejected its settings.
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The HTTP client for OTLP/HTTP could not be built.
    #[error("OTLP HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The exporter was built outside a Tokio runtime.
    #[error("the OTLP exporter must be built inside the Tokio runtime")]
    NoRuntime,
}

/// Checks the `tracing:` section (for `check-config` and start-up).
pub fn validate(config: &TracingConfig) -> Result<(), ConfigError> {
    if !(0.0..=1.0).contains(&config.sample_ratio) {
        return Err(ConfigError::invalid(
            "tracing.sample_ratio",
            "must be between 0.0 and 1.0",
        ));
    }
    let url = reqwest::Url::parse(&config.otlp_endpoint).map_err(|e| {
        ConfigError::invalid(
            "tracing.otlp_endpoint",
            format!("{:?}: {e}", config.otlp_endpoint),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::invalid(
            "tracing.otlp_endpoint",
            "must be an http(s) URL",
        ));
    }
    if config.protocol == OtlpProtocol::Grpc && url.scheme() == "https" {
        return Err(ConfigError::invalid(
            "tracing.otlp_endpoint",
            "OTLP/gRPC is plain text here; for TLS use `protocol: http` with an https:// URL",
        ));
    }
    if config.service_name.is_empty() {
        return Err(ConfigError::invalid(
            "tracing.service_name",
            "must not be empty",
        ));
    }
    if config.export_timeout.is_zero() {
        return Err(ConfigError::invalid(
            "tracing.export_timeout",
            "must be more than zero",
        ));
    }
    Ok(())
}

/// The tracer provider: a batch exporter to the configured receiver, a
/// parent-based ratio sampler, and the `service.name` resource. Build it
/// inside the Tokio runtime that will carry the exports (tonic's channel,
/// our HTTP client's tasks), and keep that runtime alive until shutdown.
pub fn provider(config: &TracingConfig) -> Result<SdkTracerProvider, OtelError> {
    let exporter = match config.protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.otlp_endpoint.clone())
            .with_timeout(config.export_timeout)
            .build()?,
        OtlpProtocol::Http => {
            let client = reqwest::Client::builder()
                .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
                .timeout(config.export_timeout)
                .build()?;
            let runtime =
                tokio::runtime::Handle::try_current().map_err(|_| OtelError::NoRuntime)?;
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(OtlpHttpClient { client, runtime })
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(http_traces_url(&config.otlp_endpoint))
                .with_timeout(config.export_timeout)
                .build()?
        }
    };
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)));
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource)
        .build())
}

/// `http://collector:4318` → `http://collector:4318/v1/traces`; a URL that
/// names a path is used as it is.
fn http_traces_url(endpoint: &str) -> String {
    match reqwest::Url::parse(endpoint) {
        Ok(url) if url.path() == "/" || url.path().is_empty() => {
            format!("{}{HTTP_TRACES_PATH}", endpoint.trim_end_matches('/'))
        }
        _ => endpoint.to_string(),
    }
}

/// OTLP/HTTP through the reqwest (0.12, rustls) client gatehouse already
/// uses for key sets, rather than a second HTTP stack. The SDK exports
/// from its own thread, outside Tokio, so each request runs as a task on
/// the runtime the provider was built in.
#[derive(Debug)]
struct OtlpHttpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpHttpClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let (parts, body) = request.into_parts();
            let mut outgoing = client
                .request(parts.method, parts.uri.to_string())
                .body(body);
            for (name, value) in &parts.headers {
                outgoing = outgoing.header(name, value);
            }
            let response = outgoing.send().await?;
            let mut builder = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = response.bytes().await?;
            Ok::<_, opentelemetry_http::HttpError>(builder.body(body)?)
        });
        task.await?
    }
}

/// Reads W3C trace context from the checked request's headers
/// (lower-case names).
struct RequestHeaders<'a>(&'a HashMap<String, String>);

impl Extractor for RequestHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The caller's trace context from `traceparent` / `tracestate`, if the
/// request carries a valid one.
pub fn parent_context(headers: &HashMap<String, String>) -> Option<opentelemetry::Context> {
    let cx = TraceContextPropagator::new().extract(&RequestHeaders(headers));
    cx.span().span_context().is_valid().then_some(cx)
}

pub use crate::model::observe::traceparent_trace_id;

/// How long [`SdkTracerProvider::shutdown`] may take at exit.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_is_parsed_strictly() {
        assert_eq!(
            traceparent_trace_id(PARENT),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(traceparent_trace_id("garbage"), None);
        assert_eq!(
            traceparent_trace_id("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            traceparent_trace_id("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            None,
            "upper case is not valid trace context"
        );
        assert_eq!(traceparent_trace_id(&format!("{PARENT}-extra")), None);
    }

    #[test]
    fn parent_context_comes_from_headers() {
        let mut headers = HashMap::new();
        assert!(parent_context(&headers).is_none());
        headers.insert("traceparent".into(), PARENT.into());
        let cx = parent_context(&headers).expect("valid traceparent");
        let span = cx.span();
        let sc = span.span_context();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_remote());
    }

    #[test]
    fn http_endpoint_gets_the_traces_path() {
        assert_eq!(http_traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(http_traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(http_traces_url("http://c:4318/otlp"), "http://c:4318/otlp");
    }

    #[test]
    fn validation_names_the_key() {
        let mut config = TracingConfig {
            otlp_endpoint: "http://127.0.0.1:4317".into(),
            protocol: OtlpProtocol::Grpc,
            sample_ratio: 1.0,
            service_name: "gatehouse".into(),
            export_timeout: Duration::from_secs(1),
        };
        assert!(validate(&config).is_ok());
        config.sample_ratio = 1.5;
        assert!(
            validate(&config)
                .unwrap_err()
                .to_string()
                .contains("sample_ratio")
        );
        config.sample_ratio = 0.5;
        config.otlp_endpoint = "collector:4317".into();
        assert!(
            validate(&config)
                .unwrap_err()
                .to_string()
                .contains("otlp_endpoint")
        );
    }
}
