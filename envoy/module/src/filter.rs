//! One filter configuration (gatehouse's engine, its reloads and
//! background tasks) and one stream's check through it.
//!
//! A check is polled once, inline, on Envoy's worker thread: with the
//! keys loaded and the verified token cached it is ready at once, with no
//! allocation beyond the boxed future and no thread hop. When it is not
//! ready (a key set still loading or an unknown `kid` being fetched, an
//! introspection call), the same future moves to the module's runtime,
//! the stream stops, and Envoy's scheduler brings the answer back to the
//! worker that owns the stream.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use gatehouse::app::{self, Carry};
use std::time::Instant;

use gatehouse::check::request::described::Described;
use gatehouse::check::response::{self, Denial, IDENTITY_HEADER_PREFIX};
use gatehouse::config::{self, ConfigSource};
use gatehouse::metrics::Metrics;
use gatehouse::model::deny::Deny;
use gatehouse::model::outcome::HeaderPlan;
use gatehouse::model::outcome::Outcome;
use gatehouse::serve::live::LiveEngine;
use gatehouse::serve::reload::{Reloader, watch};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::config::{FilterSettings, NeedsState};
use crate::envoy::{Scheduler, Stream};
use crate::request::{self, without_query_parameters};
use crate::stats::CheckStats;
use crate::{log, runtime};

/// A check's answer.
pub struct Answer {
    /// What to do with the request.
    pub action: Action,
    /// The rule that applied, if one did (for the stats).
    pub rule: Option<Arc<str>>,
}

/// What to do with the request.
pub enum Action {
    /// Allowed, with these header mutations.
    Allow(HeaderPlan),
    /// Refused: the denial to send, and its reason label.
    Deny(Denial, &'static str),
    /// Needs shared state this process does not have: handed on to
    /// `ext_authz` (`needs_state: ext_authz`).
    HandOn,
}

impl Action {
    /// The stats' `decision` and `reason` labels for it.
    fn labels(&self) -> (&'static str, &'static str) {
        match self {
            Action::Allow(_) => ("allow", ""),
            Action::Deny(_, reason) => ("deny", reason),
            Action::HandOn => ("hand_on", Deny::NeedsState.reason_label()),
        }
    }
}

/// The answer of a check that had to wait, and how to wake its stream.
type Check = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// One filter configuration: gatehouse's serving engine, reloaded from
/// its file, with its background tasks on the module's runtime.
pub struct FilterConfig {
    live: LiveEngine,
    /// Whether a check that needs the (absent) shared store is handed on.
    hand_on: bool,
    /// Whether an allow that set headers makes Envoy route again.
    clear_route_cache: bool,
    /// Envoy stats the checks are counted in (none if Envoy refused them).
    stats: Option<CheckStats>,
    handle: Handle,
    /// Keeps the reloader (and its key refresh and store upkeep) alive.
    _reloader: Arc<Reloader>,
    watch: Option<JoinHandle<()>>,
}

impl Drop for FilterConfig {
    fn drop(&mut self) {
        // The watch holds the reloader; without it the reloader's tasks
        // stop when the last reference goes.
        if let Some(w) = self.watch.take() {
            w.abort();
        }
    }
}

impl FilterConfig {
    /// Loads gatehouse's configuration and builds its engine, as
    /// `gatehouse serve` does, with one difference: without a shared
    /// store (Redis) configured, checks that need state are refused (503)
    /// rather than decided on this process's private memory. `stats`: the
    /// Envoy stats defined for it, or why Envoy refused them (logged once
    /// the log is in place; checks then go on uncounted).
    pub fn new(
        settings: &FilterSettings,
        stats: Result<CheckStats, String>,
    ) -> Result<FilterConfig, String> {
        let handle = runtime::handle()?;
        let _context = handle.enter();
        let source = match (&settings.config_file, &settings.config_yaml) {
            (Some(path), _) => ConfigSource::File(path.clone()),
            (None, Some(yaml)) => ConfigSource::Text(yaml.clone()),
            (None, None) => return Err("no gatehouse configuration named".into()),
        };
        let env: Vec<(String, String)> = if settings.env_overrides {
            std::env::vars().collect()
        } else {
            Vec::new()
        };
        let config = config::load(&source, env.iter().cloned()).map_err(|e| e.to_string())?;
        log::install(&config.log, config.tracing.as_ref())?;
        let stats = stats
            .inspect_err(|e| tracing::warn!(error = %e, "checks are not counted in Envoy's stats"))
            .ok();
        let metrics = Arc::new(Metrics::new().map_err(|e| e.to_string())?);
        let mut carry = Carry::fresh(metrics.clone());
        let shared = config.store.redis.is_some();
        if !shared {
            carry.store = Some(Arc::new(gatehouse::store::unshared::Unshared));
        }
        let engine = app::build_engine_with(&config, &source, &carry).map_err(|e| e.to_string())?;
        let reloader = Reloader::start(config.clone(), source, env, engine, metrics);
        let watch = watch::spawn_file_watch(reloader.clone(), &config.reload, false);
        wait_for_keys(&reloader.live(), config.reload.keys_timeout);
        tracing::info!(
            shared_store = shared,
            needs_state = ?settings.needs_state,
            "gatehouse is deciding in process, inside Envoy"
        );
        Ok(FilterConfig {
            live: reloader.live(),
            hand_on: !shared && settings.needs_state == NeedsState::ExtAuthz,
            clear_route_cache: settings.clear_route_cache,
            stats,
            handle,
            _reloader: reloader,
            watch,
        })
    }
}

/// Waits, on the thread building the configuration (Envoy's main
/// thread), until every issuer's key set has loaded, at most `timeout`
/// (`reload.keys_timeout`): the service's readiness, in process. Envoy
/// starts its listeners, or applies a new listener configuration, only
/// once its filters are built, so the first requests find the keys there.
/// Past `timeout` it goes on: that issuer's tokens get 503 until its keys
/// load, as with the service.
fn wait_for_keys(live: &LiveEngine, timeout: std::time::Duration) {
    let started = Instant::now();
    while !live.load().ready() {
        if started.elapsed() >= timeout {
            tracing::warn!(
                waited = ?timeout,
                "not every issuer's key set has loaded: its tokens get 503 until it does"
            );
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A check that is waiting on the runtime: its answer, once there, and
/// the scheduler that wakes the stream (taken by whoever uses or deletes
/// it first, under the lock, so a commit never meets a deleted scheduler).
#[derive(Default)]
struct Waiting {
    answer: Option<Answer>,
    scheduler: Option<Scheduler>,
}

/// One stream's state.
pub struct StreamFilter {
    config: Arc<FilterConfig>,
    waiting: Option<(Arc<Mutex<Waiting>>, tokio::task::AbortHandle)>,
    /// When the request's headers came in (for the duration stat).
    started: Instant,
    /// Headers for the client's response (a quota's `RateLimit` fields).
    client_headers: Vec<(&'static str, String)>,
}

/// What the request-headers hook tells Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Go on to the next filter.
    Continue,
    /// Stop here: a local reply was sent.
    Stop,
    /// Stop until the waiting check's answer is applied (the body, if
    /// any, is buffered up to Envoy's watermark meanwhile).
    Wait,
}

impl StreamFilter {
    /// A new stream under `config`.
    pub fn new(config: Arc<FilterConfig>) -> StreamFilter {
        StreamFilter {
            config,
            waiting: None,
            started: Instant::now(),
            client_headers: Vec::new(),
        }
    }

    /// Checks the request whose headers Envoy has.
    pub fn on_request_headers(&mut self, stream: &Stream) -> Next {
        self.started = Instant::now();
        let route = stream.route_settings();
        let (connection, digest) = stream.connection();
        let mut described = stream.with_request_headers(|headers| {
            request::describe(headers, connection, route.as_deref())
        });
        if let Some(digest) = digest {
            described.certificate = request::peer_certificate(
                described
                    .headers
                    .get("x-forwarded-client-cert")
                    .map(String::as_str),
                &digest,
            )
            .unwrap_or_default();
        }
        let live = self.config.live.clone();
        let hand_on = self.config.hand_on;
        let _context = self.config.handle.enter();
        let mut check: Check = Box::pin(decide(live, described, hand_on));
        match check.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(answer) => self.apply(stream, answer),
            Poll::Pending => {
                let waiting = Arc::new(Mutex::new(Waiting {
                    answer: None,
                    scheduler: Some(stream.scheduler()),
                }));
                let done = waiting.clone();
                let task = self.config.handle.spawn(async move {
                    let answer = check.await;
                    let mut w = done.lock().unwrap_or_else(|p| p.into_inner());
                    w.answer = Some(answer);
                    if let Some(s) = &w.scheduler {
                        s.commit(0);
                    }
                });
                self.waiting = Some((waiting, task.abort_handle()));
                Next::Wait
            }
        }
    }

    /// The waiting check's answer has come (Envoy's scheduler, on the
    /// stream's worker): applies it and lets the request go on, or not.
    pub fn on_scheduled(&mut self, stream: &Stream) {
        let Some((waiting, _)) = self.waiting.take() else {
            return;
        };
        let answer = {
            let mut w = waiting.lock().unwrap_or_else(|p| p.into_inner());
            drop(w.scheduler.take());
            w.answer.take()
        };
        let Some(answer) = answer else {
            return;
        };
        if self.apply(stream, answer) == Next::Continue {
            stream.continue_decoding();
        }
    }

    /// Adds the allow's client headers to the response.
    pub fn on_response_headers(&mut self, stream: &Stream) {
        for (name, value) in self.client_headers.drain(..) {
            stream.add_response_header(name.as_bytes(), value.as_bytes());
        }
    }

    /// Applies an answer: the allow's header mutations, the denial as a
    /// local reply, or the hand-on to `ext_authz`.
    fn apply(&mut self, stream: &Stream, answer: Answer) -> Next {
        if let Some(stats) = &self.config.stats {
            let (decision, reason) = answer.action.labels();
            let rule = answer.rule.as_deref();
            stats.record(stream, [decision, reason], rule, self.started.elapsed());
        }
        match answer.action {
            Action::Allow(plan) => {
                for name in &plan.remove {
                    stream.remove_request_header(name.as_bytes());
                }
                for (name, value) in &plan.set {
                    stream.set_request_header(name.as_bytes(), value.as_bytes());
                }
                if !plan.remove_query.is_empty()
                    && let Some(path) = stream.request_header(b":path")
                    && let Some(stripped) = without_query_parameters(
                        &String::from_utf8_lossy(&path),
                        &plan.remove_query,
                    )
                {
                    stream.set_request_header(b":path", stripped.as_bytes());
                }
                if self.config.clear_route_cache && !plan.set.is_empty() {
                    stream.clear_route_cache();
                }
                self.client_headers = plan.client;
                Next::Continue
            }
            Action::Deny(denial, _) => {
                stream.send_response(
                    denial.status,
                    &denial.headers,
                    denial.body.as_bytes(),
                    "gatehouse_denied",
                );
                Next::Stop
            }
            Action::HandOn => {
                // Whatever the next filter does, no client-chosen identity
                // header goes upstream from here.
                stream.remove_request_headers_starting(IDENTITY_HEADER_PREFIX.as_bytes());
                stream.set_metadata("gatehouse", "check", "ext_authz");
                Next::Continue
            }
        }
    }
}

/// One check on the serving engine, as the service runs and records it.
async fn decide(live: LiveEngine, described: Described, hand_on: bool) -> Answer {
    live.decide_with(described, |outcome, decision, realm| Answer {
        action: match outcome {
            Outcome::Permit(plan) => Action::Allow(plan),
            // Only a process without a shared store answers this.
            Outcome::Deny(Deny::NeedsState) if hand_on => Action::HandOn,
            Outcome::Deny(deny) => {
                Action::Deny(response::denial(&deny, realm), deny.reason_label())
            }
        },
        rule: decision.rule.clone(),
    })
    .await
}

impl Drop for StreamFilter {
    fn drop(&mut self) {
        if let Some((waiting, task)) = self.waiting.take() {
            task.abort();
            let mut w = waiting.lock().unwrap_or_else(|p| p.into_inner());
            drop(w.scheduler.take());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_action_has_its_stats_labels() {
        assert_eq!(Action::HandOn.labels(), ("hand_on", "needs_state"));
        assert_eq!(Action::Allow(HeaderPlan::default()).labels(), ("allow", ""));
        let denial = response::denial(&Deny::NoRule, "gatehouse");
        assert_eq!(
            Action::Deny(denial, Deny::NoRule.reason_label()).labels(),
            ("deny", Deny::NoRule.reason_label())
        );
    }
}
