//! Browser login at OpenID providers: authorization code flow with PKCE
//! (S256), `state` and `nonce`; the ID token validated by the
//! `openidconnect` crate (signature, `iss`, `aud`, `exp`, `nonce`), and
//! `azp` and `at_hash` here; a server-side session created on success.
//! The callback must come from the browser that started the login: it
//! carries the login-binding cookie whose hash the state holds (no login
//! CSRF). Back-channel logout: [`backchannel`].
//!
//! | key | value | time to live |
//! |---|---|---|
//! | `login-state:<hash of state>` | [`LoginState`] as JSON | [`STATE_TTL`], taken once by the callback |
//!
//! The side port's `/auth/login`, `/auth/callback`, `/auth/logout`,
//! `/auth/userinfo` and `/auth/backchannel-logout` (`serve::http::login`)
//! call [`Login`]; the check's
//! session authenticator refreshes tokens through [`refresh`].

pub mod backchannel;
pub mod claims;
pub mod cli;
pub mod device;
pub mod provider;
pub mod redirect;
pub mod refresh;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthenticationFlow, CoreGenderClaim, CoreIdTokenVerifier, CoreTokenResponse,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, CsrfToken, EmptyAdditionalClaims, IdTokenClaims,
    LogoutRequest, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, LoginConfig};
use crate::secret::Secret;
use crate::sessions::{
    Created, NewSession, SessionError, SessionIdentity, SessionTokens, Sessions,
};
use crate::store::{Store, hashed_id, key};
pub use backchannel::LogoutError;
pub use provider::Provider;
pub use redirect::RedirectError;

/// How long a started login may take before its callback is refused (as
/// long as the binding cookie lives).
pub const STATE_TTL: Duration = crate::config::LOGIN_BINDING_TTL;
/// Longest wait for a provider's answer (token, userinfo, discovery).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a login step failed. Messages are shown to the user: they never
/// carry a code, a token or the provider's raw answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// `provider=` names no configured provider.
    #[error("unknown provider {0:?}")]
    UnknownProvider(String),
    /// The provider's discovery has not loaded (503).
    #[error("the identity provider {0:?} is not reachable yet; try again shortly")]
    ProviderUnavailable(String),
    /// A refused return URL.
    #[error("refused return URL: {0}")]
    Redirect(#[from] RedirectError),
    /// No login in progress for this `state`: expired, replayed or forged.
    #[error("this login link has expired or was already used; start the login again")]
    State,
    /// The provider answered the authorization request with an error.
    #[error("the identity provider refused the login ({0})")]
    Provider(String),
    /// The code exchange failed.
    #[error("the identity provider did not accept the login code")]
    Exchange,
    /// The ID token failed validation.
    #[error("the identity provider's ID token is not valid: {0}")]
    IdToken(String),
    /// The callback came without the login-binding cookie of the browser
    /// that started the login (another browser, or cookies refused).
    #[error(
        "this login was started in another browser, or this browser refused its cookie; start the login again here"
    )]
    Binding,
    /// The user is in none of `allowed_groups` (403).
    #[error("your account is not allowed to log in here")]
    NotAllowed,
    /// The store or the sessions failed (503 or 500).
    #[error("sessions unavailable")]
    Session(#[from] SessionError),
}

/// What the callback needs to finish a login, kept under the `state`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginState {
    /// The provider's name.
    pub provider: String,
    /// The PKCE verifier.
    pub verifier: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// Where to send the browser afterwards (validated).
    pub rd: String,
    /// The hash of the browser's login-binding cookie value.
    pub binding: String,
}

/// The parameters of `/auth/callback`.
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    /// The authorization code.
    pub code: Option<String>,
    /// The state the login started with.
    pub state: Option<String>,
    /// The provider's error code, instead of a code.
    pub error: Option<String>,
}

/// What a provider's token response vouches for ([`Login::vouch`]).
#[derive(Debug)]
pub struct Vouched {
    /// Who logged in, mapped and allowed.
    pub identity: SessionIdentity,
    /// The ID token's claims, with userinfo's added.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The validated ID token.
    pub id_token: String,
}

/// The login service.
pub struct Login {
    providers: Vec<Arc<Provider>>,
    callback: RedirectUrl,
    post_logout: Option<PostLogoutRedirectUrl>,
    allowed_domains: Vec<String>,
    store: Arc<dyn Store>,
    sessions: Arc<Sessions>,
    http: reqwest::Client,
    scopes_by_group: HashMap<String, Vec<String>>,
}

impl Login {
    /// Builds the service; `secrets` holds each provider's client secret,
    /// in `config.providers` order. Discovery does not run here
    /// ([`Self::start_discovery`]).
    pub fn new(
        config: &LoginConfig,
        secrets: Vec<Secret>,
        store: Arc<dyn Store>,
        sessions: Arc<Sessions>,
        group_mapping: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Result<Login, ConfigError> {
        config.validate()?;
        let callback = RedirectUrl::new(config.callback_url.clone().unwrap_or_default())
            .map_err(|e| ConfigError::invalid("login.callback_url", e.to_string()))?;
        let post_logout = config
            .post_logout_redirect_url
            .clone()
            .map(PostLogoutRedirectUrl::new)
            .transpose()
            .map_err(|e| ConfigError::invalid("login.post_logout_redirect_url", e.to_string()))?;
        let http = reqwest::Client::builder()
            // Never follow a redirect from a provider (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| ConfigError::invalid("login", format!("HTTP client: {e}")))?;
        let providers = config
            .providers
            .iter()
            .cloned()
            .zip(secrets)
            .map(|(p, s)| Arc::new(Provider::new(p, s)))
            .collect();
        Ok(Login {
            providers,
            callback,
            post_logout,
            allowed_domains: config.allowed_redirect_domains.clone(),
            store,
            sessions,
            http,
            scopes_by_group: crate::model::identity::scopes_by_group(group_mapping),
        })
    }

    /// Starts each provider's background discovery (needs a tokio runtime).
    pub fn start_discovery(&self) {
        for p in &self.providers {
            Provider::spawn_discovery(p, self.http.clone());
        }
    }

    /// The providers, in configuration order.
    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    /// The sessions logins create.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// The HTTP client for providers.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The provider called `name`.
    pub fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.providers.iter().find(|p| p.config.name == name)
    }

    /// Validates a return URL (`rd`); absent means `/`.
    pub fn return_url(&self, rd: Option<&str>) -> Result<String, RedirectError> {
        redirect::validate(rd.unwrap_or("/"), &self.allowed_domains)
    }

    /// Starts a login at `provider` for the browser holding the
    /// login-binding cookie `binding`: the provider's authorization URL to
    /// send the browser to. `rd` must be validated already.
    pub async fn start(
        &self,
        provider: &str,
        rd: String,
        binding: &Secret,
    ) -> Result<String, LoginError> {
        let p = self
            .provider(provider)
            .ok_or_else(|| LoginError::UnknownProvider(provider.to_string()))?;
        let metadata = p
            .metadata(&self.http)
            .await
            .ok_or_else(|| LoginError::ProviderUnavailable(provider.to_string()))?;
        let client = p.client(&metadata, &self.callback);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        // The crate adds `openid` itself.
        for scope in p.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        for (name, value) in &p.config.extra_auth_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        let (url, state, nonce) = request.url();
        let record = LoginState {
            provider: provider.to_string(),
            verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
            rd,
            binding: binding_hash(binding),
        };
        let raw = serde_json::to_vec(&record)
            .map_err(|_| SessionError::Internal("a login state could not be encoded"))?;
        self.store
            .set(&state_key(state.secret()), &raw, STATE_TTL)
            .await
            .map_err(SessionError::from)?;
        Ok(url.to_string())
    }

    /// Finishes a login from the provider's callback: takes the state
    /// (once), checks that `binding` (the browser's login-binding cookie)
    /// is the one the login started with, exchanges the code with the PKCE
    /// verifier, validates the ID token, reads userinfo, and creates a
    /// session replacing `replaces`. Returns the session and where to send
    /// the browser.
    pub async fn finish(
        &self,
        callback: &Callback,
        binding: Option<&Secret>,
        replaces: Option<Secret>,
    ) -> Result<(Created, String), LoginError> {
        let state = callback.state.as_deref().ok_or(LoginError::State)?;
        let raw = self
            .store
            .take(&state_key(state))
            .await
            .map_err(SessionError::from)?
            .ok_or(LoginError::State)?;
        let started: LoginState = serde_json::from_slice(&raw).map_err(|_| LoginError::State)?;
        // The state is spent either way: a callback carried to another
        // browser (login CSRF, a stolen link) burns it.
        let bound = binding
            .is_some_and(|b| Secret::new(binding_hash(b)).ct_eq(&Secret::new(&started.binding)));
        if !bound {
            return Err(LoginError::Binding);
        }
        if let Some(error) = &callback.error {
            // Only the short error code: it is a token of letters.
            let code: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(LoginError::Provider(code));
        }
        let code = callback.code.as_deref().ok_or(LoginError::Exchange)?;
        let p = self
            .provider(&started.provider)
            .ok_or_else(|| LoginError::UnknownProvider(started.provider.clone()))?;
        let metadata = p
            .metadata(&self.http)
            .await
            .ok_or_else(|| LoginError::ProviderUnavailable(started.provider.clone()))?;
        let client = p.client(&metadata, &self.callback);
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|_| LoginError::Exchange)?
            .set_pkce_verifier(PkceCodeVerifier::new(started.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| {
                tracing::warn!(provider = %p.config.name, error = %claims::describe_token_error(&e), "code exchange failed");
                LoginError::Exchange
            })?;
        let vouched = self
            .vouch(
                p,
                &metadata,
                &client.id_token_verifier(),
                &token,
                Some(&Nonce::new(started.nonce.clone())),
            )
            .await?;
        let (identity, all, id_token_text) = (vouched.identity, vouched.claims, vouched.id_token);
        let sid = all
            .get("sid")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string);
        let now = self.sessions.now();
        let tokens = SessionTokens {
            access_token: Some(Secret::new(token.access_token().secret())),
            access_expires: token.expires_in().map(|d| now.saturating_add(d.as_secs())),
            access_issued: Some(now),
            refresh_token: token.refresh_token().map(|r| Secret::new(r.secret())),
            id_token: Some(Secret::new(&id_token_text)),
        };
        let created = self
            .sessions
            .create(NewSession {
                provider: p.config.name.clone(),
                identity,
                sid,
                tokens,
                replaces,
            })
            .await?;
        Ok((created, started.rd))
    }

    /// What a provider's token response vouches for: validates its ID
    /// token with the crate's verifier (signature, `iss`, `aud`, `exp`, and
    /// the `nonce` when the flow sent one: the code flow does, RFC 8628's
    /// device flow has none), then `azp` and `at_hash` here; adds userinfo;
    /// maps the claims to an identity (`claims`, `scopes.group_mapping`)
    /// and applies the provider's `allowed_groups`. Shared by the browser
    /// login ([`Self::finish`]) and the device flow ([`device`]).
    pub async fn vouch(
        &self,
        p: &Provider,
        metadata: &ProviderMetadataWithLogout,
        verifier: &CoreIdTokenVerifier<'_>,
        token: &CoreTokenResponse,
        nonce: Option<&Nonce>,
    ) -> Result<Vouched, LoginError> {
        let id_token = token
            .id_token()
            .ok_or_else(|| LoginError::IdToken("none in the token response".into()))?;
        let checked = match nonce {
            Some(nonce) => id_token.claims(verifier, nonce),
            // No nonce was sent: none is required (a token carrying one
            // is still accepted, as nothing can have been replayed into it).
            None => id_token.claims(verifier, |_: Option<&Nonce>| Ok(())),
        };
        let validated: &IdTokenClaims<EmptyAdditionalClaims, CoreGenderClaim> =
            checked.map_err(|e| LoginError::IdToken(e.to_string()))?;
        // The crate checks `aud` only: an `azp`, when present, must be us.
        if validated
            .authorized_party()
            .is_some_and(|azp| azp.as_str() != p.config.client_id)
        {
            return Err(LoginError::IdToken("azp names another client".into()));
        }
        if let Some(expected) = validated.access_token_hash() {
            let alg = id_token
                .signing_alg()
                .map_err(|e| LoginError::IdToken(e.to_string()))?;
            let key = id_token
                .signing_key(verifier)
                .map_err(|e| LoginError::IdToken(e.to_string()))?;
            let actual = AccessTokenHash::from_token(token.access_token(), alg, key)
                .map_err(|e| LoginError::IdToken(e.to_string()))?;
            if actual != *expected {
                return Err(LoginError::IdToken(
                    "at_hash does not match the access token".into(),
                ));
            }
        }
        let id_token_text = id_token.to_string();
        let mut all = claims::payload(&id_token_text)
            .ok_or_else(|| LoginError::IdToken("unreadable claims".into()))?;
        if let Some(endpoint) = metadata.userinfo_endpoint() {
            claims::merge_userinfo(
                &mut all,
                &self.http,
                endpoint.url().as_str(),
                token.access_token().secret(),
            )
            .await;
        }
        let identity = claims::identity(&all, &p.config.claims, &self.scopes_by_group)
            .map_err(LoginError::IdToken)?;
        if !p.config.allowed_groups.is_empty()
            && !identity
                .groups
                .iter()
                .any(|g| p.config.allowed_groups.contains(g))
        {
            return Err(LoginError::NotAllowed);
        }
        Ok(Vouched {
            identity,
            claims: all,
            id_token: id_token_text,
        })
    }

    /// Where to send the browser after the session ended: the provider's
    /// `end_session_endpoint` (RP-initiated logout, with the ID token as
    /// hint) when it has one, else `rd`.
    pub async fn logout_url(
        &self,
        provider: &str,
        id_token: Option<&Secret>,
        rd: String,
    ) -> String {
        let Some(p) = self.provider(provider) else {
            return rd;
        };
        let Some(metadata) = p.metadata(&self.http).await else {
            return rd;
        };
        let Some(end) = metadata.additional_metadata().end_session_endpoint.clone() else {
            return rd;
        };
        let mut request = LogoutRequest::from(end)
            .set_client_id(openidconnect::ClientId::new(p.config.client_id.clone()));
        if let Some(hint) =
            id_token.and_then(|t| openidconnect::core::CoreIdToken::from_str_ok(t.expose()))
        {
            request = request.set_id_token_hint(&hint);
        }
        if let Some(back) = &self.post_logout {
            request = request.set_post_logout_redirect_uri(back.clone());
        }
        request.http_get_url().to_string()
    }
}

/// What a login state keeps of the binding cookie: its hash, so the store
/// never holds the cookie.
fn binding_hash(binding: &Secret) -> String {
    hashed_id(
        crate::config::LOGIN_BINDING_NAMESPACE,
        binding.expose().as_bytes(),
    )
}

/// The store key of a login's state (the state itself never is a key).
fn state_key(state: &str) -> String {
    key("login-state", &hashed_id("login-state", state.as_bytes()))
}

/// Parsing an ID token without validating it (a logout hint).
trait FromStrOk: Sized {
    fn from_str_ok(text: &str) -> Option<Self>;
}

impl FromStrOk for openidconnect::core::CoreIdToken {
    fn from_str_ok(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}
