//! Gatehouse as an issuer: its signing keys, the JWKS and discovery
//! document it publishes, the signed links it mints ([`link`]) and the
//! audience-restricted tokens it reissues for upstreams ([`reissue`]).
//!
//! Several keys may be configured at once: the **first** listed signs,
//! every listed key verifies. Rotation without downtime: put the new key
//! first and keep the old one listed until every token it signed has
//! expired (the longest link lifetime, `issuer.links.max_duration`), then
//! remove it. Key ids are RFC 7638 thumbprints, so they never collide and
//! need no bookkeeping.

pub mod duration;
pub mod jwk;
pub mod keys;
pub mod link;
pub mod reissue;

use std::collections::HashSet;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::config::{
    ClaimsConfig, ConfigError, ConfigSource, InternalIssuerConfig, SigningKeyConfig, resolve_path,
};
use crate::secret::Secret;
use keys::{KeyError, SigningAlgorithm, SigningKey};
use link::LinkPolicy;
use reissue::Reissuer;

/// Name of the internal issuer in logs and metrics.
pub const ISSUER_NAME: &str = "gatehouse";
/// Path of the JWKS on the side port.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Path of the discovery document on the side port.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// The claims of our tokens that carry identity fields.
pub fn claim_names() -> ClaimsConfig {
    ClaimsConfig {
        username: "preferred_username".into(),
        email: "email".into(),
        uid: "uidNumber".into(),
        groups: "groups".into(),
    }
}

/// The internal issuer, built once from configuration.
pub struct InternalIssuer {
    issuer: String,
    /// Non-empty; the first signs.
    keys: Vec<SigningKey>,
    jwks: Value,
    discovery: Value,
    links: LinkPolicy,
    reissuer: Reissuer,
}

impl std::fmt::Debug for InternalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalIssuer")
            .field("issuer", &self.issuer)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl InternalIssuer {
    /// Validates `issuer:` and loads its keys. `cookies` are the cookie
    /// names of `jwt.sources` (where a link may be stored).
    pub fn build(
        cfg: &InternalIssuerConfig,
        source: &ConfigSource,
        cookies: &[String],
    ) -> Result<InternalIssuer, ConfigError> {
        let parsed = reqwest::Url::parse(&cfg.issuer)
            .map_err(|e| ConfigError::invalid("issuer.issuer", format!("{:?}: {e}", cfg.issuer)))?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            return Err(ConfigError::invalid(
                "issuer.issuer",
                "must be an http(s) URL without query or fragment",
            ));
        }
        if cfg.signing_keys.is_empty() {
            return Err(ConfigError::invalid(
                "issuer.signing_keys",
                "list at least one key (create one with `gatehouse keys generate`)",
            ));
        }
        let mut keys: Vec<SigningKey> = Vec::with_capacity(cfg.signing_keys.len());
        for (i, key_cfg) in cfg.signing_keys.iter().enumerate() {
            let name = format!("issuer.signing_keys[{i}]");
            let key =
                load_key(key_cfg, source).map_err(|reason| ConfigError::invalid(&name, reason))?;
            if keys.iter().any(|k| k.kid() == key.kid()) {
                return Err(ConfigError::invalid(name, "the same key is listed twice"));
            }
            keys.push(key);
        }
        let links = LinkPolicy::build(&cfg.links, cookies)?;
        let reissuer = Reissuer::build(&cfg.reissue, &cfg.issuer)?;
        let base = cfg.issuer.trim_end_matches('/');
        let jwks = json!({"keys": keys.iter().map(SigningKey::public_jwk).collect::<Vec<_>>()});
        let mut algs: Vec<&str> = Vec::new();
        for key in &keys {
            if !algs.contains(&key.alg().as_str()) {
                algs.push(key.alg().as_str());
            }
        }
        let discovery = json!({
            "issuer": cfg.issuer,
            "jwks_uri": format!("{base}{JWKS_PATH}"),
            "id_token_signing_alg_values_supported": algs,
            "subject_types_supported": ["public"],
            "claims_supported": ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "scope",
                "preferred_username", "email", "uidNumber", "groups", "URLs", "verbs", "once"],
        });
        Ok(InternalIssuer {
            issuer: cfg.issuer.clone(),
            keys,
            jwks,
            discovery,
            links,
            reissuer,
        })
    }

    /// The `iss` of our tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key that signs (the first configured).
    pub fn signing_key(&self) -> &SigningKey {
        // `build` refuses an empty key list, and nothing removes keys.
        &self.keys[0]
    }

    /// The public keys as a JWKS document (every configured key).
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    /// The discovery document (`issuer`, `jwks_uri`, algorithms).
    pub fn openid_configuration(&self) -> &Value {
        &self.discovery
    }

    /// Link settings.
    pub fn links(&self) -> &LinkPolicy {
        &self.links
    }

    /// Reissue settings and cache.
    pub fn reissuer(&self) -> &Reissuer {
        &self.reissuer
    }

    /// Signs `claims` (a compact JWS with `alg`, `kid`, `typ: JWT`) with
    /// the signing key.
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<Secret, KeyError> {
        let key = self.signing_key();
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let header = json!({"alg": key.alg().as_str(), "kid": key.kid(), "typ": "JWT"});
        let header = serde_json::to_vec(&header).map_err(|_| KeyError::Crypto)?;
        let claims = serde_json::to_vec(claims).map_err(|_| KeyError::Crypto)?;
        let signing_input = format!("{}.{}", b64(&header), b64(&claims));
        let signature = key.sign(signing_input.as_bytes())?;
        Ok(Secret::new(format!("{signing_input}.{}", b64(&signature))))
    }

    /// The JWS algorithms of the listed keys, each once: what a verifier
    /// of our own tokens must accept (`authn::jwt::Issuer::internal`).
    pub fn algorithms(&self) -> Vec<jsonwebtoken::Algorithm> {
        let mut algorithms = Vec::new();
        for key in &self.keys {
            let alg = match key.alg() {
                SigningAlgorithm::RS256 => jsonwebtoken::Algorithm::RS256,
                SigningAlgorithm::ES256 => jsonwebtoken::Algorithm::ES256,
                SigningAlgorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            };
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        algorithms
    }
}

/// Reads and parses one configured key.
fn load_key(cfg: &SigningKeyConfig, source: &ConfigSource) -> Result<SigningKey, String> {
    match cfg {
        SigningKeyConfig::File(path) => {
            let path = resolve_path(source, path);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            SigningKey::from_pem(&text).map_err(|e| format!("{}: {e}", path.display()))
        }
        SigningKeyConfig::Pem(pem) => SigningKey::from_pem(&pem.0).map_err(|e| e.to_string()),
    }
}

/// A fresh random token id (128 bits, base64url).
pub fn new_jti() -> Result<String, KeyError> {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::Crypto)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Names used twice in a list, for validation messages.
pub(crate) fn first_duplicate<'a>(items: impl IntoIterator<Item = &'a String>) -> Option<&'a str> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .find(|i| !seen.insert(i.as_str()))
        .map(String::as_str)
}

#[cfg(test)]
mod tests;
