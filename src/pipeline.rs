//! One `Check`, phase by phase: request → policy → authn → authz →
//! response. The engine is immutable; a reload builds a new one.

use std::sync::Arc;

use ipnet::IpNet;

use crate::authn::Authenticators;
use crate::authn::link;
use crate::authz;
use crate::authz::tool::ToolPolicy;
use crate::deny::Deny;
use crate::issuer::InternalIssuer;
use crate::policy::{Access, Policy};
use crate::proto::auth::{CheckRequest, CheckResponse};
use crate::request::Request;
use crate::response;
use crate::response::upstream::UpstreamHeaders;
use crate::store::Store;
use crate::upstream::UpstreamActions;

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
    /// Check counters and latency (recorded by the gRPC service).
    pub metrics: crate::metrics::EngineMetrics,
}

/// The outcome of a check, for logs and metrics.
#[derive(Debug)]
pub struct Decision {
    /// Name of the rule that applied, if one did.
    pub rule: Option<Arc<str>>,
    /// `Ok` for allow, the reason for deny.
    pub result: Result<(), Deny>,
}

impl Engine {
    /// Decides on one request and renders the response.
    pub async fn check(&self, check: &CheckRequest) -> (CheckResponse, Decision) {
        self.check_owned(check.clone()).await
    }

    /// [`Self::check`] taking the message by value, so its strings move
    /// into our `Request` instead of being copied (the server's path).
    pub async fn check_owned(&self, check: CheckRequest) -> (CheckResponse, Decision) {
        let request = match Request::from_owned_check(check, &self.trusted_proxies) {
            Ok(r) => r,
            Err(deny) => return self.refuse(None, None, deny),
        };
        let requirement = match self.policy.requirement(&request) {
            Ok(r) => r,
            Err(deny) => return self.refuse(Some(&request), None, deny),
        };
        let rule = Some(requirement.rule.clone());
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
                    Err(deny) => return self.refuse(Some(&request), rule, deny),
                }
            }
        };
        if let Err(deny) = authz::authorize_request(&requirement, identity.as_ref(), &request) {
            return self.refuse(Some(&request), rule, deny);
        }
        // Tool ownership before anything with side effects (a one-time
        // link is used up only by a request that is let through).
        let identity = match authz::tool::authorize(&requirement, identity, &request, &self.tools) {
            Ok(identity) => identity,
            Err(deny) => return self.refuse(Some(&request), rule, deny),
        };
        let upstream = match self
            .upstream
            .prepare(&request, &requirement, identity.as_ref())
        {
            Ok(prepared) => prepared,
            Err(deny) => return self.refuse(Some(&request), rule, deny),
        };
        if let Some(grant) = identity.as_ref().and_then(|id| id.grant.as_deref())
            && let Err(deny) =
                link::consume(self.store.as_ref(), grant, requirement.auth_type).await
        {
            return self.refuse(Some(&request), rule, deny);
        }
        tracing::debug!(
            rule = requirement.rule.as_ref(),
            subject = identity.as_ref().map(|i| i.subject.as_str()),
            method = %request.method,
            path = %request.path,
            "allow"
        );
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
        (
            response,
            Decision {
                rule,
                result: Ok(()),
            },
        )
    }

    fn refuse(
        &self,
        request: Option<&Request>,
        rule: Option<Arc<str>>,
        deny: Deny,
    ) -> (CheckResponse, Decision) {
        tracing::info!(
            rule = rule.as_deref(),
            reason = deny.reason_label(),
            detail = %deny,
            status = deny.http_status(),
            method = request.map(|r| r.method.as_str()),
            host = request.map(|r| r.host.as_str()),
            path = request.map(|r| r.path.as_str()),
            client_ip = request.and_then(|r| r.client_ip).map(tracing::field::display),
            "deny"
        );
        (
            response::deny(&deny, &self.realm),
            Decision {
                rule,
                result: Err(deny),
            },
        )
    }

    /// Whether every issuer has a key set loaded.
    pub fn ready(&self) -> bool {
        self.authn.key_sets().iter().all(|k| k.is_ready())
    }
}
