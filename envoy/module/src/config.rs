//! The module's two configurations, both JSON in a
//! `google.protobuf.StringValue` (Envoy passes the string through):
//!
//! - the filter's, [`FilterSettings`]: where gatehouse's own configuration
//!   file is (the same file the gRPC service reads);
//! - a route's, [`RouteSettings`]: the route's `context_extensions`, as
//!   `ExtAuthzPerRoute.check_settings.context_extensions` gives them to
//!   the service.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The filter's configuration: gatehouse's configuration, from a file or
/// inline.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FilterSettings {
    /// Gatehouse's configuration file (YAML), as `gatehouse serve -c`
    /// takes it; watched for changes when its `reload.watch` says so.
    #[serde(default)]
    pub config_file: Option<PathBuf>,
    /// Gatehouse's configuration inline (YAML text), instead of a file.
    #[serde(default)]
    pub config_yaml: Option<String>,
    /// Whether `GATEHOUSE_*` variables in Envoy's environment override
    /// the configuration, as they do for the service (default: yes).
    #[serde(default = "yes")]
    pub env_overrides: bool,
    /// What becomes of a check that needs shared state this process does
    /// not have (no Redis store configured).
    #[serde(default)]
    pub needs_state: NeedsState,
    /// Route the request again after an allow set headers, so routes can
    /// match on the identity headers (`ext_authz`'s `clear_route_cache`:
    /// per-user apps). Default: no.
    #[serde(default)]
    pub clear_route_cache: bool,
}

/// What the module does with a check that needs shared state (an API
/// token, a session, a one-time link, a backend token) when gatehouse's
/// configuration names no shared (Redis) store.
#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NeedsState {
    /// Answer 503, as the service does when its store is down.
    #[default]
    Refuse,
    /// Hand the check on: set dynamic metadata `gatehouse.check:
    /// ext_authz` and let the request go to the next filter unchanged
    /// (client `X-Auth-Request-*` headers removed). Only with an
    /// `ext_authz` filter right after the module whose
    /// `filter_enabled_metadata` matches that value: without it the
    /// request would go on unchecked.
    ExtAuthz,
}

fn yes() -> bool {
    true
}

/// A route's configuration.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    /// Given to the check as the route's `context_extensions`.
    #[serde(default)]
    pub context_extensions: HashMap<String, String>,
}

/// Why a configuration string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    /// Not the JSON this module reads.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// Neither or both of `config_file` and `config_yaml`.
    #[error("name gatehouse's configuration: exactly one of config_file and config_yaml")]
    NoSource,
}

impl FilterSettings {
    /// Parses the filter's configuration string.
    pub fn parse(bytes: &[u8]) -> Result<FilterSettings, SettingsError> {
        let settings: FilterSettings =
            serde_json::from_slice(bytes).map_err(|e| SettingsError::Json(e.to_string()))?;
        if settings.config_file.is_some() == settings.config_yaml.is_some() {
            return Err(SettingsError::NoSource);
        }
        Ok(settings)
    }
}

impl RouteSettings {
    /// Parses a route's configuration string; empty means no settings.
    pub fn parse(bytes: &[u8]) -> Result<RouteSettings, SettingsError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(RouteSettings::default());
        }
        serde_json::from_slice(bytes).map_err(|e| SettingsError::Json(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_or_inline_yaml_exactly_one() {
        let s = FilterSettings::parse(br#"{"config_file": "/etc/g.yaml"}"#).unwrap();
        assert_eq!(s.config_file, Some(PathBuf::from("/etc/g.yaml")));
        assert!(s.env_overrides);
        assert_eq!(s.needs_state, NeedsState::Refuse);
        assert!(!s.clear_route_cache);
        let s = FilterSettings::parse(br#"{"config_yaml": "jwt: {}", "env_overrides": false}"#)
            .unwrap();
        assert_eq!(s.config_yaml.as_deref(), Some("jwt: {}"));
        assert!(!s.env_overrides);
        let s =
            FilterSettings::parse(br#"{"config_file": "a", "needs_state": "ext_authz"}"#).unwrap();
        assert_eq!(s.needs_state, NeedsState::ExtAuthz);
        assert!(FilterSettings::parse(br#"{"config_file": "a", "needs_state": "allow"}"#).is_err());
        assert_eq!(FilterSettings::parse(b"{}"), Err(SettingsError::NoSource));
        assert_eq!(
            FilterSettings::parse(br#"{"config_file": "a", "config_yaml": "b"}"#),
            Err(SettingsError::NoSource)
        );
        assert!(matches!(
            FilterSettings::parse(br#"{"config": "a"}"#),
            Err(SettingsError::Json(_))
        ));
        assert!(matches!(
            FilterSettings::parse(b"\xff"),
            Err(SettingsError::Json(_))
        ));
    }

    #[test]
    fn route_settings_carry_context_extensions() {
        let r = RouteSettings::parse(br#"{"context_extensions": {"auth_type": "basic"}}"#).unwrap();
        assert_eq!(r.context_extensions["auth_type"], "basic");
        assert_eq!(
            RouteSettings::parse(b"  ").unwrap(),
            RouteSettings::default()
        );
        assert!(RouteSettings::parse(br#"{"disabled": true}"#).is_err());
    }
}
