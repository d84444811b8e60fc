//! One OpenID provider: its settings, its client secret and its discovery
//! document, loaded in the background.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use openidconnect::core::CoreClient;
use openidconnect::{
    ClientId, ClientSecret, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl,
    ProviderMetadataWithLogout, RedirectUrl,
};
use tokio::time::Instant;

use crate::config::LoginProviderConfig;
use crate::secret::Secret;

/// After a failed discovery: how long before the next attempt.
pub const DISCOVERY_RETRY: Duration = Duration::from_secs(5);
/// How often a loaded discovery document (and its keys) is read again.
pub const DISCOVERY_REFRESH: Duration = Duration::from_secs(15 * 60);

/// The crate's client as built from discovery: authorization endpoint
/// set, token and userinfo endpoints as the provider declares them.
pub type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A configured provider.
pub struct Provider {
    /// Its settings.
    pub config: LoginProviderConfig,
    secret: Secret,
    metadata: RwLock<Option<Arc<ProviderMetadataWithLogout>>>,
    /// When discovery was last tried (on demand, throttled).
    tried: std::sync::Mutex<Option<Instant>>,
    /// Held while a discovery runs: a login that finds no document waits
    /// for the one in flight (at start-up) instead of failing at once.
    discovering: tokio::sync::Mutex<()>,
}

impl Provider {
    /// A provider whose discovery has not run yet.
    pub fn new(config: LoginProviderConfig, secret: Secret) -> Provider {
        Provider {
            config,
            secret,
            metadata: RwLock::new(None),
            tried: std::sync::Mutex::new(None),
            discovering: tokio::sync::Mutex::new(()),
        }
    }

    /// The loaded discovery document, if any.
    pub fn loaded(&self) -> Option<Arc<ProviderMetadataWithLogout>> {
        self.metadata.read().ok().and_then(|m| m.clone())
    }

    /// Reads the discovery document (and the provider's keys) now.
    pub async fn discover(&self, http: &reqwest::Client) -> Result<(), String> {
        let _running = self.discovering.lock().await;
        if let Ok(mut tried) = self.tried.lock() {
            *tried = Some(Instant::now());
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone()).map_err(|e| e.to_string())?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer, http)
            .await
            .map_err(|e| format!("{e}"))?;
        if let Ok(mut slot) = self.metadata.write() {
            *slot = Some(Arc::new(metadata));
        }
        tracing::info!(provider = %self.config.name, "provider discovery loaded");
        Ok(())
    }

    /// The discovery document, trying to load it (at most every
    /// [`DISCOVERY_RETRY`]) when it is missing. `None`: unavailable.
    pub async fn metadata(
        &self,
        http: &reqwest::Client,
    ) -> Option<Arc<ProviderMetadataWithLogout>> {
        if let Some(m) = self.loaded() {
            return Some(m);
        }
        // A discovery in flight (the background one at start-up) may be
        // about to load it.
        drop(self.discovering.lock().await);
        if let Some(m) = self.loaded() {
            return Some(m);
        }
        let due = self
            .tried
            .lock()
            .map(|t| t.is_none_or(|at| at.elapsed() >= DISCOVERY_RETRY))
            .unwrap_or(true);
        if due && let Err(e) = self.discover(http).await {
            tracing::warn!(provider = %self.config.name, error = %e, "provider discovery failed");
        }
        self.loaded()
    }

    /// Reads the discovery document (and keys) again unless that was tried
    /// less than [`DISCOVERY_RETRY`] ago (an unknown `kid`: the provider
    /// may have rotated its keys). A failure keeps the old document.
    pub async fn rediscover_if_due(&self, http: &reqwest::Client) {
        let due = self
            .tried
            .lock()
            .map(|t| t.is_none_or(|at| at.elapsed() >= DISCOVERY_RETRY))
            .unwrap_or(false);
        if due && let Err(e) = self.discover(http).await {
            tracing::warn!(provider = %self.config.name, error = %e, "provider discovery failed");
        }
    }

    /// The crate's client for `metadata`, answering at `callback`.
    pub fn client(
        &self,
        metadata: &ProviderMetadataWithLogout,
        callback: &RedirectUrl,
    ) -> OidcClient {
        CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(self.secret.expose().to_string())),
        )
        .set_redirect_uri(callback.clone())
    }

    /// Keeps the discovery document loaded: retries every
    /// [`DISCOVERY_RETRY`] until it loads, then reads it again every
    /// [`DISCOVERY_REFRESH`] (a failure keeps the old one). Stops when the
    /// provider is dropped (a reload replaced it).
    pub fn spawn_discovery(provider: &Arc<Provider>, http: reqwest::Client) {
        let weak: Weak<Provider> = Arc::downgrade(provider);
        tokio::spawn(async move {
            loop {
                let Some(provider) = weak.upgrade() else {
                    return;
                };
                let wait = match provider.discover(&http).await {
                    Ok(()) => DISCOVERY_REFRESH,
                    Err(e) => {
                        tracing::warn!(provider = %provider.config.name, error = %e, "provider discovery failed");
                        if provider.loaded().is_some() {
                            DISCOVERY_REFRESH
                        } else {
                            DISCOVERY_RETRY
                        }
                    }
                };
                drop(provider);
                tokio::time::sleep(wait).await;
            }
        });
    }
}
