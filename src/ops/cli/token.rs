//! `gatehouse token issue`: a signed link, minted offline with the
//! configured keys.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use super::{CliError, ConfigArg, finish, load_config, parse_duration};
use crate::app;
use crate::issuer::link::{LinkRequest, LinkSubject, MintError};

/// `gatehouse token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Sign a link with the configured keys and print it (no HTTP).
    Issue {
        /// The configuration (its `issuer:` section).
        #[command(flatten)]
        config: ConfigArg,
        /// A granted path (repeatable); a final `*` makes it a prefix.
        #[arg(long = "url", required = true)]
        urls: Vec<String>,
        /// A granted method (repeatable; default: get).
        #[arg(long = "verb")]
        verbs: Vec<String>,
        /// Lifetime, as durations in the config file: 30m, 1h30m, 2d
        /// (default 1h; at most issuer.links.max_duration).
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Start of validity, RFC 3339 (default: now).
        #[arg(long)]
        from: Option<String>,
        /// One use only.
        #[arg(long)]
        once: bool,
        /// The `sub` the link is issued on behalf of.
        #[arg(long)]
        subject: String,
        /// The user name shown upstream.
        #[arg(long)]
        username: Option<String>,
        /// A scope the link carries (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
}

/// Runs `gatehouse token …`.
pub fn token(command: TokenCommand) -> ExitCode {
    finish(issue(command))
}

fn issue(command: TokenCommand) -> Result<(), CliError> {
    let TokenCommand::Issue {
        config,
        urls,
        verbs,
        duration,
        from,
        once,
        subject,
        username,
        scopes,
    } = command;
    if subject.is_empty() {
        return Err(CliError::Usage("--subject must not be empty".into()));
    }
    if let Some(bad) = scopes
        .iter()
        .find(|s| s.is_empty() || s.contains(char::is_whitespace))
    {
        return Err(CliError::Usage(format!(
            "--scope {bad:?}: scopes are non-empty, without spaces"
        )));
    }
    let duration = match duration {
        // A link lives in whole seconds (as the HTTP endpoint's durations).
        Some(d) if d.as_secs() == 0 => {
            return Err(CliError::Usage(format!(
                "--duration {}: a link must live at least one second",
                humantime::format_duration(d)
            )));
        }
        // The minting code reads the HTTP endpoint's (Go-style) grammar;
        // whole seconds are the same in both.
        Some(d) => Some(format!("{}s", d.as_secs())),
        None => None,
    };
    let source = config.source();
    let config = load_config(&source)?;
    let issuer = app::build_internal_issuer(&config, &source)?
        .ok_or_else(|| CliError::Config("the configuration has no `issuer:` section".into()))?;
    let request = LinkRequest {
        urls,
        verbs: (!verbs.is_empty()).then_some(verbs),
        duration,
        from,
        once,
    };
    let who = LinkSubject {
        subject,
        username,
        scopes: scopes.into_iter().collect(),
    };
    let (token, grant) = issuer
        .links()
        .mint(&issuer, &who, &request, None, crate::clock::now_secs())
        .map_err(|e| match e {
            // The arguments asked for something the issuer does not sign.
            MintError::Invalid(_) | MintError::TooLong { .. } => CliError::Usage(e.to_string()),
            other => CliError::Failure(other.to_string()),
        })?;
    eprintln!(
        "link for {} signed by key {}, valid {}..{} (Unix time)",
        who.subject,
        issuer.signing_key().kid(),
        grant.not_before.unwrap_or_default(),
        grant.expires_at
    );
    println!("{}", token.expose());
    Ok(())
}
