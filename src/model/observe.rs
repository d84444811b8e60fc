//! Watching a check phase by phase. The pipeline reports each phase's
//! start and outcome, and what it learned (the request, the rule, the
//! caller), to an [`Observer`]. Three observers share the one pipeline:
//!
//! - [`Silent`], the serving default: every method is an empty default,
//!   and the pipeline is generic over the observer, so it costs nothing;
//! - [`crate::telemetry::spans::SpanObserver`], when tracing is on: a span
//!   per check and per phase;
//! - `gatehouse explain`'s recorder: the steps an operator reads.

use std::sync::Arc;

use crate::model::deny::Deny;
use crate::model::identity::Identity;
use crate::model::request::Request;
use crate::model::requirement::Requirement;

/// The outcome of a check, for logs and metrics.
#[derive(Debug)]
pub struct Decision {
    /// Name of the rule that applied, if one did.
    pub rule: Option<Arc<str>>,
    /// `Ok` for allow, the reason for deny.
    pub result: Result<(), Deny>,
}

/// A phase of one check, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Envoy's `CheckRequest` → our normalized request.
    Request,
    /// Which rule applies, and what it demands.
    Policy,
    /// Which credential the request carries, and whether it is valid.
    Authn,
    /// Scopes, a signed link's grant, tool ownership.
    Authz,
    /// Per-rule upstream actions (credential swap, reissue), and using up
    /// a one-time link.
    Upstream,
    /// Rendering the allow (headers) or the denial (status, body).
    Response,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 6] = [
        Phase::Request,
        Phase::Policy,
        Phase::Authn,
        Phase::Authz,
        Phase::Upstream,
        Phase::Response,
    ];

    /// Lower-case name: the span name and the label `explain` prints.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Request => "request",
            Phase::Policy => "policy",
            Phase::Authn => "authn",
            Phase::Authz => "authz",
            Phase::Upstream => "upstream",
            Phase::Response => "response",
        }
    }
}

/// Receives a check's progress. Every method has an empty default.
pub trait Observer: Send {
    /// A phase starts.
    fn begin(&mut self, _phase: Phase) {}

    /// A phase ended: passed, or refused with this reason.
    fn end(&mut self, _phase: Phase, _outcome: Result<(), &Deny>) {}

    /// The request as the pipeline sees it (after the request phase).
    fn request(&mut self, _request: &Request) {}

    /// The rule that applies and what it demands (after the policy phase).
    fn requirement(&mut self, _requirement: &Requirement) {}

    /// Who the caller is (after the authn phase): `None` when the rule is
    /// anonymous or the request carries no credential.
    fn identity(&mut self, _identity: Option<&Identity>) {}

    /// The final decision, after the response phase.
    fn decided(&mut self, _decision: &Decision) {}

    /// The trace id for the decision log: by default the one in the
    /// request's `traceparent` header.
    fn trace_id(&self, request: Option<&Request>) -> Option<String> {
        request
            .and_then(|r| r.header("traceparent"))
            .and_then(traceparent_trace_id)
            .map(str::to_string)
    }
}

/// The serving observer: watches nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Observer for Silent {}

/// The trace id of a `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`),
/// if it is well formed and not all zeros.
pub fn traceparent_trace_id(value: &str) -> Option<&str> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    valid.then_some(trace_id)
}
