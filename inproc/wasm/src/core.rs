//! The decision, free of proxy-wasm: configuration, RS256 (and the other
//! JWS algorithms jsonwebtoken's pure-Rust backend knows) verification
//! against an inline JWKS, and the per-worker cache of verified tokens.
//! Host calls (headers, clock, local replies) stay in `lib.rs`, so this part
//! is tested natively with `cargo test`.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::rsa_verify::RsaKey;

/// The plugin configuration (JSON, `configuration` of the wasm filter).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub issuer: String,
    pub audiences: Vec<String>,
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// The issuer's keys, inline. (Fetching them with `dispatch_http_call`
    /// is left for later; see NOTES.md.)
    pub jwks: JwkSet,
    /// Verified tokens remembered per worker; 0 turns the cache off, so
    /// every request verifies the signature.
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Benchmarks only: the filter lets every request through untouched,
    /// to measure what the V8 runtime costs per request by itself.
    #[serde(default)]
    pub noop: bool,
}

fn default_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::RS256]
}
fn default_cache_size() -> usize {
    10_000
}
fn default_leeway() -> u64 {
    30
}
fn default_realm() -> String {
    "gatehouse".into()
}

/// Who a verified token says the caller is, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub email: Option<String>,
    /// Comma-joined, as gatehouse's `x-auth-request-groups`.
    pub groups: Option<String>,
    pub exp: u64,
}

/// Why a request is refused (the 401 rows of gatehouse's deny table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deny {
    NoCredential,
    InvalidToken(&'static str),
}

impl Deny {
    /// `(www-authenticate, JSON body)`, as gatehouse words them.
    pub fn challenge(&self, realm: &str) -> (String, String) {
        match self {
            Deny::NoCredential => (
                format!("Bearer realm=\"{realm}\""),
                r#"{"error":"unauthorized","error_description":"authentication required"}"#.into(),
            ),
            Deny::InvalidToken(why) => (
                format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{why}\""
                ),
                format!(r#"{{"error":"invalid_token","error_description":"{why}"}}"#),
            ),
        }
    }
}

/// One verification key.
struct Key {
    key: DecodingKey,
    alg: Algorithm,
    /// RS256 keys verify with [`RsaKey`] (fast in wasm); the others with
    /// jsonwebtoken's pure-Rust backend.
    rs256: Option<RsaKey>,
}

/// The parsed keys and the validation rules, built once per worker.
pub struct Verifier {
    by_kid: HashMap<String, Key>,
    /// Keys without a kid, tried for tokens without one.
    anonymous: Vec<Key>,
    issuer: String,
    audiences: Vec<String>,
    leeway: u64,
}

impl Verifier {
    pub fn new(cfg: &Config) -> Result<Self, String> {
        if cfg.algorithms.is_empty() || cfg.audiences.is_empty() {
            return Err("algorithms and audiences must not be empty".into());
        }
        let mut by_kid = HashMap::new();
        let mut anonymous = Vec::new();
        for jwk in &cfg.jwks.keys {
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("jwks: {e}"))?;
            // A key names its algorithm, or takes the first configured one
            // of its family.
            let alg = match jwk.common.key_algorithm {
                Some(a) => a
                    .to_string()
                    .parse::<Algorithm>()
                    .map_err(|e| format!("jwks: {e}"))?,
                None => cfg.algorithms[0],
            };
            if !cfg.algorithms.contains(&alg) {
                continue;
            }
            let rs256 = match (alg, key.kind()) {
                (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { n, e }) => {
                    Some(RsaKey::new(n, e).ok_or("jwks: unusable RSA key (under 2048 bits?)")?)
                }
                _ => None,
            };
            let key = Key { key, alg, rs256 };
            match &jwk.common.key_id {
                Some(kid) => {
                    by_kid.insert(kid.clone(), key);
                }
                None => anonymous.push(key),
            }
        }
        if by_kid.is_empty() && anonymous.is_empty() {
            return Err("jwks: no key for the configured algorithms".into());
        }
        Ok(Self {
            by_kid,
            anonymous,
            issuer: cfg.issuer.clone(),
            audiences: cfg.audiences.clone(),
            leeway: cfg.leeway_secs,
        })
    }

    /// Verifies `token` at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Identity, Deny> {
        const MALFORMED: Deny = Deny::InvalidToken("malformed token");
        let (message, signature) = token.rsplit_once('.').ok_or(MALFORMED)?;
        let (_, payload) = message.split_once('.').ok_or(MALFORMED)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| MALFORMED)?;
        let candidates: Vec<&Key> = match &header.kid {
            Some(kid) => self.by_kid.get(kid).into_iter().collect(),
            None => self.anonymous.iter().collect(),
        };
        // An unknown kid is where a refresh of the key set would start.
        let mut verified = Err(Deny::InvalidToken("unknown signing key"));
        for key in candidates {
            if key.alg != header.alg {
                verified = Err(Deny::InvalidToken("unexpected algorithm"));
                continue;
            }
            let ok = match &key.rs256 {
                Some(rsa) => {
                    let sig = URL_SAFE_NO_PAD.decode(signature).map_err(|_| MALFORMED)?;
                    rsa.verify_rs256(message.as_bytes(), &sig)
                }
                None => {
                    jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.key, key.alg)
                        .map_err(|_| MALFORMED)?
                }
            };
            if ok {
                verified = Ok(());
                break;
            }
            verified = Err(Deny::InvalidToken("bad signature"));
        }
        verified?;
        let claims: serde_json::Map<String, Value> = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(MALFORMED)?;
        self.identity(&claims, now)
    }

    fn identity(
        &self,
        claims: &serde_json::Map<String, Value>,
        now: u64,
    ) -> Result<Identity, Deny> {
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(Deny::InvalidToken("wrong issuer"));
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(a)) => self.audiences.contains(a),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .any(|a| self.audiences.iter().any(|want| want == a)),
            _ => false,
        };
        if !audience_ok {
            return Err(Deny::InvalidToken("wrong audience"));
        }
        let exp = match claims.get("exp") {
            None => return Err(Deny::InvalidToken("missing claim")),
            Some(v) => v.as_u64().ok_or(Deny::InvalidToken("bad exp"))?,
        };
        if exp + self.leeway <= now {
            return Err(Deny::InvalidToken("token expired"));
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf.as_u64().ok_or(Deny::InvalidToken("bad nbf"))?;
            if nbf > now + self.leeway {
                return Err(Deny::InvalidToken("token not yet valid"));
            }
        }
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let user = text("sub").ok_or(Deny::InvalidToken("no subject"))?;
        let groups = match claims.get("groups") {
            Some(Value::Array(items)) => {
                let names: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                Some(names.join(","))
            }
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let id = Identity {
            user,
            email: text("email"),
            groups,
            exp,
        };
        // A value a client could use to split headers is refused.
        let safe = |v: &str| !v.is_empty() && v.bytes().all(|b| b >= 0x20 && b != 0x7f);
        if !safe(&id.user)
            || !id.email.as_deref().is_none_or(safe)
            || !id.groups.as_deref().is_none_or(|g| g.is_empty() || safe(g))
        {
            return Err(Deny::InvalidToken("unusable identity claims"));
        }
        Ok(id)
    }

    pub fn leeway(&self) -> u64 {
        self.leeway
    }
}

/// A bounded map of verified tokens, keyed by SHA-256 of the token, oldest
/// out first. Per worker (one VM per worker thread), so no locking.
pub struct Cache {
    map: HashMap<[u8; 32], Rc<Identity>>,
    order: VecDeque<[u8; 32]>,
    cap: usize,
}

impl Cache {
    pub fn new(cap: usize) -> Self {
        Self {
            map: HashMap::with_capacity(cap.min(1 << 16)),
            order: VecDeque::with_capacity(cap.min(1 << 16)),
            cap,
        }
    }

    pub fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    pub fn get(&mut self, key: &[u8; 32], now: u64, leeway: u64) -> Option<Rc<Identity>> {
        let id = self.map.get(key)?;
        if id.exp + leeway > now {
            return Some(id.clone());
        }
        // Expired: forget it (its slot in `order` goes when it comes up).
        self.map.remove(key);
        None
    }

    pub fn insert(&mut self, key: [u8; 32], id: Rc<Identity>) {
        if self.cap == 0 {
            return;
        }
        while self.map.len() >= self.cap || self.order.len() >= 2 * self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        if self.map.insert(key, id).is_none() {
            self.order.push_back(key);
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The bearer token of an `Authorization` value (scheme case-insensitive).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests;
