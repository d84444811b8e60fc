//! What every `gatehouse` command shares: the exit codes and the error that
//! carries one ([`CliError`]), the `-c/--config` argument ([`ConfigArg`],
//! defaulting to `GATEHOUSE_CONFIG`), `-o -` for standard output
//! ([`Output`]), the config file's duration grammar on the command line
//! ([`parse_duration`]) and the version line ([`VERSION`]). And the
//! commands that need no server: `check-config`, `keys generate`,
//! `keys store-key`, `token issue`. And `tokens`, a client of a running gatehouse's API.

mod keys;
mod output;
mod token;
mod tokens;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::app;
use crate::config::{self, ConfigError, ConfigSource};
use crate::ops::explain::ExplainError;
use crate::ops::openapi::OpenApiError;
use crate::telemetry::TelemetryError;
pub use keys::{KeysCommand, keys};
pub use output::{Output, WriteOptions, write_output};
pub use token::{TokenCommand, token};
pub use tokens::{ApiArgs, TokensCommand, parse_expires, tokens};

/// `gatehouse --version` and `gatehouse version`: the crate version, the
/// commit and the build date, stamped by `build.rs`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("GATEHOUSE_GIT_COMMIT"),
    ", built ",
    env!("GATEHOUSE_BUILD_DATE"),
    ")"
);

/// The commit gatehouse was built from (`unknown` outside a git checkout).
pub const GIT_COMMIT: &str = env!("GATEHOUSE_GIT_COMMIT");

/// The environment variable that names the configuration file when
/// `-c/--config` is not given.
pub const CONFIG_ENV: &str = "GATEHOUSE_CONFIG";

/// Exit status: a bad command line (sysexits `EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;
/// Exit status: the configuration is invalid (sysexits `EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;
/// Exit status: the command failed while running.
pub const EXIT_FAILURE: u8 = 1;

/// The exit codes, as `gatehouse --help` lists them.
pub const EXIT_CODES_HELP: &str = "\
Configuration:
  -c/--config FILE, or the GATEHOUSE_CONFIG environment variable when -c is
  not given. GATEHOUSE_<SECTION>__<KEY> variables override single keys.

Exit status:
  0   success (explain: the request would be allowed)
  1   failure while running (explain: the request would be denied;
      replay: a change --fail-on forbids)
  64  usage error: a bad command line or argument
  78  configuration error: the file or an override is invalid";

/// Why a command failed; each kind has its exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// A bad command line or argument (exit 64).
    #[error("{0}")]
    Usage(String),
    /// The configuration does not load or does not build (exit 78).
    #[error("configuration error: {0}")]
    Config(String),
    /// Something failed while running (exit 1).
    #[error("{0}")]
    Failure(String),
}

impl CliError {
    /// The process exit status for this error.
    pub fn code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Config(_) => EXIT_CONFIG,
            CliError::Failure(_) => EXIT_FAILURE,
        }
    }

    /// Prints `gatehouse: <error>` to standard error and returns the exit
    /// code.
    pub fn report(&self) -> ExitCode {
        eprintln!("gatehouse: {self}");
        ExitCode::from(self.code())
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        match e {
            // Not the file's fault: the metrics registry refused.
            ConfigError::Metrics(m) => CliError::Failure(m),
            other => CliError::Config(other.to_string()),
        }
    }
}

impl From<ExplainError> for CliError {
    fn from(e: ExplainError) -> Self {
        match e {
            ExplainError::Config(c) => c.into(),
            ExplainError::Argument(_) | ExplainError::File { .. } => CliError::Usage(e.to_string()),
        }
    }
}

impl From<OpenApiError> for CliError {
    fn from(e: OpenApiError) -> Self {
        match e {
            OpenApiError::Config { .. } => CliError::Config(e.to_string()),
            other => CliError::Failure(format!("openapi merge: {other}")),
        }
    }
}

impl From<TelemetryError> for CliError {
    fn from(e: TelemetryError) -> Self {
        match e {
            // The `tracing:` section's exporter settings were refused.
            TelemetryError::Otel(crate::telemetry::otel::OtelError::Exporter(_)) => {
                CliError::Config(e.to_string())
            }
            other => CliError::Failure(other.to_string()),
        }
    }
}

/// Prints the result of a command: nothing more on success (exit 0), the
/// error and its exit code on failure.
pub fn finish(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}

/// `-c/--config FILE`, required, defaulting to `$GATEHOUSE_CONFIG`.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// Configuration file (YAML); `GATEHOUSE_<SECTION>__<KEY>` variables
    /// override it.
    #[arg(long, short, env = CONFIG_ENV, value_name = "FILE")]
    pub config: PathBuf,
}

impl ConfigArg {
    /// The configuration as a source to load.
    pub fn source(&self) -> ConfigSource {
        ConfigSource::File(self.config.clone())
    }
}

/// Loads `source` with the process's `GATEHOUSE_*` overrides.
pub fn load_config(source: &ConfigSource) -> Result<config::Config, CliError> {
    Ok(config::load(source, std::env::vars())?)
}

/// Parses a duration on the command line with the configuration file's
/// grammar (`humantime`, as `#[serde(with = "humantime_serde")]` reads the
/// file): `90s`, `30m`, `1h30m`, `2d`, `1w`, `500ms`. Used as a clap
/// `value_parser`, so a bad value is a usage error (exit 64).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{e}; expected {}", crate::config::DURATION_EXAMPLE))
}

/// `gatehouse check-config`: loads and builds the configuration as `serve`
/// would (without binding or fetching), and returns the summary line.
pub fn check_config(source: &ConfigSource) -> Result<String, CliError> {
    let config = load_config(source)?;
    app::build_engine(&config, source)?;
    for warning in config.warnings() {
        eprintln!("gatehouse: warning: {warning}");
    }
    Ok(format!(
        "configuration ok: {} issuer(s), {} rule(s)",
        config.jwt.issuers.len(),
        config.policy.rules.len()
    ))
}
