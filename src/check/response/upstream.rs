//! Upstream header mutations beyond `X-Auth-Request-*`: extra identity
//! headers under configured names (e.g. `X-Toolforge-User`), and client
//! headers that must not reach the upstream (an XFCC header that was not
//! believed, the act-as header). Every client-supplied copy of an extra
//! header is removed or overwritten, on every allowed request.

use crate::check::authn::cert::XFCC_HEADER;
use crate::check::authz::tool::ToolPolicy;
use crate::check::upstream::{Prepared, TOKEN_HEADER, UpstreamActions};
use crate::config::{ConfigError, IdentityHeader, IdentityHeadersConfig, header_name};
use crate::model::identity::Identity;
use crate::model::outcome::HeaderPlan;
use crate::model::request::Request;
use crate::model::requirement::Requirement;

/// Compiled extra headers and headers to strip.
#[derive(Debug, Clone, Default)]
pub struct UpstreamHeaders {
    /// (lower-case name, field).
    extra: Vec<(String, IdentityHeader)>,
    /// Lower-case names removed from the client's request when present.
    strip: Vec<String>,
}

impl UpstreamHeaders {
    /// Validates `identity_headers`; the tool policy's act-as header is
    /// stripped upstream (the tool gatehouse settled on is the one sent).
    pub fn compile(
        config: &IdentityHeadersConfig,
        tools: &ToolPolicy,
    ) -> Result<Self, ConfigError> {
        let mut extra: Vec<(String, IdentityHeader)> = Vec::with_capacity(config.extra.len());
        for (i, h) in config.extra.iter().enumerate() {
            let key = format!("identity_headers.extra[{i}].name");
            let name = header_name(&h.name, &key)?;
            if name.starts_with(super::IDENTITY_HEADER_PREFIX) {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "{} is gatehouse's own prefix",
                        super::IDENTITY_HEADER_PREFIX
                    ),
                ));
            }
            if extra.iter().any(|(n, _)| *n == name) {
                return Err(ConfigError::invalid(
                    key,
                    format!("{} is listed twice", h.name),
                ));
            }
            extra.push((name, h.from));
        }
        let strip = tools
            .act_as_header()
            .filter(|h| !extra.iter().any(|(n, _)| n == h))
            .map(str::to_string)
            .into_iter()
            .collect();
        Ok(UpstreamHeaders { extra, strip })
    }

    /// Adds the extra headers and removals to an allow's plan.
    /// `tool`: the tool authz settled on; `strip_xfcc`: the request's
    /// XFCC header was not believed.
    pub fn apply(
        &self,
        plan: &mut HeaderPlan,
        request: &Request,
        requirement: &Requirement,
        identity: Option<&Identity>,
        tool: Option<&str>,
        strip_xfcc: bool,
    ) {
        for (name, field) in &self.extra {
            let value = requirement
                .headers
                .contains(field)
                .then(|| super::field(*field, request, requirement, identity, tool))
                .flatten()
                .filter(|v| super::header_value_is_safe(v));
            match value {
                Some(v) => plan.set.push((name.clone().into(), v)),
                None if request.headers.contains_key(name) => plan.remove.push(name.clone()),
                None => {}
            }
        }
        let xfcc = strip_xfcc.then_some(XFCC_HEADER);
        for name in self.strip.iter().map(String::as_str).chain(xfcc) {
            if request.headers.contains_key(name) {
                plan.strip(name);
            }
        }
    }
}

/// Applies what the upstream step decided (a reissued token, a swapped
/// credential, gatehouse's own token cookies and headers removed, the
/// session cookie removed always) to an
/// allow's plan; these replace whatever the plan set before.
pub fn apply_prepared(
    actions: &UpstreamActions,
    prepared: Prepared,
    request: &Request,
    plan: &mut HeaderPlan,
) {
    if let Some(token) = prepared.reissued {
        plan.replace(TOKEN_HEADER, token.expose().to_string());
    }
    if let Some(quota) = &prepared.quota {
        // The allowance left, for the client; `Retry-After` only on a 429.
        let [_, policy, state] = super::quota_headers(quota);
        plan.client.extend([policy, state]);
    }
    if let Some((header, value)) = prepared.credential {
        plan.replace(header, value.expose().to_string());
    }
    // The session cookie goes on every allow; with a swap, every token
    // cookie (the session cookie among them).
    let cookies = if prepared.strip_credentials {
        actions.token_cookies()
    } else {
        actions.session_cookie()
    };
    if !cookies.is_empty()
        && let Some(cookie) = request.header("cookie")
    {
        match strip_cookies(cookie, cookies) {
            Stripped::Unchanged => {}
            Stripped::Kept(kept) => plan.replace("cookie", kept),
            Stripped::Empty => plan.remove.push("cookie".into()),
        }
    }
    if prepared.strip_credentials {
        for name in actions.token_headers() {
            if name != "authorization" && request.header(name).is_some() {
                plan.remove.push(name.clone());
            }
        }
    }
}

/// A `Cookie` header after removing gatehouse's token cookies.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stripped {
    /// None of them was present.
    Unchanged,
    /// The other cookies.
    Kept(String),
    /// Nothing is left.
    Empty,
}

pub(crate) fn strip_cookies(header: &str, names: &[String]) -> Stripped {
    let pairs: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .collect();
    let kept: Vec<&str> = pairs
        .iter()
        .copied()
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n).trim();
            !names.iter().any(|n| n == name)
        })
        .collect();
    if kept.len() == pairs.len() {
        Stripped::Unchanged
    } else if kept.is_empty() {
        Stripped::Empty
    } else {
        Stripped::Kept(kept.join("; "))
    }
}
