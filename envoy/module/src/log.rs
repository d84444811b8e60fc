//! Gatehouse's log lines (its decision log included) written to Envoy's
//! log through the ABI, at the event's level, formatted as the service
//! formats them (`log.format`, `log.level` of gatehouse's configuration),
//! and, with a `tracing:` section, its check spans exported over OTLP as
//! the service exports them. Installed once per process, by the first
//! filter configuration: its `log` and `tracing` settings hold for the
//! process.

use std::io;
use std::sync::{Mutex, OnceLock};

use gatehouse::config::{LogConfig, TracingConfig};
use gatehouse::telemetry::{self, LineStyle, Telemetry, TelemetryError};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

use crate::envoy;

/// Installs the process's subscriber (and span exporter) on the first
/// call; later calls, and a subscriber someone else installed, leave it
/// as it is. Call it inside the module's runtime (the exporter's tasks
/// run there). An exporter that cannot be built refuses this
/// configuration, as it stops the service from starting.
pub fn install(log: &LogConfig, tracing: Option<&TracingConfig>) -> Result<(), String> {
    /// Whether a subscriber is in place (ours or another's).
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    /// Ours, kept for the life of the process: dropping it would stop the
    /// span exporter.
    static KEPT: OnceLock<Telemetry> = OnceLock::new();
    let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    if *installed {
        return Ok(());
    }
    match telemetry::init_to(log, tracing, EnvoyLog, LineStyle::Host) {
        Ok(kept) => {
            let _ = KEPT.set(kept);
        }
        // Another subscriber already set is fine: keep it.
        Err(TelemetryError::Subscriber(_)) => {}
        Err(e @ TelemetryError::Otel(_)) => return Err(e.to_string()),
    }
    *installed = true;
    Ok(())
}

/// Makes one [`Line`] per event, at the event's level.
#[derive(Debug, Clone, Copy)]
struct EnvoyLog;

impl<'a> MakeWriter<'a> for EnvoyLog {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line::new(envoy::LogLevel::Info)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line::new(match *meta.level() {
            Level::ERROR => envoy::LogLevel::Error,
            Level::WARN => envoy::LogLevel::Warn,
            Level::INFO => envoy::LogLevel::Info,
            Level::DEBUG => envoy::LogLevel::Debug,
            Level::TRACE => envoy::LogLevel::Trace,
        })
    }
}

/// One formatted event, handed to Envoy when dropped.
struct Line {
    level: envoy::LogLevel,
    text: Vec<u8>,
}

impl Line {
    fn new(level: envoy::LogLevel) -> Line {
        Line {
            level,
            text: Vec::with_capacity(256),
        }
    }
}

impl io::Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        while self.text.last() == Some(&b'\n') {
            self.text.pop();
        }
        if !self.text.is_empty() {
            envoy::log(self.level, &self.text);
        }
    }
}
