//! `gatehouse replay --config new.yaml decisions.jsonl`: decides logged
//! checks again, offline, against a (new) configuration, and prints what
//! changed: allow → deny, deny → allow, a denial's reason changed, counted
//! per change and per (old rule → new rule) with examples. `--fail-on`
//! turns a forbidden kind of change into exit code 1, so a policy change
//! can be reviewed in CI against recorded traffic.
//!
//! # Input
//!
//! The decision log of `log.format: json` with `log.decisions: all` (see
//! [`crate::telemetry::decision`]): lines of other targets are skipped;
//! a decision line that cannot be read is counted as malformed and
//! reported with its line number, never fatal.
//!
//! # What is decided again, and what is taken from the log
//!
//! The log holds no credential, no header, no query string and no claims,
//! so replay re-runs the steps that depend only on what it does hold, with
//! the new configuration's policy (rules, their scopes, conditions, login
//! redirects, tools, `scopes.group_mapping`), and takes the rest as logged:
//!
//! - **The request** is rebuilt from `method`, `host`, `path` and
//!   `client_ip`, without headers or query. It counts as a browser
//!   navigation (an `Accept: text/html`) only when its logged answer was
//!   `login_required`, the one answer that proves it was one.
//! - **The caller** is the logged identity (`subject`, `user`, `email`,
//!   `uid`, `groups`, `scopes`, `identity_kind`, `issuer`, `tool`):
//!   authentication is not repeated, and key, issuer or audience changes are
//!   not replayed. Scopes the new `group_mapping` grants to the caller's
//!   groups are added for JWT and certificate callers (whose scopes are
//!   mapped at each check); a mapping removed cannot be seen (the log does
//!   not say where a scope came from). A signed link's grant is not logged:
//!   a logged allow proves the grant covered the request, and a logged
//!   `link_not_granted` is kept wherever the new rule authenticates.
//! - **A failed authentication** (`invalid_token`, `invalid_certificate`,
//!   `keys_unavailable`, `store_unavailable`): the credential was bad, so
//!   the logged denial stands wherever the new rule needs a credential; a
//!   new anonymous rule decides without one.
//! - **No credential** (an empty `credential`, or a logged `no_credential`,
//!   `no_certificate` or `login_required`): the new rule decides for a
//!   caller without one, assuming it accepts no credential kind the old
//!   one ignored.
//! - **Browser checks and the act-as header** (`origin_not_allowed`,
//!   `csrf_rejected`, `bad_request`) depend on headers: the logged denial
//!   stands where the new decision gets as far with a caller. Otherwise no
//!   act-as header is assumed: a superuser acts for the tool the path names.
//! - **The upstream step** (a backend token, a one-time link, a reissue) has
//!   side effects and is not run: an allow stays an allow, and a logged
//!   upstream denial where the new rule would allow is not replayable.
//!
//! # Not replayable
//!
//! A line is counted (with its reason) instead of guessed when the request
//! could not be read (no method or path logged); when the logged rule was
//! built from the route's `context_extensions` (not logged); when the new
//! rule needs a credential and the logged check saw one it never verified
//! (an anonymous rule's request, a `no_rule` denial); when the new rule
//! does not accept the logged caller's credential kind; when the new
//! rule's `when` condition is reached and reads `identity.claims`,
//! `request.headers`, `request.query` or `route` (found in its text, an
//! over-approximation); and for an unknown `identity_kind` or reason.

mod log;
mod report;

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::app;
use crate::check::authz;
use crate::check::authz::tool::ToolPolicy;
use crate::check::pipeline::shadow::Change;
use crate::check::policy::Policy;
use crate::config::{self, ConfigSource};
use crate::model::identity::{CredentialKind, Identity};
use crate::model::request::Request;
use crate::model::requirement::{Access, CONTEXT_EXTENSIONS_RULE};
use crate::ops::cli::CliError;
pub use log::{Line, Logged, LoggedCaller, credential_kind, decode_groups, parse_line};
pub use report::{Example, Report};

/// `gatehouse replay` arguments.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The configuration to decide with (YAML); `GATEHOUSE_<SECTION>__<KEY>`
    /// variables override it.
    #[arg(long, short, env = crate::ops::cli::CONFIG_ENV, value_name = "FILE")]
    pub config: PathBuf,
    /// Decision logs (JSON lines, `log.decisions: all`); `-` reads
    /// standard input.
    #[arg(required = true, value_name = "DECISIONS")]
    pub logs: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Exit with code 1 when a change of this kind occurs: `allow` (a deny
    /// became an allow), `deny` (an allow became a deny), `any` (any
    /// change, a denial's reason included). Repeatable.
    #[arg(long = "fail-on", value_enum)]
    pub fail_on: Vec<FailOn>,
    /// Examples shown per (change, old rule, new rule).
    #[arg(long, default_value_t = 3)]
    pub examples: usize,
}

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text for people.
    Table,
    /// One JSON document for tools.
    Json,
}

/// A kind of change `--fail-on` forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// A logged deny that would now be allowed.
    Allow,
    /// A logged allow that would now be denied.
    Deny,
    /// Any change, a denial's changed reason included.
    Any,
}

impl FailOn {
    /// Whether `report` holds a change this forbids.
    pub fn triggered(self, report: &Report) -> bool {
        match self {
            FailOn::Allow => report.count(Change::DenyToAllow) > 0,
            FailOn::Deny => report.count(Change::AllowToDeny) > 0,
            FailOn::Any => report.changed() > 0,
        }
    }

    fn label(self) -> &'static str {
        match self {
            FailOn::Allow => "allow",
            FailOn::Deny => "deny",
            FailOn::Any => "any",
        }
    }
}

/// Why `replay` could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The configuration does not load or build.
    #[error("configuration error: {0}")]
    Config(#[from] config::ConfigError),
    /// A decision log cannot be read.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(String),
}

impl From<ReplayError> for CliError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Config(c) => c.into(),
            ReplayError::File { .. } => CliError::Usage(e.to_string()),
            ReplayError::Runtime(_) => CliError::Failure(e.to_string()),
        }
    }
}

/// Runs `gatehouse replay`: prints the report; exit code 0, 1 when a
/// change `--fail-on` forbids occurred, and on an error that of
/// [`CliError`] (64 for an unreadable log, 78 for the configuration), as
/// for every command.
pub fn run(args: &ReplayArgs) -> ExitCode {
    match replay(args) {
        Ok(report) => {
            match args.format {
                Format::Table => print!("{}", report.table()),
                Format::Json => println!("{}", report.json()),
            }
            let mut failed = false;
            for rule in &args.fail_on {
                if rule.triggered(&report) {
                    eprintln!(
                        "gatehouse: replay: a forbidden change occurred (--fail-on {})",
                        rule.label()
                    );
                    failed = true;
                }
            }
            if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => CliError::from(e).report(),
    }
}

/// Loads the configuration and replays every log in `args.logs`.
pub fn replay(args: &ReplayArgs) -> Result<Report, ReplayError> {
    let source = ConfigSource::File(args.config.clone());
    let config = config::load(&source, std::env::vars())?;
    // The engine is built as `serve` and `explain` build it (some of its
    // parts want a runtime); nothing here touches the network.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ReplayError::Runtime(e.to_string()))?;
    let engine = runtime.block_on(async { app::build_engine(&config, &source) })?;
    let replayer = Replayer {
        policy: &engine.policy,
        tools: &engine.tools,
        scopes_by_group: crate::model::identity::scopes_by_group(&config.scopes.group_mapping),
    };
    let mut report = Report::new(args.examples);
    for path in &args.logs {
        let fail = |e: std::io::Error| ReplayError::File {
            path: path.clone(),
            reason: e.to_string(),
        };
        let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(std::io::BufReader::new(
                std::fs::File::open(path).map_err(fail)?,
            ))
        };
        replayer.replay_lines(reader, &mut report).map_err(fail)?;
    }
    Ok(report)
}

/// What a logged decision is decided with.
pub struct Replayer<'a> {
    /// The new configuration's policy.
    pub policy: &'a Policy,
    /// Its tool policy.
    pub tools: &'a ToolPolicy,
    /// Its `scopes.group_mapping`, group → scopes.
    pub scopes_by_group: HashMap<String, Vec<String>>,
}

/// The new answer to a logged decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// Decided: the new rule (empty: none matched) and the answer (a
    /// denial by its reason label).
    Decided {
        /// The rule that decides now.
        rule: String,
        /// Allow, or the denial's reason.
        result: Result<(), String>,
    },
    /// Cannot be decided from what the log holds: why.
    NotReplayable(String),
}

/// Which step of the check a logged denial came from, as far as replay
/// cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// An allow, or a denial replay decides again (policy, scopes,
    /// condition, tool, missing credential).
    Decided,
    /// Authentication failed: the credential was bad.
    Authn,
    /// A signed link's grant refused the request.
    Grant,
    /// A browser check or the act-as header (decided by headers).
    Headers,
    /// The upstream step.
    Upstream,
}

fn step_of(reason: &str) -> Option<Step> {
    Some(match reason {
        "" | "no_credential" | "no_certificate" | "login_required" | "insufficient_scope"
        | "condition_not_met" | "tool_mismatch" | "no_rule" | "misconfigured" => Step::Decided,
        "invalid_token" | "invalid_certificate" | "keys_unavailable" | "store_unavailable" => {
            Step::Authn
        }
        "link_not_granted" => Step::Grant,
        "origin_not_allowed" | "csrf_rejected" | "bad_request" => Step::Headers,
        "backend_login_required" => Step::Upstream,
        _ => return None,
    })
}

/// Whether a logged denial says the check found no credential it accepts.
fn found_no_credential(reason: &str) -> bool {
    matches!(
        reason,
        "no_credential" | "no_certificate" | "login_required"
    )
}

/// What a condition reads that the log does not hold (see the module doc).
fn unlogged_read(source: &str) -> Option<&'static str> {
    if crate::model::condition::Condition::may_read_claims(source) {
        Some("identity.claims")
    } else if source.contains("headers") {
        Some("request.headers")
    } else if source.contains("query") {
        Some("request.query")
    } else if source.contains("route") {
        Some("route")
    } else {
        None
    }
}

impl Replayer<'_> {
    /// Reads `lines` and adds each to `report`. An I/O error ends the read;
    /// a line that is not UTF-8 is malformed.
    pub fn replay_lines(
        &self,
        mut lines: impl BufRead,
        report: &mut Report,
    ) -> std::io::Result<()> {
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if lines.read_until(b'\n', &mut buf)? == 0 {
                return Ok(());
            }
            let number = report.next_line();
            match std::str::from_utf8(&buf) {
                Ok(text) => match parse_line(text) {
                    Line::Decision(logged) => {
                        let replayed = self.replay(&logged);
                        report.add(number, &logged, replayed);
                    }
                    Line::Other => report.other(),
                    Line::Malformed(why) => report.malformed(number, why),
                },
                Err(_) => report.malformed(number, "not UTF-8".into()),
            }
        }
    }

    /// Decides `logged` again (the module doc says how).
    pub fn replay(&self, logged: &Logged) -> Replayed {
        let not = |why: String| Replayed::NotReplayable(why);
        if logged.method.is_empty() || logged.path.is_empty() {
            return not("the request could not be read (no method or path logged)".into());
        }
        if logged.rule == CONTEXT_EXTENSIONS_RULE {
            return not("decided by the route's context_extensions, which are not logged".into());
        }
        let Some(mut step) = step_of(&logged.reason) else {
            return not(format!("unknown reason {:?}", logged.reason));
        };
        if step == Step::Authn && !logged.caller.kind.is_empty() {
            // The store failed after authentication: a one-time link's use.
            step = Step::Upstream;
        }
        let identity = match logged.caller.identity() {
            Ok(identity) => identity.map(|i| self.with_mapped_scopes(i)),
            Err(why) => return not(why),
        };
        let request = rebuild_request(logged);
        let requirement = match self.policy.requirement(&request) {
            Ok(requirement) => requirement,
            Err(deny) => return decided("", Err(deny.reason_label())),
        };
        let rule = requirement.rule.to_string();
        let authenticated = matches!(requirement.access, Access::Authenticated { .. });
        let identity = match (authenticated, identity) {
            (false, _) => None,
            (true, Some(identity)) => {
                if !requirement.credentials.accepts(identity.kind) {
                    return not(format!(
                        "rule {rule:?} does not accept the caller's credential ({})",
                        identity.kind.as_str()
                    ));
                }
                Some(identity)
            }
            (true, None) if step == Step::Authn => {
                // The credential was bad; the new rule needs one.
                return decided(&rule, Err(&logged.reason));
            }
            (true, None) if logged.credential.is_empty() || found_no_credential(&logged.reason) => {
                None
            }
            (true, None) => {
                return not(format!(
                    "rule {rule:?} needs a credential and the logged check (rule {:?}) \
                     did not verify the one presented",
                    logged.rule
                ));
            }
        };
        if step == Step::Grant && authenticated {
            return decided(&rule, Err(&logged.reason));
        }
        if let Some(condition) = &requirement.condition
            && let Some(read) = unlogged_read(condition.source())
            && authz::authorize(&requirement, identity.as_ref()).is_ok()
        {
            return not(format!(
                "rule {rule:?}'s condition reads {read}, which the log does not hold"
            ));
        }
        if let Err(deny) = authz::authorize_request(&requirement, identity.as_ref(), &request) {
            return decided(&rule, Err(deny.reason_label()));
        }
        if step == Step::Headers && identity.is_some() {
            return decided(&rule, Err(&logged.reason));
        }
        if let Err(deny) =
            authz::tool::authorize(&requirement, identity.as_ref(), &request, self.tools)
        {
            return decided(&rule, Err(deny.reason_label()));
        }
        if step == Step::Upstream {
            return not(format!(
                "the logged check was refused by the upstream step ({}), which replay does not run",
                logged.reason
            ));
        }
        decided(&rule, Ok(()))
    }

    /// Adds the scopes the new `group_mapping` maps the caller's groups to,
    /// for the credentials whose scopes are mapped at each check.
    fn with_mapped_scopes(&self, mut identity: Identity) -> Identity {
        if matches!(
            identity.kind,
            CredentialKind::Jwt | CredentialKind::Certificate | CredentialKind::Spiffe
        ) {
            for group in &identity.groups {
                if let Some(scopes) = self.scopes_by_group.get(group) {
                    identity.scopes.extend(scopes.iter().cloned());
                }
            }
        }
        identity
    }
}

fn decided(rule: &str, result: Result<(), &str>) -> Replayed {
    Replayed::Decided {
        rule: rule.to_string(),
        result: result.map_err(str::to_string),
    }
}

/// The request of a logged decision: what the log holds, no header but the
/// `Accept` of a navigation when the logged answer was a login redirect.
pub fn rebuild_request(logged: &Logged) -> Request {
    let mut headers = HashMap::new();
    if logged.reason == "login_required" {
        headers.insert("accept".to_string(), "text/html".to_string());
    }
    Request {
        method: logged.method.clone(),
        scheme: "https".into(),
        host: logged.host.clone(),
        authority: logged.host.clone(),
        path: logged.path.clone(),
        query: None,
        headers,
        source_ip: logged.client_ip,
        client_ip: logged.client_ip,
        principal: String::new(),
        certificate: String::new(),
        context_extensions: HashMap::new(),
    }
}

#[cfg(test)]
mod tests;
