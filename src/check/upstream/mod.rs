//! What an allowed request carries upstream beyond the identity headers:
//! a swapped credential and a reissued token.
//!
//! - **Credential swap** (rule `upstream_credential`): the caller's
//!   credential is replaced with gatehouse's own (`Authorization: Bearer`
//!   from a file, like a projected service-account token) or with the
//!   caller's own token at a backend (`backend: gitlab`, looked up by the
//!   caller's subject in [`crate::backends`], in the configured header and
//!   format), and gatehouse's token cookies and token headers are
//!   removed, so the upstream never sees the caller's token or link. A
//!   caller without a backend token is sent to authorize there (a browser
//!   navigation on a `login: redirect` rule) or refused 401.
//! - **Token exchange** (rule `exchange`): the caller's token traded at
//!   the authorization server for one for the rule's audience (RFC 8693,
//!   [`exchange`]), sent as `Authorization: Bearer …`: a credential swap
//!   whose source is the server.
//! - **Quota** (rule `quota`, [`quota`]): counted first, before any
//!   other side effect; over it the request is refused (429).
//! - **Reissue** (rule `audience`, or the `audience` context extension,
//!   which wins): a short-lived token for that internal audience in
//!   `X-Auth-Request-Token`, replacing the caller's own.
//!
//! Actions are compiled per rule name once; [`UpstreamActions::prepare`]
//! decides for one request (and can fail, closed); the response phase
//! applies what it decided (`response::upstream::apply_prepared`).

pub mod exchange;
pub mod file_secret;
pub mod once;
pub mod quota;

use crate::clock::now_secs;
use std::collections::HashMap;
use std::sync::Arc;

use crate::backends::{BackendError, Backends};
use crate::check::authn::sources::TokenSource;
use crate::config::{
    AuthMode, Config, ConfigError, ConfigSource, TOKEN_PLACEHOLDER, UpstreamCredentialConfig,
    resolve_path,
};
use crate::issuer::InternalIssuer;
use crate::model::deny::Deny;
use crate::model::identity::Identity;
use crate::model::request::Request;
use crate::model::requirement::Requirement;
use crate::secret::Secret;
use crate::store::Store;
use exchange::{ExchangeError, ExchangeTarget, TokenExchange};
use file_secret::FileSecret;
use quota::Quota;

/// The context extension naming the reissue audience.
pub const AUDIENCE_EXTENSION: &str = "audience";
/// Header carrying the reissued token.
pub const TOKEN_HEADER: &str = "x-auth-request-token";

/// Where a swapped credential comes from.
#[derive(Debug)]
enum CredentialSource {
    /// A file (re-read when it changes).
    File(Arc<FileSecret>),
    /// The caller's token at this backend.
    Backend(Arc<str>),
    /// A token the authorization server exchanges the caller's for.
    Exchange(ExchangeTarget),
}

/// A rule's credential swap: the source, the header, and the value's
/// format (`{token}` where the token goes).
#[derive(Debug)]
struct Credential {
    source: CredentialSource,
    header: String,
    format: String,
}

/// What one rule does upstream.
#[derive(Debug, Default)]
struct RuleActions {
    credential: Option<Credential>,
    audience: Option<String>,
    quota: Option<Quota>,
}

/// Compiled upstream actions of every rule.
#[derive(Debug, Default)]
pub struct UpstreamActions {
    rules: HashMap<Arc<str>, RuleActions>,
    issuer: Option<Arc<InternalIssuer>>,
    backends: Option<Arc<Backends>>,
    exchange: Option<Arc<TokenExchange>>,
    /// Where quotas are counted ([`UpstreamActions::with_store`]).
    store: Option<quota::Counter>,
    /// Cookie names holding gatehouse tokens (removed on a swap), the
    /// session cookie among them.
    token_cookies: Vec<String>,
    /// The session cookie's name (with `login`): removed from every
    /// allowed request.
    session_cookie: Vec<String>,
    /// Header names holding gatehouse tokens (removed on a swap).
    token_headers: Vec<String>,
}

/// The changes decided for one allowed request.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The credential sent upstream: the header's name and its whole
    /// value (`Bearer …`).
    pub credential: Option<(String, Secret)>,
    /// Remove gatehouse's token cookies and headers (with a swap).
    pub strip_credentials: bool,
    /// The token reissued for the route's audience.
    pub reissued: Option<Secret>,
    /// Where the caller stands against the rule's quota, if it has one.
    pub quota: Option<crate::model::deny::QuotaStatus>,
}

impl UpstreamActions {
    /// Validates the rules' `upstream_credential`, `exchange` and
    /// `audience` and reads the credential files once.
    pub fn build(
        config: &Config,
        source: &ConfigSource,
        issuer: Option<Arc<InternalIssuer>>,
        backends: Option<Arc<Backends>>,
        exchange: Option<Arc<TokenExchange>>,
    ) -> Result<UpstreamActions, ConfigError> {
        let mut rules = HashMap::new();
        for (i, rule) in config.policy.rules.iter().enumerate() {
            let key = format!("policy.rules[{i}]");
            let anonymous = rule.auth == AuthMode::Anonymous;
            let credential = match (&rule.upstream_credential, &rule.exchange) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::invalid(
                        format!("{key}.exchange"),
                        "a rule sends one credential upstream: `exchange` or `upstream_credential`",
                    ));
                }
                (None, Some(_)) if anonymous => {
                    return Err(ConfigError::invalid(
                        format!("{key}.exchange"),
                        "an anonymous rule has no caller token to exchange",
                    ));
                }
                (None, Some(_)) if exchange.is_none() => {
                    return Err(ConfigError::invalid(
                        format!("{key}.exchange"),
                        "needs a `token_exchange` section (the endpoint and gatehouse's client)",
                    ));
                }
                (None, Some(target)) => Some(Credential {
                    source: CredentialSource::Exchange(ExchangeTarget::compile(
                        target,
                        &format!("{key}.exchange"),
                    )?),
                    header: "authorization".into(),
                    format: format!("Bearer {TOKEN_PLACEHOLDER}"),
                }),
                (None, None) => None,
                (Some(_), None) if anonymous => {
                    return Err(ConfigError::invalid(
                        format!("{key}.upstream_credential"),
                        "an anonymous rule would hand the upstream credential to anyone",
                    ));
                }
                (Some(swap), None) => Some(credential(
                    swap,
                    &format!("{key}.upstream_credential"),
                    source,
                    backends.as_deref(),
                )?),
            };
            if let Some(audience) = &rule.audience {
                let key = format!("{key}.audience");
                if anonymous {
                    return Err(ConfigError::invalid(
                        key,
                        "an anonymous rule has no identity to reissue",
                    ));
                }
                let known = issuer
                    .as_ref()
                    .is_some_and(|iss| iss.reissuer().knows(audience));
                if !known {
                    return Err(ConfigError::invalid(
                        key,
                        format!("{audience:?} is not one of issuer.reissue.audiences"),
                    ));
                }
            }
            let quota = rule
                .quota
                .as_ref()
                .map(|q| Quota::compile(q, rule, &key))
                .transpose()?;
            if credential.is_some() || rule.audience.is_some() || quota.is_some() {
                rules.insert(
                    Arc::from(rule.name.as_str()),
                    RuleActions {
                        credential,
                        audience: rule.audience.clone(),
                        quota,
                    },
                );
            }
        }
        let sources: Vec<TokenSource> = config.jwt.sources.iter().map(TokenSource::from).collect();
        let session_cookie: Vec<String> = config
            .login
            .iter()
            .map(|login| login.session.cookie_name().to_string())
            .collect();
        Ok(UpstreamActions {
            rules,
            issuer,
            backends,
            exchange,
            store: None,
            token_cookies: sources
                .iter()
                .filter_map(|s| match s {
                    TokenSource::Cookie(name) => Some(name.clone()),
                    _ => None,
                })
                .chain(session_cookie.iter().cloned())
                .collect(),
            session_cookie,
            token_headers: sources
                .iter()
                .filter_map(|s| match s {
                    TokenSource::Header(name) => Some(name.clone()),
                    _ => None,
                })
                .collect(),
        })
    }

    /// Counts the rules' quotas in `store` (the engine's, shared by
    /// every check). Without one, a rule with a quota refuses (500).
    pub fn with_store(mut self, store: Arc<dyn Store>) -> UpstreamActions {
        self.store = Some(quota::Counter(store));
        self
    }

    /// The quota of rule `name`, if it has one.
    pub fn quota(&self, name: &str) -> Option<&Quota> {
        self.rules.get(name).and_then(|r| r.quota.as_ref())
    }

    /// Decides the upstream changes for an allowed request. Errors are
    /// denials: an unknown `audience` extension is a misconfigured route
    /// (500); so is one when gatehouse has no issuer. The rule's quota is
    /// counted first: over it, a 429 and nothing else happens.
    pub async fn prepare(
        &self,
        request: &Request,
        requirement: &Requirement,
        identity: Option<&Identity>,
    ) -> Result<Prepared, Deny> {
        let rule = self.rules.get(&requirement.rule);
        let mut prepared = Prepared::default();
        if let Some(quota) = rule.and_then(|r| r.quota.as_ref()) {
            let store = self.store.as_ref().map(|c| c.0.as_ref()).ok_or_else(|| {
                Deny::Misconfigured("a quota, but no store to count it in".into())
            })?;
            let decision = quota
                .count(store, &requirement.rule, request, identity)
                .await?;
            prepared.quota = Some(quota.status(&requirement.rule, &decision));
        }
        let audience = match request.context_extensions.get(AUDIENCE_EXTENSION) {
            Some(aud) => Some(aud.trim()),
            None => rule.and_then(|r| r.audience.as_deref()),
        };
        // Without an identity (anonymous routes) there is no caller
        // credential to replace and nobody to reissue for.
        let Some(identity) = identity else {
            return Ok(prepared);
        };
        if let Some(credential) = rule.and_then(|r| r.credential.as_ref()) {
            let token = match &credential.source {
                CredentialSource::File(secret) => secret.current(),
                CredentialSource::Backend(name) => {
                    self.backend_token(name, request, requirement, identity)
                        .await?
                }
                CredentialSource::Exchange(target) => self.exchanged(target, identity).await?,
            };
            let value = credential.format.replace(TOKEN_PLACEHOLDER, token.expose());
            prepared.credential = Some((credential.header.clone(), Secret::new(value)));
            prepared.strip_credentials = true;
        }
        if let Some(audience) = audience {
            let issuer = self.issuer.as_ref().ok_or_else(|| {
                Deny::Misconfigured(format!(
                    "audience {audience:?} requested, but gatehouse has no issuer configured"
                ))
            })?;
            let token = issuer
                .reissuer()
                .token(issuer, identity, audience, now_secs())
                .map_err(|e| Deny::Misconfigured(e.to_string()))?;
            prepared.reissued = Some(token);
        }
        Ok(prepared)
    }

    /// The caller's token at backend `name`; without one, a browser
    /// navigation on a `login: redirect` rule is sent to authorize there
    /// and anything else gets a 401 naming the backend.
    async fn backend_token(
        &self,
        name: &str,
        request: &Request,
        requirement: &Requirement,
        identity: &Identity,
    ) -> Result<Secret, Deny> {
        let backends = self
            .backends
            .as_ref()
            .ok_or_else(|| Deny::Misconfigured(format!("backend {name:?} is not configured")))?;
        match backends.token(name, &identity.subject).await {
            Ok(Some(token)) => Ok(token),
            Ok(None) => {
                let login_path = format!("/auth/backends/{name}/login");
                Err(match &requirement.login {
                    Some(_) => Deny::LoginRequired {
                        location: crate::check::authz::login::location(&login_path, request),
                        set_cookies: vec![],
                        binding: None,
                    },
                    None => Deny::BackendLoginRequired {
                        backend: name.to_string(),
                        login_path,
                    },
                })
            }
            Err(BackendError::Store(e)) => Err(e.denial()),
            Err(e) => Err(Deny::Misconfigured(e.to_string())),
        }
    }

    /// The token-exchange client, if configured (`explain` takes it
    /// offline).
    pub fn token_exchange(&self) -> Option<&TokenExchange> {
        self.exchange.as_deref()
    }

    /// The caller's token exchanged for `target`'s: a refusal is a 403,
    /// no usable answer a 503.
    async fn exchanged(
        &self,
        target: &ExchangeTarget,
        identity: &Identity,
    ) -> Result<Secret, Deny> {
        // `build` refuses `exchange` without `token_exchange`.
        let exchange = self
            .exchange
            .as_ref()
            .ok_or_else(|| Deny::Misconfigured("exchange without token_exchange".into()))?;
        exchange
            .exchange(&identity.token, identity.expires_at, target, now_secs())
            .await
            .map_err(|e| match e {
                ExchangeError::Refused(code) => Deny::ExchangeRefused(code),
                ExchangeError::NoSubjectToken => Deny::ExchangeRefused(e.to_string()),
                ExchangeError::Unavailable(_) => Deny::ProviderUnavailable,
            })
    }

    /// Cookie names holding gatehouse tokens (removed on a swap), the
    /// session cookie among them.
    pub fn token_cookies(&self) -> &[String] {
        &self.token_cookies
    }

    /// The session cookie (none without `login`): gatehouse's credential,
    /// never the application's, so it is removed from every request let
    /// through, swap or not (the upstream gets the identity headers, and
    /// the access token with `headers: [token]`).
    pub fn session_cookie(&self) -> &[String] {
        &self.session_cookie
    }

    /// Header names holding gatehouse tokens (removed on a swap).
    pub fn token_headers(&self) -> &[String] {
        &self.token_headers
    }
}

/// Compiles one rule's `upstream_credential` (errors name `key`).
fn credential(
    swap: &UpstreamCredentialConfig,
    key: &str,
    source: &ConfigSource,
    backends: Option<&Backends>,
) -> Result<Credential, ConfigError> {
    let (header, format) = swap.header_and_format(key)?;
    let source = match (&swap.bearer_file, &swap.backend) {
        (Some(path), _) => {
            let path = resolve_path(source, path);
            let secret = FileSecret::load(&path, file_secret::RECHECK)
                .map_err(|e| ConfigError::invalid(format!("{key}.bearer_file"), e))?;
            CredentialSource::File(Arc::new(secret))
        }
        (None, Some(name)) => {
            if backends.and_then(|b| b.get(name)).is_none() {
                return Err(ConfigError::invalid(
                    format!("{key}.backend"),
                    format!("{name:?} is not one of `backends`"),
                ));
            }
            CredentialSource::Backend(name.as_str().into())
        }
        // header_and_format refused it.
        (None, None) => {
            return Err(ConfigError::invalid(key, "no credential source"));
        }
    };
    Ok(Credential {
        source,
        header,
        format,
    })
}

#[cfg(test)]
mod tests;
