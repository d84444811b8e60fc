//! Gatehouse's log lines (its decision log included) written to Envoy's
//! log through the ABI, at the event's level, formatted as the service
//! formats them (`log.format`, `log.level` of gatehouse's configuration).
//! Installed once per process, by the first filter configuration.

use std::io;
use std::sync::Once;

use gatehouse::config::LogConfig;
use gatehouse::telemetry::LineStyle;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

use crate::envoy;

/// Installs the process's subscriber on first call (later calls, and a
/// subscriber someone else installed, leave it as it is).
pub fn install(config: &LogConfig) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let subscriber =
            gatehouse::telemetry::subscriber_to(config, None, EnvoyLog, LineStyle::Host);
        // Another subscriber already set is fine: keep it.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
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
