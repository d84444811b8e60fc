//! The response phase: an allowed request's header mutations, planned
//! once ([`plan`], then [`upstream`]'s extra headers and the upstream
//! step's swap and reissue), and the renderings of an [`Outcome`] as
//! Envoy's `CheckResponse` ([`render`]). A denial's status, headers and
//! body come from [`denial`], which the HTTP edge renders too. A denial is
//! a normal `CheckResponse`, never a gRPC error.

use std::borrow::Cow;

use crate::config::IdentityHeader;
use crate::model::deny::{Deny, QuotaStatus};
use crate::model::identity::Identity;
use crate::model::outcome::{HeaderPlan, Outcome};
use crate::model::request::Request;
use crate::model::requirement::{Access, Requirement};
use crate::proto::auth::{
    CheckResponse, DeniedHttpResponse, OkHttpResponse, check_response::HttpResponse,
};
use crate::proto::core::{HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction};
use crate::proto::http_type::HttpStatus;
use crate::proto::rpc;
use crate::sessions::record::random_token;

/// Prefix of every identity header gatehouse owns.
pub const IDENTITY_HEADER_PREFIX: &str = "x-auth-request-";

/// The identity part of an allow: our identity headers set, and every
/// client-supplied `X-Auth-Request-*` header we do not set removed (ours
/// overwrite the rest), so a client can never smuggle one upstream.
/// `tool` is the tool authz settled on.
pub fn plan(
    request: &Request,
    requirement: &Requirement,
    identity: Option<&Identity>,
    tool: Option<&str>,
) -> HeaderPlan {
    let set = identity_headers(request, requirement, identity, tool);
    let remove = request
        .headers
        .keys()
        .filter(|name| name.starts_with(IDENTITY_HEADER_PREFIX))
        .filter(|name| !set.iter().any(|(ours, _)| ours.eq_ignore_ascii_case(name)))
        .cloned()
        .collect();
    HeaderPlan {
        set,
        remove,
        remove_query: identity
            .and_then(|id| id.query_parameter.clone())
            .into_iter()
            .collect(),
        client: Vec::new(),
    }
}

/// The identity headers a rule asks for, as (name, value) pairs. Values
/// that are not safe in an HTTP header (control characters) are dropped.
fn identity_headers(
    request: &Request,
    requirement: &Requirement,
    identity: Option<&Identity>,
    tool: Option<&str>,
) -> Vec<(Cow<'static, str>, String)> {
    let mut out: Vec<(Cow<'static, str>, String)> = Vec::with_capacity(10);
    for header in requirement.headers.iter() {
        if *header == IdentityHeader::Scopes {
            // Scopes also carries what the route accepted.
            if let Access::Authenticated { scopes, satisfy } = &requirement.access {
                if let Some(value) = field(*header, request, requirement, identity, tool) {
                    out.push(("x-auth-request-token-scopes".into(), value));
                }
                out.push((
                    "x-auth-request-token-scopes-accepted".into(),
                    scopes.join(" "),
                ));
                out.push((
                    "x-auth-request-token-scopes-satisfy".into(),
                    satisfy.as_str().to_string(),
                ));
            }
        } else if let Some(value) = field(*header, request, requirement, identity, tool) {
            out.push((header_of(*header).into(), value));
        }
    }
    out.retain(|(name, value)| {
        let safe = header_value_is_safe(value);
        if !safe {
            tracing::warn!(
                header = %name,
                "identity header value has control characters; not sent"
            );
        }
        safe
    });
    out
}

/// The `X-Auth-Request-*` header of one identity field.
fn header_of(field: IdentityHeader) -> &'static str {
    match field {
        IdentityHeader::User => "x-auth-request-user",
        IdentityHeader::Email => "x-auth-request-email",
        IdentityHeader::Uid => "x-auth-request-uid",
        IdentityHeader::Groups => "x-auth-request-groups",
        IdentityHeader::Scopes => "x-auth-request-token-scopes",
        IdentityHeader::Token => "x-auth-request-token",
        IdentityHeader::Tool => "x-auth-request-tool",
        IdentityHeader::ClientIp => "x-auth-request-client-ip",
    }
}

/// The value of one identity field, as its `X-Auth-Request-*` header and
/// any configured extra header carry it: the one mapping from identity
/// fields to header values.
pub(crate) fn field(
    field: IdentityHeader,
    request: &Request,
    requirement: &Requirement,
    identity: Option<&Identity>,
    tool: Option<&str>,
) -> Option<String> {
    if field == IdentityHeader::ClientIp {
        return request.client_ip.map(|ip| ip.to_string());
    }
    let id = identity?;
    match field {
        IdentityHeader::User => Some(id.username.clone().unwrap_or_else(|| id.subject.clone())),
        IdentityHeader::Email => id.email.clone(),
        IdentityHeader::Uid => id.uid.clone(),
        IdentityHeader::Groups => (!id.groups.is_empty()).then(|| groups_header(&id.groups)),
        IdentityHeader::Scopes => matches!(requirement.access, Access::Authenticated { .. })
            .then(|| id.scopes.iter().cloned().collect::<Vec<_>>().join(" ")),
        IdentityHeader::Token => Some(id.token.expose().to_string()).filter(|t| !t.is_empty()),
        IdentityHeader::Tool => tool.map(str::to_string),
        IdentityHeader::ClientIp => None,
    }
}

pub(crate) use crate::model::identity::groups_header;

/// Visible characters, spaces and tabs only: no CR/LF header injection.
pub(crate) fn header_value_is_safe(value: &str) -> bool {
    value.chars().all(|c| c == '\t' || !c.is_control())
}

/// A header set on the request, replacing any value it had.
fn overwrite(key: String, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key,
            value,
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

/// An [`Outcome`] as Envoy's `CheckResponse`: the gRPC edge's rendering.
pub fn render(outcome: Outcome, realm: &str) -> CheckResponse {
    match outcome {
        Outcome::Permit(plan) => render_allow(plan),
        Outcome::Deny(reason) => deny(&reason, realm),
    }
}

/// An allow's `CheckResponse`.
pub fn render_allow(plan: HeaderPlan) -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status {
            code: tonic::Code::Ok as i32,
            ..Default::default()
        }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: plan
                .set
                .into_iter()
                .map(|(k, v)| overwrite(k.into_owned(), v))
                .collect(),
            headers_to_remove: plan.remove,
            query_parameters_to_remove: plan.remove_query,
            response_headers_to_add: plan
                .client
                .into_iter()
                .map(|(k, v)| overwrite(k.to_string(), v))
                .collect(),
            ..Default::default()
        })),
        dynamic_metadata: None,
    }
}

/// What a client is sent for a denial, whichever edge sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// HTTP status.
    pub status: u16,
    /// Headers, in order: `cache-control`, `content-type`, the challenge
    /// if any, a redirect's `location` and `set-cookie`s, a quota's
    /// `retry-after`, `ratelimit-policy` and `ratelimit`. A name may
    /// repeat (two `set-cookie`): every edge sends each one, none replaces
    /// another.
    pub headers: Vec<(&'static str, String)>,
    /// JSON body: `error` and `error_description`.
    pub body: String,
}

/// The status, headers and JSON body of a denial.
pub fn denial(deny: &Deny, realm: &str) -> Denial {
    let description = deny.to_string();
    let mut headers = vec![
        ("cache-control", "no-cache, no-store".to_string()),
        ("content-type", "application/json".to_string()),
    ];
    if let Some(challenge) = deny.challenge(realm, &description) {
        headers.push(("www-authenticate", challenge));
    }
    if let Deny::LoginRequired {
        location,
        set_cookies,
        binding,
    } = deny
    {
        headers.push(("location", location.clone()));
        headers.extend(set_cookies.iter().map(|c| ("set-cookie", c.clone())));
        // Without random bytes the login page sets it instead.
        if let Some(b) = binding
            && let Ok(value) = random_token()
        {
            let cookie = format!("{}={}{}", b.name, value.expose(), b.attributes);
            headers.push(("set-cookie", cookie));
        }
    }
    if let Deny::QuotaExceeded(quota) = deny {
        headers.extend(quota_headers(quota));
    }
    // A value a client could use to split the response (CR, LF) is
    // dropped rather than sent.
    headers.retain(|(_, value)| header_value_is_safe(value));
    let body = serde_json::json!({
        "error": deny.error_code(),
        "error_description": description,
    })
    .to_string();
    Denial {
        status: deny.http_status(),
        headers,
        body,
    }
}

/// A quota's headers: `Retry-After` (whole seconds, rounded up), and
/// the `RateLimit-Policy` and `RateLimit` fields of
/// draft-ietf-httpapi-ratelimit-headers (the structured-field form of
/// drafts 08 to 10): the policy named after the rule, `q` its limit, `w`
/// its window in seconds; `r` the requests remaining, `t` the seconds
/// until the whole allowance is back. For example
/// `RateLimit-Policy: "api";q=100;w=60` and `RateLimit: "api";r=0;t=60`.
pub fn quota_headers(quota: &QuotaStatus) -> [(&'static str, String); 3] {
    let name = sf_string(&quota.rule);
    [
        ("retry-after", quota.retry_after_secs.to_string()),
        (
            "ratelimit-policy",
            format!("{name};q={};w={}", quota.limit, quota.window_secs),
        ),
        (
            "ratelimit",
            format!("{name};r={};t={}", quota.remaining, quota.reset_secs),
        ),
    ]
}

/// A structured-field string (RFC 8941 §3.3.3): printable ASCII only,
/// `"` and `\` escaped; other characters are dropped.
fn sf_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars().filter(|c| matches!(c, ' '..='~')) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The response for a refused request.
pub fn deny(deny: &Deny, realm: &str) -> CheckResponse {
    let denial = denial(deny, realm);
    CheckResponse {
        status: Some(rpc::Status {
            code: deny.grpc_code() as i32,
            message: deny.reason_label().to_string(),
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(denial.status),
            }),
            headers: denied_headers(denial.headers),
            body: denial.body,
        })),
        dynamic_metadata: None,
    }
}

/// A denial's headers for Envoy, each as its own entry with `append`
/// unset, also a repeated name (two `set-cookie`s). For a denied response
/// Envoy removes every name listed from its local reply, then adds each
/// entry, so repeated names all arrive; entries marked `append: true` it
/// drops on a denial (checked through Envoy: tests/e2e/test_browser_redirect.py).
fn denied_headers(headers: Vec<(&'static str, String)>) -> Vec<HeaderValueOption> {
    headers
        .into_iter()
        .map(|(name, value)| overwrite(name.to_string(), value))
        .collect()
}

pub mod upstream;

#[cfg(test)]
mod tests;
