//! Checks on the typed configuration that need no engine: the log filter,
//! which would otherwise fail silently (a bad directive logs nothing), and
//! the warnings `check-config` prints for configurations that load but
//! cannot work as meant.

use tracing_subscriber::filter::{EnvFilter, LevelFilter};

use super::{Config, DefaultAction};

/// The level names a `log.level` directive accepts.
const LEVELS: &str = "trace, debug, info, warn, error, off";

/// Checks what serde cannot; the error is the key's dotted path and the
/// reason.
pub(super) fn check(config: &Config) -> Result<(), (String, String)> {
    log_level(&config.log.level).map_err(|reason| ("log.level".to_string(), reason))
}

/// Validates a `tracing` filter such as `info` or
/// `info,gatehouse::decision=debug`. Stricter than `EnvFilter`, which
/// takes a bare word (`warning`) as a target name and then logs nothing
/// else: a directive without `=` must be a level.
fn log_level(filter: &str) -> Result<(), String> {
    let expected = format!(
        "expected a level ({LEVELS}) or comma-separated directives like info,gatehouse=debug"
    );
    if filter.trim().is_empty() {
        return Err(format!("empty; {expected}"));
    }
    for directive in filter.split(',').map(str::trim) {
        if directive.is_empty() {
            return Err(format!("{filter:?} has an empty directive; {expected}"));
        }
        // `target[span{field=value}]=level`: the level follows the last
        // `=` outside brackets.
        let level = match directive.rsplit_once('=') {
            Some((_, level)) if !level.contains([']', '}']) => level,
            _ => directive,
        };
        if level.parse::<LevelFilter>().is_err() {
            return Err(if level == directive {
                format!("{level:?} is not a level; {expected}")
            } else {
                format!("{level:?} in {directive:?} is not a level; {expected}")
            });
        }
    }
    EnvFilter::builder()
        .parse(filter)
        .map(|_| ())
        .map_err(|e| format!("{filter:?} is not a valid filter ({e}); {expected}"))
}

/// A configuration that loads but probably does not do what was meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigWarning {
    /// No `jwt.issuers`, no `certificates` section and no internal
    /// `issuer`: no request can carry a credential gatehouse accepts.
    NoCredentials,
    /// No `policy.rules` and `policy.default: deny`: every request is
    /// refused.
    EverythingDenied,
}

impl ConfigWarning {
    /// The dotted path of the key the warning is about.
    pub fn key(self) -> &'static str {
        match self {
            ConfigWarning::NoCredentials => "jwt.issuers",
            ConfigWarning::EverythingDenied => "policy.rules",
        }
    }
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConfigWarning::NoCredentials => {
                "no way to authenticate: `jwt.issuers` is empty and there is no `certificates`, `issuer`, `api_tokens` or `login` section, so every request that needs a credential is refused"
            }
            ConfigWarning::EverythingDenied => {
                "every request is refused: `policy.rules` is empty and `policy.default` is `deny`"
            }
        })
    }
}

impl Config {
    /// What `check-config` warns about: settings that load but leave
    /// gatehouse refusing everything or everyone. Empty for a configuration
    /// that can allow something.
    pub fn warnings(&self) -> Vec<ConfigWarning> {
        let mut warnings = Vec::new();
        if self.jwt.issuers.is_empty()
            && self.certificates.is_none()
            && self.issuer.is_none()
            && self.api_tokens.is_none()
            && self.login.is_none()
        {
            warnings.push(ConfigWarning::NoCredentials);
        }
        if self.policy.rules.is_empty() && self.policy.default == DefaultAction::Deny {
            warnings.push(ConfigWarning::EverythingDenied);
        }
        warnings
    }
}
