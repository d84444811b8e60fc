//! Configuration of user-issued API tokens (`<prefix>-<key>.<secret>`),
//! kept in the store and managed through the side port's
//! `/auth/api/v1/users/{user}/tokens`.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Longest accepted `api_tokens.cache_ttl`: revocation must reach every
/// replica within a second.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(1);

/// A year as humantime counts it (`1y`: 365.25 days).
pub const YEAR_SECS: u64 = 31_557_600;

/// Longest prefix (secret scanners match on a short fixed prefix).
pub const MAX_PREFIX_CHARS: usize = 16;

/// API tokens that users create for themselves (and Toolforge deploy
/// tokens bound to a tool). Absent: off, and nothing that looks like one
/// is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ApiTokensConfig {
    /// What every token starts with, before a `-`: 1 to 16 characters of
    /// `a-z`, `0-9` and `_`. A fixed prefix lets secret scanners (GitHub
    /// push protection) recognise a leaked token. Changing it makes every
    /// existing token unrecognisable.
    pub prefix: String,
    /// The scope that lets a caller create, list and revoke the tokens of
    /// any user, not only its own.
    pub admin_scope: String,
    /// Longest lifetime of a token, and the lifetime of one created
    /// without `expires`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "super::schema::DurationText")]
    pub max_lifetime: Duration,
    /// How long a replica trusts what it last read about a token (valid,
    /// revoked or unknown) before reading the store again: the longest
    /// delay before a revocation on another replica takes effect here. At
    /// most 1s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "super::schema::DurationText")]
    pub cache_ttl: Duration,
    /// Most tokens held in that cache.
    pub cache_size: usize,
    /// Most live tokens one user may hold (deploy tokens included).
    pub max_tokens_per_user: usize,
}

impl Default for ApiTokensConfig {
    fn default() -> Self {
        ApiTokensConfig {
            prefix: "gh".into(),
            admin_scope: "admin:token".into(),
            // One year as humantime reads and prints `1y` (365.25 days).
            max_lifetime: Duration::from_secs(YEAR_SECS),
            cache_ttl: Duration::from_millis(500),
            cache_size: 10_000,
            max_tokens_per_user: 100,
        }
    }
}

impl ApiTokensConfig {
    /// Checks what serde cannot; every error names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let prefix_ok = !self.prefix.is_empty()
            && self.prefix.len() <= MAX_PREFIX_CHARS
            && self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !prefix_ok {
            return Err(ConfigError::invalid(
                "api_tokens.prefix",
                format!("1 to {MAX_PREFIX_CHARS} characters of a-z, 0-9 and _"),
            ));
        }
        if self.admin_scope.is_empty() || self.admin_scope.contains(char::is_whitespace) {
            return Err(ConfigError::invalid(
                "api_tokens.admin_scope",
                "a non-empty scope without spaces",
            ));
        }
        if self.max_lifetime.as_secs() == 0 {
            return Err(ConfigError::invalid(
                "api_tokens.max_lifetime",
                "at least one second",
            ));
        }
        if self.cache_ttl > MAX_CACHE_TTL {
            return Err(ConfigError::invalid(
                "api_tokens.cache_ttl",
                "at most 1s (revocation must reach every replica within a second)",
            ));
        }
        if self.cache_size == 0 {
            return Err(ConfigError::invalid("api_tokens.cache_size", "at least 1"));
        }
        if self.max_tokens_per_user == 0 {
            return Err(ConfigError::invalid(
                "api_tokens.max_tokens_per_user",
                "at least 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(config: ApiTokensConfig, key: &str) {
        let err = config.validate().expect_err("refused");
        assert!(err.to_string().contains(key), "{err}");
    }

    #[test]
    fn defaults_are_valid() {
        assert!(ApiTokensConfig::default().validate().is_ok());
    }

    #[test]
    fn bad_values_name_their_key() {
        for prefix in ["", "GH", "g-h", "g.h", "abcdefghijklmnopq"] {
            refused(
                ApiTokensConfig {
                    prefix: prefix.into(),
                    ..Default::default()
                },
                "api_tokens.prefix",
            );
        }
        refused(
            ApiTokensConfig {
                cache_ttl: Duration::from_millis(1001),
                ..Default::default()
            },
            "api_tokens.cache_ttl",
        );
        refused(
            ApiTokensConfig {
                admin_scope: "a b".into(),
                ..Default::default()
            },
            "api_tokens.admin_scope",
        );
        refused(
            ApiTokensConfig {
                max_lifetime: Duration::from_millis(10),
                ..Default::default()
            },
            "api_tokens.max_lifetime",
        );
        refused(
            ApiTokensConfig {
                cache_size: 0,
                ..Default::default()
            },
            "api_tokens.cache_size",
        );
        refused(
            ApiTokensConfig {
                max_tokens_per_user: 0,
                ..Default::default()
            },
            "api_tokens.max_tokens_per_user",
        );
        assert!(
            ApiTokensConfig {
                prefix: "my_co9".into(),
                ..Default::default()
            }
            .validate()
            .is_ok()
        );
    }
}
