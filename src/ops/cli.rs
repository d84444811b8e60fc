//! Operator commands that need no server: `gatehouse keys generate` and
//! `gatehouse token issue`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use crate::app;
use crate::config::{self, ConfigSource};
use crate::issuer::keys::{SigningAlgorithm, SigningKey};
use crate::issuer::link::{LinkRequest, LinkSubject};

/// `gatehouse keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a new signing key (PKCS#8 PEM, mode 0600) and print its kid.
    Generate {
        /// RS256 (RSA 3072), ES256 (P-256) or EdDSA (Ed25519).
        #[arg(long, default_value = "ES256")]
        alg: String,
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

/// `gatehouse token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Sign a link with the configured keys and print it (no HTTP).
    Issue {
        /// The configuration file (its `issuer:` section); `GATEHOUSE_*`
        /// variables override it.
        #[arg(long, short)]
        config: PathBuf,
        /// A granted path (repeatable); a final `*` makes it a prefix.
        #[arg(long = "url", required = true)]
        urls: Vec<String>,
        /// A granted method (repeatable; default: get).
        #[arg(long = "verb")]
        verbs: Vec<String>,
        /// Lifetime, e.g. 30m (default 1h; at most issuer.links.max_duration).
        #[arg(long)]
        duration: Option<String>,
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

fn fail(message: &str) -> ExitCode {
    eprintln!("gatehouse: {message}");
    ExitCode::from(2)
}

/// Runs `gatehouse keys …`.
pub fn keys(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Generate { alg, out, force } => match generate(&alg, &out, force) {
            Ok(kid) => {
                eprintln!("wrote a new {alg} signing key to {}", out.display());
                println!("{kid}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
    }
}

fn generate(alg: &str, out: &Path, force: bool) -> Result<String, String> {
    let alg = SigningAlgorithm::parse(alg)
        .ok_or_else(|| format!("--alg {alg:?}: expected RS256, ES256 or EdDSA"))?;
    let (key, pem) = SigningKey::generate(alg).map_err(|e| e.to_string())?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!("{} exists (use --force to overwrite)", out.display())
        } else {
            format!("{}: {e}", out.display())
        }
    })?;
    file.write_all(pem.expose().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(key.kid().to_string())
}

/// Runs `gatehouse token …`.
pub fn token(command: TokenCommand) -> ExitCode {
    let TokenCommand::Issue {
        config: path,
        urls,
        verbs,
        duration,
        from,
        once,
        subject,
        username,
        scopes,
    } = command;
    let source = ConfigSource::File(path);
    let config = match config::load(&source, std::env::vars()) {
        Ok(c) => c,
        Err(e) => return fail(&format!("configuration error: {e}")),
    };
    let issuer = match app::build_internal_issuer(&config, &source) {
        Ok(Some(issuer)) => issuer,
        Ok(None) => return fail("the configuration has no `issuer:` section"),
        Err(e) => return fail(&format!("configuration error: {e}")),
    };
    if subject.is_empty() {
        return fail("--subject must not be empty");
    }
    if let Some(bad) = scopes
        .iter()
        .find(|s| s.is_empty() || s.contains(char::is_whitespace))
    {
        return fail(&format!(
            "--scope {bad:?}: scopes are non-empty, without spaces"
        ));
    }
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
    match issuer.links().mint(
        &issuer,
        &who,
        &request,
        None,
        crate::serve::http::now_secs(),
    ) {
        Ok((token, grant)) => {
            eprintln!(
                "link for {} signed by key {}, valid {}..{} (Unix time)",
                who.subject,
                issuer.signing_key().kid(),
                grant.not_before.unwrap_or_default(),
                grant.expires_at
            );
            println!("{}", token.expose());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}
