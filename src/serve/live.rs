//! The engine checks are served with right now, swapped whole by a
//! configuration reload ([`crate::serve::reload`]). Each check loads it once and
//! keeps what it loaded to the end, so a check in flight during a swap
//! finishes on the engine it started with; the old engine is dropped when
//! its last check ends.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::{ArcSwap, Guard};

use crate::check::pipeline::Engine;
use crate::check::request::described::Described;
use crate::check::response::{self, Denial};
use crate::model::observe::Decision;
use crate::model::outcome::{HeaderPlan, Outcome};
use crate::proto::auth::{CheckRequest, CheckResponse};

/// A shared, swappable handle on the serving engine (cheap to clone).
#[derive(Clone)]
pub struct LiveEngine(Arc<ArcSwap<Engine>>);

impl LiveEngine {
    /// Serves `engine` until a swap.
    pub fn new(engine: Arc<Engine>) -> LiveEngine {
        LiveEngine(Arc::new(ArcSwap::new(engine)))
    }

    /// The serving engine, for one check: a guard, cheaper than cloning
    /// the `Arc` (it becomes a full reference only if held across many
    /// other loads on the same thread).
    pub fn load(&self) -> Guard<Arc<Engine>> {
        self.0.load()
    }

    /// The serving engine as an `Arc`, for holders that live longer.
    pub fn current(&self) -> Arc<Engine> {
        self.0.load_full()
    }

    /// Runs one check on the serving engine and records its metrics: the
    /// one entry point for checks over gRPC and over HTTP.
    pub async fn check(&self, request: CheckRequest) -> CheckResponse {
        // One load per check: a reload during the check does not affect it.
        let engine = self.load();
        let started = Instant::now();
        let (response, decision) = engine.check_owned(request).await;
        engine.metrics.record(&decision, started.elapsed());
        response
    }

    /// Runs one check described by the HTTP edge and records its metrics:
    /// the allow's header plan, or the denial to send (its status, headers
    /// and body). No protobuf on this path.
    pub async fn decide(&self, described: Described) -> Result<HeaderPlan, Denial> {
        self.decide_with(described, |outcome, _, realm| match outcome {
            Outcome::Permit(plan) => Ok(plan),
            Outcome::Deny(deny) => Err(response::denial(&deny, realm)),
        })
        .await
    }

    /// Runs one described check and records its metrics, then hands its
    /// [`Outcome`], its [`Decision`] (rule and reason, as recorded) and the
    /// deciding engine's realm to `answer`: for an edge that looks at the
    /// denial's reason before rendering it, or counts checks its own way
    /// (the in-process Envoy filter hands
    /// [`crate::model::deny::Deny::NeedsState`] on, and counts in Envoy's stats).
    pub async fn decide_with<T>(
        &self,
        described: Described,
        answer: impl FnOnce(Outcome, &Decision, &str) -> T,
    ) -> T {
        let engine = self.load();
        let started = Instant::now();
        let (outcome, decision) = engine.decide(Ok(described)).await;
        engine.metrics.record(&decision, started.elapsed());
        answer(outcome, &decision, &engine.realm)
    }

    /// Serves `engine` from now on; returns the one it replaces.
    pub fn swap(&self, engine: Arc<Engine>) -> Arc<Engine> {
        self.0.swap(engine)
    }
}

impl From<Arc<Engine>> for LiveEngine {
    fn from(engine: Arc<Engine>) -> LiveEngine {
        LiveEngine::new(engine)
    }
}

impl From<Engine> for LiveEngine {
    fn from(engine: Engine) -> LiveEngine {
        LiveEngine::new(Arc::new(engine))
    }
}
