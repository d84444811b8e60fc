//! The filter's configuration (the `filter_config` string of Envoy's
//! `DynamicModuleFilter`, JSON) and the gatehouse verifier built from it.
//!
//! A spike: it takes the issuers the way gatehouse's `jwt.issuers` does
//! (issuer, audiences, algorithms, a key set inline or from a file) but not
//! gatehouse's whole config file; remote JWKS (discovery, refresh) would need
//! gatehouse's key-refresh task on a thread of our own.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use gatehouse::check::authn::jwt::jose::TypePolicy;
use gatehouse::check::authn::jwt::keys::{IssuerKeys, KeySet};
use gatehouse::check::authn::jwt::{Issuer, JwtVerifier};
use gatehouse::config::ClaimsConfig;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfigJson {
    pub issuers: Vec<IssuerJson>,
    /// Verified tokens kept (gatehouse's `jwt.cache_size`; 0: none).
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
    /// Clock skew allowed on `exp`/`nbf`/`iat`, seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// The realm of the `WWW-Authenticate` challenge.
    #[serde(default = "default_realm")]
    pub realm: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerJson {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<String>,
    /// A JWKS document, inline.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// A JWKS document, from a file read once at load.
    #[serde(default)]
    pub jwks_file: Option<String>,
}

fn default_cache_size() -> usize {
    100_000
}
fn default_leeway() -> u64 {
    30
}
fn default_realm() -> String {
    "gatehouse".into()
}

/// What one Envoy filter config holds, shared by all workers (the verifier
/// is `Sync`; its cache is gatehouse's concurrent one).
pub struct FilterConfig {
    pub verifier: JwtVerifier,
    /// `Bearer realm="..."`, precomputed.
    pub challenge: String,
}

impl FilterConfig {
    pub fn from_json(bytes: &[u8]) -> Result<FilterConfig, String> {
        let cfg: FilterConfigJson =
            serde_json::from_slice(bytes).map_err(|e| format!("filter_config: {e}"))?;
        if cfg.issuers.is_empty() {
            return Err("filter_config: list at least one issuer".into());
        }
        let issuers = cfg.issuers.iter().map(build_issuer).collect::<Result<Vec<_>, _>>()?;
        let verifier = JwtVerifier::new(issuers, cfg.leeway_secs, &BTreeMap::new())
            .with_cache(cfg.cache_size);
        let realm = cfg.realm.replace('\\', "\\\\").replace('"', "\\\"");
        Ok(FilterConfig { verifier, challenge: format!("Bearer realm=\"{realm}\"") })
    }
}

fn build_issuer(cfg: &IssuerJson) -> Result<Issuer, String> {
    let key = &cfg.issuer;
    if cfg.issuer.is_empty() || cfg.audiences.is_empty() || cfg.algorithms.is_empty() {
        return Err(format!("issuer {key:?}: issuer, audiences and algorithms are required"));
    }
    let algorithms = cfg
        .algorithms
        .iter()
        .map(|a| Algorithm::from_str(a).map_err(|e| format!("issuer {key:?}: algorithm {a}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let doc = match (&cfg.jwks, &cfg.jwks_file) {
        (Some(doc), None) => doc.clone(),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("jwks_file {path}: {e}"))?;
            serde_json::from_str(&text).map_err(|e| format!("jwks_file {path}: {e}"))?
        }
        _ => return Err(format!("issuer {key:?}: give exactly one of jwks, jwks_file")),
    };
    let set = KeySet::from_jwks(&doc).map_err(|e| format!("issuer {key:?}: {e}"))?;
    Ok(Issuer {
        name: cfg.issuer.clone(),
        issuer: cfg.issuer.clone(),
        audiences: cfg.audiences.clone(),
        algorithms,
        keys: Arc::new(IssuerKeys::fixed(cfg.issuer.clone(), set)),
        claims: ClaimsConfig::default(),
        types: TypePolicy::default(),
        max_lifetime: None,
    })
}
