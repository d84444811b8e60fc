//! `gatehouse tokens create|list|revoke`: API tokens through a running
//! gatehouse's REST API (`/auth/api/v1`), as the caller whose JWT is in
//! `--token-file`. Prints the API's JSON answer; `create` prints the new
//! token, whose secret is shown this once.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{CliError, finish};
use crate::secret::Secret;

/// Longest answer read from the server.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where the API is and who calls it.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The gatehouse side port (or the Envoy route to it), e.g.
    /// `https://gatehouse.example.org` or `http://127.0.0.1:8080`.
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// A file holding the caller's JWT (trailing whitespace ignored).
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,
    /// Whose tokens (default: the caller, as the server names it).
    #[arg(long)]
    pub user: Option<String>,
}

/// `gatehouse tokens …`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token and print it (its secret is shown only now).
    Create {
        /// The API and the caller.
        #[command(flatten)]
        api: ApiArgs,
        /// The token's name, unique among the user's tokens.
        #[arg(long)]
        name: String,
        /// A scope the token carries (repeatable; a subset of yours).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Expiry: a lifetime (30d, 12h, 1w) or an RFC 3339 timestamp
        /// (default: the server's api_tokens.max_lifetime).
        #[arg(long)]
        expires: Option<String>,
        /// Bind the token to this tool (a Toolforge deploy token).
        #[arg(long)]
        tool: Option<String>,
    },
    /// List the user's tokens (never their secrets).
    List {
        /// The API and the caller.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Revoke one of the user's tokens by its key.
    Revoke {
        /// The API and the caller.
        #[command(flatten)]
        api: ApiArgs,
        /// The token's key (the part between `<prefix>-` and `.`).
        key: String,
    },
}

/// Runs `gatehouse tokens …`: prints the JSON answer.
pub fn tokens(command: TokensCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return CliError::Failure(format!("cannot start a runtime: {e}")).report(),
    };
    finish(
        runtime
            .block_on(run(command, crate::clock::now_secs()))
            .map(|answer| {
                println!("{answer}");
            }),
    )
}

/// `--expires`: a lifetime from `now`, or an RFC 3339 timestamp, as the
/// API's `expires` (seconds since the epoch).
pub fn parse_expires(text: &str, now: u64) -> Result<u64, CliError> {
    if let Ok(lifetime) = humantime::parse_duration(text) {
        return Ok(now.saturating_add(lifetime.as_secs()));
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .and_then(|at| u64::try_from(at.unix_timestamp()).ok())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "--expires {text:?}: a lifetime such as 30d or 12h, or an RFC 3339 timestamp such as 2030-01-01T00:00:00Z"
            ))
        })
}

/// Runs one command against the API and returns its answer, pretty JSON.
pub(super) async fn run(command: TokensCommand, now: u64) -> Result<String, CliError> {
    let api = match &command {
        TokensCommand::Create { api, .. }
        | TokensCommand::List { api }
        | TokensCommand::Revoke { api, .. } => api.clone(),
    };
    let client = Client::new(&api)?;
    let user = match &api.user {
        Some(user) => user.clone(),
        None => {
            let info = client
                .call(reqwest::Method::GET, &["user-info"], None)
                .await?;
            info["username"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| CliError::Failure("the server named no user".into()))?
        }
    };
    let answer = match command {
        TokensCommand::Create {
            name,
            scopes,
            expires,
            tool,
            ..
        } => {
            let mut body = json!({"name": name, "scopes": scopes});
            if let Some(expires) = expires {
                body["expires"] = json!(parse_expires(&expires, now)?);
            }
            if let Some(tool) = tool {
                body["tool"] = json!(tool);
            }
            let path = ["users", user.as_str(), "tokens"];
            client
                .call(reqwest::Method::POST, &path, Some(body))
                .await?
        }
        TokensCommand::List { .. } => {
            let path = ["users", user.as_str(), "tokens"];
            client.call(reqwest::Method::GET, &path, None).await?
        }
        TokensCommand::Revoke { key, .. } => {
            let path = ["users", user.as_str(), "tokens", key.as_str()];
            client.call(reqwest::Method::DELETE, &path, None).await?;
            json!({"key": key, "revoked": true})
        }
    };
    serde_json::to_string_pretty(&answer)
        .map_err(|e| CliError::Failure(format!("cannot print the answer: {e}")))
}

/// The API at one base URL, as one caller.
struct Client {
    base: reqwest::Url,
    bearer: Secret,
    http: reqwest::Client,
}

impl Client {
    fn new(api: &ApiArgs) -> Result<Client, CliError> {
        let base = reqwest::Url::parse(&api.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
            .ok_or_else(|| CliError::Usage(format!("--url {:?}: an http(s) URL", api.url)))?;
        let text = std::fs::read_to_string(&api.token_file).map_err(|e| {
            CliError::Usage(format!("--token-file {}: {e}", api.token_file.display()))
        })?;
        let bearer = text.trim();
        if bearer.is_empty() || bearer.contains(char::is_whitespace) {
            return Err(CliError::Usage(format!(
                "--token-file {}: expected one token",
                api.token_file.display()
            )));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("gatehouse-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| CliError::Failure(format!("HTTP client: {e}")))?;
        Ok(Client {
            base,
            bearer: Secret::new(bearer),
            http,
        })
    }

    /// `<base>/auth/api/v1/<segments…>` (each segment percent-encoded).
    fn url(&self, segments: &[&str]) -> Result<reqwest::Url, CliError> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| CliError::Usage("--url cannot take a path".into()))?;
            path.pop_if_empty()
                .extend(["auth", "api", "v1"])
                .extend(segments);
        }
        Ok(url)
    }

    /// One request; the JSON answer (`null` for 204), or the server's
    /// error as a failure.
    async fn call(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let url = self.url(segments)?;
        let mut request = self
            .http
            .request(method, url.clone())
            .bearer_auth(self.bearer.expose());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| CliError::Failure(format!("{url}: {e}")))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CliError::Failure(format!("{url}: {e}")))?;
        if bytes.len() > MAX_ANSWER_BYTES {
            return Err(CliError::Failure(format!("{url}: answer too large")));
        }
        let answer: Option<Value> = serde_json::from_slice(&bytes).ok();
        if !status.is_success() {
            let reason = answer
                .as_ref()
                .and_then(|a| {
                    Some(format!(
                        "{}: {}",
                        a["error"].as_str()?,
                        a["error_description"].as_str()?
                    ))
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
            return Err(CliError::Failure(format!(
                "{url}: HTTP {}: {reason}",
                status.as_u16()
            )));
        }
        match answer {
            Some(value) => Ok(value),
            None if bytes.is_empty() => Ok(Value::Null),
            None => Err(CliError::Failure(format!("{url}: the answer is not JSON"))),
        }
    }
}
