//! One `Check`, phase by phase: request → policy → authn → authz →
//! upstream → response, each reported to an [`observe::Observer`] (spans
//! when tracing, steps for `gatehouse explain`, nothing when serving),
//! then one decision log line. The engine is immutable; a reload builds a
//! new one.

pub use crate::model::observe;
pub use crate::model::observe::Decision;

use std::sync::Arc;

use ipnet::IpNet;
use tracing::Instrument as _;

use crate::authn::Authenticators;
use crate::authz;
use crate::authz::tool::ToolPolicy;
use crate::issuer::InternalIssuer;
use crate::model::deny::Deny;
use crate::model::identity::Identity;
use crate::model::request::Request;
use crate::model::requirement::Access;
use crate::policy::Policy;
use crate::proto::auth::{CheckRequest, CheckResponse};
use crate::response;
use crate::response::upstream::UpstreamHeaders;
use crate::store::Store;
use crate::telemetry::TelemetrySettings;
use crate::telemetry::decision::{self, DecisionRecord};
use crate::telemetry::spans::SpanObserver;
use crate::upstream::UpstreamActions;
use crate::upstream::once;
use observe::{Observer, Phase, Silent};

/// Everything a check needs, built once from validated configuration.
pub struct Engine {
    /// Compiled route rules.
    pub policy: Policy,
    /// Credential verification.
    pub authn: Authenticators,
    /// Proxies whose `X-Forwarded-For` entries are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Realm for challenges.
    pub realm: String,
    /// Tool ownership: superusers, the act-as header.
    pub tools: ToolPolicy,
    /// Extra identity headers and client headers stripped upstream.
    pub upstream_headers: UpstreamHeaders,
    /// Gatehouse's own issuer (JWKS, signed links, reissue), if configured.
    pub issuer: Option<Arc<InternalIssuer>>,
    /// Shared state: one-time link uses.
    pub store: Arc<dyn Store>,
    /// Per-rule upstream credential swap and audience reissue.
    pub upstream: UpstreamActions,
    /// Spans per check (tracing on) and which decisions are logged.
    pub telemetry: TelemetrySettings,
    /// Check counters and latency (recorded by the gRPC service).
    pub metrics: crate::metrics::EngineMetrics,
}

/// How far a check got: what the response and the decision log are made of.
struct Verdict {
    request: Option<Request>,
    rule: Option<Arc<str>>,
    identity: Option<Identity>,
    /// The rendered allow, or the reason for the denial.
    result: Result<CheckResponse, Deny>,
}

impl Verdict {
    /// A denial in `phase`, reported to the observer.
    fn deny(
        observer: &mut impl Observer,
        phase: Phase,
        request: Option<Request>,
        rule: Option<Arc<str>>,
        identity: Option<Identity>,
        deny: Deny,
    ) -> Verdict {
        observer.end(phase, Err(&deny));
        Verdict {
            request,
            rule,
            identity,
            result: Err(deny),
        }
    }
}

impl Engine {
    /// Decides on one request and renders the response.
    pub async fn check(&self, check: &CheckRequest) -> (CheckResponse, Decision) {
        self.check_owned(check.clone()).await
    }

    /// [`Self::check`] taking the message by value, so its strings move
    /// into our `Request` instead of being copied (the server's path).
    /// With tracing on, the check gets spans; otherwise the silent
    /// observer (see [`crate::telemetry`] for why spans are not created
    /// and filtered out instead).
    pub async fn check_owned(&self, check: CheckRequest) -> (CheckResponse, Decision) {
        if self.telemetry.spans {
            // Boxed: the span observer makes this future much larger than
            // the silent one, and every layer above would move the larger
            // size on every check, traced or not.
            let mut spans = SpanObserver::start(&check);
            let span = spans.span().clone();
            Box::pin(self.check_observed(check, &mut spans).instrument(span)).await
        } else {
            self.check_observed(check, &mut Silent).await
        }
    }

    /// The pipeline, reporting each phase to `observer`; writes the
    /// decision log line. `gatehouse explain` calls this with its recorder.
    pub async fn check_observed<O: Observer>(
        &self,
        check: CheckRequest,
        observer: &mut O,
    ) -> (CheckResponse, Decision) {
        let verdict = self.decide(check, observer).await;
        let (response, result) = match verdict.result {
            Ok(response) => (response, Ok(())),
            Err(deny) => {
                observer.begin(Phase::Response);
                let response = response::deny(&deny, &self.realm);
                observer.end(Phase::Response, Ok(()));
                (response, Err(deny))
            }
        };
        let decision = Decision {
            rule: verdict.rule,
            result,
        };
        observer.decided(&decision);
        if self.telemetry.decisions.logs(decision.result.is_ok()) {
            let request = verdict.request.as_ref();
            let presented = request.and_then(|r| self.authn.presented(r));
            let trace_id = observer.trace_id(request);
            decision::emit(&DecisionRecord {
                decision: &decision,
                request,
                subject: verdict.identity.as_ref().map(|i| i.subject.as_str()),
                credential: presented.as_ref(),
                trace_id: trace_id.as_deref(),
            });
        }
        (response, decision)
    }

    /// Request → policy → authn → authz → upstream → response (allow).
    async fn decide(&self, check: CheckRequest, obs: &mut impl Observer) -> Verdict {
        obs.begin(Phase::Request);
        let request = match Request::from_owned_check(check, &self.trusted_proxies) {
            Ok(r) => r,
            Err(deny) => return Verdict::deny(obs, Phase::Request, None, None, None, deny),
        };
        obs.end(Phase::Request, Ok(()));
        obs.request(&request);

        obs.begin(Phase::Policy);
        let requirement = match self.policy.requirement(&request) {
            Ok(r) => r,
            Err(deny) => return Verdict::deny(obs, Phase::Policy, Some(request), None, None, deny),
        };
        obs.end(Phase::Policy, Ok(()));
        obs.requirement(&requirement);
        let rule = Some(requirement.rule.clone());

        obs.begin(Phase::Authn);
        let identity = match requirement.access {
            Access::Anonymous => None,
            Access::Authenticated { .. } => {
                match self
                    .authn
                    .authenticate_accepting(
                        &request,
                        requirement.auth_type,
                        requirement.credentials,
                    )
                    .await
                {
                    Ok(identity) => identity,
                    Err(deny) => {
                        return Verdict::deny(obs, Phase::Authn, Some(request), rule, None, deny);
                    }
                }
            }
        };
        obs.end(Phase::Authn, Ok(()));
        obs.identity(identity.as_ref());

        obs.begin(Phase::Authz);
        if let Err(deny) = authz::authorize_request(&requirement, identity.as_ref(), &request) {
            return Verdict::deny(obs, Phase::Authz, Some(request), rule, identity, deny);
        }
        // Tool ownership before anything with side effects (a one-time
        // link is used up only by a request that is let through).
        let mut identity = identity;
        if let Err(deny) =
            authz::tool::authorize_in_place(&requirement, &mut identity, &request, &self.tools)
        {
            return Verdict::deny(obs, Phase::Authz, Some(request), rule, identity, deny);
        }
        obs.end(Phase::Authz, Ok(()));

        obs.begin(Phase::Upstream);
        let upstream = match self
            .upstream
            .prepare(&request, &requirement, identity.as_ref())
        {
            Ok(prepared) => prepared,
            Err(deny) => {
                return Verdict::deny(obs, Phase::Upstream, Some(request), rule, identity, deny);
            }
        };
        if let Some(grant) = identity.as_ref().and_then(|id| id.grant.as_deref())
            && let Err(deny) =
                once::consume(self.store.as_ref(), grant, requirement.auth_type).await
        {
            return Verdict::deny(obs, Phase::Upstream, Some(request), rule, identity, deny);
        }
        obs.end(Phase::Upstream, Ok(()));

        obs.begin(Phase::Response);
        let mut response = response::allow(&request, &requirement, identity.as_ref());
        let strip_xfcc = self
            .authn
            .certificates
            .as_ref()
            .is_some_and(|c| c.strips_xfcc(&request));
        self.upstream_headers.apply(
            &mut response,
            &request,
            &requirement,
            identity.as_ref(),
            strip_xfcc,
        );
        self.upstream.finish(upstream, &request, &mut response);
        obs.end(Phase::Response, Ok(()));
        Verdict {
            request: Some(request),
            rule,
            identity,
            result: Ok(response),
        }
    }

    /// Whether every issuer has a key set loaded.
    pub fn ready(&self) -> bool {
        self.authn.key_sets().iter().all(|k| k.is_ready())
    }
}
