//! Minting signed links: the request (`{"URLs", "verbs", "duration",
//! "from", "once"}`, with kube-gateway's defaults), who may ask for which
//! paths, and the claims of the resulting token.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::duration::{parse_duration, parse_rfc3339};
use super::{InternalIssuer, first_duplicate, new_jti};
use crate::config::{ConfigError, LinksConfig};
use crate::model::grant::{LinkGrant, MAX_ENTRIES, UrlPattern, parse_verb};
use crate::model::identity::Identity;
use crate::model::path;
use crate::secret::Secret;

/// Default lifetime of a link (kube-gateway's `1h`).
pub const DEFAULT_DURATION_SECS: u64 = 3600;

/// The body of `POST /auth/jwt/request` (and the `token issue` flags).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// Granted paths; a final `*` makes an entry a prefix.
    #[serde(rename = "URLs")]
    pub urls: Vec<String>,
    /// Granted methods (default `["get"]`).
    #[serde(default)]
    pub verbs: Option<Vec<String>>,
    /// Lifetime, Go-style (`30m`; default `1h`).
    #[serde(default)]
    pub duration: Option<String>,
    /// Start of validity, RFC 3339 (default: now).
    #[serde(default)]
    pub from: Option<String>,
    /// One use only.
    #[serde(default)]
    pub once: bool,
}

/// Why a link was not minted. The status is declared beside each reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// 400: the request is malformed (bad URL, verb, duration, time).
    #[error("{0}")]
    Invalid(String),
    /// 400: `duration` beyond `issuer.links.max_duration`.
    #[error("duration exceeds the maximum of {max}")]
    TooLong {
        /// The configured maximum, human-readable.
        max: String,
    },
    /// 403: the caller holds none of the mint scopes.
    #[error("minting links requires one of the scopes: {0}")]
    NoMintScope(String),
    /// 403: a URL lies outside the caller's allowed prefixes.
    #[error("URL {0:?} is outside the paths you may grant")]
    OutsidePrefixes(String),
    /// 403: a link cannot be used to mint links.
    #[error("a signed link cannot mint links")]
    LinkCannotMint,
    /// 500: signing failed.
    #[error("the link could not be signed")]
    Signing,
}

impl MintError {
    /// HTTP status of the refusal.
    pub fn http_status(&self) -> u16 {
        match self {
            MintError::Invalid(_) | MintError::TooLong { .. } => 400,
            MintError::NoMintScope(_)
            | MintError::OutsidePrefixes(_)
            | MintError::LinkCannotMint => 403,
            MintError::Signing => 500,
        }
    }

    /// OAuth-style error string for the JSON body.
    pub fn error_code(&self) -> &'static str {
        match self {
            MintError::Invalid(_) | MintError::TooLong { .. } => "invalid_request",
            MintError::NoMintScope(_) => "insufficient_scope",
            MintError::OutsidePrefixes(_) | MintError::LinkCannotMint => "access_denied",
            MintError::Signing => "server_error",
        }
    }
}

/// Compiled `issuer.links`.
#[derive(Debug, Clone)]
pub struct LinkPolicy {
    max_duration: u64,
    max_start_delay: u64,
    cookie: Option<String>,
    /// (scope, prefixes ending in `/`).
    grants: Vec<(String, Vec<String>)>,
    mint_scopes: BTreeSet<String>,
}

impl LinkPolicy {
    /// Validates `issuer.links`; `cookies` are the cookie token sources.
    pub fn build(cfg: &LinksConfig, cookies: &[String]) -> Result<LinkPolicy, ConfigError> {
        if cfg.max_duration.as_secs() == 0 {
            return Err(ConfigError::invalid(
                "issuer.links.max_duration",
                "must be at least 1s",
            ));
        }
        let cookie = match &cfg.cookie {
            Some(name) if cookies.contains(name) => Some(name.clone()),
            Some(name) => {
                return Err(ConfigError::invalid(
                    "issuer.links.cookie",
                    format!(
                        "{name:?} is not a `cookie` entry of jwt.sources, so gatehouse would never read it"
                    ),
                ));
            }
            None => cookies.first().cloned(),
        };
        let mut grants = Vec::with_capacity(cfg.mint.len());
        for (i, grant) in cfg.mint.iter().enumerate() {
            let key = format!("issuer.links.mint[{i}]");
            if grant.scope.is_empty() || grant.scope.contains(char::is_whitespace) {
                return Err(ConfigError::invalid(
                    format!("{key}.scope"),
                    "a non-empty scope without spaces",
                ));
            }
            if grant.prefixes.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.prefixes"),
                    "list at least one path prefix",
                ));
            }
            let mut prefixes = Vec::with_capacity(grant.prefixes.len());
            for (j, prefix) in grant.prefixes.iter().enumerate() {
                let ok = prefix.starts_with('/')
                    && !prefix.contains(['*', '?', '#'])
                    && path::normalize(prefix).is_ok_and(|n| n == *prefix);
                if !ok {
                    return Err(ConfigError::invalid(
                        format!("{key}.prefixes[{j}]"),
                        format!("{prefix:?} must be a normalized absolute path without '*'"),
                    ));
                }
                let mut with_slash = prefix.clone();
                if !with_slash.ends_with('/') {
                    with_slash.push('/');
                }
                prefixes.push(with_slash);
            }
            grants.push((grant.scope.clone(), prefixes));
        }
        if let Some(dup) = first_duplicate(cfg.mint.iter().map(|g| &g.scope)) {
            return Err(ConfigError::invalid(
                "issuer.links.mint",
                format!("scope {dup:?} is listed twice; merge its prefixes"),
            ));
        }
        Ok(LinkPolicy {
            max_duration: cfg.max_duration.as_secs(),
            max_start_delay: cfg.max_start_delay.as_secs(),
            cookie,
            mint_scopes: grants.iter().map(|(s, _)| s.clone()).collect(),
            grants,
        })
    }

    /// The cookie `/auth/jwt/set` stores links in, if any cookie source
    /// is configured.
    pub fn cookie(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    /// The prefixes `caller` may grant, or why it may not mint at all.
    pub fn allowed_prefixes(&self, caller: &Identity) -> Result<Vec<&str>, MintError> {
        if caller.grant.is_some() {
            return Err(MintError::LinkCannotMint);
        }
        let allowed: Vec<&str> = self
            .grants
            .iter()
            .filter(|(scope, _)| caller.scopes.contains(scope))
            .flat_map(|(_, prefixes)| prefixes.iter().map(String::as_str))
            .collect();
        if allowed.is_empty() {
            let scopes: Vec<&str> = self.mint_scopes.iter().map(String::as_str).collect();
            return Err(MintError::NoMintScope(if scopes.is_empty() {
                "(none configured)".into()
            } else {
                scopes.join(" ")
            }));
        }
        Ok(allowed)
    }

    /// Validates a request and builds the link's grant. `allowed`: the
    /// caller's prefixes (`None`: an operator, no restriction).
    pub fn grant(
        &self,
        request: &LinkRequest,
        allowed: Option<&[&str]>,
        now: u64,
    ) -> Result<LinkGrant, MintError> {
        let invalid = MintError::Invalid;
        if request.urls.is_empty() {
            return Err(invalid("URLs must list at least one path".into()));
        }
        if request.urls.len() > MAX_ENTRIES {
            return Err(invalid(format!("URLs lists more than {MAX_ENTRIES} paths")));
        }
        let mut urls = Vec::with_capacity(request.urls.len());
        for url in &request.urls {
            let pattern =
                UrlPattern::parse(url).map_err(|e| invalid(format!("URL {url:?}: {e}")))?;
            if let Some(allowed) = allowed
                && !allowed.iter().any(|prefix| within(&pattern, prefix))
            {
                return Err(MintError::OutsidePrefixes(url.clone()));
            }
            urls.push(pattern);
        }
        let verbs = match &request.verbs {
            None => vec!["get".to_string()],
            Some(list) if list.is_empty() || list.len() > MAX_ENTRIES => {
                return Err(invalid(format!(
                    "verbs must list 1 to {MAX_ENTRIES} methods"
                )));
            }
            Some(list) => {
                let mut verbs: Vec<String> = Vec::with_capacity(list.len());
                for verb in list {
                    let verb = parse_verb(verb).map_err(invalid)?;
                    if !verbs.contains(&verb) {
                        verbs.push(verb);
                    }
                }
                verbs
            }
        };
        let duration = match &request.duration {
            None => DEFAULT_DURATION_SECS,
            Some(text) => parse_duration(text).map_err(|e| invalid(format!("duration: {e}")))?,
        };
        if duration > self.max_duration {
            return Err(MintError::TooLong {
                max: humantime::format_duration(Duration::from_secs(self.max_duration)).to_string(),
            });
        }
        let from = match &request.from {
            None => now,
            Some(text) => parse_rfc3339(text).map_err(|e| invalid(format!("from: {e}")))?,
        };
        if from > now.saturating_add(self.max_start_delay) {
            return Err(invalid(format!(
                "from lies more than {} in the future (issuer.links.max_start_delay)",
                humantime::format_duration(Duration::from_secs(self.max_start_delay))
            )));
        }
        let expires_at = from
            .checked_add(duration)
            .ok_or_else(|| invalid("from + duration overflows".into()))?;
        if expires_at <= now {
            return Err(invalid(
                "from + duration lies in the past: the link would never be valid".into(),
            ));
        }
        Ok(LinkGrant {
            urls,
            verbs,
            once: request.once,
            jti: None,
            not_before: Some(from),
            expires_at,
        })
    }

    /// Claims of a link for `grant`, on behalf of `subject` (the minter):
    /// its user name and its scopes, minus the mint scopes (a link never
    /// mints). Always a fresh `jti`.
    pub fn claims(
        &self,
        issuer: &InternalIssuer,
        subject: &LinkSubject,
        grant: &LinkGrant,
        now: u64,
    ) -> Result<Map<String, Value>, MintError> {
        let jti = new_jti().map_err(|_| MintError::Signing)?;
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(issuer.issuer()));
        claims.insert("aud".into(), json!(issuer.issuer()));
        claims.insert("sub".into(), json!(subject.subject));
        if let Some(name) = &subject.username {
            claims.insert("preferred_username".into(), json!(name));
        }
        let scopes: Vec<&str> = subject
            .scopes
            .iter()
            .filter(|s| !self.mint_scopes.contains(*s))
            .map(String::as_str)
            .collect();
        if !scopes.is_empty() {
            claims.insert("scope".into(), json!(scopes.join(" ")));
        }
        claims.insert("iat".into(), json!(now));
        if let Some(nbf) = grant.not_before {
            claims.insert("nbf".into(), json!(nbf));
        }
        claims.insert("exp".into(), json!(grant.expires_at));
        claims.insert("jti".into(), json!(jti));
        grant.to_claims(&mut claims);
        Ok(claims)
    }

    /// Validates, builds and signs a link in one go.
    pub fn mint(
        &self,
        issuer: &InternalIssuer,
        subject: &LinkSubject,
        request: &LinkRequest,
        allowed: Option<&[&str]>,
        now: u64,
    ) -> Result<(Secret, LinkGrant), MintError> {
        let grant = self.grant(request, allowed, now)?;
        let claims = self.claims(issuer, subject, &grant, now)?;
        let token = issuer.sign(&claims).map_err(|_| MintError::Signing)?;
        Ok((token, grant))
    }
}

/// Whose authority a link carries.
#[derive(Debug, Clone, Default)]
pub struct LinkSubject {
    /// `sub`.
    pub subject: String,
    /// `preferred_username`.
    pub username: Option<String>,
    /// Scopes held by the minter.
    pub scopes: BTreeSet<String>,
}

impl From<&Identity> for LinkSubject {
    fn from(id: &Identity) -> Self {
        LinkSubject {
            subject: id.subject.clone(),
            username: id.username.clone(),
            scopes: id.scopes.clone(),
        }
    }
}

/// Whether everything `pattern` grants lies under `prefix` (which ends
/// in `/`; `/api/` stands for `/api` and everything below it).
fn within(pattern: &UrlPattern, prefix: &str) -> bool {
    let bare = prefix.strip_suffix('/').unwrap_or(prefix);
    match pattern {
        UrlPattern::Exact(p) => p.starts_with(prefix) || (!bare.is_empty() && p == bare),
        // `/api*` would also grant `/apis`: only a prefix that itself lies
        // under the allowed one is inside it.
        UrlPattern::Prefix(p) => p.starts_with(prefix),
    }
}

#[cfg(test)]
mod tests;
