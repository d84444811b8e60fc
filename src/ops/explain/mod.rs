//! `gatehouse explain`: runs one request, described on the command line,
//! through the real pipeline ([`crate::check::pipeline::Engine::check_observed`])
//! and prints which rule matched, which credential was found, each phase's
//! outcome and the final response. No network: remote key sets stay
//! empty (they are marked offline, so even an unknown `kid` fetches
//! nothing) unless `--jwks ISSUER=FILE` supplies them; the authorization
//! server is never called (introspection, token exchange answer 503); the
//! store is a private, empty memory store, so nothing shared is read or
//! changed (API tokens and sessions are not found, no quota is counted
//! against anyone, no one-time link is used up).

mod report;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::app;
use crate::check::authn::jwt::keys::KeySet;
use crate::check::authn::sources::find_token;
use crate::check::pipeline::Engine;
use crate::check::request::described::{Described, add_header};
use crate::config::{self, ConfigSource};
use crate::model::request::Request;
use crate::ops::cli::CliError;
use crate::proto::auth::CheckRequest;
pub use report::{Explanation, Recorder};

/// `gatehouse explain` arguments.
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// Configuration file (YAML); `GATEHOUSE_<SECTION>__<KEY>` variables
    /// override it.
    #[arg(long, short, env = crate::ops::cli::CONFIG_ENV, value_name = "FILE")]
    pub config: PathBuf,
    /// The request's method.
    #[arg(long, short = 'X', default_value = "GET")]
    pub method: String,
    /// The request's URL as the client asked for it, e.g.
    /// `https://api.example.com/data/1?x=2`.
    #[arg(long)]
    pub url: String,
    /// A request header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// The client certificate (PEM file), as Envoy forwards it with
    /// `include_peer_certificate`.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// The peer's mTLS principal (`source.principal`, e.g. a SPIFFE ID).
    #[arg(long)]
    pub principal: Option<String>,
    /// The address of the direct peer (Envoy's downstream).
    #[arg(long, default_value = "127.0.0.1")]
    pub peer: std::net::IpAddr,
    /// A context extension of the Envoy route, `KEY=VALUE` (repeatable).
    #[arg(long = "context")]
    pub context: Vec<String>,
    /// Keys for an issuer that uses a remote key set, `ISSUER=FILE` with a
    /// JWKS document (repeatable); without it, its tokens cannot be
    /// verified here.
    #[arg(long = "jwks")]
    pub jwks: Vec<String>,
}

/// Why `explain` could not run.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The configuration does not load or build.
    #[error("configuration error: {0}")]
    Config(#[from] config::ConfigError),
    /// An argument is malformed.
    #[error("{0}")]
    Argument(String),
    /// A file named by an argument cannot be read.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Runs `gatehouse explain`: prints the explanation; exit code 0 when the
/// request would be allowed, 1 when denied, and on an error that of
/// [`CliError`] (64 for an argument, 78 for the configuration).
pub fn run(args: &ExplainArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return CliError::Failure(format!("cannot start the runtime: {e}")).report(),
    };
    match runtime.block_on(explain(args)) {
        Ok(explanation) => {
            print!("{explanation}");
            if explanation.allowed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => CliError::from(e).report(),
    }
}

/// Builds the engine from `args.config` (offline) and explains the request.
pub async fn explain(args: &ExplainArgs) -> Result<Explanation, ExplainError> {
    let source = ConfigSource::File(args.config.clone());
    let config = config::load(&source, std::env::vars())?;
    // A private store: explain reaches no shared store (no network) and
    // changes nothing there (no quota counted, no one-time link used up).
    let carry = app::Carry {
        store: Some(std::sync::Arc::new(crate::store::memory::MemoryStore::new(
            1024,
        ))),
        ..app::Carry::fresh(std::sync::Arc::new(
            crate::metrics::Metrics::new().map_err(config::ConfigError::from)?,
        ))
    };
    let engine = app::build_engine_with(&config, &source, &carry)?;
    let mut loaded = Vec::new();
    for spec in &args.jwks {
        let (issuer, path) = spec
            .split_once('=')
            .ok_or_else(|| ExplainError::Argument(format!("--jwks {spec:?}: use ISSUER=FILE")))?;
        let set = read_jwks(&PathBuf::from(path))?;
        let keys = engine.authn.jwt.issuer_keys(issuer).ok_or_else(|| {
            ExplainError::Argument(format!("--jwks: no issuer {issuer:?} in the configuration"))
        })?;
        keys.install(set);
        loaded.push(issuer.to_string());
    }
    let check = check_request(args)?;
    Ok(explain_check(&engine, check, &loaded).await)
}

/// Explains one `CheckRequest` against `engine`, taking every remote key
/// set offline first; `loaded` names the issuers whose keys were supplied.
pub async fn explain_check(engine: &Engine, check: CheckRequest, loaded: &[String]) -> Explanation {
    let mut notes = Vec::new();
    for issuer in engine.authn.jwt.issuers() {
        if !issuer.keys.is_remote() {
            continue;
        }
        issuer.keys.set_offline();
        if loaded.contains(&issuer.issuer) {
            notes.push(format!(
                "keys of issuer {} loaded from --jwks (its remote key set is not fetched)",
                issuer.issuer
            ));
        } else if !issuer.keys.is_ready() {
            notes.push(format!(
                "keys not loaded: issuer {} uses a remote key set ({}), which explain does not \
                 fetch; pass --jwks {}=FILE to verify its tokens",
                issuer.issuer,
                issuer.keys.origin_label(),
                issuer.issuer
            ));
        }
    }
    if let Some(introspector) = &engine.authn.introspection {
        introspector.set_offline();
        notes.push(
            "introspection: explain does not call the authorization server; an opaque token \
             is answered 503 here"
                .to_string(),
        );
    }
    if let Some(exchange) = engine.upstream.token_exchange() {
        exchange.set_offline();
        notes.push(
            "token exchange: explain does not call the authorization server; a rule with \
             `exchange` is answered 503 here"
                .to_string(),
        );
    }
    // What the request carries, found the way authentication finds it
    // (the pipeline consumes the message, so on a copy).
    let request = Request::from_check(&check, &engine.trusted_proxies).ok();
    let token = request
        .as_ref()
        .and_then(|r| {
            find_token(&engine.authn.sources, r, engine.authn.max_token_bytes)
                .ok()
                .flatten()
        })
        .map(|(token, _)| token);
    let mut recorder = Recorder::default();
    let (response, decision) = engine.check_observed(check, &mut recorder).await;
    let presented = request
        .as_ref()
        .and_then(|r| engine.authn.presented(r, recorder.decided_by()));
    Explanation {
        recorder,
        presented,
        token,
        response,
        decision,
        notes,
    }
}

/// The `CheckRequest` Envoy would send for `args`.
pub fn check_request(args: &ExplainArgs) -> Result<CheckRequest, ExplainError> {
    let url = reqwest::Url::parse(&args.url)
        .map_err(|e| ExplainError::Argument(format!("--url {:?}: {e}", args.url)))?;
    let host = url
        .host_str()
        .ok_or_else(|| ExplainError::Argument(format!("--url {:?}: no host", args.url)))?;
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let method = args.method.to_ascii_uppercase();
    let mut headers: HashMap<String, String> = HashMap::new();
    for line in &args.headers {
        let (name, value) = line.split_once(':').ok_or_else(|| {
            ExplainError::Argument(format!("-H {:?}: use 'Name: value'", redact_header(line)))
        })?;
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() {
            return Err(ExplainError::Argument("-H: empty header name".into()));
        }
        add_header(&mut headers, &name, value.trim());
    }
    for (name, value) in [
        (":authority", authority.as_str()),
        (":method", method.as_str()),
        (":path", path.as_str()),
        (":scheme", url.scheme()),
    ] {
        headers.insert(name.into(), value.into());
    }
    let certificate = match &args.cert {
        Some(path) => {
            let pem = std::fs::read_to_string(path).map_err(|e| ExplainError::File {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            utf8_percent_encode(&pem, NON_ALPHANUMERIC).to_string()
        }
        None => String::new(),
    };
    let mut context_extensions = HashMap::new();
    for kv in &args.context {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| ExplainError::Argument(format!("--context {kv:?}: use KEY=VALUE")))?;
        context_extensions.insert(k.to_string(), v.to_string());
    }
    Ok(Described {
        method,
        scheme: url.scheme().to_string(),
        host: authority,
        path,
        headers,
        peer: args.peer.to_string(),
        principal: args.principal.clone().unwrap_or_default(),
        certificate,
        context_extensions,
    }
    .into_check_request())
}

/// A `-H` argument for an error message: the name only, never a value.
fn redact_header(line: &str) -> String {
    line.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
        + " …"
}

fn read_jwks(path: &PathBuf) -> Result<KeySet, ExplainError> {
    let fail = |reason: String| ExplainError::File {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    KeySet::from_jwks(&doc).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests;
