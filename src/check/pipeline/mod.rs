//! One `Check`, phase by phase: request → policy → authn → authz →
//! upstream → response, each reported to an [`Observer`] (spans
//! when tracing, steps for `gatehouse explain`, nothing when serving),
//! then one decision log line. The engine is immutable; a reload builds a
//! new one. `shadow`: the same check decided with the `mode: shadow` rules
//! enforced, compared and never answered.

pub mod shadow;

use std::sync::Arc;

use ipnet::IpNet;
use tracing::Instrument as _;

use crate::check::authn::Authenticators;
use crate::check::authz;
use crate::check::authz::tool::ToolPolicy;
use crate::check::policy::Policy;
use crate::check::request::described::Described;
use crate::check::response;
use crate::check::response::upstream::UpstreamHeaders;
use crate::check::response::upstream::apply_prepared;
use crate::check::upstream::UpstreamActions;
use crate::check::upstream::once;
use crate::issuer::InternalIssuer;
use crate::model::deny::Deny;
use crate::model::identity::Identity;
use crate::model::observe::{Decision, Observer, Phase, Silent};
use crate::model::outcome::{HeaderPlan, Outcome};
use crate::model::request::Request;
use crate::model::requirement::Access;
use crate::proto::auth::{CheckRequest, CheckResponse};
use crate::store::Store;
use crate::telemetry::TelemetrySettings;
use crate::telemetry::decision::{self, DecisionRecord};
use crate::telemetry::spans::SpanObserver;

/// Everything a check needs, built once from validated configuration.
pub struct Engine {
    /// Compiled route rules.
    pub policy: Policy,
    /// The rules with the `mode: shadow` ones enforced, when there are any.
    pub shadow: Option<Policy>,
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
    /// The browser login (`login.providers`), if configured.
    pub login: Option<Arc<crate::login::Login>>,
    /// Per-user backend tokens (`backends`), if configured.
    pub backends: Option<Arc<crate::backends::Backends>>,
    /// The command-line login (`cli`), if configured.
    pub cli_login: Option<Arc<crate::login::cli::CliLogins>>,
    /// Check counters and latency, recorded per check by the serving
    /// engine (`serve::live::LiveEngine`) for gRPC and HTTP checks alike.
    pub metrics: crate::metrics::EngineMetrics,
}

/// How far a check got: what the response and the decision log are made of.
struct Verdict {
    request: Option<Request>,
    rule: Option<Arc<str>>,
    identity: Option<Identity>,
    /// The allow's header plan, or the reason for the denial.
    result: Result<HeaderPlan, Deny>,
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
    /// Authenticates a caller of gatehouse's own HTTP APIs (API tokens,
    /// link minting) as the check would: any credential, the session
    /// cookie included, with the check's browser protections: a
    /// credentialed request from an origin that is not allowed is refused,
    /// and a state-changing request carried by the session cookie alone
    /// must prove its origin or carry the session's `X-CSRF-Token`.
    pub async fn authenticate_caller(
        &self,
        request: &Request,
        auth_type: crate::config::AuthType,
    ) -> Result<Option<Identity>, Deny> {
        let identity = self
            .authn
            .authenticate_accepting(
                request,
                auth_type,
                crate::model::identity::AcceptedCredentials::ALL,
            )
            .await?;
        let origins = self.policy.browser().origins();
        authz::origin::check(origins, identity.as_ref(), request)?;
        let csrf = identity.as_ref().and_then(|i| i.csrf.as_ref());
        authz::csrf::check(origins, identity.as_ref(), request, csrf)?;
        Ok(identity)
    }

    /// Decides on one request and renders the response.
    pub async fn check(&self, check: &CheckRequest) -> (CheckResponse, Decision) {
        self.check_owned(check.clone()).await
    }

    /// [`Self::check`] taking the message by value, so its strings move
    /// into our `Request` instead of being copied (the gRPC edge's path).
    pub async fn check_owned(&self, check: CheckRequest) -> (CheckResponse, Decision) {
        let (outcome, decision) = self.decide(Described::from_check(check)).await;
        (response::render(outcome, &self.realm), decision)
    }

    /// Decides on a described request (the HTTP check endpoints): the
    /// [`Outcome`] the edge renders itself, with no protobuf in between.
    pub async fn decide(&self, described: Result<Described, Deny>) -> (Outcome, Decision) {
        if self.telemetry.spans {
            // Boxed: the span observer makes this future much larger than
            // the silent one, and every layer above would move the larger
            // size on every check, traced or not.
            let mut spans = SpanObserver::start(described.as_ref().ok().map(|d| &d.headers));
            let span = spans.span().clone();
            Box::pin(self.decide_observed(described, &mut spans).instrument(span)).await
        } else {
            self.decide_observed(described, &mut Silent).await
        }
    }

    /// The pipeline on Envoy's message, reporting each phase to
    /// `observer`, rendered as the `CheckResponse` Envoy would get.
    /// `gatehouse explain` calls this with its recorder.
    pub async fn check_observed<O: Observer>(
        &self,
        check: CheckRequest,
        observer: &mut O,
    ) -> (CheckResponse, Decision) {
        let (outcome, decision) = self
            .decide_observed(Described::from_check(check), observer)
            .await;
        (response::render(outcome, &self.realm), decision)
    }

    /// The pipeline, reporting each phase to `observer`; writes the
    /// decision log line.
    pub async fn decide_observed<O: Observer>(
        &self,
        described: Result<Described, Deny>,
        observer: &mut O,
    ) -> (Outcome, Decision) {
        let verdict = self.phases(described, observer).await;
        if let (Some(policy), Some(request)) = (&self.shadow, verdict.request.as_ref()) {
            let shadow = shadow::Shadow {
                policy,
                authn: &self.authn,
                tools: &self.tools,
                metrics: &self.metrics,
            };
            shadow
                .compare(
                    request,
                    verdict.rule.as_deref(),
                    verdict.identity.as_ref(),
                    verdict.result.as_ref().map(|_| ()),
                )
                .await;
        }
        let (outcome, result) = match verdict.result {
            Ok(plan) => (Outcome::Permit(plan), Ok(())),
            Err(deny) => {
                // A denial's rendering is fixed by its reason (the edge
                // renders it); the phase is kept for spans and `explain`.
                observer.begin(Phase::Response);
                observer.end(Phase::Response, Ok(()));
                (Outcome::Deny(deny.clone()), Err(deny))
            }
        };
        let decision = Decision {
            rule: verdict.rule,
            result,
        };
        observer.decided(&decision);
        if self.telemetry.decisions.logs(decision.result.is_ok()) {
            let request = verdict.request.as_ref();
            let decided_by = verdict.identity.as_ref().map(|i| i.kind);
            let presented = request.and_then(|r| self.authn.presented(r, decided_by));
            let trace_id = observer.trace_id(request);
            decision::emit(&DecisionRecord {
                decision: &decision,
                request,
                identity: verdict.identity.as_ref(),
                credential: presented.as_ref(),
                trace_id: trace_id.as_deref(),
            });
        }
        (outcome, decision)
    }

    /// Request → policy → authn → authz → upstream → response (allow).
    async fn phases(&self, described: Result<Described, Deny>, obs: &mut impl Observer) -> Verdict {
        obs.begin(Phase::Request);
        let request =
            match described.and_then(|d| Request::from_described(d, &self.trusted_proxies)) {
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
        let origins = self.policy.browser().origins();
        // A session's requests are compared with its own CSRF token.
        let csrf_token = identity.as_ref().and_then(|i| i.csrf.as_ref());
        if let Err(deny) = authz::authorize_request(&requirement, identity.as_ref(), &request)
            .and_then(|()| authz::origin::check(origins, identity.as_ref(), &request))
            .and_then(|()| authz::csrf::check(origins, identity.as_ref(), &request, csrf_token))
        {
            return Verdict::deny(obs, Phase::Authz, Some(request), rule, identity, deny);
        }
        // Tool ownership before anything with side effects (a one-time
        // link is used up only by a request that is let through).
        let tool =
            match authz::tool::authorize(&requirement, identity.as_ref(), &request, &self.tools) {
                Ok(tool) => tool,
                Err(deny) => {
                    return Verdict::deny(obs, Phase::Authz, Some(request), rule, identity, deny);
                }
            };
        obs.end(Phase::Authz, Ok(()));

        // The one step with side effects, after the decision.
        obs.begin(Phase::Upstream);
        let prepared = match self
            .upstream
            .prepare(&request, &requirement, identity.as_ref())
            .await
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
        let tool = tool.as_deref();
        let mut plan = response::plan(&request, &requirement, identity.as_ref(), tool);
        let strip_xfcc = self
            .authn
            .certificates
            .as_ref()
            .is_some_and(|c| c.strips_xfcc(&request));
        self.upstream_headers.apply(
            &mut plan,
            &request,
            &requirement,
            identity.as_ref(),
            tool,
            strip_xfcc,
        );
        apply_prepared(&self.upstream, prepared, &request, &mut plan);
        obs.end(Phase::Response, Ok(()));
        Verdict {
            request: Some(request),
            rule,
            identity,
            result: Ok(plan),
        }
    }

    /// Whether every issuer has a key set loaded.
    pub fn ready(&self) -> bool {
        self.authn.key_sets().iter().all(|k| k.is_ready())
    }
}
