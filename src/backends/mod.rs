//! Per-user tokens at downstream services (`backends`), as Renku's
//! gateway-auth keeps a GitLab and a JupyterHub token for each user: each
//! backend is an OAuth2 client (authorization code with PKCE S256, with
//! the `oauth2` crate); a user's tokens are kept in the store under their
//! subject, refreshed when they have expired, and sent upstream by rules
//! with `upstream_credential: {backend: <name>}`.
//!
//! | key | value | time to live |
//! |---|---|---|
//! | `backend-state:<hash of state>` | [`PendingLogin`] | [`crate::config::LOGIN_BINDING_TTL`], taken once |
//! | `backend-token:<hash of backend, subject>` | [`StoredToken`] | [`TOKEN_TTL`] with a refresh token, else until it expires |
//!
//! The store encrypts every value; keys hold hashes, never a subject.
//! Tokens are per user, not per session: a bearer JWT of the same subject
//! (the Renku UI's Keycloak token) finds the same ones. A logout drops
//! them ([`Backends::forget`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};

use crate::config::{BackendConfig, BackendLogin, ConfigError, LOGIN_BINDING_TTL};
use crate::secret::Secret;
use crate::store::{Store, StoreError, hashed_id, key};

/// How long a token with a refresh token is kept (it is refreshed as
/// needed meanwhile); a logout drops it sooner.
pub const TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Refresh this long before expiry (or at half a shorter token's life).
pub const REFRESH_MARGIN: u64 = 30;
/// Longest wait for a backend's answer.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a backend step failed. Messages never hold a code or a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// No backend of that name.
    #[error("unknown backend {0:?}")]
    Unknown(String),
    /// The backend's discovery document cannot be read.
    #[error("the backend {0:?} is not reachable yet; try again shortly")]
    Unreachable(String),
    /// No pending login for this `state`: expired, replayed or forged.
    #[error("this backend login link has expired or was already used; start again")]
    State,
    /// The callback is not from the browser and user that started it.
    #[error("this backend login was started by another browser or user; start again")]
    Binding,
    /// The backend refused (an `error=` on the callback, a refused code).
    #[error("the backend {0:?} refused the authorization")]
    Refused(String),
    /// The store is unavailable (503).
    #[error("state store unavailable")]
    Store(#[from] StoreError),
    /// Something that should not happen (encoding, no random bytes).
    #[error("{0}")]
    Internal(&'static str),
}

/// A started backend login, kept under its `state`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PendingLogin {
    backend: String,
    verifier: String,
    rd: String,
    /// The hash of the subject who started it.
    subject: String,
    /// The hash of the browser's login-binding cookie.
    binding: String,
}

/// A user's token at one backend, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredToken {
    #[serde(with = "crate::secret::opt_serde")]
    access_token: Option<Secret>,
    #[serde(default, with = "crate::secret::opt_serde")]
    refresh_token: Option<Secret>,
    /// Seconds since the epoch.
    #[serde(default)]
    expires_at: Option<u64>,
    /// When it was obtained.
    #[serde(default)]
    issued_at: u64,
}

impl StoredToken {
    fn due(&self, now: u64) -> bool {
        let Some(exp) = self.expires_at else {
            return false;
        };
        let margin = REFRESH_MARGIN.min(exp.saturating_sub(self.issued_at) / 2);
        now.saturating_add(margin) >= exp
    }
}

/// The endpoints of a backend.
#[derive(Debug, Clone)]
struct Endpoints {
    authorize: AuthUrl,
    token: TokenUrl,
}

/// The client the `oauth2` crate builds for a backend.
type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// One configured backend.
pub struct Backend {
    /// Its settings.
    pub config: BackendConfig,
    secret: Secret,
    redirect: RedirectUrl,
    endpoints: RwLock<Option<Endpoints>>,
}

impl Backend {
    async fn endpoints(&self, http: &reqwest::Client) -> Result<Endpoints, BackendError> {
        if let Some(e) = self.endpoints.read().ok().and_then(|e| e.clone()) {
            return Ok(e);
        }
        let unreachable = || BackendError::Unreachable(self.config.name.clone());
        let endpoints = match (
            &self.config.issuer,
            &self.config.authorize_url,
            &self.config.token_url,
        ) {
            (_, Some(a), Some(t)) => Endpoints {
                authorize: AuthUrl::new(a.clone()).map_err(|_| unreachable())?,
                token: TokenUrl::new(t.clone()).map_err(|_| unreachable())?,
            },
            (Some(issuer), _, _) => discover(http, issuer).await.ok_or_else(unreachable)?,
            _ => return Err(unreachable()),
        };
        if let Ok(mut slot) = self.endpoints.write() {
            *slot = Some(endpoints.clone());
        }
        Ok(endpoints)
    }

    fn client(&self, endpoints: Endpoints) -> Client {
        BasicClient::new(ClientId::new(self.config.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.secret.expose().to_string()))
            .set_auth_uri(endpoints.authorize)
            .set_token_uri(endpoints.token)
            .set_redirect_uri(self.redirect.clone())
    }
}

/// The authorization and token endpoints from an issuer's metadata.
async fn discover(http: &reqwest::Client, issuer: &str) -> Option<Endpoints> {
    let base = issuer.trim_end_matches('/');
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let Ok(response) = http.get(format!("{base}{path}")).send().await else {
            continue;
        };
        let Ok(response) = response.error_for_status() else {
            continue;
        };
        let Ok(doc) = response.json::<serde_json::Value>().await else {
            continue;
        };
        let text = |k: &str| {
            doc.get(k)
                .and_then(serde_json::Value::as_str)
                .map(String::from)
        };
        if let (Some(a), Some(t)) = (text("authorization_endpoint"), text("token_endpoint")) {
            return Some(Endpoints {
                authorize: AuthUrl::new(a).ok()?,
                token: TokenUrl::new(t).ok()?,
            });
        }
    }
    None
}

/// The backends service.
pub struct Backends {
    backends: Vec<Arc<Backend>>,
    store: Arc<dyn Store>,
    http: reqwest::Client,
    /// Per token key: the lock one replica's refreshes queue on.
    refreshing: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Backends {
    /// Builds the service; `secrets` holds each backend's client secret in
    /// `configs` order; redirect URIs are `callback_url`'s origin with
    /// `/auth/backends/<name>/callback`.
    pub fn new(
        configs: &[BackendConfig],
        secrets: Vec<Secret>,
        callback_url: &str,
        store: Arc<dyn Store>,
    ) -> Result<Backends, ConfigError> {
        let base = url::Url::parse(callback_url)
            .map_err(|e| ConfigError::invalid("login.callback_url", e.to_string()))?;
        let mut backends = Vec::with_capacity(configs.len());
        for (i, (config, secret)) in configs.iter().zip(secrets).enumerate() {
            let redirect = base
                .join(&config.callback_path())
                .map_err(|e| ConfigError::invalid(format!("backends[{i}].name"), e.to_string()))?;
            backends.push(Arc::new(Backend {
                config: config.clone(),
                secret,
                redirect: RedirectUrl::from_url(redirect),
                endpoints: RwLock::new(None),
            }));
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| ConfigError::invalid("backends", format!("HTTP client: {e}")))?;
        Ok(Backends {
            backends,
            store,
            http,
            refreshing: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The backend called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|b| b.config.name == name)
    }

    /// The names of the `login: eager` backends, in configuration order.
    pub fn eager(&self) -> Vec<String> {
        self.backends
            .iter()
            .filter(|b| b.config.login == BackendLogin::Eager)
            .map(|b| b.config.name.clone())
            .collect()
    }

    /// Starts `subject`'s authorization at backend `name` from the
    /// browser holding `binding`: the URL to send the browser to. `rd`
    /// must be validated already.
    pub async fn start(
        &self,
        name: &str,
        subject: &str,
        rd: String,
        binding: &Secret,
    ) -> Result<String, BackendError> {
        let backend = self
            .get(name)
            .ok_or_else(|| BackendError::Unknown(name.to_string()))?;
        let client = backend.client(backend.endpoints(&self.http).await?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .set_pkce_challenge(challenge);
        for scope in &backend.config.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state) = request.url();
        let pending = PendingLogin {
            backend: name.to_string(),
            verifier: verifier.secret().clone(),
            rd,
            subject: subject_hash(subject),
            binding: hashed_id(
                crate::config::LOGIN_BINDING_NAMESPACE,
                binding.expose().as_bytes(),
            ),
        };
        let raw = serde_json::to_vec(&pending)
            .map_err(|_| BackendError::Internal("a backend login could not be encoded"))?;
        self.store
            .set(&state_key(state.secret()), &raw, LOGIN_BINDING_TTL)
            .await?;
        Ok(url.to_string())
    }

    /// Finishes a backend authorization: takes the state (once), checks
    /// the browser (`binding`) and the user (`subject`, from the session)
    /// are the ones that started it, exchanges the code and stores the
    /// tokens. Returns where to send the browser.
    pub async fn finish(
        &self,
        name: &str,
        code: Option<&str>,
        state: Option<&str>,
        error: Option<&str>,
        binding: Option<&Secret>,
        subject: &str,
    ) -> Result<String, BackendError> {
        let state = state.ok_or(BackendError::State)?;
        let raw = self
            .store
            .take(&state_key(state))
            .await?
            .ok_or(BackendError::State)?;
        let pending: PendingLogin =
            serde_json::from_slice(&raw).map_err(|_| BackendError::State)?;
        let bound = binding.is_some_and(|b| {
            Secret::new(hashed_id(
                crate::config::LOGIN_BINDING_NAMESPACE,
                b.expose().as_bytes(),
            ))
            .ct_eq(&Secret::new(&pending.binding))
        });
        if !bound
            || pending.backend != name
            || !Secret::new(subject_hash(subject)).ct_eq(&Secret::new(&pending.subject))
        {
            return Err(BackendError::Binding);
        }
        if error.is_some() {
            return Err(BackendError::Refused(name.to_string()));
        }
        let code = code.ok_or_else(|| BackendError::Refused(name.to_string()))?;
        let backend = self
            .get(name)
            .ok_or_else(|| BackendError::Unknown(name.to_string()))?;
        let client = backend.client(backend.endpoints(&self.http).await?);
        let answer = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| {
                tracing::warn!(backend = %name, error = %describe(&e), "backend code exchange failed");
                BackendError::Refused(name.to_string())
            })?;
        self.save(name, subject, &answer, None).await?;
        tracing::info!(backend = %name, "backend token stored");
        Ok(pending.rd)
    }

    /// `subject`'s token at backend `name`, refreshed first when it has
    /// expired (or is about to); `None` when there is none or it cannot be
    /// refreshed (the user must authorize again).
    pub async fn token(&self, name: &str, subject: &str) -> Result<Option<Secret>, BackendError> {
        let backend = self
            .get(name)
            .ok_or_else(|| BackendError::Unknown(name.to_string()))?;
        let key = token_key(name, subject);
        let now = crate::clock::now_secs();
        let Some(stored) = self.read(&key).await? else {
            return Ok(None);
        };
        if !stored.due(now) {
            return Ok(stored.access_token);
        }
        // One refresh per token on this replica: the others wait and read
        // what it stored.
        let lock = {
            let mut map = self
                .refreshing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.entry(key.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let Some(stored) = self.read(&key).await? else {
            return Ok(None);
        };
        if !stored.due(now) {
            return Ok(stored.access_token);
        }
        let Some(refresh) = stored.refresh_token.clone() else {
            let valid = stored.expires_at.is_none_or(|exp| now < exp);
            return Ok(stored.access_token.filter(|_| valid));
        };
        let client = backend.client(backend.endpoints(&self.http).await?);
        let answer = client
            .exchange_refresh_token(&RefreshToken::new(refresh.expose().to_string()))
            .request_async(&self.http)
            .await;
        match answer {
            Ok(answer) => {
                let token = self.save(name, subject, &answer, Some(refresh)).await?;
                tracing::info!(backend = %name, "backend token refreshed");
                Ok(token)
            }
            Err(e) => {
                tracing::warn!(backend = %name, error = %describe(&e), "backend token refresh failed; the user must authorize again");
                self.store.delete(&key).await?;
                Ok(None)
            }
        }
    }

    /// Drops every backend token of `subject` (logout).
    pub async fn forget(&self, subject: &str) -> Result<(), BackendError> {
        for b in &self.backends {
            self.store
                .delete(&token_key(&b.config.name, subject))
                .await?;
        }
        Ok(())
    }

    async fn read(&self, key: &str) -> Result<Option<StoredToken>, BackendError> {
        Ok(crate::store::get_json(self.store.as_ref(), key)
            .await?
            .map(|(token, _)| token))
    }

    /// Stores a token response (keeping `previous_refresh` when the
    /// backend did not rotate it); returns the access token.
    async fn save(
        &self,
        name: &str,
        subject: &str,
        answer: &oauth2::basic::BasicTokenResponse,
        previous_refresh: Option<Secret>,
    ) -> Result<Option<Secret>, BackendError> {
        let now = crate::clock::now_secs();
        let refresh_token = answer
            .refresh_token()
            .map(|r| Secret::new(r.secret()))
            .or(previous_refresh);
        let expires_at = answer.expires_in().map(|d| now.saturating_add(d.as_secs()));
        let ttl = match (&refresh_token, expires_at) {
            (None, Some(exp)) => Duration::from_secs(exp.saturating_sub(now).max(1)),
            _ => TOKEN_TTL,
        };
        let stored = StoredToken {
            access_token: Some(Secret::new(answer.access_token().secret())),
            refresh_token,
            expires_at,
            issued_at: now,
        };
        let raw = serde_json::to_vec(&stored)
            .map_err(|_| BackendError::Internal("a backend token could not be encoded"))?;
        self.store.set(&token_key(name, subject), &raw, ttl).await?;
        Ok(stored.access_token)
    }
}

/// A token error without the backend's raw answer body.
fn describe<E: std::error::Error>(e: &E) -> String {
    let text = e.to_string();
    text.chars().take(200).collect()
}

fn subject_hash(subject: &str) -> String {
    hashed_id("backend-subject", subject.as_bytes())
}

fn state_key(state: &str) -> String {
    key(
        "backend-state",
        &hashed_id("backend-state", state.as_bytes()),
    )
}

/// The key of `subject`'s token at `backend`.
pub fn token_key(backend: &str, subject: &str) -> String {
    key(
        "backend-token",
        &hashed_id("backend-token", format!("{backend}\0{subject}").as_bytes()),
    )
}

#[cfg(test)]
mod tests;

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .backends
            .iter()
            .map(|b| b.config.name.as_str())
            .collect();
        f.debug_struct("Backends")
            .field("backends", &names)
            .finish_non_exhaustive()
    }
}
