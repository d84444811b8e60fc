//! The decision log: one line per denied check (and per allowed one with
//! `log.decisions: all`), target [`TARGET`], level INFO.
//!
//! Fields, always present (empty when unknown): `decision` (`allow` or
//! `deny`), `rule`, `reason` (the metrics label), `detail` (the denial's
//! message, safe for clients), `status` (the HTTP status the client gets;
//! 200 for an allow), `subject`, `client_ip`, `method`, `host`, `path`
//! (normalized, without the query string), `trace_id`, `credential` (where
//! the credential was found: `bearer`, `cookie`, `peer-certificate`, …)
//! and `token_fp`, the first 8 bytes of the credential's SHA-256 in hex.
//! Never the credential itself, a cookie, a header value or the query.

use crate::authn::Presented;
use crate::pipeline::Decision;
use crate::request::Request;

/// The log target of decision lines (`log.level: gatehouse::decision=info`
/// selects them).
pub const TARGET: &str = "gatehouse::decision";

/// What one decision line is made of.
#[derive(Debug)]
pub struct DecisionRecord<'a> {
    /// The decision.
    pub decision: &'a Decision,
    /// The request, unless it could not be read.
    pub request: Option<&'a Request>,
    /// The authenticated subject, if authentication succeeded.
    pub subject: Option<&'a str>,
    /// The credential the request carried, if any.
    pub credential: Option<&'a Presented>,
    /// The trace the check belongs to, if any.
    pub trace_id: Option<&'a str>,
}

/// Writes the decision line.
pub fn emit(record: &DecisionRecord<'_>) {
    let request = record.request;
    let (verdict, reason, status, detail) = match &record.decision.result {
        Ok(()) => ("allow", "", 200, String::new()),
        Err(deny) => (
            "deny",
            deny.reason_label(),
            deny.http_status(),
            deny.to_string(),
        ),
    };
    let client_ip = request
        .and_then(|r| r.client_ip)
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    tracing::info!(
        target: TARGET,
        decision = verdict,
        rule = record.decision.rule.as_deref().unwrap_or(""),
        reason,
        detail = detail.as_str(),
        status,
        subject = record.subject.unwrap_or(""),
        client_ip = client_ip.as_str(),
        method = request.map_or("", |r| r.method.as_str()),
        host = request.map_or("", |r| r.host.as_str()),
        path = request.map_or("", |r| r.path.as_str()),
        trace_id = record.trace_id.unwrap_or(""),
        credential = record.credential.map_or("", |c| c.kind),
        token_fp = record
            .credential
            .and_then(|c| c.fingerprint.as_deref())
            .unwrap_or(""),
        "{verdict}"
    );
}
