//! `gatehouse config …`: the configuration's JSON Schema ([`schema`],
//! derived from the config types), the reference generated from it
//! ([`reference`], `docs/configuration.md`) and the chart's copy of it
//! ([`chart`], `charts/gatehouse/values.schema.json`).

pub mod chart;
pub mod reference;
pub mod schema;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

/// `gatehouse config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the configuration's JSON Schema (draft 2020-12), for editors
    /// and validators.
    Schema {
        /// Instead, write the schema's copy into the `config` property of
        /// this Helm chart values schema (the rest of the file is kept), e.g.
        /// charts/gatehouse/values.schema.json.
        #[arg(long, value_name = "VALUES_SCHEMA")]
        chart: Option<PathBuf>,
    },
    /// Print the configuration reference (Markdown: every key with its
    /// type, default, environment variable and reload behaviour), the
    /// content of docs/configuration.md.
    Reference,
    /// Print the effective configuration (JSON, which YAML reads too):
    /// the file with its `GATEHOUSE_*` overrides and every default filled
    /// in; inline secrets (PEM keys) are shown as `<redacted>`.
    Show(crate::ops::cli::ConfigArg),
}

/// Runs `gatehouse config …`.
pub fn run(command: ConfigCommand) -> ExitCode {
    match command {
        ConfigCommand::Schema { chart: None } => print(&pretty(&schema::schema())),
        ConfigCommand::Schema { chart: Some(path) } => match chart::update_file(&path) {
            Ok(true) => {
                eprintln!("updated the config section of {}", path.display());
                ExitCode::SUCCESS
            }
            Ok(false) => {
                eprintln!("{} is up to date", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("gatehouse: {e}");
                ExitCode::from(1)
            }
        },
        ConfigCommand::Reference => print(&reference::render()),
        ConfigCommand::Show(args) => match effective(&args.source()) {
            Ok(text) => print(&text),
            Err(e) => crate::ops::cli::finish(Err(e)),
        },
    }
}

/// The effective configuration as pretty JSON, secrets redacted.
pub fn effective(
    source: &crate::config::ConfigSource,
) -> Result<String, crate::ops::cli::CliError> {
    let config = crate::ops::cli::load_config(source)?;
    let value = serde_json::to_value(&config).map_err(|e| {
        crate::ops::cli::CliError::Failure(format!("the configuration cannot be shown: {e}"))
    })?;
    Ok(pretty(&value))
}

/// Pretty JSON with a final newline.
pub(crate) fn pretty(value: &serde_json::Value) -> String {
    // Serializing a `Value` cannot fail (its keys are strings).
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

fn print(text: &str) -> ExitCode {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is not worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: writing to standard output: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests;
