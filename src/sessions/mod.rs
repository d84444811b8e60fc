//! Server-side browser sessions: the cookie holds a random id, the store
//! holds the rest ([`record`]).
//!
//! One [`Sessions`] per engine holds the settings (`login.session`), the
//! store and a small local cache. The login creates a session after it
//! validated an ID token ([`Sessions::create`]); the check's authenticator
//! (`check::authn::session`) looks the cookie up ([`Sessions::lookup`])
//! and refreshes the provider's access token when it is due
//! ([`Sessions::refresh_if_due`], through a [`Refresher`] the login
//! supplies); logout and back-channel logout end sessions
//! ([`Sessions::end`], [`Sessions::end_by_subject`],
//! [`Sessions::end_by_sid`]).
//!
//! **Lifetimes.** A session ends at `created + lifetime` whatever happens,
//! and at `last_seen + inactivity_timeout` when it is not used. Both are
//! enforced on every lookup (a cached record too) and by the store entry's
//! time to live, `min(created + lifetime, last_seen + inactivity) - now`.
//! `last_seen` is written at most every tenth of the inactivity timeout (at
//! least 1s) per session and replica, with a compare-and-set on the exact
//! bytes read, so that a touch never brings back a session that another
//! replica ended in between.
//!
//! **Logout across replicas.** As for API tokens: a lookup reads through
//! a bounded local cache whose entries live `cache_ttl` (at most 1s), so
//! a session ended on one replica is refused by every replica within
//! `cache_ttl`; the replica that ends it forgets it at once.

pub mod record;
mod refresh;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use quick_cache::sync::Cache;
use tokio::time::Instant;

use crate::config::{ConfigError, SessionConfig};
use crate::secret::Secret;
use crate::store::{Store, StoreError};
pub use record::{SessionIdentity, SessionRecord, SessionTokens};
use record::{handle_of, random_token, record_key, sid_index, subject_index};
pub use refresh::{
    REFRESH_LOCK_TTL, REFRESH_RETRY_AFTER, REFRESH_TIMEOUT, REFRESH_WAIT, RefreshError,
    RefreshedTokens, Refresher,
};

/// Why a session operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The store cannot be reached: nothing was decided (callers answer
    /// 503).
    #[error("state store unavailable")]
    Unavailable(#[source] StoreError),
    /// A new session lacks something it needs (a provider, a subject).
    #[error("{0}")]
    Invalid(&'static str),
    /// No random bytes, a record that cannot be encoded, or a refresh task
    /// that died (500).
    #[error("{0}")]
    Internal(&'static str),
}

impl From<StoreError> for SessionError {
    fn from(e: StoreError) -> Self {
        SessionError::Unavailable(e)
    }
}

/// Seconds since the epoch, as the sessions see them: the wall clock in
/// production, a clock tied to tokio's (pausable) time in tests.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A live session, as read from the store.
#[derive(Debug, Clone)]
pub struct Session {
    /// The SHA-256 of its id: names it in keys and logs, and cannot be
    /// turned back into the cookie.
    pub handle: String,
    /// What is stored.
    pub record: Arc<SessionRecord>,
    /// The exact bytes read, which a compare-and-set expects.
    raw: Arc<[u8]>,
}

/// A new session's details, from a validated login.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    /// The provider's name.
    pub provider: String,
    /// Who logged in.
    pub identity: SessionIdentity,
    /// The provider's session id (`sid` claim), if it sent one.
    pub sid: Option<String>,
    /// The tokens from the code exchange.
    pub tokens: SessionTokens,
    /// The cookie value the browser came with, if any: that session is
    /// ended, so a login always starts a fresh id (no fixation).
    pub replaces: Option<Secret>,
}

/// A created session: the only time its id is seen.
#[derive(Debug, Clone)]
pub struct Created {
    /// The cookie value (the session id).
    pub id: Secret,
    /// The session.
    pub session: Session,
}

/// What a replica last read about one session.
#[derive(Clone)]
struct Cached {
    at: Instant,
    /// `None`: no such session (ended, expired or never created).
    session: Option<Session>,
}

/// The session service: settings, store, local cache and the refresh locks.
pub struct Sessions {
    config: SessionConfig,
    store: Arc<dyn Store>,
    clock: Clock,
    /// Handle → what the store said, for `config.cache_ttl`.
    cache: Cache<String, Cached>,
    /// Handle → when this replica last wrote `last_seen`.
    touched: Cache<String, Instant>,
    /// Handle → the lock one replica's refreshes of a session queue on.
    refreshing: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Sessions {
    /// Validates `config` and builds the service on `store`, on the wall
    /// clock.
    pub fn new(config: &SessionConfig, store: Arc<dyn Store>) -> Result<Self, ConfigError> {
        Self::with_clock(config, store, Arc::new(crate::clock::now_secs))
    }

    /// [`Self::new`] on another clock (tests).
    pub fn with_clock(
        config: &SessionConfig,
        store: Arc<dyn Store>,
        clock: Clock,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Sessions {
            config: config.clone(),
            store,
            clock,
            cache: Cache::new(config.cache_size),
            touched: Cache::new(config.cache_size),
            refreshing: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The cookie's name.
    pub fn cookie_name(&self) -> &str {
        self.config.cookie_name()
    }

    /// Now, in seconds since the epoch.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// The `Set-Cookie` value that gives the browser session `id`:
    /// `Secure; HttpOnly; SameSite=Lax; Path=/`, `Max-Age` the lifetime,
    /// and `Domain` only when `cookie_domain` is set.
    pub fn set_cookie(&self, id: &Secret) -> String {
        self.cookie_with(id.expose(), self.config.lifetime.as_secs())
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn clear_cookie(&self) -> String {
        self.cookie_with("", 0)
    }

    /// The login-binding cookie's name.
    pub fn binding_cookie_name(&self) -> String {
        self.config.binding_cookie_name()
    }

    /// The `Set-Cookie` value that gives the browser login-binding
    /// `value` for [`crate::config::LOGIN_BINDING_TTL`].
    pub fn set_binding_cookie(&self, value: &Secret) -> String {
        format!(
            "{}={}{}",
            self.config.binding_cookie_name(),
            value.expose(),
            self.config
                .cookie_attributes(crate::config::LOGIN_BINDING_TTL.as_secs())
        )
    }

    fn cookie_with(&self, value: &str, max_age: u64) -> String {
        self.config.set_cookie_header(value, max_age)
    }

    /// When `session` ends at the latest (its absolute lifetime).
    pub fn expires_at(&self, session: &Session) -> u64 {
        self.absolute_end(&session.record)
    }

    fn absolute_end(&self, record: &SessionRecord) -> u64 {
        record
            .created
            .saturating_add(self.config.lifetime.as_secs())
    }

    /// When `record` ends: its absolute end, or earlier when idle.
    fn end_at(&self, record: &SessionRecord) -> u64 {
        let absolute = self.absolute_end(record);
        match self.config.inactivity_timeout.as_secs() {
            0 => absolute,
            idle => absolute.min(record.last_seen.saturating_add(idle)),
        }
    }

    /// The store time to live of `record` at `now`; `None`: it has ended.
    fn ttl(&self, record: &SessionRecord, now: u64) -> Option<Duration> {
        let end = self.end_at(record);
        (end > now).then(|| Duration::from_secs(end - now))
    }

    /// Creates a session for a login that has been validated, ending the
    /// one the browser came with (`new.replaces`). The returned id goes
    /// into the cookie ([`Self::set_cookie`]) and nowhere else.
    pub async fn create(&self, new: NewSession) -> Result<Created, SessionError> {
        if new.provider.is_empty() {
            return Err(SessionError::Invalid("a session needs a provider"));
        }
        if new.identity.subject.is_empty() {
            return Err(SessionError::Invalid("a session needs a subject"));
        }
        if let Some(old) = &new.replaces {
            self.end(old.expose()).await?;
        }
        let random = |_| SessionError::Internal("random bytes unavailable");
        let id = random_token().map_err(random)?;
        let handle = handle_of(id.expose())
            .ok_or(SessionError::Internal("a new session id is malformed"))?;
        let now = self.now();
        let record = SessionRecord {
            provider: new.provider,
            identity: new.identity,
            sid: new.sid,
            created: now,
            last_seen: now,
            tokens: new.tokens,
            csrf_token: random_token().map_err(random)?,
        };
        let raw = encode(&record)?;
        // The lifetime is at least 5 seconds (validated), so the session is
        // live now.
        let ttl = self.ttl(&record, now).unwrap_or(Duration::from_secs(1));
        if !self
            .store
            .set_if_absent(&record_key(&handle), &raw, ttl)
            .await?
        {
            // 256 random bits never collide; refuse rather than overwrite.
            return Err(SessionError::Internal("session id collision"));
        }
        // Indexes live as long as the session can (touches extend it up to
        // its absolute lifetime).
        let index_ttl = self.config.lifetime;
        let indexed = async {
            self.store
                .index_add(
                    &subject_index(&record.provider, &record.identity.subject),
                    &handle,
                    index_ttl,
                )
                .await?;
            if let Some(sid) = &record.sid {
                self.store
                    .index_add(&sid_index(&record.provider, sid), &handle, index_ttl)
                    .await?;
            }
            Ok::<(), StoreError>(())
        }
        .await;
        if let Err(e) = indexed {
            // A session that back-channel logout cannot find must not
            // exist (best effort: the store failed).
            let _ = self.store.delete(&record_key(&handle)).await;
            return Err(e.into());
        }
        tracing::info!(
            session = %short(&handle),
            provider = %record.provider,
            subject = %record.identity.subject,
            "session created"
        );
        let session = Session {
            handle,
            record: Arc::new(record),
            raw: raw.into(),
        };
        self.remember(&session.handle, Some(session.clone()));
        Ok(Created { id, session })
    }

    /// The live session a cookie value names, if any. Unknown, ended,
    /// expired (lifetime or inactivity) and malformed ids are all `None`;
    /// only a store outage is an error. Writes `last_seen` when due.
    pub async fn lookup(&self, cookie_value: &str) -> Result<Option<Session>, SessionError> {
        let Some(handle) = handle_of(cookie_value) else {
            return Ok(None);
        };
        let Some(session) = self.cached_or_read(&handle).await? else {
            return Ok(None);
        };
        let now = self.now();
        if self.ttl(&session.record, now).is_none() {
            return Ok(None);
        }
        Ok(self.touch(session, now).await)
    }

    /// The session under `handle`, from the cache while fresh.
    async fn cached_or_read(&self, handle: &str) -> Result<Option<Session>, SessionError> {
        if let Some(cached) = self.cache.get(handle)
            && cached.at.elapsed() < self.config.cache_ttl
        {
            return Ok(cached.session);
        }
        self.read(handle).await
    }

    /// The session under `handle`, from the store (then cached).
    async fn read(&self, handle: &str) -> Result<Option<Session>, SessionError> {
        let session = match self.store.get(&record_key(handle)).await? {
            None => None,
            Some(raw) => match serde_json::from_slice::<SessionRecord>(&raw) {
                Ok(record) => Some(Session {
                    handle: handle.to_string(),
                    record: Arc::new(record),
                    raw: raw.into(),
                }),
                Err(e) => {
                    // A record we cannot read grants nothing.
                    tracing::warn!(session = %short(handle), error = %e, "unreadable session record");
                    None
                }
            },
        };
        self.remember(handle, session.clone());
        Ok(session)
    }

    fn remember(&self, handle: &str, session: Option<Session>) {
        if !self.config.cache_ttl.is_zero() {
            self.cache.insert(
                handle.to_string(),
                Cached {
                    at: Instant::now(),
                    session,
                },
            );
        }
    }

    /// Forgets what this replica cached about `handle`.
    fn forget(&self, handle: &str) {
        self.cache.remove(handle);
        self.touched.remove(handle);
    }

    /// How often `last_seen` is written: a tenth of the inactivity
    /// timeout, at least 1s; `None` without an inactivity timeout.
    fn touch_every(&self) -> Option<u64> {
        match self.config.inactivity_timeout.as_secs() {
            0 => None,
            idle => Some((idle / 10).max(1)),
        }
    }

    /// Writes `last_seen = now` when due, with a compare-and-set on the
    /// bytes read. A failed write is logged and ignored (the session is
    /// valid; the next request tries again); a lost race re-reads, and
    /// `None` means the session was ended in between.
    async fn touch(&self, session: Session, now: u64) -> Option<Session> {
        let Some(every) = self.touch_every() else {
            return Some(session);
        };
        if now.saturating_sub(session.record.last_seen) < every {
            return Some(session);
        }
        let recently = self
            .touched
            .get(&session.handle)
            .is_some_and(|at| at.elapsed() < Duration::from_secs(every));
        if recently {
            return Some(session);
        }
        self.touched.insert(session.handle.clone(), Instant::now());
        let handle = session.handle.clone();
        match self
            .modify(session.clone(), |record| record.last_seen = now)
            .await
        {
            Ok(touched) => touched,
            Err(e) => {
                tracing::debug!(session = %short(&handle), error = %e, "last use of a session not recorded");
                Some(session)
            }
        }
    }

    /// Changes the stored record of `session` with `change`, by
    /// compare-and-set on the bytes last read; on a lost race, re-reads
    /// and tries again. `Ok(None)`: the session is gone (never brought
    /// back) or has ended.
    async fn modify(
        &self,
        mut session: Session,
        change: impl Fn(&mut SessionRecord),
    ) -> Result<Option<Session>, SessionError> {
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            let mut record = (*session.record).clone();
            change(&mut record);
            let Some(ttl) = self.ttl(&record, self.now()) else {
                return Ok(None);
            };
            let raw = encode(&record)?;
            if self
                .store
                .compare_and_set(&record_key(&session.handle), &session.raw, &raw, ttl)
                .await?
            {
                let changed = Session {
                    handle: session.handle,
                    record: Arc::new(record),
                    raw: raw.into(),
                };
                self.remember(&changed.handle, Some(changed.clone()));
                return Ok(Some(changed));
            }
            match self.read(&session.handle).await? {
                Some(current) => session = current,
                None => return Ok(None),
            }
        }
        Err(SessionError::Internal("the session kept changing"))
    }

    /// Replaces the provider's tokens of `session` (after a refresh the
    /// caller ran itself). `Ok(None)`: the session is gone.
    pub async fn update_tokens(
        &self,
        session: &Session,
        tokens: SessionTokens,
    ) -> Result<Option<Session>, SessionError> {
        self.modify(session.clone(), |record| record.tokens = tokens.clone())
            .await
    }

    /// Ends the session a cookie value names (logout); returns whether
    /// there was one.
    pub async fn end(&self, cookie_value: &str) -> Result<bool, SessionError> {
        let Some(handle) = handle_of(cookie_value) else {
            return Ok(false);
        };
        self.end_handle(&handle).await
    }

    /// Ends the session under `handle` and drops it from its indexes.
    async fn end_handle(&self, handle: &str) -> Result<bool, SessionError> {
        let record = self.read(handle).await?;
        let ended = self.store.delete(&record_key(handle)).await?;
        self.forget(handle);
        if let Some(session) = record {
            let record = &session.record;
            self.store
                .index_remove(
                    &subject_index(&record.provider, &record.identity.subject),
                    handle,
                )
                .await?;
            if let Some(sid) = &record.sid {
                self.store
                    .index_remove(&sid_index(&record.provider, sid), handle)
                    .await?;
            }
        }
        if ended {
            tracing::info!(session = %short(handle), "session ended");
        }
        Ok(ended)
    }

    /// Ends every session of `subject` at `provider` (back-channel logout
    /// with a `sub`); returns how many were live.
    pub async fn end_by_subject(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<usize, SessionError> {
        self.end_index(&subject_index(provider, subject)).await
    }

    /// Ends every session of the provider session `sid` (back-channel
    /// logout with a `sid`); returns how many were live.
    pub async fn end_by_sid(&self, provider: &str, sid: &str) -> Result<usize, SessionError> {
        self.end_index(&sid_index(provider, sid)).await
    }

    async fn end_index(&self, index: &str) -> Result<usize, SessionError> {
        let mut ended = 0;
        for handle in self.store.index_members(index).await? {
            if self.end_handle(&handle).await? {
                ended += 1;
            }
            // A member whose session had already gone is pruned too.
            self.store.index_remove(index, &handle).await?;
        }
        Ok(ended)
    }
}

/// A record as stored.
fn encode(record: &SessionRecord) -> Result<Vec<u8>, SessionError> {
    serde_json::to_vec(record).map_err(|_| SessionError::Internal("a session could not be encoded"))
}

/// The first 16 characters of a handle: enough to follow one session
/// through the logs.
fn short(handle: &str) -> &str {
    handle.get(..16).unwrap_or(handle)
}
