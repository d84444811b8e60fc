//! Configuration of what an allowed request carries upstream instead of
//! the caller's credential.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The placeholder for the token in `format`.
pub const TOKEN_PLACEHOLDER: &str = "{token}";

/// The credential a rule sends upstream in place of the caller's: one of
/// `bearer_file` or `backend`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamCredentialConfig {
    /// A file holding a bearer token (e.g. a projected Kubernetes
    /// service-account token), sent as `Authorization: Bearer …`. Re-read
    /// when the file changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_file: Option<PathBuf>,
    /// The caller's own token at this backend (`backends[].name`), looked
    /// up by the caller's subject and refreshed when it has expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The header that carries it. Default: `Authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The header's value, with `{token}` where the token goes. Default:
    /// `Bearer {token}` (JupyterHub wants `token {token}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

impl UpstreamCredentialConfig {
    /// The header name (lower-case) and the value format, validated;
    /// errors name `key`'s sub-keys.
    pub fn header_and_format(&self, key: &str) -> Result<(String, String), ConfigError> {
        if self.bearer_file.is_some() == self.backend.is_some() {
            return Err(ConfigError::invalid(
                key,
                "give exactly one of `bearer_file` or `backend`",
            ));
        }
        let header = match &self.header {
            Some(h) => http::HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| {
                    ConfigError::invalid(
                        format!("{key}.header"),
                        format!("{h:?} is not a header name"),
                    )
                })?
                .as_str()
                .to_string(),
            None => "authorization".to_string(),
        };
        let format = self
            .format
            .clone()
            .unwrap_or_else(|| format!("Bearer {TOKEN_PLACEHOLDER}"));
        let printable = format.bytes().all(|b| (b' '..=b'~').contains(&b));
        if format.matches(TOKEN_PLACEHOLDER).count() != 1 || !printable {
            return Err(ConfigError::invalid(
                format!("{key}.format"),
                "printable ASCII with `{token}` exactly once, like `Bearer {token}`",
            ));
        }
        Ok((header, format))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_format_are_checked() {
        let backend = |header: Option<&str>, format: Option<&str>| UpstreamCredentialConfig {
            backend: Some("hub".into()),
            header: header.map(Into::into),
            format: format.map(Into::into),
            ..Default::default()
        };
        let ok = |c: UpstreamCredentialConfig| c.header_and_format("k").expect("valid");
        assert_eq!(
            ok(backend(None, None)),
            ("authorization".into(), "Bearer {token}".into())
        );
        assert_eq!(
            ok(backend(Some("Authorization"), Some("token {token}"))),
            ("authorization".into(), "token {token}".into())
        );
        assert_eq!(
            ok(backend(Some("X-Gitlab-Token"), Some("{token}"))).0,
            "x-gitlab-token"
        );
        let err = |c: UpstreamCredentialConfig| {
            c.header_and_format("k").expect_err("refused").to_string()
        };
        assert!(err(backend(Some("bad header"), None)).contains("k.header"));
        for format in ["Bearer", "{token} {token}", "Bearer {token}\r\n"] {
            assert!(
                err(backend(None, Some(format))).contains("k.format"),
                "{format:?}"
            );
        }
        assert!(err(UpstreamCredentialConfig::default()).contains("exactly one"));
        let both = UpstreamCredentialConfig {
            bearer_file: Some("t".into()),
            ..backend(None, None)
        };
        assert!(err(both).contains("exactly one"));
    }
}
