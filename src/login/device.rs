//! The OAuth 2.0 Device Authorization Grant (RFC 8628) as a second way to
//! log a command in, for providers that offer it: gatehouse is the device
//! flow's client at the provider, and the command is gatehouse's client.
//!
//! ```text
//! command ──POST /auth/cli/device──▶ gatehouse ──device authorization request──▶ provider
//!         ◀─ user_code, verification_uri(_complete) (the provider's), device_code (gatehouse's handle)
//! person  ──opens verification_uri, logs in, confirms──▶ provider
//! command ──POST /auth/cli/device/token (handle)──▶ gatehouse ──token request (provider's device_code)──▶ provider
//!         ◀─ authorization_pending | slow_down | access_denied | expired_token | gatehouse API token
//! ```
//!
//! **The provider's `device_code` never leaves gatehouse.** The command
//! gets a *handle*, 256 random bits of gatehouse's own, in the
//! `device_code` field, so that an RFC 8628 client reads the answer
//! unchanged. The store keeps the record under the handle's SHA-256
//! (`cli-device:<hash>`, as the command-line login keeps its nonce), and
//! the record holds the provider's answer (with its `device_code`) only
//! while the grant is pending. The provider's tokens are never stored:
//! they are checked, and the command receives an API token instead.
//!
//! **Polling the provider.** Each poll of the command makes at most one
//! token request to the provider, and only once the provider's `interval`
//! (and one second more, as the clock counts whole seconds) has passed
//! since the last one (an earlier poll is told
//! `authorization_pending` without asking the provider). The poll that
//! asks claims the slot first (compare-and-set), so racing polls never
//! double the rate. The provider's `slow_down` adds five seconds to the
//! interval and is passed on; so is an unreachable provider (RFC 8628
//! section 3.5 asks clients to back off on a connection timeout).
//!
//! **On success** the ID token is validated as the browser login does
//! ([`Login::vouch`]: signature, `iss`, `aud`, `exp`, `azp`, `at_hash`;
//! no nonce in this flow), the identity is mapped with the provider's
//! claims and `allowed_groups`, and the grant becomes delivered: each
//! grant yields one token.
//!
//! The provider's `device_authorization_endpoint` comes from its discovery
//! document, read here (the crate's typed metadata does not keep it) and
//! cached for [`ENDPOINT_REFRESH`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openidconnect::core::{CoreDeviceAuthorizationResponse, CoreTokenResponse};
use openidconnect::{
    DeviceAuthorizationUrl, DeviceCodeErrorResponseType, RedirectUrl, RequestTokenError, Scope,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::cli::{Approved, well_formed};
use super::{Login, LoginError, Provider};
use crate::secret::Secret;
use crate::sessions::Clock;
use crate::sessions::record::random_token;
use crate::store::{Store, StoreError, hashed_id, key};

/// RFC 8628's grant type, for the token request.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// How long a discovered device authorization endpoint (or its absence)
/// is trusted before the discovery document is read again.
pub const ENDPOINT_REFRESH: Duration = Duration::from_secs(15 * 60);
/// After a failed read of the discovery document: how long before the next.
pub const ENDPOINT_RETRY: Duration = Duration::from_secs(5);
/// Longest grant gatehouse keeps, whatever the provider's `expires_in`.
pub const MAX_EXPIRES_IN: u64 = 3600;
/// Longest interval between two token requests (`slow_down` adds 5 s each).
pub const MAX_INTERVAL: u64 = 60;
/// How long an ended or expired grant stays readable (a late poll reads
/// *expired* or *used*, not nothing).
const LINGER: u64 = 300;
/// What `slow_down` adds to the interval (RFC 8628 section 3.5).
const SLOW_DOWN_STEP: u64 = 5;

/// Why a device-flow step failed. Messages are shown to the client: they
/// never carry a handle, a device code or a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// Several providers are configured and the request named none (400).
    #[error("several identity providers are configured: name one with provider=")]
    NeedProvider,
    /// `provider=` names no configured provider (400).
    #[error("unknown provider {0:?}")]
    UnknownProvider(String),
    /// The provider's discovery document names no device authorization
    /// endpoint (400).
    #[error(
        "the identity provider {0:?} does not offer the device authorization grant (no device_authorization_endpoint in its discovery document); use POST /auth/cli/login instead"
    )]
    NotOffered(String),
    /// The provider's discovery or an answer is not available (503).
    #[error("the identity provider {0:?} is not reachable; try again shortly")]
    ProviderUnavailable(String),
    /// The provider refused or garbled the device authorization request,
    /// or answered a token request with an unexpected error (502).
    #[error("the identity provider refused the device login ({0})")]
    Provider(String),
    /// No such grant, or its time ran out (`expired_token`).
    #[error("this device login has expired; start it again")]
    Expired,
    /// The token was collected already (`invalid_grant`).
    #[error("this device login was already used; start it again")]
    Used,
    /// The person refused it at the provider, or what the provider vouched
    /// for may not log in here (`access_denied`).
    #[error("the device login was refused")]
    Denied,
    /// The provider approved, but its ID token failed gatehouse's checks
    /// or the account may not log in (`access_denied`).
    #[error("{0}")]
    Login(LoginError),
    /// The store cannot be reached (503).
    #[error("state store unavailable")]
    Unavailable(#[source] StoreError),
    /// No random bytes, or a record that cannot be encoded (500).
    #[error("{0}")]
    Internal(&'static str),
}

impl From<StoreError> for DeviceError {
    fn from(e: StoreError) -> Self {
        DeviceError::Unavailable(e)
    }
}

/// Where a grant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum DeviceState {
    /// Waiting for the person at the provider.
    Pending,
    /// Refused (by the person, or by gatehouse's checks).
    Denied,
    /// The provider said the device code expired.
    Expired,
    /// The token was handed out.
    Delivered,
}

/// The stored record (`cli-device:<hash of handle>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeviceRecord {
    /// The provider's name.
    provider: String,
    /// The provider's device authorization answer (its `device_code`
    /// inside); dropped once the grant is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grant: Option<serde_json::Value>,
    /// When the grant times out, seconds since the epoch.
    expires: u64,
    /// Seconds between two token requests to the provider.
    interval: u64,
    /// The earliest time of the next token request, seconds since the epoch.
    next_poll: u64,
    /// Where it stands.
    state: DeviceState,
}

/// A started device login: what the command shows and keeps.
#[derive(Debug)]
pub struct DeviceStarted {
    /// Gatehouse's handle, answered as `device_code`.
    pub handle: Secret,
    /// The provider's user code.
    pub user_code: String,
    /// The provider's verification URI.
    pub verification_uri: String,
    /// The provider's verification URI with the code, when it gives one.
    pub verification_uri_complete: Option<String>,
    /// Seconds until the grant times out.
    pub expires_in: u64,
    /// Seconds between polls.
    pub interval: u64,
}

/// What a poll learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePolled {
    /// Not answered yet: poll again after the interval.
    Pending,
    /// Poll less often: the new interval, in seconds.
    SlowDown(u64),
    /// Approved: the caller makes the token now (this poll won the grant).
    Approved(Approved),
}

/// What one token request to the provider answered.
enum ProviderAnswer {
    Token(Box<CoreTokenResponse>),
    Pending,
    SlowDown,
    Unreachable,
    Denied,
    Expired,
    Refused(String),
}

/// A cached discovery of the device authorization endpoint.
#[derive(Clone)]
struct Endpoint {
    at: Instant,
    /// `Ok(None)`: the provider has none; `Err`: the document was unreadable.
    url: Result<Option<String>, String>,
}

/// The device logins: store, clock, and the providers' endpoints.
pub struct DeviceLogins {
    store: Arc<dyn Store>,
    clock: Clock,
    endpoints: Mutex<HashMap<String, Endpoint>>,
}

impl DeviceLogins {
    /// The service on `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Clock) -> DeviceLogins {
        DeviceLogins {
            store,
            clock,
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    /// The provider a request names, or the only one.
    fn provider<'a>(
        login: &'a Login,
        name: Option<&str>,
    ) -> Result<&'a Arc<Provider>, DeviceError> {
        match (name.filter(|n| !n.is_empty()), login.providers()) {
            (Some(name), _) => login
                .provider(name)
                .ok_or_else(|| DeviceError::UnknownProvider(name.to_string())),
            (None, [only]) => Ok(only),
            (None, _) => Err(DeviceError::NeedProvider),
        }
    }

    /// The provider's `device_authorization_endpoint`, from its discovery
    /// document (cached).
    async fn endpoint(&self, p: &Provider, http: &reqwest::Client) -> Result<String, DeviceError> {
        let name = &p.config.name;
        let cached = self
            .endpoints
            .lock()
            .ok()
            .and_then(|m| m.get(name).cloned());
        let fresh = cached.filter(|e| {
            let keep = if e.url.is_ok() {
                ENDPOINT_REFRESH
            } else {
                ENDPOINT_RETRY
            };
            e.at.elapsed() < keep
        });
        let found = match fresh {
            Some(e) => e.url,
            None => {
                let url = read_device_endpoint(&p.config.issuer, http).await;
                if let Err(e) = &url {
                    tracing::warn!(provider = %name, error = %e, "provider discovery (device flow) failed");
                }
                if let Ok(mut m) = self.endpoints.lock() {
                    m.insert(
                        name.clone(),
                        Endpoint {
                            at: Instant::now(),
                            url: url.clone(),
                        },
                    );
                }
                url
            }
        };
        match found {
            Ok(Some(url)) => Ok(url),
            Ok(None) => Err(DeviceError::NotOffered(name.clone())),
            Err(_) => Err(DeviceError::ProviderUnavailable(name.clone())),
        }
    }

    /// Starts a device login at `provider` (or the only provider): asks
    /// the provider for a device and user code with the provider's client
    /// credentials and scopes, keeps the provider's answer under a fresh
    /// handle. `base_url`: gatehouse's origin (the crate's client wants a
    /// redirect URL; the device flow sends none).
    pub async fn start(
        &self,
        login: &Login,
        provider: Option<&str>,
        base_url: &str,
    ) -> Result<DeviceStarted, DeviceError> {
        let p = Self::provider(login, provider)?;
        let name = p.config.name.clone();
        let metadata = p
            .metadata(login.http())
            .await
            .ok_or_else(|| DeviceError::ProviderUnavailable(name.clone()))?;
        let endpoint = self.endpoint(p, login.http()).await?;
        let endpoint = DeviceAuthorizationUrl::new(endpoint)
            .map_err(|_| DeviceError::Provider("invalid device_authorization_endpoint".into()))?;
        let client = p
            .client(&metadata, &callback(base_url)?)
            .set_device_authorization_url(endpoint);
        // The crate adds `openid` itself.
        let scopes = p
            .config
            .scopes
            .iter()
            .filter(|s| *s != "openid")
            .map(|s| Scope::new(s.clone()));
        let details: CoreDeviceAuthorizationResponse = client
            .exchange_device_code()
            .add_scopes(scopes)
            .request_async(login.http())
            .await
            .map_err(|e| {
                let why = super::claims::describe_token_error(&e);
                tracing::warn!(provider = %name, error = %why, "device authorization request failed");
                match e {
                    RequestTokenError::Request(_) => DeviceError::ProviderUnavailable(name.clone()),
                    RequestTokenError::ServerResponse(r) => {
                        DeviceError::Provider(short_code(r.error().as_ref()))
                    }
                    _ => DeviceError::Provider("unreadable answer".into()),
                }
            })?;
        let expires_in = details.expires_in().as_secs().clamp(1, MAX_EXPIRES_IN);
        let interval = details.interval().as_secs().clamp(1, MAX_INTERVAL);
        let now = self.now();
        let record = DeviceRecord {
            provider: name,
            grant: Some(
                serde_json::to_value(&details)
                    .map_err(|_| DeviceError::Internal("a device grant could not be encoded"))?,
            ),
            expires: now.saturating_add(expires_in),
            interval,
            next_poll: now,
            state: DeviceState::Pending,
        };
        let handle = random_token().map_err(|_| DeviceError::Internal("no random bytes"))?;
        let stored = self
            .store
            .set_if_absent(
                &record_key(handle.expose()),
                &encode(&record)?,
                keep(expires_in),
            )
            .await?;
        if !stored {
            return Err(DeviceError::Internal("a fresh device handle was taken"));
        }
        tracing::info!(login = %handle.fingerprint(), provider = %record.provider, "device login started");
        Ok(DeviceStarted {
            handle,
            user_code: details.user_code().secret().clone(),
            verification_uri: details.verification_uri().to_string(),
            verification_uri_complete: details
                .verification_uri_complete()
                .map(|u| u.secret().clone()),
            expires_in,
            interval,
        })
    }

    /// A poll by the command holding `handle`: pending (or slow down), or
    /// the identity the provider vouched for, exactly once.
    pub async fn poll(
        &self,
        login: &Login,
        handle: &str,
        base_url: &str,
    ) -> Result<DevicePolled, DeviceError> {
        let Some((record, raw)) = self.claim(handle).await? else {
            return Ok(DevicePolled::Pending);
        };
        let p = login
            .provider(&record.provider)
            .ok_or_else(|| DeviceError::UnknownProvider(record.provider.clone()))?;
        let metadata = p
            .metadata(login.http())
            .await
            .ok_or_else(|| DeviceError::ProviderUnavailable(record.provider.clone()))?;
        let client = p.client(&metadata, &callback(base_url)?);
        let grant = record.grant.clone().ok_or(DeviceError::Internal(
            "a pending device grant lost its code",
        ))?;
        let answer = ask_provider(&client, login.http(), grant).await?;
        let now = self.now();
        let outcome = match answer {
            ProviderAnswer::Pending => return Ok(DevicePolled::Pending),
            ProviderAnswer::SlowDown | ProviderAnswer::Unreachable => {
                let interval = record
                    .interval
                    .saturating_add(SLOW_DOWN_STEP)
                    .min(MAX_INTERVAL);
                let next = DeviceRecord {
                    interval,
                    next_poll: now.saturating_add(interval).saturating_add(1),
                    ..record
                };
                // Lost to another poll: it set its own interval; fine.
                self.replace(handle, &raw, &next, now).await?;
                return Ok(DevicePolled::SlowDown(interval));
            }
            ProviderAnswer::Denied => Err(DeviceError::Denied),
            ProviderAnswer::Expired => Err(DeviceError::Expired),
            ProviderAnswer::Refused(code) => Err(DeviceError::Provider(code)),
            ProviderAnswer::Token(token) => login
                .vouch(
                    p,
                    &metadata,
                    &client.id_token_verifier(),
                    &token,
                    None,
                )
                .await
                .map(|v| v.identity)
                .map_err(|e| {
                    tracing::warn!(login = %fingerprint(handle), provider = %record.provider, reason = %e, "device login refused");
                    DeviceError::Login(e)
                }),
        };
        // The provider's answer ends the grant either way: its device code
        // is spent (or refused), so the record forgets it.
        let state = match &outcome {
            Ok(_) => DeviceState::Delivered,
            Err(DeviceError::Expired) => DeviceState::Expired,
            Err(_) => DeviceState::Denied,
        };
        let provider = record.provider.clone();
        let next = DeviceRecord {
            grant: None,
            state,
            ..record
        };
        if !self.replace(handle, &raw, &next, now).await? {
            return Err(DeviceError::Used);
        }
        let identity = outcome?;
        tracing::info!(login = %fingerprint(handle), provider = %provider, "device login delivered");
        Ok(DevicePolled::Approved(Approved { provider, identity }))
    }

    /// Reads the grant under `handle` and, when it is pending and due,
    /// claims the next token request (`next_poll` moves one interval on):
    /// the claimed record and its exact bytes. `None`: not due yet, or
    /// another poll claimed it; the command should poll again.
    async fn claim(&self, handle: &str) -> Result<Option<(DeviceRecord, Vec<u8>)>, DeviceError> {
        let (record, raw) = self.read(handle).await?;
        let now = self.now();
        match record.state {
            DeviceState::Delivered => return Err(DeviceError::Used),
            DeviceState::Denied => return Err(DeviceError::Denied),
            DeviceState::Expired => return Err(DeviceError::Expired),
            DeviceState::Pending if now >= record.expires => return Err(DeviceError::Expired),
            DeviceState::Pending if now < record.next_poll => return Ok(None),
            DeviceState::Pending => {}
        }
        // The clock counts whole seconds: one more, so that the provider
        // never sees two requests less than `interval` apart.
        let claimed = DeviceRecord {
            next_poll: now.saturating_add(record.interval).saturating_add(1),
            ..record
        };
        let bytes = encode(&claimed)?;
        if !self
            .replace_raw(handle, &raw, &bytes, &claimed, now)
            .await?
        {
            return Ok(None);
        }
        Ok(Some((claimed, bytes)))
    }

    /// The record under `handle` and its exact bytes; unknown is expired.
    async fn read(&self, handle: &str) -> Result<(DeviceRecord, Vec<u8>), DeviceError> {
        if !well_formed(handle) {
            return Err(DeviceError::Expired);
        }
        crate::store::get_json(self.store.as_ref(), &record_key(handle))
            .await?
            .ok_or(DeviceError::Expired)
    }

    async fn replace(
        &self,
        handle: &str,
        raw: &[u8],
        next: &DeviceRecord,
        now: u64,
    ) -> Result<bool, DeviceError> {
        self.replace_raw(handle, raw, &encode(next)?, next, now)
            .await
    }

    /// Compare-and-set from `raw` to `bytes` (`next` encoded), keeping the
    /// entry [`LINGER`] past its expiry, so that late polls read *expired*
    /// or *used* rather than nothing.
    async fn replace_raw(
        &self,
        handle: &str,
        raw: &[u8],
        bytes: &[u8],
        next: &DeviceRecord,
        now: u64,
    ) -> Result<bool, DeviceError> {
        let until = next.expires.saturating_add(LINGER);
        let ttl = Duration::from_secs(until.saturating_sub(now).max(1));
        Ok(self
            .store
            .compare_and_set(&record_key(handle), raw, bytes, ttl)
            .await?)
    }
}

/// How long the store keeps a fresh grant: its lifetime and [`LINGER`].
fn keep(expires_in: u64) -> Duration {
    Duration::from_secs(expires_in.saturating_add(LINGER))
}

/// The redirect URL the crate's client is built with (never sent here).
fn callback(base_url: &str) -> Result<RedirectUrl, DeviceError> {
    RedirectUrl::new(format!("{base_url}/auth/callback"))
        .map_err(|_| DeviceError::Internal("gatehouse's base URL is not a URL"))
}

/// One token request for the grant `grant` (the provider's device
/// authorization answer as stored).
///
/// The crate's device token request polls in a loop until the grant ends,
/// sleeping between requests; gatehouse needs exactly one request per
/// poll of the command. So the "sleep" is where it stops: it records the
/// interval the crate would wait and never returns, and the request is
/// dropped. The interval tells the three reasons to continue apart: the
/// stored `interval` is replaced by an hour, so `authorization_pending`
/// keeps that hour, `slow_down` adds five seconds to it, and a transport
/// failure backs off to the one-second cap set here.
async fn ask_provider(
    client: &super::provider::OidcClient,
    http: &reqwest::Client,
    mut grant: serde_json::Value,
) -> Result<ProviderAnswer, DeviceError> {
    const MARK: u64 = 3600;
    if let Some(fields) = grant.as_object_mut() {
        fields.insert("interval".into(), MARK.into());
        // The crate's own deadline; gatehouse keeps the real one.
        fields.insert("expires_in".into(), MARK.into());
    }
    let details: CoreDeviceAuthorizationResponse = serde_json::from_value(grant)
        .map_err(|_| DeviceError::Internal("a stored device grant is unreadable"))?;
    let request = client
        .exchange_device_access_token(&details)
        .map_err(|_| DeviceError::Provider("no token endpoint".into()))?
        .set_max_backoff_interval(Duration::from_secs(1));
    let wanted = Arc::new(tokio::sync::Notify::new());
    let waited = Arc::new(Mutex::new(None::<Duration>));
    let sleep = {
        let (wanted, waited) = (wanted.clone(), waited.clone());
        move |interval: Duration| {
            if let Ok(mut w) = waited.lock() {
                *w = Some(interval);
            }
            wanted.notify_one();
            std::future::pending::<()>()
        }
    };
    let request = request.request_async(http, sleep, None);
    tokio::pin!(request);
    tokio::select! {
        done = &mut request => Ok(match done {
            Ok(token) => ProviderAnswer::Token(Box::new(token)),
            Err(RequestTokenError::ServerResponse(r)) => match r.error() {
                DeviceCodeErrorResponseType::AccessDenied => ProviderAnswer::Denied,
                DeviceCodeErrorResponseType::ExpiredToken => ProviderAnswer::Expired,
                // A device code the provider no longer knows.
                other if other.as_ref() == "invalid_grant" => ProviderAnswer::Expired,
                other => ProviderAnswer::Refused(short_code(other.as_ref())),
            },
            Err(RequestTokenError::Request(_)) => ProviderAnswer::Unreachable,
            Err(_) => ProviderAnswer::Refused("unreadable answer".into()),
        }),
        () = wanted.notified() => {
            let interval = waited.lock().ok().and_then(|w| *w).unwrap_or_default();
            Ok(if interval == Duration::from_secs(MARK) {
                ProviderAnswer::Pending
            } else if interval > Duration::from_secs(MARK) {
                ProviderAnswer::SlowDown
            } else {
                ProviderAnswer::Unreachable
            })
        }
    }
}

/// Reads `device_authorization_endpoint` from the issuer's discovery
/// document. `Ok(None)`: the provider has none.
async fn read_device_endpoint(
    issuer: &str,
    http: &reqwest::Client,
) -> Result<Option<String>, String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let answer = http
        .get(&url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !answer.status().is_success() {
        return Err(format!("discovery answered {}", answer.status()));
    }
    let document: serde_json::Value = answer
        .json()
        .await
        .map_err(|_| "unreadable discovery document".to_string())?;
    let Some(endpoint) = document
        .get("device_authorization_endpoint")
        .and_then(serde_json::Value::as_str)
    else {
        return Ok(None);
    };
    url::Url::parse(endpoint)
        .map_err(|_| "device_authorization_endpoint is not a URL".to_string())?;
    Ok(Some(endpoint.to_string()))
}

/// An OAuth error code as shown to the client: letters, digits, `_`.
fn short_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

fn encode(record: &DeviceRecord) -> Result<Vec<u8>, DeviceError> {
    serde_json::to_vec(record)
        .map_err(|_| DeviceError::Internal("a device grant could not be encoded"))
}

/// The store key of a grant (the handle itself never is a key).
fn record_key(handle: &str) -> String {
    key("cli-device", &hashed_id("cli-device", handle.as_bytes()))
}

/// A short fingerprint of a handle, for logs.
pub fn fingerprint(handle: &str) -> String {
    crate::secret::fingerprint(handle.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::store::memory::MemoryStore;

    struct Fixture {
        device: DeviceLogins,
        clock: Arc<AtomicU64>,
        store: Arc<MemoryStore>,
    }

    fn fixture() -> Fixture {
        let clock = Arc::new(AtomicU64::new(1_700_000_000));
        let store = Arc::new(MemoryStore::new(1000));
        let c = clock.clone();
        Fixture {
            device: DeviceLogins::new(store.clone(), Arc::new(move || c.load(Ordering::Relaxed))),
            clock,
            store,
        }
    }

    /// A pending grant as `start` stores it, without a provider.
    async fn pending(f: &Fixture, interval: u64, expires_in: u64) -> String {
        let handle = random_token().unwrap();
        let now = f.device.now();
        let record = DeviceRecord {
            provider: "op".into(),
            grant: Some(serde_json::json!({"device_code": "provider-device-code"})),
            expires: now + expires_in,
            interval,
            next_poll: now,
            state: DeviceState::Pending,
        };
        assert!(
            f.store
                .set_if_absent(
                    &record_key(handle.expose()),
                    &encode(&record).unwrap(),
                    keep(expires_in)
                )
                .await
                .unwrap()
        );
        handle.expose().to_string()
    }

    #[tokio::test]
    async fn a_claim_is_due_once_per_interval() {
        let f = fixture();
        let handle = pending(&f, 5, 600).await;
        let (claimed, _) = f.device.claim(&handle).await.unwrap().expect("due");
        // One second more than the interval: the clock counts whole seconds.
        assert_eq!(claimed.next_poll, f.device.now() + 6);
        // Polls within the interval do not reach the provider.
        assert!(f.device.claim(&handle).await.unwrap().is_none());
        f.clock.fetch_add(5, Ordering::Relaxed);
        assert!(f.device.claim(&handle).await.unwrap().is_none());
        f.clock.fetch_add(1, Ordering::Relaxed);
        assert!(f.device.claim(&handle).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn racing_polls_claim_once() {
        let f = fixture();
        let handle = pending(&f, 5, 600).await;
        let device = Arc::new(f.device);
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (device, handle) = (device.clone(), handle.clone());
            tasks.push(tokio::spawn(async move { device.claim(&handle).await }));
        }
        let mut claimed = 0;
        for t in tasks {
            if t.await.unwrap().unwrap().is_some() {
                claimed += 1;
            }
        }
        assert_eq!(claimed, 1);
    }

    #[tokio::test]
    async fn ended_grants_answer_their_end() {
        let f = fixture();
        for (state, error) in [
            (DeviceState::Delivered, DeviceError::Used),
            (DeviceState::Denied, DeviceError::Denied),
            (DeviceState::Expired, DeviceError::Expired),
        ] {
            let handle = pending(&f, 5, 600).await;
            let (record, raw) = f.device.read(&handle).await.unwrap();
            let next = DeviceRecord {
                grant: None,
                state,
                ..record
            };
            let now = f.device.now();
            assert!(f.device.replace(&handle, &raw, &next, now).await.unwrap());
            assert_eq!(f.device.claim(&handle).await.unwrap_err(), error);
            // The provider's device code is gone from the store.
            let raw = f.store.get(&record_key(&handle)).await.unwrap().unwrap();
            assert!(!String::from_utf8_lossy(&raw).contains("provider-device-code"));
        }
    }

    #[tokio::test]
    async fn a_grant_expires_and_unknown_handles_are_expired() {
        let f = fixture();
        let handle = pending(&f, 5, 10).await;
        f.clock.fetch_add(10, Ordering::Relaxed);
        assert_eq!(
            f.device.claim(&handle).await.unwrap_err(),
            DeviceError::Expired
        );
        let unknown = "A".repeat(super::super::cli::NONCE_CHARS);
        assert_eq!(
            f.device.claim(&unknown).await.unwrap_err(),
            DeviceError::Expired
        );
        assert_eq!(
            f.device.claim("short").await.unwrap_err(),
            DeviceError::Expired
        );
    }

    #[tokio::test]
    async fn the_store_key_is_not_the_handle() {
        let f = fixture();
        let handle = pending(&f, 5, 600).await;
        let key = record_key(&handle);
        assert!(!key.contains(&handle));
        let raw = f.store.get(&key).await.unwrap().expect("stored");
        assert!(!String::from_utf8_lossy(&raw).contains(&handle));
    }
}
