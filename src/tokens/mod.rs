//! User-issued API tokens (Gafaelfawr's user tokens) and Toolforge deploy
//! tokens: `<prefix>-<key>.<secret>`, kept in the [`Store`] by key with
//! the SHA-256 of the secret.
//!
//! One [`ApiTokens`] per engine holds the settings, the store and a small
//! local cache; the check's authenticator
//! (`check::authn::api_token`) asks it to [`ApiTokens::verify`] a token,
//! the side port's REST API to create, list and revoke them
//! ([`service`]).
//!
//! **Revocation across replicas.** A check reads a token's record through
//! a bounded local cache whose entries (valid, unknown or revoked) live
//! `api_tokens.cache_ttl` (at most 1s, default 500ms). A revocation
//! deletes the record in the shared store, so every other replica sees it
//! once its cache entry is older than the TTL; the replica that revokes
//! drops its own entry at once. Redis pub/sub could push revocations
//! sooner, but it adds a connection per replica and a failure mode (a
//! missed message leaves a revoked token valid until restart), while the
//! TTL bound is simple, needs nothing from the backend and is measured by
//! a test.

pub mod format;
pub mod record;
pub mod service;
mod verify;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use quick_cache::sync::Cache;
use tokio::time::Instant;

use crate::config::{ApiTokensConfig, ConfigError};
use crate::store::{Store, StoreError};
pub use record::TokenRecord;
pub use service::{Caller, Created, NewToken, TokenInfo};
pub use verify::{LAST_USED_EVERY, Verified, VerifyError};

/// Why a REST request about tokens was refused; each kind has its status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// 400: a bad name, scope, tool or expiry.
    #[error("{0}")]
    Invalid(String),
    /// 403: the caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such token for this user.
    #[error("no API token {0} for this user")]
    NotFound(String),
    /// 409: the name is taken, or the user holds the most tokens allowed.
    #[error("{0}")]
    Conflict(String),
    /// 503: the store cannot be reached (nothing was decided).
    #[error("state store unavailable")]
    Unavailable(#[source] StoreError),
    /// 500: no random bytes, or a stored record that does not parse.
    #[error("{0}")]
    Internal(&'static str),
}

impl TokenError {
    /// HTTP status.
    pub fn http_status(&self) -> u16 {
        match self {
            TokenError::Invalid(_) => 400,
            TokenError::Forbidden(_) => 403,
            TokenError::NotFound(_) => 404,
            TokenError::Conflict(_) => 409,
            TokenError::Unavailable(_) => 503,
            TokenError::Internal(_) => 500,
        }
    }

    /// The `error` string of the JSON body.
    pub fn error_code(&self) -> &'static str {
        match self {
            TokenError::Invalid(_) => "invalid_request",
            TokenError::Forbidden(_) => "access_denied",
            TokenError::NotFound(_) => "not_found",
            TokenError::Conflict(_) => "conflict",
            TokenError::Unavailable(_) => "temporarily_unavailable",
            TokenError::Internal(_) => "server_error",
        }
    }
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        TokenError::Unavailable(e)
    }
}

/// What a replica last read about one token key.
#[derive(Clone)]
struct Cached {
    /// When it was read.
    at: Instant,
    /// The record, or `None`: no such token (unknown or revoked).
    record: Option<Arc<TokenRecord>>,
}

/// API tokens: settings, store and the local cache of records.
pub struct ApiTokens {
    config: ApiTokensConfig,
    store: Arc<dyn Store>,
    /// Token key → what the store said, for `config.cache_ttl`.
    cache: Cache<String, Cached>,
    /// Token key → when this replica last wrote its last use.
    last_used: Cache<String, Instant>,
}

impl ApiTokens {
    /// Validates `config` and builds the service on `store`.
    pub fn new(config: &ApiTokensConfig, store: Arc<dyn Store>) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(ApiTokens {
            config: config.clone(),
            store,
            cache: Cache::new(config.cache_size),
            last_used: Cache::new(config.cache_size),
        })
    }

    /// The settings.
    pub fn config(&self) -> &ApiTokensConfig {
        &self.config
    }

    /// Whether `token` starts with this deployment's `<prefix>-`: such a
    /// token is judged as an API token (and refused as malformed if it is
    /// not shaped like one), never handed to the JWT verifier.
    pub fn claims(&self, token: &str) -> bool {
        format::has_prefix(token, &self.config.prefix)
    }
}
