//! Signed links: tokens from gatehouse's own issuer that grant a list of
//! URLs and verbs for a time window (kube-gateway's time-limited links).
//!
//! A link is an ordinary JWT of the internal issuer (verified like any
//! other) whose claims carry the grant:
//!
//! | claim   | meaning                                                    |
//! |---------|------------------------------------------------------------|
//! | `URLs`  | paths: exact, or a prefix when the entry ends in `*`       |
//! | `verbs` | lower-case HTTP methods (`get` also allows `head`)         |
//! | `nbf`/`exp` | the window: `from` … `from + duration`                 |
//! | `once`  | `true`: one use only, recorded by `jti` in the store       |
//!
//! The grant rides in the [`Identity`](crate::model::identity::Identity); the
//! pure authz step checks it against the normalized path and method, and
//! the upstream step (`upstream::once`) records a one-time link's use.

use serde_json::{Map, Value};

use crate::model::path;

/// Most entries in `URLs` or `verbs`.
pub const MAX_ENTRIES: usize = 64;
/// Longest URL pattern.
pub const MAX_URL_LEN: usize = 2048;
/// Longest verb.
const MAX_VERB_LEN: usize = 32;
/// Longest `jti`.
const MAX_JTI_LEN: usize = 128;

/// One `URLs` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlPattern {
    /// The path must be exactly this.
    Exact(String),
    /// The path must start with this (the entry without its final `*`).
    Prefix(String),
}

impl UrlPattern {
    /// Parses an entry: an absolute path in gatehouse's normalized form
    /// (so that what is granted is what is matched), optionally ending in
    /// `*`; no query, fragment or other `*`.
    pub fn parse(entry: &str) -> Result<UrlPattern, String> {
        if entry.len() > MAX_URL_LEN {
            return Err(format!("longer than {MAX_URL_LEN} characters"));
        }
        let (base, prefix) = match entry.strip_suffix('*') {
            Some(base) => (base, true),
            None => (entry, false),
        };
        if !base.starts_with('/') {
            return Err("must be an absolute path starting with '/'".into());
        }
        if base.contains(['*', '?', '#']) {
            return Err("'*' is only allowed at the end; no query or fragment".into());
        }
        let normalized = path::normalize(base).map_err(|e| e.to_string())?;
        if normalized != base {
            return Err(format!("not in normalized form (use {normalized:?})"));
        }
        Ok(if prefix {
            UrlPattern::Prefix(base.to_string())
        } else {
            UrlPattern::Exact(base.to_string())
        })
    }

    /// Whether the normalized request path is granted.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            UrlPattern::Exact(p) => path == p,
            UrlPattern::Prefix(p) => path.starts_with(p.as_str()),
        }
    }

    /// The entry as written in the `URLs` claim.
    pub fn to_claim(&self) -> String {
        match self {
            UrlPattern::Exact(p) => p.clone(),
            UrlPattern::Prefix(p) => format!("{p}*"),
        }
    }

    /// The literal part (the path, or the prefix before `*`).
    pub fn base(&self) -> &str {
        match self {
            UrlPattern::Exact(p) | UrlPattern::Prefix(p) => p,
        }
    }
}

/// Parses one verb: an HTTP method name, returned in lower case.
pub fn parse_verb(verb: &str) -> Result<String, String> {
    if verb.is_empty()
        || verb.len() > MAX_VERB_LEN
        || !verb.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-')
    {
        return Err(format!("{verb:?} is not an HTTP method name"));
    }
    Ok(verb.to_ascii_lowercase())
}

/// What a link grants, from its verified claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkGrant {
    /// Granted paths.
    pub urls: Vec<UrlPattern>,
    /// Granted methods, lower case.
    pub verbs: Vec<String>,
    /// One use only.
    pub once: bool,
    /// The token id (required when `once`).
    pub jti: Option<String>,
    /// Start of the window (`nbf`), seconds since the epoch.
    pub not_before: Option<u64>,
    /// End of the window (`exp`), seconds since the epoch.
    pub expires_at: u64,
}

/// Why a link does not cover a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotGranted {
    /// The path matches none of `URLs`.
    #[error("the link does not grant this path")]
    Path,
    /// The method is not among `verbs`.
    #[error("the link does not grant this method")]
    Verb,
}

impl LinkGrant {
    /// The grant in verified claims: `Ok(None)` when there is no `URLs`
    /// claim; an error (the token is refused) when the claims are
    /// malformed.
    pub fn from_claims(claims: &Map<String, Value>) -> Result<Option<LinkGrant>, String> {
        let Some(urls) = claims.get("URLs") else {
            return Ok(None);
        };
        let urls = string_list(urls, "URLs")?
            .iter()
            .map(|u| UrlPattern::parse(u).map_err(|e| format!("URLs entry: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err("URLs is empty".into());
        }
        let verbs = match claims.get("verbs") {
            None => vec!["get".to_string()],
            Some(v) => string_list(v, "verbs")?
                .iter()
                .map(|v| parse_verb(v))
                .collect::<Result<Vec<_>, _>>()?,
        };
        if verbs.is_empty() {
            return Err("verbs is empty".into());
        }
        let once = match claims.get("once") {
            None | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) => true,
            Some(_) => return Err("once must be a boolean".into()),
        };
        let jti = match claims.get("jti") {
            None => None,
            Some(Value::String(j)) if !j.is_empty() && j.len() <= MAX_JTI_LEN => Some(j.clone()),
            Some(_) => return Err("jti must be a short non-empty string".into()),
        };
        if once && jti.is_none() {
            return Err("a one-time link needs a jti".into());
        }
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or("a link needs an integer exp")?;
        let not_before = claims.get("nbf").and_then(Value::as_u64);
        Ok(Some(LinkGrant {
            urls,
            verbs,
            once,
            jti,
            not_before,
            expires_at,
        }))
    }

    /// Whether the link covers `method` (upper or lower case) on the
    /// normalized `path`. `HEAD` is covered by `get`.
    pub fn check(&self, method: &str, path: &str) -> Result<(), NotGranted> {
        if !self.urls.iter().any(|u| u.matches(path)) {
            return Err(NotGranted::Path);
        }
        let granted = |verb: &str| self.verbs.iter().any(|v| v.eq_ignore_ascii_case(verb));
        if granted(method) || (method.eq_ignore_ascii_case("head") && granted("get")) {
            Ok(())
        } else {
            Err(NotGranted::Verb)
        }
    }

    /// The claims that carry this grant (`URLs`, `verbs`, and `once`
    /// when set), for re-signing it.
    pub fn to_claims(&self, claims: &mut Map<String, Value>) {
        claims.insert(
            "URLs".into(),
            self.urls.iter().map(UrlPattern::to_claim).collect(),
        );
        claims.insert("verbs".into(), self.verbs.clone().into());
        if self.once {
            claims.insert("once".into(), Value::Bool(true));
        }
    }
}

fn string_list(value: &Value, name: &str) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err(format!("{name} must be a list of strings"));
    };
    if items.len() > MAX_ENTRIES {
        return Err(format!("{name} has more than {MAX_ENTRIES} entries"));
    }
    items
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{name} must be a list of strings"))
        })
        .collect()
}

#[cfg(test)]
mod tests;
