//! Command-line login (Renku's `renku login`): a command asks for a login,
//! a person approves it in a browser where they are logged in, and the
//! command collects an API token by polling.
//!
//! **The nonce has two halves.** [`CliLogins::start`] makes two random
//! 256-bit values: the *id*, which goes into the login URL the person
//! opens (so it may end up in browser history, Envoy's request line,
//! someone's screen), and the *secret*, which only the command holds and
//! sends as `Authorization: Bearer` when it polls. Knowing the login URL
//! therefore lets a person approve, never collect. The store keeps the
//! SHA-256 of each (the id hashed into the key, the secret hashed into
//! the value) and the secret is compared in constant time: a store dump
//! shows neither, and 256 bits leave nothing to guess.
//!
//! **States** (one store entry, `cli-login:<hash of id>`):
//!
//! ```text
//! Pending ──approve (browser, session + CSRF token)──▶ Approved{identity} ──poll──▶ Delivered
//!    └────deny──▶ Denied
//! any state, after login_timeout: expired (read as such, dropped by the store later)
//! ```
//!
//! Every transition is a compare-and-set on the exact bytes read, so two
//! polls racing for one approved login never both win: the first gets the
//! approved identity and the second sees `Delivered` (each nonce works
//! once). The entry lives twice `login_timeout`, so a poll after the
//! timeout or after delivery is told *expired* or *used* instead of
//! finding nothing; an entry the store already dropped reads as expired.
//!
//! The token itself is made by the side port (`serve::http::cli`) with the
//! API-token service: `login/` never imports `tokens/` (the layers point
//! one way), so this module hands back the approved identity and stops
//! there.
//!
//! Nothing here logs the secret, the id or a session id: logs carry the
//! id's short fingerprint.
//!
//! The second way in, RFC 8628's device flow at providers that offer it,
//! is [`super::device`]; [`CliLogins::device`] holds it, and it ends in the
//! same [`Approved`].

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::device::DeviceLogins;
use crate::config::CliLoginConfig;
use crate::secret::Secret;
use crate::sessions::record::random_token;
use crate::sessions::{Clock, SessionIdentity};
use crate::store::{Store, StoreError, hashed_id, key};

/// Characters of an id or a secret as [`CliLogins::start`] makes them.
pub const NONCE_CHARS: usize = 43;

/// Why a command-line login step failed. Messages are shown to the
/// client: they never carry the id, the secret or an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliLoginError {
    /// No such login, or its time ran out (410, `expired_token`).
    #[error("this command-line login has expired; start it again")]
    Expired,
    /// The token was collected already (410, `expired_token`): each login
    /// works once.
    #[error("this command-line login was already used; start it again")]
    Used,
    /// The poll's secret is missing or is not this login's (401). Says
    /// nothing of the login's state.
    #[error("the poll must carry this login's secret as a bearer token")]
    WrongSecret,
    /// The person refused the login in the browser (403, `access_denied`).
    #[error("the command-line login was refused in the browser")]
    Denied,
    /// The login was already approved or refused (a second browser
    /// answer), 409.
    #[error("this command-line login was already answered")]
    Answered,
    /// The store cannot be reached (503).
    #[error("state store unavailable")]
    Unavailable(#[source] StoreError),
    /// No random bytes, or a record that cannot be encoded (500).
    #[error("{0}")]
    Internal(&'static str),
}

impl From<StoreError> for CliLoginError {
    fn from(e: StoreError) -> Self {
        CliLoginError::Unavailable(e)
    }
}

/// Where a login stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CliState {
    /// Waiting for the person.
    Pending,
    /// Approved by a logged-in person: who the token is for.
    Approved {
        /// The provider the session came from.
        provider: String,
        /// The session's identity.
        identity: SessionIdentity,
    },
    /// Refused by the person.
    Denied,
    /// The token was handed out.
    Delivered,
}

/// The stored record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CliRecord {
    /// [`hashed_id`] of the secret half.
    secret: String,
    /// When the login times out, seconds since the epoch.
    expires: u64,
    /// Where it stands.
    #[serde(flatten)]
    state: CliState,
}

/// A started login: the only time its id and secret are seen together.
#[derive(Debug)]
pub struct Started {
    /// The public half, for the login URL.
    pub id: String,
    /// The secret half, for the poll only.
    pub secret: Secret,
    /// A short code the command prints and the browser page shows, so
    /// the person can see that the page is about their own command.
    pub user_code: String,
    /// Seconds until the login times out.
    pub expires_in: u64,
}

/// An approved login, taken by the one poll that won it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    /// The provider the approving session came from.
    pub provider: String,
    /// Who approved.
    pub identity: SessionIdentity,
}

/// What a poll learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polled {
    /// Not answered yet.
    Pending,
    /// Approved: the caller makes the token now (this poll won the login).
    Approved(Approved),
}

/// The command-line logins: settings, store, clock.
pub struct CliLogins {
    config: CliLoginConfig,
    store: Arc<dyn Store>,
    clock: Clock,
    base_url: String,
    device: DeviceLogins,
}

impl CliLogins {
    /// The service on the wall clock. `base_url`: where browsers and the
    /// command reach gatehouse's `/auth/` endpoints through the proxy
    /// (scheme, host and port, no trailing slash).
    pub fn new(config: &CliLoginConfig, store: Arc<dyn Store>, base_url: String) -> CliLogins {
        Self::with_clock(config, store, base_url, Arc::new(crate::clock::now_secs))
    }

    /// The service on `clock` (tests).
    pub fn with_clock(
        config: &CliLoginConfig,
        store: Arc<dyn Store>,
        base_url: String,
        clock: Clock,
    ) -> CliLogins {
        CliLogins {
            config: config.clone(),
            device: DeviceLogins::new(store.clone(), clock.clone()),
            store,
            clock,
            base_url,
        }
    }

    /// The second way in: RFC 8628's device flow at providers that offer it.
    pub fn device(&self) -> &DeviceLogins {
        &self.device
    }

    /// Where clients reach gatehouse (`https://app.example.org`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The settings.
    pub fn config(&self) -> &CliLoginConfig {
        &self.config
    }

    /// Seconds since the epoch, on this service's clock.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// How long the store keeps an entry: twice the timeout, so that a
    /// late or second poll reads *expired* or *used*.
    fn keep(&self) -> Duration {
        self.config.login_timeout.saturating_mul(2)
    }

    /// Starts a login: a fresh id and secret, stored as pending.
    pub async fn start(&self) -> Result<Started, CliLoginError> {
        let random = || random_token().map_err(|_| CliLoginError::Internal("no random bytes"));
        let id = random()?;
        let secret = random()?;
        let timeout = self.config.login_timeout.as_secs().max(1);
        let record = CliRecord {
            secret: secret_hash(&secret),
            expires: self.now().saturating_add(timeout),
            state: CliState::Pending,
        };
        let stored = self
            .store
            .set_if_absent(&record_key(id.expose()), &encode(&record)?, self.keep())
            .await?;
        if !stored {
            // 256 random bits met an existing id: the random source is broken.
            return Err(CliLoginError::Internal("a fresh login id was taken"));
        }
        tracing::info!(login = %id.fingerprint(), "command-line login started");
        Ok(Started {
            user_code: user_code(id.expose()),
            id: id.expose().to_string(),
            secret,
            expires_in: timeout,
        })
    }

    /// Reads a login by its public id: its state, or an error when it is
    /// unknown or expired. For the browser's confirmation page.
    pub async fn state(&self, id: &str) -> Result<CliState, CliLoginError> {
        let (record, _) = self.read(id).await?;
        if self.now() >= record.expires {
            return Err(CliLoginError::Expired);
        }
        Ok(record.state)
    }

    /// The person's answer in the browser, for the session's `identity`
    /// (the caller has checked the session and its CSRF token): a pending
    /// login becomes approved or denied; any other state is refused.
    pub async fn answer(
        &self,
        id: &str,
        approve: Option<(String, SessionIdentity)>,
    ) -> Result<(), CliLoginError> {
        let (record, raw) = self.read(id).await?;
        let now = self.now();
        if now >= record.expires {
            return Err(CliLoginError::Expired);
        }
        if record.state != CliState::Pending {
            return Err(CliLoginError::Answered);
        }
        let approved = approve.is_some();
        let state = match approve {
            Some((provider, identity)) => CliState::Approved { provider, identity },
            None => CliState::Denied,
        };
        let next = CliRecord { state, ..record };
        if !self.replace(id, &raw, &next, now).await? {
            return Err(CliLoginError::Answered);
        }
        tracing::info!(
            login = %fingerprint(id),
            approved,
            "command-line login answered in the browser"
        );
        Ok(())
    }

    /// A poll by the command holding `secret`: pending, or the approved
    /// identity exactly once (the login becomes delivered).
    pub async fn poll(&self, id: &str, secret: Option<&Secret>) -> Result<Polled, CliLoginError> {
        let (record, raw) = self.read(id).await?;
        // The secret first: a wrong one learns nothing about the state.
        let right =
            secret.is_some_and(|s| Secret::new(secret_hash(s)).ct_eq(&Secret::new(&record.secret)));
        if !right {
            tracing::info!(login = %fingerprint(id), "command-line login poll with a wrong secret");
            return Err(CliLoginError::WrongSecret);
        }
        let now = self.now();
        match &record.state {
            CliState::Delivered => return Err(CliLoginError::Used),
            _ if now >= record.expires => return Err(CliLoginError::Expired),
            CliState::Pending => return Ok(Polled::Pending),
            CliState::Denied => return Err(CliLoginError::Denied),
            CliState::Approved { .. } => {}
        }
        let CliState::Approved { provider, identity } = record.state.clone() else {
            return Err(CliLoginError::Internal("unreachable login state"));
        };
        let next = CliRecord {
            state: CliState::Delivered,
            ..record
        };
        if !self.replace(id, &raw, &next, now).await? {
            // Another poll won it (or it changed in between): used.
            return Err(CliLoginError::Used);
        }
        tracing::info!(login = %fingerprint(id), "command-line login delivered");
        Ok(Polled::Approved(Approved { provider, identity }))
    }

    /// The record under `id` and its exact bytes; unknown is expired.
    async fn read(&self, id: &str) -> Result<(CliRecord, Vec<u8>), CliLoginError> {
        if !well_formed(id) {
            return Err(CliLoginError::Expired);
        }
        crate::store::get_json(self.store.as_ref(), &record_key(id))
            .await?
            .ok_or(CliLoginError::Expired)
    }

    /// Compare-and-set from `raw` to `next`, keeping the entry until the
    /// end of its original keep time.
    async fn replace(
        &self,
        id: &str,
        raw: &[u8],
        next: &CliRecord,
        now: u64,
    ) -> Result<bool, CliLoginError> {
        let timeout = self.config.login_timeout.as_secs().max(1);
        let until = next.expires.saturating_add(timeout);
        let ttl = Duration::from_secs(until.saturating_sub(now).max(1));
        Ok(self
            .store
            .compare_and_set(&record_key(id), raw, &encode(next)?, ttl)
            .await?)
    }
}

fn encode(record: &CliRecord) -> Result<Vec<u8>, CliLoginError> {
    serde_json::to_vec(record).map_err(|_| CliLoginError::Internal("a login could not be encoded"))
}

/// An id as [`CliLogins::start`] makes them: 43 base64url characters.
/// Anything else is never looked up.
pub fn well_formed(id: &str) -> bool {
    id.len() == NONCE_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The store key of a login (the id itself never is a key).
fn record_key(id: &str) -> String {
    key("cli-login", &hashed_id("cli-login", id.as_bytes()))
}

/// What the record keeps of the secret half.
fn secret_hash(secret: &Secret) -> String {
    hashed_id("cli-login-secret", secret.expose().as_bytes())
}

/// A short fingerprint of an id, for logs.
pub fn fingerprint(id: &str) -> String {
    crate::secret::fingerprint(id.as_bytes())
}

/// The code the command prints and the page shows: `XXXX-XXXX`, eight
/// characters of an unambiguous alphabet derived from the id. A check for
/// the person's eyes (this page is about my command), not a secret.
pub fn user_code(id: &str) -> String {
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ23456789";
    let digest = Sha256::digest([b"cli-user-code\0".as_slice(), id.as_bytes()].concat());
    let chars: Vec<char> = digest
        .iter()
        .take(8)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!(
        "{}-{}",
        chars[..4].iter().collect::<String>(),
        chars[4..].iter().collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::store::memory::MemoryStore;

    struct Fixture {
        logins: CliLogins,
        clock: Arc<AtomicU64>,
        store: Arc<MemoryStore>,
    }

    fn fixture() -> Fixture {
        let clock = Arc::new(AtomicU64::new(1_700_000_000));
        let store = Arc::new(MemoryStore::new(1000));
        let c = clock.clone();
        let logins = CliLogins::with_clock(
            &CliLoginConfig {
                login_timeout: Duration::from_secs(300),
                ..Default::default()
            },
            store.clone(),
            "https://app.example.org".into(),
            Arc::new(move || c.load(Ordering::Relaxed)),
        );
        Fixture {
            logins,
            clock,
            store,
        }
    }

    fn alice() -> (String, SessionIdentity) {
        (
            "op".into(),
            SessionIdentity {
                subject: "alice-sub".into(),
                username: Some("alice".into()),
                scopes: ["read".to_string()].into(),
                ..Default::default()
            },
        )
    }

    #[tokio::test]
    async fn pending_then_approved_then_delivered_once() {
        let f = fixture();
        let started = f.logins.start().await.expect("started");
        assert!(well_formed(&started.id));
        assert_eq!(started.secret.expose().len(), NONCE_CHARS);
        assert_ne!(started.id, started.secret.expose());
        assert_eq!(started.expires_in, 300);
        let secret = Some(&started.secret);
        assert_eq!(
            f.logins.poll(&started.id, secret).await,
            Ok(Polled::Pending)
        );
        assert_eq!(f.logins.state(&started.id).await, Ok(CliState::Pending));
        f.logins
            .answer(&started.id, Some(alice()))
            .await
            .expect("approved");
        let (provider, identity) = alice();
        assert_eq!(
            f.logins.poll(&started.id, secret).await,
            Ok(Polled::Approved(Approved { provider, identity }))
        );
        // Each nonce works once.
        assert_eq!(
            f.logins.poll(&started.id, secret).await,
            Err(CliLoginError::Used)
        );
        // A second approval of a used login is refused.
        assert_eq!(
            f.logins.answer(&started.id, Some(alice())).await,
            Err(CliLoginError::Answered)
        );
    }

    #[tokio::test]
    async fn a_wrong_or_missing_secret_learns_nothing() {
        let f = fixture();
        let started = f.logins.start().await.expect("started");
        let other = f.logins.start().await.expect("another");
        for state in ["pending", "approved"] {
            if state == "approved" {
                f.logins.answer(&started.id, Some(alice())).await.unwrap();
            }
            assert_eq!(
                f.logins.poll(&started.id, None).await,
                Err(CliLoginError::WrongSecret),
                "{state}"
            );
            // Another login's secret, or the id itself, is no secret here.
            for wrong in [&other.secret, &Secret::new(&started.id)] {
                assert_eq!(
                    f.logins.poll(&started.id, Some(wrong)).await,
                    Err(CliLoginError::WrongSecret),
                    "{state}"
                );
            }
        }
        // The wrong polls did not use the login up.
        assert!(matches!(
            f.logins.poll(&started.id, Some(&started.secret)).await,
            Ok(Polled::Approved(_))
        ));
    }

    #[tokio::test]
    async fn a_login_expires_after_the_timeout() {
        let f = fixture();
        let started = f.logins.start().await.expect("started");
        f.clock.fetch_add(299, Ordering::Relaxed);
        assert_eq!(
            f.logins.poll(&started.id, Some(&started.secret)).await,
            Ok(Polled::Pending)
        );
        f.clock.fetch_add(1, Ordering::Relaxed);
        assert_eq!(
            f.logins.poll(&started.id, Some(&started.secret)).await,
            Err(CliLoginError::Expired)
        );
        assert_eq!(
            f.logins.answer(&started.id, Some(alice())).await,
            Err(CliLoginError::Expired)
        );
        assert_eq!(
            f.logins.state(&started.id).await,
            Err(CliLoginError::Expired)
        );
    }

    #[tokio::test]
    async fn an_approved_login_not_collected_in_time_expires() {
        let f = fixture();
        let started = f.logins.start().await.expect("started");
        f.logins.answer(&started.id, Some(alice())).await.unwrap();
        f.clock.fetch_add(300, Ordering::Relaxed);
        assert_eq!(
            f.logins.poll(&started.id, Some(&started.secret)).await,
            Err(CliLoginError::Expired)
        );
    }

    #[tokio::test]
    async fn a_refused_login_is_denied_and_unknown_ids_are_expired() {
        let f = fixture();
        let started = f.logins.start().await.expect("started");
        f.logins.answer(&started.id, None).await.unwrap();
        assert_eq!(
            f.logins.poll(&started.id, Some(&started.secret)).await,
            Err(CliLoginError::Denied)
        );
        assert_eq!(
            f.logins.answer(&started.id, Some(alice())).await,
            Err(CliLoginError::Answered)
        );
        let unknown = "A".repeat(NONCE_CHARS);
        assert_eq!(
            f.logins.poll(&unknown, Some(&started.secret)).await,
            Err(CliLoginError::Expired)
        );
        assert_eq!(
            f.logins.poll("short", Some(&started.secret)).await,
            Err(CliLoginError::Expired)
        );
    }

    #[tokio::test]
    async fn concurrent_polls_deliver_once() {
        let f = fixture();
        let started = f.logins.start().await.expect("started");
        f.logins.answer(&started.id, Some(alice())).await.unwrap();
        let logins = Arc::new(f.logins);
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (logins, id, secret) = (logins.clone(), started.id.clone(), started.secret.clone());
            tasks.push(tokio::spawn(async move {
                logins.poll(&id, Some(&secret)).await
            }));
        }
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(Polled::Approved(_)) => won += 1,
                Err(CliLoginError::Used) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(won, 1);
    }

    #[tokio::test]
    async fn the_store_holds_neither_half() {
        let f = fixture();
        let started = f.logins.start().await.expect("started");
        let key = record_key(&started.id);
        assert!(!key.contains(&started.id));
        let raw = f.store.get(&key).await.unwrap().expect("stored");
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains(started.secret.expose()));
        assert!(!text.contains(&started.id));
    }

    #[test]
    fn user_codes_are_short_stable_and_differ() {
        let a = user_code(&"a".repeat(43));
        assert_eq!(a.len(), 9);
        assert_eq!(a, user_code(&"a".repeat(43)));
        assert_ne!(a, user_code(&"b".repeat(43)));
    }
}
