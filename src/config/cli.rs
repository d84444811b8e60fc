//! Configuration of the command-line login (`cli`): `POST /auth/cli/login`
//! hands a command-line client a login URL for a browser and a poll URL;
//! once the person approves in the browser, the poll answers with a fresh
//! API token. Needs `login.providers` (the browser login) and
//! `api_tokens` (what the client receives).

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Shortest accepted `cli.login_timeout` (short values serve tests).
pub const MIN_CLI_LOGIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest accepted `cli.login_timeout`: a pending login is a live
/// credential waiting to be handed out.
pub const MAX_CLI_LOGIN_TIMEOUT: Duration = Duration::from_secs(3600);
/// Shortest accepted `cli.token_lifetime`.
pub const MIN_CLI_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// The command-line login (Renku's `renku login`), and RFC 8628's device
/// flow at login providers that offer it (`/auth/cli/device`). Absent:
/// off, and `/auth/cli/*` answers 404.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CliLoginConfig {
    /// How long a started command-line login waits for the person to
    /// approve it in a browser, and for the command to collect its token;
    /// after that the poll answers 410 `expired_token`. 1s to 1h. (A
    /// device-flow login lasts as long as the provider's `expires_in`.)
    #[serde(with = "humantime_serde")]
    #[schemars(with = "super::schema::DurationText")]
    pub login_timeout: Duration,
    /// Lifetime of the API token a command-line login (either flow) hands
    /// out. At least 1m, and at most `api_tokens.max_lifetime`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "super::schema::DurationText")]
    pub token_lifetime: Duration,
    /// When set, the token holds only those of the user's scopes that are
    /// listed here; absent: all of the user's scopes (as the browser
    /// session holds them).
    pub token_scopes: Option<Vec<String>>,
}

impl Default for CliLoginConfig {
    fn default() -> Self {
        CliLoginConfig {
            login_timeout: Duration::from_secs(300),
            token_lifetime: Duration::from_secs(30 * 24 * 3600),
            token_scopes: None,
        }
    }
}

impl CliLoginConfig {
    /// Checks what serde cannot; every error names its key.
    /// `api_token_max_lifetime`: `api_tokens.max_lifetime`, when API
    /// tokens are configured.
    pub fn validate(&self, api_token_max_lifetime: Option<Duration>) -> Result<(), ConfigError> {
        if self.login_timeout < MIN_CLI_LOGIN_TIMEOUT || self.login_timeout > MAX_CLI_LOGIN_TIMEOUT
        {
            return Err(ConfigError::invalid(
                "cli.login_timeout",
                "must be between 1s and 1h",
            ));
        }
        if self.token_lifetime < MIN_CLI_TOKEN_LIFETIME {
            return Err(ConfigError::invalid(
                "cli.token_lifetime",
                "must be at least 1m",
            ));
        }
        if let Some(max) = api_token_max_lifetime
            && self.token_lifetime > max
        {
            return Err(ConfigError::invalid(
                "cli.token_lifetime",
                format!(
                    "must not exceed api_tokens.max_lifetime ({})",
                    humantime::format_duration(max)
                ),
            ));
        }
        for (i, scope) in self.token_scopes.iter().flatten().enumerate() {
            if scope.is_empty() || !scope.chars().all(|c| c.is_ascii_graphic()) {
                return Err(ConfigError::invalid(
                    format!("cli.token_scopes[{i}]"),
                    "a scope is one or more visible ASCII characters",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        CliLoginConfig::default()
            .validate(Some(Duration::from_secs(31_557_600)))
            .expect("valid");
    }

    #[test]
    fn errors_name_the_key() {
        let short = CliLoginConfig {
            login_timeout: Duration::from_millis(500),
            ..Default::default()
        };
        let err = short.validate(None).unwrap_err().to_string();
        assert!(err.contains("cli.login_timeout"), "{err}");
        let long = CliLoginConfig {
            token_lifetime: Duration::from_secs(400 * 24 * 3600),
            ..Default::default()
        };
        let err = long
            .validate(Some(Duration::from_secs(31_557_600)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cli.token_lifetime"), "{err}");
        let bad = CliLoginConfig {
            token_scopes: Some(vec!["read".into(), "a b".into()]),
            ..Default::default()
        };
        let err = bad.validate(None).unwrap_err().to_string();
        assert!(err.contains("cli.token_scopes[1]"), "{err}");
    }
}
