//! The tracing observer: one `check` span per check, with the caller's
//! W3C trace context as its parent, and one child span per phase.
//!
//! Attributes (never a token, cookie or header value):
//!
//! | span | attributes |
//! |---|---|
//! | `check` | `http.request.method`, `server.address`, `url.path`, `gatehouse.rule`, `gatehouse.credential` (kind), `gatehouse.decision` (`allow`/`deny`), `gatehouse.reason`, `http.response.status_code` |
//! | `request`, `policy`, `authn`, `authz`, `upstream`, `response` | `gatehouse.outcome` (`ok`/`deny`), `gatehouse.reason` |
//!
//! Phase spans are created with the check span as explicit parent and
//! closed when the phase ends; they are never entered, so nothing is held
//! across an `.await`.

use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use opentelemetry::trace::TraceContextExt as _;

use super::SPAN_TARGET;
use crate::model::deny::Deny;
use crate::model::identity::Identity;
use crate::model::observe::Decision;
use crate::model::observe::{Observer, Phase};
use crate::model::request::Request;
use crate::model::requirement::Requirement;
use std::collections::HashMap;

/// Spans for one check.
#[derive(Debug)]
pub struct SpanObserver {
    check: Span,
    phase: Option<Span>,
    /// Whether the trace is sampled: phase spans of a trace that is not
    /// exported are not made (they would cost as much as exported ones).
    sampled: bool,
}

impl SpanObserver {
    /// Opens the `check` span, parented on the request's `traceparent`
    /// (and `tracestate`) when it carries a valid one.
    /// `headers`: the checked request's, when it could be read.
    pub fn start(headers: Option<&HashMap<String, String>>) -> SpanObserver {
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "check",
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = Empty,
            server.address = Empty,
            url.path = Empty,
            gatehouse.rule = Empty,
            gatehouse.credential = Empty,
            gatehouse.decision = Empty,
            gatehouse.reason = Empty,
            http.response.status_code = Empty,
        );
        let parent = headers.and_then(super::otel::parent_context);
        if let Some(parent) = parent {
            // Fails only when no OpenTelemetry layer is installed; then
            // there is no trace to join anyway.
            let _ = span.set_parent(parent);
        }
        // Building the context runs the sampler (parent-based: the
        // caller's flag, else the configured ratio).
        let sampled = span.context().span().span_context().is_sampled();
        SpanObserver {
            check: span,
            phase: None,
            sampled,
        }
    }

    /// The `check` span (to instrument the check's future with).
    pub fn span(&self) -> &Span {
        &self.check
    }
}

impl Observer for SpanObserver {
    fn begin(&mut self, phase: Phase) {
        if !self.sampled {
            return;
        }
        self.phase = Some(tracing::info_span!(
            target: SPAN_TARGET,
            parent: &self.check,
            "phase",
            otel.name = phase.name(),
            gatehouse.outcome = Empty,
            gatehouse.reason = Empty,
        ));
    }

    fn end(&mut self, _phase: Phase, outcome: Result<(), &Deny>) {
        if let Some(span) = self.phase.take() {
            match outcome {
                Ok(()) => {
                    span.record("gatehouse.outcome", "ok");
                }
                Err(deny) => {
                    span.record("gatehouse.outcome", "deny");
                    span.record("gatehouse.reason", deny.reason_label());
                }
            }
        }
    }

    fn request(&mut self, request: &Request) {
        self.check
            .record("http.request.method", request.method.as_str());
        self.check.record("server.address", request.host.as_str());
        self.check.record("url.path", request.path.as_str());
    }

    fn requirement(&mut self, requirement: &Requirement) {
        self.check
            .record("gatehouse.rule", requirement.rule.as_ref());
    }

    fn identity(&mut self, identity: Option<&Identity>) {
        if let Some(identity) = identity {
            self.check
                .record("gatehouse.credential", identity.kind.as_str());
        }
    }

    fn decided(&mut self, decision: &Decision) {
        match &decision.result {
            Ok(()) => {
                self.check.record("gatehouse.decision", "allow");
                self.check.record("http.response.status_code", 200u64);
            }
            Err(deny) => {
                let status = deny.http_status();
                self.check.record("gatehouse.decision", "deny");
                self.check.record("gatehouse.reason", deny.reason_label());
                self.check
                    .record("http.response.status_code", u64::from(status));
                if status >= 500 {
                    // Gatehouse could not decide (misconfiguration, keys
                    // or store unavailable): an error, unlike a refusal.
                    self.check.record("otel.status_code", "error");
                }
            }
        }
    }

    fn trace_id(&self, request: Option<&Request>) -> Option<String> {
        let cx = self.check.context();
        let span = cx.span();
        let context = span.span_context();
        if context.is_valid() {
            return Some(context.trace_id().to_string());
        }
        request
            .and_then(|r| r.header("traceparent"))
            .and_then(super::otel::traceparent_trace_id)
            .map(str::to_string)
    }
}
