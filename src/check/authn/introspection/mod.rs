//! Opaque bearer tokens, checked at the authorization server's RFC 7662
//! introspection endpoint (`introspection:`).
//!
//! A token from the token sources that is neither an API token nor shaped
//! like a JWT (three dot-separated parts) is posted to the endpoint with
//! gatehouse's client credentials, through the `oauth2` crate. An answer
//! with `active: true` names the caller like a JWT's claims do (the
//! configured `claims` members; `username` by default, RFC 7662's
//! member); the subject is `sub`, or `client_id` for a token with no user
//! (a client-credentials token). `exp` and `nbf` are checked again here,
//! and `iss` and `aud` when configured.
//!
//! Answers are remembered by the token's SHA-256 (never the token):
//! - active: until the token's `exp`, at most `max_cache_ttl` (how late a
//!   revocation at the server is noticed);
//! - inactive: for `negative_cache_ttl`, so a client retrying a dead
//!   token reaches the server once per that interval.
//!
//! Concurrent checks with one unknown token make one call (the others wait
//! for its answer), and at most `max_concurrent` calls run at once: a flood
//! of random tokens queues here instead of at the server. A failed call
//! (unreachable, timed out, an error status, a malformed answer) is never
//! remembered and refuses the check with a 503: fail closed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use oauth2::basic::{BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenResponse};
use oauth2::{
    AccessToken, AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, IntrospectionUrl,
    RequestTokenError, StandardRevocableToken, StandardTokenIntrospectionResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::clock::now_secs;
use crate::config::{ClaimsConfig, ClientAuthMethod, ConfigError, IntrospectionConfig};
use crate::metrics::OAuthCallMetrics;
use crate::model::claims::{
    ClaimProblem, check_identity_claims, claim_groups, claim_scopes, claim_text,
};
use crate::model::identity::{CredentialKind, Identity};
use crate::outbound::{ExpiringCache, Source};
use crate::secret::Secret;

/// Why an opaque token was not accepted. The messages go to the client:
/// they never hold the token or a member's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntrospectionError {
    /// The server says the token is not active (unknown, expired, revoked).
    #[error("token is not active")]
    Inactive,
    /// The answer is active but names another issuer than the one
    /// configured.
    #[error("untrusted issuer")]
    UnknownIssuer,
    /// The answer names none of the accepted audiences.
    #[error("audience not accepted")]
    BadAudience,
    /// The answer's `exp` has passed, or its `nbf` has not come.
    #[error("token is expired or not yet valid")]
    OutsideLifetime,
    /// The answer names no subject (`sub`) and no client (`client_id`).
    #[error("token names no subject")]
    MissingSubject,
    /// An identity member cannot be carried upstream.
    #[error("invalid {claim} claim: {problem}")]
    InvalidClaim {
        /// The member's name.
        claim: String,
        /// What is wrong with it.
        problem: ClaimProblem,
    },
    /// No usable answer: the server is unreachable, slow, answered an
    /// error, or something that is not an introspection answer (503).
    #[error("introspection endpoint unavailable: {0}")]
    Unavailable(String),
}

/// The members of an answer beyond RFC 7662's own, kept as JSON so that
/// the configured claim names can be read from them.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
struct OtherMembers {
    #[serde(flatten)]
    members: Map<String, Value>,
}

impl oauth2::ExtraTokenFields for OtherMembers {}

/// RFC 7662's answer, with its other members.
type Answer = StandardTokenIntrospectionResponse<OtherMembers, oauth2::basic::BasicTokenType>;

/// An `oauth2` client with only the introspection endpoint set.
type IntrospectionClient = oauth2::Client<
    BasicErrorResponse,
    BasicTokenResponse,
    Answer,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
>;

/// A remembered answer.
#[derive(Clone)]
enum Remembered {
    /// Active: the identity (with an empty token; the presented one is put
    /// back on use).
    Active(Arc<Identity>),
    /// Inactive, or refused here.
    Refused(IntrospectionError),
}

/// The introspection authenticator.
pub struct Introspector {
    name: String,
    client: IntrospectionClient,
    http: reqwest::Client,
    issuer: Option<String>,
    audiences: Vec<String>,
    claims: ClaimsConfig,
    group_scopes: HashMap<String, Vec<String>>,
    leeway_secs: u64,
    cache: Option<ExpiringCache<Remembered>>,
    max_cache_ttl: u64,
    negative_ttl: u64,
    calls: Semaphore,
    timeout: Duration,
    keep_claims: bool,
    metrics: Option<OAuthCallMetrics>,
    /// Set by `gatehouse explain`: no call is made.
    offline: std::sync::atomic::AtomicBool,
}

impl Introspector {
    /// Builds the authenticator from its validated configuration and the
    /// client secret (read from `client_secret_file` by the caller);
    /// `group_mapping` is scope → groups, as configured.
    pub fn new(
        config: &IntrospectionConfig,
        secret: Secret,
        leeway_secs: u64,
        group_mapping: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Result<Introspector, ConfigError> {
        let url = config.client.validate("introspection")?;
        if config.max_concurrent == 0 {
            return Err(ConfigError::invalid(
                "introspection.max_concurrent",
                "must be at least 1",
            ));
        }
        if config.audiences.iter().any(String::is_empty) {
            return Err(ConfigError::invalid(
                "introspection.audiences",
                "must not hold an empty value",
            ));
        }
        let client = oauth2::Client::new(ClientId::new(config.client.client_id.clone()))
            .set_client_secret(ClientSecret::new(secret.expose().to_string()))
            .set_auth_type(match config.client.auth_method {
                ClientAuthMethod::ClientSecretBasic => AuthType::BasicAuth,
                ClientAuthMethod::ClientSecretPost => AuthType::RequestBody,
            })
            .set_introspection_url(IntrospectionUrl::from_url(url));
        let http = crate::outbound::client(config.client.timeout)
            .map_err(|e| ConfigError::invalid("introspection", e.to_string()))?;
        Ok(Introspector {
            name: config
                .name
                .clone()
                .unwrap_or_else(|| "introspection".to_string()),
            client,
            http,
            issuer: config.issuer.clone(),
            audiences: config.audiences.clone(),
            claims: config.claims.clone(),
            group_scopes: crate::model::identity::scopes_by_group(group_mapping),
            leeway_secs,
            cache: (config.cache_size > 0).then(|| ExpiringCache::new(config.cache_size)),
            max_cache_ttl: config.max_cache_ttl.as_secs(),
            negative_ttl: config.negative_cache_ttl.as_secs(),
            calls: Semaphore::new(config.max_concurrent),
            timeout: config.client.timeout,
            keep_claims: false,
            metrics: None,
            offline: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Keeps each answer's members in its identity, for rule conditions
    /// that read `identity.claims`.
    pub fn keeping_claims(mut self, keep: bool) -> Introspector {
        self.keep_claims = keep;
        self
    }

    /// Counts calls and cache answers into `metrics`.
    pub fn with_metrics(mut self, metrics: OAuthCallMetrics) -> Introspector {
        self.metrics = Some(metrics);
        self
    }

    /// Makes no more calls (`gatehouse explain` runs without network):
    /// a token not remembered is then [`IntrospectionError::Unavailable`].
    pub fn set_offline(&self) {
        self.offline
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The name identities carry as their issuer.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `token` goes to introspection: anything not shaped like a
    /// compact JWS (three non-empty dot-separated parts), which stays with
    /// the JWT verifier and its precise refusals.
    pub fn claims_token(token: &str) -> bool {
        let mut parts = token.split('.');
        let jws =
            parts.by_ref().take(3).filter(|p| !p.is_empty()).count() == 3 && parts.next().is_none();
        !jws
    }

    /// The caller `token` names, from the cache or the server.
    pub async fn authenticate(&self, token: &Secret) -> Result<Identity, IntrospectionError> {
        let now = now_secs();
        let answer = match &self.cache {
            None => self.call(token, now).await?.0,
            Some(cache) => {
                let key: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
                let (answer, source) = cache
                    .get_or_load(key, now, || self.call(token, now))
                    .await?;
                if source == Source::Cache {
                    self.count(|m| &m.cached);
                }
                answer
            }
        };
        match answer {
            Remembered::Active(identity) => Ok(with_token(&identity, token)),
            Remembered::Refused(error) => Err(error),
        }
    }

    /// One call to the endpoint, and what to remember of its answer
    /// until when.
    async fn call(
        &self,
        token: &Secret,
        now: u64,
    ) -> Result<(Remembered, u64), IntrospectionError> {
        if self.offline.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(IntrospectionError::Unavailable(
                "offline: the authorization server is not called".into(),
            ));
        }
        let permit = tokio::time::timeout(self.timeout, self.calls.acquire())
            .await
            .map_err(|_| IntrospectionError::Unavailable("too many introspection calls".into()))?
            .map_err(|_| IntrospectionError::Unavailable("shutting down".into()))?;
        let access = AccessToken::new(token.expose().to_string());
        let answer = self
            .client
            .introspect(&access)
            .set_token_type_hint("access_token")
            .request_async(&self.http)
            .await;
        drop(permit);
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                self.count(|m| &m.failed);
                let reason = describe(&e);
                tracing::warn!(
                    introspection = %self.name,
                    token_fingerprint = %token.fingerprint(),
                    reason = %reason,
                    "token introspection failed"
                );
                return Err(IntrospectionError::Unavailable(reason));
            }
        };
        let members = members_of(&answer)?;
        let remembered = match self.judge(&members, now) {
            Ok(identity) => {
                self.count(|m| &m.granted);
                let exp = identity.expires_at.unwrap_or(u64::MAX);
                (
                    Remembered::Active(Arc::new(identity)),
                    exp.min(now.saturating_add(self.max_cache_ttl)),
                )
            }
            Err(error) => {
                self.count(|m| &m.refused);
                tracing::debug!(
                    introspection = %self.name,
                    token_fingerprint = %token.fingerprint(),
                    reason = %error,
                    "introspected token refused"
                );
                (
                    Remembered::Refused(error),
                    now.saturating_add(self.negative_ttl),
                )
            }
        };
        Ok(remembered)
    }

    /// The identity an answer's members name, or why there is none.
    fn judge(
        &self,
        members: &Map<String, Value>,
        now: u64,
    ) -> Result<Identity, IntrospectionError> {
        if members.get("active") != Some(&Value::Bool(true)) {
            return Err(IntrospectionError::Inactive);
        }
        let date = |name: &str| members.get(name).and_then(Value::as_u64);
        if date("exp").is_some_and(|exp| now > exp.saturating_add(self.leeway_secs))
            || date("nbf").is_some_and(|nbf| now.saturating_add(self.leeway_secs) < nbf)
        {
            return Err(IntrospectionError::OutsideLifetime);
        }
        if let Some(expected) = &self.issuer
            && members.get("iss").and_then(Value::as_str) != Some(expected.as_str())
        {
            return Err(IntrospectionError::UnknownIssuer);
        }
        if !self.audiences.is_empty() {
            let named = |aud: &str| self.audiences.iter().any(|a| a == aud);
            let ok = match members.get("aud") {
                Some(Value::String(aud)) => named(aud),
                Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(named),
                _ => false,
            };
            if !ok {
                return Err(IntrospectionError::BadAudience);
            }
        }
        check_identity_claims(&self.claims, members).map_err(|(claim, problem)| {
            IntrospectionError::InvalidClaim {
                claim: claim.to_string(),
                problem,
            }
        })?;
        if let Some(client) = members.get("client_id") {
            crate::model::claims::check_text_claim(Some(client)).map_err(|problem| {
                IntrospectionError::InvalidClaim {
                    claim: "client_id".into(),
                    problem,
                }
            })?;
        }
        let subject = claim_text(members.get("sub"))
            .or_else(|| claim_text(members.get("client_id")))
            .ok_or(IntrospectionError::MissingSubject)?;
        let groups = claim_groups(members.get(&self.claims.groups));
        let mut scopes: BTreeSet<String> = claim_scopes(members);
        for group in &groups {
            if let Some(mapped) = self.group_scopes.get(group) {
                scopes.extend(mapped.iter().cloned());
            }
        }
        Ok(Identity {
            subject,
            username: claim_text(members.get(&self.claims.username)),
            email: claim_text(members.get(&self.claims.email)),
            uid: claim_text(members.get(&self.claims.uid)),
            groups,
            scopes,
            kind: CredentialKind::Introspected,
            issuer: self.name.clone(),
            expires_at: date("exp"),
            token: Secret::new(String::new()),
            query_parameter: None,
            tool: None,
            grant: None,
            csrf: None,
            claims: self.keep_claims.then(|| Arc::new(members.clone())),
        })
    }

    fn count(&self, which: impl Fn(&OAuthCallMetrics) -> &prometheus::IntCounter) {
        if let Some(metrics) = &self.metrics {
            which(metrics).inc();
        }
    }
}

/// The identity with the presented token put back.
fn with_token(identity: &Identity, token: &Secret) -> Identity {
    let mut identity = identity.clone();
    identity.token = token.clone();
    identity
}

/// The answer as one JSON object: RFC 7662's members as the `oauth2`
/// crate read them, and the others as they came.
fn members_of(answer: &Answer) -> Result<Map<String, Value>, IntrospectionError> {
    match serde_json::to_value(answer) {
        Ok(Value::Object(members)) => Ok(members),
        _ => Err(IntrospectionError::Unavailable(
            "the answer is not a JSON object".into(),
        )),
    }
}

/// A failed call, for the log and the 503's reason: the kind of failure
/// and the server's OAuth error code, never a body or the token.
fn describe<RE: std::error::Error + 'static>(
    error: &RequestTokenError<RE, BasicErrorResponse>,
) -> String {
    match error {
        RequestTokenError::ServerResponse(answer) => {
            format!("the server answered {}", answer.error().as_ref())
        }
        RequestTokenError::Request(e) => format!("request failed: {e}"),
        RequestTokenError::Parse(_, _) => "the answer is not an introspection response".into(),
        RequestTokenError::Other(what) => what.clone(),
    }
}

#[cfg(test)]
mod tests;
