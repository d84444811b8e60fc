//! What a check decided, before any edge renders it: an allow with the
//! header mutations it makes upstream, or a denial. The gRPC edge renders
//! it as Envoy's `CheckResponse`, the HTTP check endpoints as an HTTP
//! response; neither decides anything.

use std::borrow::Cow;

use crate::model::deny::Deny;

/// The header mutations of an allowed request, decided once: identity
/// headers, client copies stripped, a swapped credential, a reissued
/// token. Names are lower case; gatehouse's own are borrowed statics, so
/// planning an allow allocates no header name that rendering copies again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderPlan {
    /// Set on the upstream request, replacing any value it had, in order.
    pub set: Vec<(Cow<'static, str>, String)>,
    /// Removed from the upstream request.
    pub remove: Vec<String>,
    /// Query parameters removed from the upstream URL (a token that came
    /// in the query).
    pub remove_query: Vec<String>,
    /// Added to the response the client gets (a quota's `RateLimit`
    /// fields), by the gRPC edge; empty on almost every allow.
    pub client: Vec<(&'static str, String)>,
}

impl HeaderPlan {
    /// Sets `name`, replacing whatever the plan said of it before (an
    /// earlier value, or a removal).
    pub fn replace(&mut self, name: impl Into<Cow<'static, str>>, value: String) {
        let name = name.into();
        self.set.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.remove.retain(|n| !n.eq_ignore_ascii_case(&name));
        self.set.push((name, value));
    }

    /// Removes the client's `name`, once.
    pub fn strip(&mut self, name: &str) {
        if !self.remove.iter().any(|n| n == name) {
            self.remove.push(name.to_string());
        }
    }
}

/// A check's answer: allowed with these header mutations, or refused.
///
/// The allow carries its plan, not the identity: every edge today renders
/// headers, and the identity is already in the plan (`X-Auth-Request-*`)
/// and in the `Decision`'s log line. Carrying it was measured (criterion,
/// `pipeline/check` cached, three interleaved rounds against this shape):
/// 4–5% slower per allowed check, for moving the larger enum up through
/// the pipeline's futures, with no reader. An edge that needs it can add
/// it then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Let the request through with these mutations.
    Permit(HeaderPlan),
    /// Refuse it for this reason.
    Deny(Deny),
}
