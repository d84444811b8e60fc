//! Logs and traces: the `tracing` subscriber (text or JSON lines on
//! stderr), the OpenTelemetry export of check spans ([`otel`], [`spans`]),
//! and the one-line-per-decision log ([`decision`]).
//!
//! # What a check costs when tracing is off
//!
//! The per-check spans are not created at all unless the configuration
//! has a `tracing:` section: [`crate::check::pipeline::Engine::check_owned`]
//! picks, once per check, between a [`spans::SpanObserver`] and the silent
//! observer, and the pipeline is generic over the observer, so the silent
//! one compiles to nothing. A filter-only approach (spans always created,
//! then dropped by per-layer filters) was not chosen: even a span every
//! layer ignores goes through the dispatcher, and a span the fmt layer
//! does see allocates its field storage — per phase, per check.
//!
//! When tracing is on, the check and phase spans (target
//! [`SPAN_TARGET`]) reach only the OpenTelemetry layer: the fmt layer's
//! filter drops them, so log lines look the same either way.

pub mod decision;
pub mod otel;
pub mod spans;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::{DecisionLogMode, LogConfig, LogFormat, TracingConfig};

/// Target of the check and phase spans (exported, never printed).
pub const SPAN_TARGET: &str = "gatehouse::trace";

/// What the pipeline needs to know about telemetry, from configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// Create a span per check and per phase (a `tracing:` section exists).
    pub spans: bool,
    /// Which checks get a decision log line.
    pub decisions: DecisionLogMode,
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built.
    #[error("tracing: {0}")]
    Otel(#[from] otel::OtelError),
    /// A global subscriber was already installed.
    #[error("logging: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// The running telemetry; [`Telemetry::shutdown`] flushes pending spans.
#[must_use = "call shutdown() at exit, or pending spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is still buffered and stops the exporter (bounded by
    /// the exporter's timeout). Call it outside async code, with the
    /// runtime the provider was built in still alive.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown_with_timeout(otel::SHUTDOWN_TIMEOUT)
        {
            eprintln!("gatehouse: flushing traces at exit: {e}");
        }
    }
}

/// Installs the global subscriber: logs per `log`, and, with `tracing`,
/// the OTLP exporter. With `protocol: grpc`, call it inside the Tokio
/// runtime (`Runtime::enter`).
pub fn init(log: &LogConfig, tracing: Option<&TracingConfig>) -> Result<Telemetry, TelemetryError> {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    init_to(log, tracing, std::io::stderr, LineStyle::Own { ansi })
}

/// [`init`], with the log lines written to `writer` in `style` (the
/// in-process Envoy filter writes them to Envoy's log).
pub fn init_to<W>(
    log: &LogConfig,
    tracing: Option<&TracingConfig>,
    writer: W,
    style: LineStyle,
) -> Result<Telemetry, TelemetryError>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let provider = tracing.map(otel::provider).transpose()?;
    subscriber_to(log, provider.as_ref(), writer, style).try_init()?;
    Ok(Telemetry { provider })
}

/// The subscriber [`init`] installs, for tests that install it for a
/// scope (`tracing::subscriber::set_default`) instead.
pub fn subscriber(
    log: &LogConfig,
    provider: Option<&SdkTracerProvider>,
) -> impl Subscriber + Send + Sync + 'static {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    subscriber_to(log, provider, std::io::stderr, LineStyle::Own { ansi })
}

/// How text log lines begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineStyle {
    /// With their own time and level; `ansi`: in colour.
    Own {
        /// Colours (a terminal).
        ansi: bool,
    },
    /// Without: the host's log (Envoy's, for the in-process filter)
    /// prefixes each line with its own time and level.
    Host,
}

/// [`subscriber`], its log lines written to `writer` (the in-process
/// Envoy filter writes them to Envoy's log) in `style`. JSON lines keep
/// their `timestamp` and `level` fields either way.
pub fn subscriber_to<W>(
    log: &LogConfig,
    provider: Option<&SdkTracerProvider>,
    writer: W,
    style: LineStyle,
) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let not_our_spans = filter_fn(|meta| !(meta.is_span() && meta.target() == SPAN_TARGET));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(style == LineStyle::Own { ansi: true })
        .with_writer(writer);
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match log.format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(filter.and(not_our_spans))
            .boxed(),
        LogFormat::Text if style == LineStyle::Host => fmt
            .without_time()
            .with_level(false)
            .with_filter(filter.and(not_our_spans))
            .boxed(),
        LogFormat::Text => fmt.with_filter(filter.and(not_our_spans)).boxed(),
    };
    // Gatehouse's spans, and its events at INFO and above inside them
    // (the decision line becomes a span event); nothing from libraries.
    // Only pushed when exporting: an absent layer must not be an
    // `Option::None` layer, which reports interest in every callsite and
    // made the registry create (and free) every library span — h2's
    // per-frame spans included — on every check (perf: ~30% of a check).
    let mut layers = vec![fmt];
    if let Some(p) = provider {
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(p.tracer("gatehouse"))
                .with_location(false)
                .with_threads(false)
                .with_filter(filter_fn(|meta| {
                    meta.target().starts_with("gatehouse")
                        && (meta.is_span() || *meta.level() <= Level::INFO)
                }))
                .boxed(),
        );
    }
    Registry::default().with(layers)
}
