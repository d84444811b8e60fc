//! `backends`: downstream services (GitLab, JupyterHub…) whose own OAuth2
//! tokens gatehouse collects per user and sends upstream in place of the
//! caller's credential (Renku's gateway-auth).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// When a backend's token is collected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackendLogin {
    /// On first use: a route that needs the token sends a browser to
    /// `/auth/backends/<name>/login` (an API client gets a 401 naming the
    /// backend).
    #[default]
    Lazy,
    /// Right after the main login, which chains through every eager
    /// backend's authorization before returning to `rd`.
    Eager,
}

/// One backend: an OAuth2 (or OpenID Connect) client of a downstream
/// service. Give `issuer` (its discovery document names the endpoints) or
/// both `authorize_url` and `token_url`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Short name: in `/auth/backends/<name>/…`, in rules'
    /// `upstream_credential: {backend: <name>}`, in logs. Letters, digits,
    /// `-`, `_`.
    pub name: String,
    /// The service's issuer URL: its endpoints are read from
    /// `/.well-known/openid-configuration` (or
    /// `/.well-known/oauth-authorization-server`).
    #[serde(default)]
    pub issuer: Option<String>,
    /// The authorization endpoint (without `issuer`).
    #[serde(default)]
    pub authorize_url: Option<String>,
    /// The token endpoint (without `issuer`).
    #[serde(default)]
    pub token_url: Option<String>,
    /// The client id registered at the service.
    pub client_id: String,
    /// A file holding the client secret (trailing whitespace ignored).
    pub client_secret_file: String,
    /// Scopes asked for (space-joined in the authorization request).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `lazy` (collected on first use) or `eager` (during the main login).
    #[serde(default)]
    pub login: BackendLogin,
}

impl BackendConfig {
    /// The redirect URI registered at the service: `callback_base` (the
    /// scheme and authority of `login.callback_url`) with
    /// `/auth/backends/<name>/callback`.
    pub fn callback_path(&self) -> String {
        format!("/auth/backends/{}/callback", self.name)
    }
}

/// Checks the `backends` list; errors name the key.
pub fn validate_backends(backends: &[BackendConfig], login: bool) -> Result<(), ConfigError> {
    if !backends.is_empty() && !login {
        return Err(ConfigError::invalid(
            "backends",
            "backends need browser login: add a `login` section with providers",
        ));
    }
    for (i, b) in backends.iter().enumerate() {
        let key = format!("backends[{i}]");
        let name_ok = !b.name.is_empty()
            && b.name.len() <= 64
            && b.name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if !name_ok {
            return Err(ConfigError::invalid(
                format!("{key}.name"),
                "1 to 64 letters, digits, - or _",
            ));
        }
        if backends[..i].iter().any(|o| o.name == b.name) {
            return Err(ConfigError::invalid(
                format!("{key}.name"),
                format!("{:?} is used twice", b.name),
            ));
        }
        match (&b.issuer, &b.authorize_url, &b.token_url) {
            (Some(issuer), None, None) => check_url(&format!("{key}.issuer"), issuer)?,
            (None, Some(auth), Some(token)) => {
                check_url(&format!("{key}.authorize_url"), auth)?;
                check_url(&format!("{key}.token_url"), token)?;
            }
            _ => {
                return Err(ConfigError::invalid(
                    key,
                    "give either `issuer` or both `authorize_url` and `token_url`",
                ));
            }
        }
        if b.client_id.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.client_id"),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

/// An absolute `http(s)` URL (plain `http` is for tests and loopback
/// deployments; the login section already accepts it for providers).
fn check_url(key: &str, text: &str) -> Result<(), ConfigError> {
    match url::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => Ok(()),
        _ => Err(ConfigError::invalid(
            key,
            format!("{text:?} is not an absolute http(s) URL"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(json: serde_json::Value) -> BackendConfig {
        serde_json::from_value(json).expect("json")
    }

    #[test]
    fn backends_are_validated_with_their_keys() {
        let good = backend(serde_json::json!({
            "name": "gitlab", "authorize_url": "https://gl/oauth/authorize",
            "token_url": "https://gl/oauth/token", "client_id": "c", "client_secret_file": "s",
        }));
        assert_eq!(good.login, BackendLogin::Lazy);
        assert_eq!(good.callback_path(), "/auth/backends/gitlab/callback");
        assert!(validate_backends(std::slice::from_ref(&good), true).is_ok());
        let err = |list: &[BackendConfig], login: bool| {
            validate_backends(list, login)
                .expect_err("refused")
                .to_string()
        };
        assert!(err(std::slice::from_ref(&good), false).contains("backends"));
        assert!(err(&[good.clone(), good.clone()], true).contains("backends[1].name"));
        let mut bad = good.clone();
        bad.name = "a/b".into();
        assert!(err(&[bad], true).contains("backends[0].name"));
        let mut both = good.clone();
        both.issuer = Some("https://gl".into());
        assert!(err(&[both], true).contains("either `issuer`"));
        let mut relative = good.clone();
        relative.token_url = Some("/oauth/token".into());
        assert!(err(&[relative], true).contains("backends[0].token_url"));
        let issuer = backend(serde_json::json!({
            "name": "hub", "issuer": "https://hub", "client_id": "c",
            "client_secret_file": "s", "login": "eager",
        }));
        assert_eq!(issuer.login, BackendLogin::Eager);
        assert!(validate_backends(&[issuer], true).is_ok());
    }
}
