//! RFC 8693 token exchange (`token_exchange:`, and a rule's `exchange`):
//! the caller's token is traded at the authorization server's token
//! endpoint for one meant for the route's upstream, which then gets it as
//! `Authorization: Bearer …` in place of the caller's credential.
//!
//! The request is RFC 8693's: `grant_type` token-exchange, the caller's
//! token as an access token (`subject_token_type`), the rule's `audience`
//! and `scope`, asking for an access token back; gatehouse authenticates
//! as its client (HTTP Basic or the form body). The `oauth2` crate has no
//! token-exchange grant, so the form is built here; it is one POST.
//!
//! Exchanged tokens are remembered by the SHA-256 of the caller's token,
//! the audience and the scopes (no token is a key), until `refresh_margin`
//! before they expire and never past the caller's own expiry. Concurrent
//! checks needing one exchange make one call. A refusal (`invalid_grant`,
//! `invalid_target`, `invalid_scope`, `unauthorized_client`, …) is a 403
//! naming the server's error code; no usable answer (unreachable, a 5xx,
//! `invalid_client`, a malformed body) is a 503. Neither is remembered.

use base64::Engine as _;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{ClientAuthMethod, ConfigError, ExchangeConfig, TokenExchangeConfig};
use crate::metrics::OAuthCallMetrics;
use crate::outbound::{ExpiringCache, Source};
use crate::secret::Secret;

/// RFC 8693's grant type.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693's token type of an OAuth 2.0 access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Why no exchanged token came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The server refused this caller's token for this audience (its OAuth
    /// error code; a 403).
    #[error("the authorization server refused the exchange: {0}")]
    Refused(String),
    /// The caller's credential carries no token (a client certificate).
    #[error("the caller's credential has no token to exchange")]
    NoSubjectToken,
    /// No usable answer (a 503).
    #[error("token exchange failed: {0}")]
    Unavailable(String),
}

/// What one rule asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeTarget {
    /// RFC 8693 `audience`.
    pub audience: String,
    /// Space-joined `scope`, empty for none.
    pub scope: String,
}

impl ExchangeTarget {
    /// A rule's validated `exchange` (errors name `key`).
    pub fn compile(config: &ExchangeConfig, key: &str) -> Result<ExchangeTarget, ConfigError> {
        config.validate(key)?;
        Ok(ExchangeTarget {
            audience: config.audience.clone(),
            scope: config.scopes.join(" "),
        })
    }
}

/// The token endpoint's successful answer (RFC 8693, 2.2.1).
#[derive(Deserialize)]
struct Answer {
    access_token: String,
    token_type: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The token endpoint's error answer (RFC 6749, 5.2).
#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
}

/// The token-exchange client.
pub struct TokenExchange {
    url: String,
    client_id: String,
    secret: Secret,
    auth_method: ClientAuthMethod,
    http: reqwest::Client,
    cache: Option<ExpiringCache<Secret>>,
    refresh_margin: u64,
    metrics: Option<OAuthCallMetrics>,
    /// Set by `gatehouse explain`: no call is made.
    offline: std::sync::atomic::AtomicBool,
}

impl TokenExchange {
    /// Builds the client from its configuration and the client secret.
    pub fn new(config: &TokenExchangeConfig, secret: Secret) -> Result<TokenExchange, ConfigError> {
        let url = config.client.validate("token_exchange")?;
        let http = crate::outbound::client(config.client.timeout)
            .map_err(|e| ConfigError::invalid("token_exchange", e.to_string()))?;
        Ok(TokenExchange {
            url: url.to_string(),
            client_id: config.client.client_id.clone(),
            secret,
            auth_method: config.client.auth_method,
            http,
            cache: (config.cache_size > 0).then(|| ExpiringCache::new(config.cache_size)),
            refresh_margin: config.refresh_margin.as_secs(),
            metrics: None,
            offline: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Counts calls and cache answers into `metrics`.
    pub fn with_metrics(mut self, metrics: OAuthCallMetrics) -> TokenExchange {
        self.metrics = Some(metrics);
        self
    }

    /// Makes no more calls (`gatehouse explain` runs without network): an
    /// exchange not remembered is then [`ExchangeError::Unavailable`].
    pub fn set_offline(&self) {
        self.offline
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// A token for `target` in exchange for `subject` (the caller's token,
    /// valid until `subject_expires`), from the cache or the server.
    pub async fn exchange(
        &self,
        subject: &Secret,
        subject_expires: Option<u64>,
        target: &ExchangeTarget,
        now: u64,
    ) -> Result<Secret, ExchangeError> {
        if subject.expose().is_empty() {
            return Err(ExchangeError::NoSubjectToken);
        }
        let Some(cache) = &self.cache else {
            return self
                .call(subject, subject_expires, target, now)
                .await
                .map(|(token, _)| token);
        };
        let mut hasher = Sha256::new();
        for part in [subject.expose(), &target.audience, &target.scope] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        let (token, source) = cache
            .get_or_load(hasher.finalize().into(), now, || {
                self.call(subject, subject_expires, target, now)
            })
            .await?;
        if source == Source::Cache {
            self.count(|m| &m.cached);
        }
        Ok(token)
    }

    /// One request to the token endpoint.
    async fn call(
        &self,
        subject: &Secret,
        subject_expires: Option<u64>,
        target: &ExchangeTarget,
        now: u64,
    ) -> Result<(Secret, u64), ExchangeError> {
        if self.offline.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ExchangeError::Unavailable(
                "offline: the authorization server is not called".into(),
            ));
        }
        let mut form = vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token", subject.expose()),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("audience", target.audience.as_str()),
        ];
        if !target.scope.is_empty() {
            form.push(("scope", target.scope.as_str()));
        }
        let mut request = self
            .http
            .post(&self.url)
            .header("accept", "application/json");
        match self.auth_method {
            ClientAuthMethod::ClientSecretBasic => {
                // RFC 6749, 2.3.1: each part form-encoded, then Basic.
                let encode = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
                let pair = format!(
                    "{}:{}",
                    encode(&self.client_id),
                    encode(self.secret.expose())
                );
                let basic = base64::engine::general_purpose::STANDARD.encode(pair);
                request = request.header("authorization", format!("Basic {basic}"));
            }
            ClientAuthMethod::ClientSecretPost => {
                form.push(("client_id", self.client_id.as_str()));
                form.push(("client_secret", self.secret.expose()));
            }
        }
        let answer = request.form(&form).send().await;
        let result = self.read(answer, subject_expires, now).await;
        match &result {
            Ok(_) => self.count(|m| &m.granted),
            Err(ExchangeError::Refused(_)) => self.count(|m| &m.refused),
            Err(_) => self.count(|m| &m.failed),
        }
        if let Err(e) = &result {
            tracing::warn!(
                audience = %target.audience,
                token_fingerprint = %subject.fingerprint(),
                reason = %e,
                "token exchange failed"
            );
        }
        result
    }

    /// The exchanged token from the server's answer.
    async fn read(
        &self,
        answer: Result<reqwest::Response, reqwest::Error>,
        subject_expires: Option<u64>,
        now: u64,
    ) -> Result<(Secret, u64), ExchangeError> {
        let unavailable = |what: String| ExchangeError::Unavailable(what);
        let response = answer.map_err(|e| unavailable(format!("request failed: {e}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| unavailable(format!("reading the answer: {e}")))?;
        if !status.is_success() {
            let code = serde_json::from_slice::<ErrorAnswer>(&body)
                .map(|e| e.error)
                .map_err(|_| unavailable(format!("the server answered {status}")))?;
            return Err(refusal(code));
        }
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|_| unavailable("the answer is not a token response".into()))?;
        if !answer.token_type.eq_ignore_ascii_case("bearer") {
            return Err(unavailable(format!(
                "the exchanged token is of type {:?}, not Bearer",
                answer.token_type.chars().take(32).collect::<String>()
            )));
        }
        let usable = !answer.access_token.is_empty()
            && answer
                .access_token
                .bytes()
                .all(|b| (b'!'..=b'~').contains(&b));
        if !usable {
            return Err(unavailable(
                "the exchanged token cannot be sent in a header".into(),
            ));
        }
        // Without expires_in, the server keeps the lifetime to itself: use
        // the token for a minute at most.
        let expires = now.saturating_add(answer.expires_in.unwrap_or(60));
        let until = expires
            .saturating_sub(self.refresh_margin)
            .min(subject_expires.unwrap_or(u64::MAX));
        Ok((Secret::new(answer.access_token), until))
    }

    fn count(&self, which: impl Fn(&OAuthCallMetrics) -> &prometheus::IntCounter) {
        if let Some(metrics) = &self.metrics {
            which(metrics).inc();
        }
    }
}

impl std::fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the secret, not the cache's tokens.
        f.debug_struct("TokenExchange")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// An OAuth error code as a refusal (the caller's token or the route's
/// target) or an outage (gatehouse's own client is not accepted, or the
/// server failed).
fn refusal(code: String) -> ExchangeError {
    let code: String = code
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    match code.as_str() {
        "invalid_client" | "server_error" | "temporarily_unavailable" => {
            ExchangeError::Unavailable(format!("the server answered {code}"))
        }
        _ => ExchangeError::Refused(code),
    }
}

#[cfg(test)]
mod tests;
