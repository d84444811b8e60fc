//! Refreshing a session's access token with its refresh token, once per
//! session however many requests race for it.
//!
//! A refresh is due when the session has a refresh token and its access
//! token expires within `refresh_before`. Of the requests that find it
//! due:
//! - on one replica, they queue on a per-session lock; each re-reads the
//!   record from the store once it holds the lock, so all but the first
//!   find the refresh done;
//! - across replicas, the first to take the store lock
//!   (`session-refresh:<hash>`, [`Store::set_if_absent`]) refreshes; the
//!   others use the current access token while it is still valid, or poll
//!   the record for up to [`REFRESH_WAIT`] when it has already expired.
//!
//! The refresh itself runs in a task of its own, so that a check
//! cancelled by Envoy's timeout does not abandon it half-way with the
//! lock held. A refresh the provider refuses ([`RefreshError::Rejected`]:
//! the grant was revoked, the user disabled) ends the session. A provider
//! that cannot be reached ([`RefreshError::Unavailable`], or no answer
//! within [`REFRESH_TIMEOUT`]) leaves the session as it is and is asked
//! again after [`REFRESH_RETRY_AFTER`]; meanwhile an expired access token
//! is not forwarded.
//!
//! [`Store::set_if_absent`]: crate::store::Store::set_if_absent

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::record::{SessionRecord, refresh_key};
use super::{Session, SessionError, Sessions, short};
use crate::secret::Secret;

/// Longest wait for the provider's answer to one refresh.
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the store lock of a refresh lives at most (a replica that
/// died mid-refresh holds it no longer).
pub const REFRESH_LOCK_TTL: Duration = Duration::from_secs(30);
/// After the provider could not be reached: how long before the next
/// attempt (one per session across replicas).
pub const REFRESH_RETRY_AFTER: Duration = Duration::from_secs(5);
/// How long a request whose access token has expired waits for another
/// replica's refresh before going on without the token.
pub const REFRESH_WAIT: Duration = Duration::from_secs(2);
/// How often such a request re-reads the record.
const REFRESH_POLL: Duration = Duration::from_millis(50);

/// The lock value while a refresh runs.
const RUNNING: &[u8] = b"running";
/// The lock value while backing off from an unreachable provider.
const BACKOFF: &[u8] = b"backoff";

/// The provider's answer to a refresh-token grant.
#[derive(Debug, Clone)]
pub struct RefreshedTokens {
    /// The new access token.
    pub access_token: Secret,
    /// Its expiry, seconds since the epoch (from `expires_in`).
    pub access_expires: Option<u64>,
    /// A new refresh token when the provider rotates them; `None` keeps
    /// the old one.
    pub refresh_token: Option<Secret>,
    /// A new ID token, if the provider sent one; `None` keeps the old one.
    pub id_token: Option<Secret>,
}

/// Why a refresh did not give new tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// The provider refused (`invalid_grant` and other 4xx answers): the
    /// session ends.
    #[error("refresh refused by the provider: {0}")]
    Rejected(String),
    /// The provider could not be reached or failed (5xx): the session is
    /// kept and the refresh tried again later.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
}

/// Performs the refresh-token grant at a provider. The login code supplies
/// the real one (its provider clients); tests supply fakes.
#[async_trait]
pub trait Refresher: Send + Sync {
    /// Exchanges `refresh_token` at the provider named `provider` for new
    /// tokens. Must never log the tokens.
    async fn refresh(
        &self,
        provider: &str,
        refresh_token: &Secret,
    ) -> Result<RefreshedTokens, RefreshError>;
}

/// One replica's lock on refreshing one session; the map entry goes with
/// its last holder.
struct LocalLock<'a> {
    sessions: &'a Sessions,
    handle: String,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for LocalLock<'_> {
    fn drop(&mut self) {
        let mut map = self
            .sessions
            .refreshing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Clones are only made under the map's lock: two references are
        // the map's and this one, so nobody else waits on it.
        if Arc::strong_count(&self.lock) <= 2 {
            map.remove(&self.handle);
        }
    }
}

impl Sessions {
    /// Whether `record` needs a refresh at `now`: its access token
    /// expires within `refresh_before`, or within half its life when that
    /// is shorter (a provider's 10-second tokens are refreshed after 5
    /// seconds, not on every request).
    pub fn refresh_due(&self, record: &SessionRecord, now: u64) -> bool {
        let tokens = &record.tokens;
        let Some(exp) = tokens.access_expires else {
            return false;
        };
        let mut margin = self.config.refresh_before.as_secs();
        if let Some(issued) = tokens.access_issued {
            margin = margin.min(exp.saturating_sub(issued) / 2);
        }
        tokens.refresh_token.is_some() && now.saturating_add(margin) >= exp
    }

    /// Refreshes the access token of `session` through `refresher` when it
    /// is due (see the module documentation for who runs it). Returns the
    /// session as it now is; `Ok(None)`: it has ended (the provider
    /// refused the refresh, or it was ended or expired meanwhile).
    pub async fn refresh_if_due(
        self: &Arc<Self>,
        session: Session,
        refresher: &Arc<dyn Refresher>,
    ) -> Result<Option<Session>, SessionError> {
        if !self.refresh_due(&session.record, self.now()) {
            return Ok(Some(session));
        }
        let local = self.local_lock(&session.handle);
        let _queued = local.lock.lock().await;
        self.refresh_locked(&session.handle, refresher).await
    }

    fn local_lock(&self, handle: &str) -> LocalLock<'_> {
        let mut map = self
            .refreshing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let lock = map.entry(handle.to_string()).or_default().clone();
        LocalLock {
            sessions: self,
            handle: handle.to_string(),
            lock,
        }
    }

    /// The refresh, holding this replica's lock for the session.
    async fn refresh_locked(
        self: &Arc<Self>,
        handle: &str,
        refresher: &Arc<dyn Refresher>,
    ) -> Result<Option<Session>, SessionError> {
        let lock_key = refresh_key(handle);
        let deadline = Instant::now() + REFRESH_WAIT;
        loop {
            let now = self.now();
            let Some(current) = self.live(handle, now).await? else {
                return Ok(None);
            };
            if !self.refresh_due(&current.record, now) {
                return Ok(Some(current));
            }
            if self
                .store
                .set_if_absent(&lock_key, RUNNING, REFRESH_LOCK_TTL)
                .await?
            {
                // A refresh may have finished between the read and the
                // lock: read again now that no other can start.
                let current = match self.live(handle, self.now()).await {
                    Ok(Some(c)) if self.refresh_due(&c.record, self.now()) => c,
                    other => {
                        let _ = self.store.delete(&lock_key).await;
                        return other;
                    }
                };
                let task = tokio::spawn(run(self.clone(), current, refresher.clone(), lock_key));
                return task
                    .await
                    .map_err(|_| SessionError::Internal("the session refresh task failed"))?;
            }
            let still_valid = current.record.tokens.access_token_at(now).is_some();
            let backing_off = self.store.get(&lock_key).await?.as_deref() == Some(BACKOFF);
            if still_valid || backing_off || Instant::now() >= deadline {
                return Ok(Some(current));
            }
            tokio::time::sleep(REFRESH_POLL).await;
        }
    }

    /// The session under `handle` from the store, if it is live at `now`.
    async fn live(&self, handle: &str, now: u64) -> Result<Option<Session>, SessionError> {
        Ok(self
            .read(handle)
            .await?
            .filter(|s| self.ttl(&s.record, now).is_some()))
    }
}

/// One refresh, holding the store lock `lock_key`; releases it (or turns
/// it into a back-off) when done.
async fn run(
    sessions: Arc<Sessions>,
    current: Session,
    refresher: Arc<dyn Refresher>,
    lock_key: String,
) -> Result<Option<Session>, SessionError> {
    let Some(refresh_token) = current.record.tokens.refresh_token.clone() else {
        let _ = sessions.store.delete(&lock_key).await;
        return Ok(Some(current));
    };
    let answer = tokio::time::timeout(
        REFRESH_TIMEOUT,
        refresher.refresh(&current.record.provider, &refresh_token),
    )
    .await
    .unwrap_or_else(|_| Err(RefreshError::Unavailable("no answer in time".into())));
    let handle = current.handle.clone();
    match answer {
        Ok(tokens) => {
            let now = sessions.now();
            let result = sessions
                .modify(current, |record| {
                    let kept = &mut record.tokens;
                    kept.access_token = Some(tokens.access_token.clone());
                    kept.access_expires = tokens.access_expires;
                    kept.access_issued = Some(now);
                    if let Some(rt) = &tokens.refresh_token {
                        kept.refresh_token = Some(rt.clone());
                    }
                    if let Some(id) = &tokens.id_token {
                        kept.id_token = Some(id.clone());
                    }
                })
                .await;
            let _ = sessions.store.delete(&lock_key).await;
            tracing::debug!(session = %short(&handle), "session tokens refreshed");
            result
        }
        Err(RefreshError::Rejected(reason)) => {
            tracing::info!(session = %short(&handle), %reason, "session ended: refresh refused");
            let ended = sessions.end_handle(&handle).await;
            let _ = sessions.store.delete(&lock_key).await;
            ended.map(|_| None)
        }
        Err(RefreshError::Unavailable(reason)) => {
            tracing::warn!(session = %short(&handle), %reason, "session not refreshed: provider unavailable");
            let _ = sessions
                .store
                .set(&lock_key, BACKOFF, REFRESH_RETRY_AFTER)
                .await;
            Ok(Some(current))
        }
    }
}
