//! Configuration of tracing (OpenTelemetry export) and of the decision log.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

/// `tracing:` — OpenTelemetry spans exported over OTLP. Absent: off, and
/// checks create no spans at all.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// Where the OTLP receiver listens: for `grpc` e.g.
    /// `http://otel-collector:4317`; for `http` the traces URL, e.g.
    /// `http://otel-collector:4318/v1/traces` (a URL with no path gets
    /// `/v1/traces` appended).
    pub otlp_endpoint: String,
    /// `grpc` (OTLP/gRPC, plain text) or `http` (OTLP/HTTP protobuf; use
    /// an `https://` endpoint for TLS).
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// Share of the traces gatehouse starts that are recorded, 0.0 to 1.0.
    /// A caller's `traceparent` decision (its sampled flag) is followed.
    #[serde(default = "default_sample_ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sample_ratio: f64,
    /// The `service.name` resource attribute.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// How long one export may take before it is abandoned.
    #[schemars(with = "schema::DurationText")]
    #[serde(default = "default_export_timeout", with = "humantime_serde")]
    pub export_timeout: std::time::Duration,
}

fn default_sample_ratio() -> f64 {
    1.0
}

fn default_service_name() -> String {
    "gatehouse".into()
}

fn default_export_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(10)
}

/// How spans travel to the receiver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OtlpProtocol {
    /// OTLP over gRPC (`opentelemetry.proto.collector.trace.v1.TraceService`).
    #[default]
    Grpc,
    /// OTLP over HTTP, binary protobuf (`POST …/v1/traces`).
    Http,
}

impl OtlpProtocol {
    /// `grpc` or `http`, as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::Http => "http",
        }
    }
}

/// Which checks get a decision log line (`log.decisions`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionLogMode {
    /// None (metrics and traces still see every check).
    None,
    /// Denials only (the default).
    #[default]
    Deny,
    /// Every check, allowed or denied.
    All,
}

impl DecisionLogMode {
    /// Whether a check with this outcome is logged.
    pub fn logs(self, allowed: bool) -> bool {
        match self {
            DecisionLogMode::None => false,
            DecisionLogMode::Deny => !allowed,
            DecisionLogMode::All => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_modes() {
        assert!(DecisionLogMode::Deny.logs(false));
        assert!(!DecisionLogMode::Deny.logs(true));
        assert!(DecisionLogMode::All.logs(true));
        assert!(!DecisionLogMode::None.logs(false));
    }
}
