//! Creating, listing and revoking tokens for the REST API, with its
//! rules:
//! - a caller acts on its own tokens (`{user}` is its user name, or its
//!   subject when it has none) unless it holds `api_tokens.admin_scope`;
//! - a token's scopes are a subset of the caller's (an admin too: the
//!   admin scope lets it act for anyone, not hand out scopes it lacks);
//! - names are unique per user (reserved atomically in the store);
//! - a caller authenticated by an API token cannot create one, so a
//!   leaked token cannot be used to mint longer-lived ones; a signed link
//!   cannot manage tokens at all (a token would escape the link's paths
//!   and lifetime);
//! - a deploy token (`tool`) is created only by a caller that owns the
//!   tool: its own identity's tool is that tool (a tool's client
//!   certificate), or it is one of `tools.superusers`.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use super::record::{TokenRecord, name_key, record_key, used_key, user_index};
use super::{ApiTokens, TokenError, format};
use crate::model::identity::{CredentialKind, Identity};
use crate::secret::Secret;

/// Longest user name, token name, scope or tool name.
pub const MAX_NAME_BYTES: usize = 256;
/// Most scopes on one token.
pub const MAX_SCOPES: usize = 64;

/// Who asks, as the side port authenticated it.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// Its identity.
    pub identity: &'a Identity,
    /// Whether it is one of `tools.superusers` (decided by the tool
    /// policy, which sits above this module).
    pub superuser: bool,
}

impl Caller<'_> {
    /// The user the caller is: its user name, else its subject.
    pub fn user(&self) -> &str {
        self.identity
            .username
            .as_deref()
            .unwrap_or(&self.identity.subject)
    }
}

/// A creation request.
#[derive(Debug, Clone, Default)]
pub struct NewToken {
    /// Unique among the user's tokens.
    pub name: String,
    /// A subset of the caller's scopes.
    pub scopes: Vec<String>,
    /// Expiry, seconds since the epoch; default: now + `max_lifetime`.
    pub expires: Option<u64>,
    /// The tool of a deploy token.
    pub tool: Option<String>,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// Its public key.
    pub key: String,
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: BTreeSet<String>,
    /// Creation, seconds since the epoch.
    pub created: u64,
    /// Expiry, seconds since the epoch.
    pub expires: u64,
    /// Last use seen (to the minute), seconds since the epoch.
    pub last_used: Option<u64>,
    /// The tool of a deploy token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
}

impl TokenInfo {
    fn of(key: &str, record: &TokenRecord, last_used: Option<u64>) -> TokenInfo {
        TokenInfo {
            key: key.to_string(),
            name: record.name.clone(),
            scopes: record.scopes.clone(),
            created: record.created,
            expires: record.expires,
            last_used,
            tool: record.tool.clone(),
        }
    }
}

/// A created token: the only time its secret is seen.
#[derive(Debug)]
pub struct Created {
    /// `<prefix>-<key>.<secret>`.
    pub token: Secret,
    /// What was stored.
    pub info: TokenInfo,
}

/// A user, token or tool name: non-empty, bounded, no control characters.
fn check_name(what: &str, value: &str) -> Result<(), TokenError> {
    if value.trim().is_empty()
        || value.len() > MAX_NAME_BYTES
        || value.chars().any(char::is_control)
    {
        return Err(TokenError::Invalid(format!(
            "{what} must be 1 to {MAX_NAME_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

impl ApiTokens {
    /// Whether `caller` may manage the tokens of `user`.
    fn may_act_for(&self, caller: &Caller<'_>, user: &str) -> Result<(), TokenError> {
        if caller.identity.kind == CredentialKind::Link {
            // A link grants some paths for a while; a token would outlive
            // both.
            return Err(TokenError::Forbidden(
                "a signed link cannot manage API tokens".into(),
            ));
        }
        check_name("the user", user)?;
        if caller.user() == user || caller.identity.scopes.contains(&self.config.admin_scope) {
            return Ok(());
        }
        Err(TokenError::Forbidden(format!(
            "only the user or a holder of {} may manage these tokens",
            self.config.admin_scope
        )))
    }

    /// Creates a token for `user` at `now` (seconds since the epoch).
    pub async fn create(
        &self,
        caller: &Caller<'_>,
        user: &str,
        new: NewToken,
        now: u64,
    ) -> Result<Created, TokenError> {
        if caller.identity.kind == CredentialKind::ApiToken {
            return Err(TokenError::Forbidden(
                "an API token cannot create API tokens; authenticate with a JWT or a client certificate".into(),
            ));
        }
        self.may_act_for(caller, user)?;
        check_name("name", &new.name)?;
        if new.scopes.len() > MAX_SCOPES {
            return Err(TokenError::Invalid(format!("at most {MAX_SCOPES} scopes")));
        }
        let mut scopes = BTreeSet::new();
        for scope in new.scopes {
            if scope.is_empty()
                || scope.len() > MAX_NAME_BYTES
                || !scope.chars().all(|c| c.is_ascii_graphic())
            {
                return Err(TokenError::Invalid(format!(
                    "scope {scope:?}: scopes are 1 to {MAX_NAME_BYTES} visible ASCII characters"
                )));
            }
            scopes.insert(scope);
        }
        let extra: Vec<&str> = scopes
            .iter()
            .filter(|s| !caller.identity.scopes.contains(*s))
            .map(String::as_str)
            .collect();
        if !extra.is_empty() {
            return Err(TokenError::Forbidden(format!(
                "scopes the caller does not hold: {}",
                extra.join(" ")
            )));
        }
        if let Some(tool) = &new.tool {
            check_name("tool", tool)?;
            let owns = caller.identity.tool.as_deref() == Some(tool.as_str());
            if !(owns || caller.superuser) {
                return Err(TokenError::Forbidden(format!(
                    "a deploy token for tool {tool:?} is created only by the tool itself or a superuser"
                )));
            }
        }
        let latest = now.saturating_add(self.config.max_lifetime.as_secs());
        let expires = new.expires.unwrap_or(latest);
        if expires <= now {
            return Err(TokenError::Invalid("expires must be in the future".into()));
        }
        if expires > latest {
            return Err(TokenError::Invalid(format!(
                "expires is beyond the longest lifetime ({})",
                humantime::format_duration(self.config.max_lifetime)
            )));
        }
        let ttl = Duration::from_secs(expires - now);
        let live = self.live_keys(user, now).await?;
        if live.len() >= self.config.max_tokens_per_user {
            return Err(TokenError::Conflict(format!(
                "the user holds {} tokens, the most allowed; revoke one first",
                live.len()
            )));
        }

        let made = format::generate(&self.config.prefix)
            .map_err(|_| TokenError::Internal("random bytes unavailable"))?;
        self.reserve_name(user, &new.name, &made.key, ttl).await?;
        let record = TokenRecord {
            user: user.to_string(),
            name: new.name,
            scopes,
            created: now,
            expires,
            secret_sha256: made.secret_sha256,
            tool: new.tool,
            created_by: caller.user().to_string(),
            email: caller
                .identity
                .email
                .clone()
                .filter(|_| caller.user() == user),
            uid: caller
                .identity
                .uid
                .clone()
                .filter(|_| caller.user() == user),
        };
        let value = serde_json::to_vec(&record)
            .map_err(|_| TokenError::Internal("the token record could not be encoded"))?;
        let written = async {
            self.store.set(&record_key(&made.key), &value, ttl).await?;
            self.store
                .index_add(&user_index(user), &made.key, ttl)
                .await
        }
        .await;
        if let Err(e) = written {
            // Leave nothing half made behind (best effort: the store failed).
            let _ = self.store.delete(&record_key(&made.key)).await;
            let _ = self.store.delete(&name_key(user, &record.name)).await;
            return Err(e.into());
        }
        tracing::info!(
            user,
            token_key = %made.key,
            created_by = %record.created_by,
            tool = record.tool.as_deref().unwrap_or(""),
            expires,
            "API token created"
        );
        Ok(Created {
            token: made.token,
            info: TokenInfo::of(&made.key, &record, None),
        })
    }

    /// Takes `name` for `key` among the user's tokens; 409 if another
    /// live token has it. A name whose token is gone (dropped by the store
    /// without its name) is taken over atomically.
    async fn reserve_name(
        &self,
        user: &str,
        name: &str,
        key: &str,
        ttl: Duration,
    ) -> Result<(), TokenError> {
        let slot = name_key(user, name);
        if self.store.set_if_absent(&slot, key.as_bytes(), ttl).await? {
            return Ok(());
        }
        let taken = || TokenError::Conflict(format!("the user already has a token named {name:?}"));
        let Some(holder) = self.store.get(&slot).await? else {
            // Expired in between: try once more.
            return if self.store.set_if_absent(&slot, key.as_bytes(), ttl).await? {
                Ok(())
            } else {
                Err(taken())
            };
        };
        let holder_key = String::from_utf8_lossy(&holder);
        if self.store.get(&record_key(&holder_key)).await?.is_some() {
            return Err(taken());
        }
        if self
            .store
            .compare_and_set(&slot, &holder, key.as_bytes(), ttl)
            .await?
        {
            Ok(())
        } else {
            Err(taken())
        }
    }

    /// The keys of the user's live tokens, with their records; members of
    /// the index whose record is gone are pruned.
    async fn live_records(
        &self,
        user: &str,
        now: u64,
    ) -> Result<Vec<(String, TokenRecord)>, TokenError> {
        let index = user_index(user);
        let mut out = Vec::new();
        for key in self.store.index_members(&index).await? {
            let record = match self.store.get(&record_key(&key)).await? {
                Some(bytes) => serde_json::from_slice::<TokenRecord>(&bytes).ok(),
                None => None,
            };
            match record {
                Some(r) if r.user == user && r.expires > now => out.push((key, r)),
                Some(r) if r.user == user => {}
                _ => {
                    self.store.index_remove(&index, &key).await?;
                }
            }
        }
        Ok(out)
    }

    async fn live_keys(&self, user: &str, now: u64) -> Result<Vec<String>, TokenError> {
        Ok(self
            .live_records(user, now)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// The user's live tokens, oldest first, without secrets.
    pub async fn list(
        &self,
        caller: &Caller<'_>,
        user: &str,
        now: u64,
    ) -> Result<Vec<TokenInfo>, TokenError> {
        self.may_act_for(caller, user)?;
        let mut out = Vec::new();
        for (key, record) in self.live_records(user, now).await? {
            let last_used = self.last_used(&key).await?;
            out.push(TokenInfo::of(&key, &record, last_used));
        }
        out.sort_by(|a, b| (a.created, &a.key).cmp(&(b.created, &b.key)));
        Ok(out)
    }

    /// Revokes the user's token `key`: refused by every replica within
    /// `cache_ttl`, by this one at once.
    pub async fn revoke(
        &self,
        caller: &Caller<'_>,
        user: &str,
        key: &str,
    ) -> Result<(), TokenError> {
        self.may_act_for(caller, user)?;
        let not_found = || TokenError::NotFound(key.to_string());
        if !format::is_part(key) {
            return Err(not_found());
        }
        let record = match self.store.get(&record_key(key)).await? {
            Some(bytes) => serde_json::from_slice::<TokenRecord>(&bytes).ok(),
            None => None,
        };
        let Some(record) = record.filter(|r| r.user == user) else {
            return Err(not_found());
        };
        // The name first, while the record still exists: no creation can
        // take the name over in between (it needs the holder gone), so the
        // slot deleted is this token's.
        let slot = name_key(user, &record.name);
        if self.store.get(&slot).await?.as_deref() == Some(key.as_bytes()) {
            self.store.delete(&slot).await?;
        }
        self.store.delete(&record_key(key)).await?;
        self.forget(key);
        self.store.delete(&used_key(key)).await?;
        self.store.index_remove(&user_index(user), key).await?;
        tracing::info!(
            user,
            token_key = key,
            revoked_by = caller.user(),
            "API token revoked"
        );
        Ok(())
    }
}
