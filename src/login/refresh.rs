//! The sessions' [`Refresher`]: the refresh-token grant at the provider's
//! token endpoint.

use std::sync::Arc;

use async_trait::async_trait;
use openidconnect::{OAuth2TokenResponse, RefreshToken, RequestTokenError, TokenResponse};

use super::Login;
use crate::secret::Secret;
use crate::sessions::{RefreshError, RefreshedTokens, Refresher};

/// Refreshes through the login's providers.
pub struct ProviderRefresher {
    /// The login service.
    pub login: Arc<Login>,
}

#[async_trait]
impl Refresher for ProviderRefresher {
    async fn refresh(
        &self,
        provider: &str,
        refresh_token: &Secret,
    ) -> Result<RefreshedTokens, RefreshError> {
        let login = &self.login;
        let p = login
            .provider(provider)
            .ok_or_else(|| RefreshError::Rejected(format!("unknown provider {provider:?}")))?;
        let metadata = p
            .metadata(login.http())
            .await
            .ok_or_else(|| RefreshError::Unavailable("provider discovery not loaded".into()))?;
        let client = p.client(&metadata, &login.callback);
        let token = client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.expose().to_string()))
            .map_err(|_| RefreshError::Rejected("the provider has no token endpoint".into()))?
            .request_async(login.http())
            .await
            .map_err(|e| {
                let text = super::claims::describe_token_error(&e);
                match e {
                    RequestTokenError::ServerResponse(_) => RefreshError::Rejected(text),
                    RequestTokenError::Parse(_, _) | RequestTokenError::Other(_) => {
                        // A 5xx answer is not a standard error body.
                        RefreshError::Unavailable(text)
                    }
                    RequestTokenError::Request(_) => RefreshError::Unavailable(text),
                }
            })?;
        let now = login.sessions().now();
        Ok(RefreshedTokens {
            access_token: Secret::new(token.access_token().secret()),
            access_expires: token.expires_in().map(|d| now.saturating_add(d.as_secs())),
            refresh_token: token.refresh_token().map(|r| Secret::new(r.secret())),
            id_token: token.id_token().map(|t| Secret::new(t.to_string())),
        })
    }
}
