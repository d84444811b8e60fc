//! Shadow rules (`mode: shadow`): the check decided by the enforcing
//! policy is decided again by the policy with the shadow rules in their
//! places, and where the two answers differ the disagreement is logged
//! and counted. This never changes the answer. Where no shadow rule would
//! have matched first, both policies pick the same rule and the cost is
//! one more rule lookup; only where one would have, is the check decided
//! again.
//!
//! The second decision reuses the caller the enforcing one authenticated;
//! it authenticates only when the enforcing rule looked at no credential
//! (an anonymous rule). It has no side effects: a one-time link is not
//! used up, nothing is written.

use crate::check::authn::Authenticators;
use crate::check::authz;
use crate::check::authz::tool::ToolPolicy;
use crate::check::policy::Policy;
use crate::metrics::EngineMetrics;
use crate::model::deny::Deny;
use crate::model::identity::Identity;
use crate::model::request::Request;
use crate::model::requirement::Access;

/// How a shadow decision differs from the enforced one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Enforced allow; the shadow policy would deny.
    AllowToDeny,
    /// Enforced deny; the shadow policy would allow.
    DenyToAllow,
    /// Both deny, for different reasons.
    ReasonChanged,
}

impl Change {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::AllowToDeny => "allow_to_deny",
            Change::DenyToAllow => "deny_to_allow",
            Change::ReasonChanged => "reason_changed",
        }
    }

    /// The change from `enforced` to `shadow` (deny reasons by label).
    pub fn between(enforced: Result<(), &str>, shadow: Result<(), &str>) -> Option<Change> {
        match (enforced, shadow) {
            (Ok(()), Ok(())) => None,
            (Ok(()), Err(_)) => Some(Change::AllowToDeny),
            (Err(_), Ok(())) => Some(Change::DenyToAllow),
            (Err(a), Err(b)) => (a != b).then_some(Change::ReasonChanged),
        }
    }
}

/// What the shadow comparison needs from the engine.
pub struct Shadow<'a> {
    /// The policy with the shadow rules enforced.
    pub policy: &'a Policy,
    /// The engine's authenticators.
    pub authn: &'a Authenticators,
    /// The engine's tool policy.
    pub tools: &'a ToolPolicy,
    /// Where disagreements are counted.
    pub metrics: &'a EngineMetrics,
}

impl Shadow<'_> {
    /// Decides `request` again with the shadow rules enforced and reports
    /// a disagreement with `enforced` (the enforcing rule's name and its
    /// answer). Returns the change, if any (for tests).
    pub async fn compare(
        &self,
        request: &Request,
        enforced_rule: Option<&str>,
        identity: Option<&Identity>,
        enforced: Result<(), &Deny>,
    ) -> Option<Change> {
        let requirement = match self.policy.requirement(request) {
            Ok(requirement) => requirement,
            // A request no shadow rule matched is not theirs to judge.
            Err(_) => return None,
        };
        if Some(&*requirement.rule) == enforced_rule {
            return None;
        }
        let authenticated;
        let identity = match (&requirement.access, identity) {
            (Access::Anonymous, _) => None,
            (Access::Authenticated { .. }, Some(identity)) => Some(identity),
            (Access::Authenticated { .. }, None) => {
                authenticated = self
                    .authn
                    .authenticate_accepting(request, requirement.auth_type, requirement.credentials)
                    .await;
                match &authenticated {
                    Ok(identity) => identity.as_ref(),
                    Err(deny) => {
                        return self.report(
                            request,
                            enforced_rule,
                            &requirement.rule,
                            enforced,
                            Err(deny),
                        );
                    }
                }
            }
        };
        let shadow = authz::authorize_request(&requirement, identity, request).and_then(|()| {
            authz::tool::authorize(&requirement, identity, request, self.tools).map(|_| ())
        });
        self.report(
            request,
            enforced_rule,
            &requirement.rule,
            enforced,
            shadow.as_ref().map(|_| ()),
        )
    }

    fn report(
        &self,
        request: &Request,
        enforced_rule: Option<&str>,
        shadow_rule: &str,
        enforced: Result<(), &Deny>,
        shadow: Result<(), &Deny>,
    ) -> Option<Change> {
        let change = Change::between(
            enforced.map_err(Deny::reason_label),
            shadow.map_err(Deny::reason_label),
        )?;
        self.metrics
            .shadow_disagreement(shadow_rule, change.as_str());
        tracing::info!(
            shadow_rule,
            enforced_rule = enforced_rule.unwrap_or(""),
            change = change.as_str(),
            enforced = enforced.err().map_or("allow", Deny::reason_label),
            shadow = shadow.err().map_or("allow", Deny::reason_label),
            method = %request.method,
            host = %request.host,
            path = %request.path,
            "shadow rule disagrees with the enforced decision"
        );
        Some(change)
    }
}
