//! Rendering a decision as Envoy's `CheckResponse`: header mutations for an
//! allow, status, challenge and JSON body for a denial. A denial is a
//! normal `CheckResponse`, never a gRPC error.

use crate::config::{AuthType, IdentityHeader};
use crate::model::deny::{Deny, GrpcCode};
use crate::model::identity::Identity;
use crate::model::request::Request;
use crate::model::requirement::{Access, Requirement};
use crate::proto::auth::{
    CheckResponse, DeniedHttpResponse, OkHttpResponse, check_response::HttpResponse,
};
use crate::proto::core::{HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction};
use crate::proto::http_type::HttpStatus;
use crate::proto::rpc;

/// Prefix of every identity header gatehouse owns.
pub const IDENTITY_HEADER_PREFIX: &str = "x-auth-request-";

/// The response for an allowed request: our identity headers set, and
/// every client-supplied `X-Auth-Request-*` header we do not set removed
/// (ours overwrite the rest), so a client can never smuggle one upstream.
pub fn allow(
    request: &Request,
    requirement: &Requirement,
    identity: Option<&Identity>,
) -> CheckResponse {
    let headers = identity_headers(request, requirement, identity);
    let headers_to_remove = request
        .headers
        .keys()
        .filter(|name| name.starts_with(IDENTITY_HEADER_PREFIX))
        .filter(|name| {
            !headers
                .iter()
                .any(|(ours, _)| ours.eq_ignore_ascii_case(name))
        })
        .cloned()
        .collect();
    CheckResponse {
        status: Some(rpc::Status {
            code: GrpcCode::Ok as i32,
            ..Default::default()
        }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: headers.into_iter().map(|(k, v)| overwrite(k, v)).collect(),
            headers_to_remove,
            query_parameters_to_remove: identity
                .and_then(|id| id.query_parameter.clone())
                .into_iter()
                .collect(),
            ..Default::default()
        })),
        dynamic_metadata: None,
    }
}

/// The identity headers a rule asks for, as (name, value) pairs. Values
/// that are not safe in an HTTP header (control characters) are dropped.
fn identity_headers(
    request: &Request,
    requirement: &Requirement,
    identity: Option<&Identity>,
) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::with_capacity(10);
    for header in requirement.headers.iter() {
        match header {
            IdentityHeader::ClientIp => {
                if let Some(ip) = request.client_ip {
                    out.push(("x-auth-request-client-ip", ip.to_string()));
                }
            }
            IdentityHeader::Scopes => {
                if let Access::Authenticated { scopes, satisfy } = &requirement.access {
                    if let Some(id) = identity {
                        out.push(("x-auth-request-token-scopes", join(id.scopes.iter(), " ")));
                    }
                    out.push(("x-auth-request-token-scopes-accepted", scopes.join(" ")));
                    out.push((
                        "x-auth-request-token-scopes-satisfy",
                        satisfy.as_str().to_string(),
                    ));
                }
            }
            _ => {
                let Some(id) = identity else { continue };
                let (name, value) = match header {
                    IdentityHeader::User => (
                        "x-auth-request-user",
                        id.username.clone().or_else(|| Some(id.subject.clone())),
                    ),
                    IdentityHeader::Email => ("x-auth-request-email", id.email.clone()),
                    IdentityHeader::Uid => ("x-auth-request-uid", id.uid.clone()),
                    IdentityHeader::Groups => (
                        "x-auth-request-groups",
                        (!id.groups.is_empty()).then(|| join(id.groups.iter(), ",")),
                    ),
                    IdentityHeader::Token => (
                        "x-auth-request-token",
                        Some(id.token.expose().to_string()).filter(|t| !t.is_empty()),
                    ),
                    IdentityHeader::Tool => ("x-auth-request-tool", id.tool.clone()),
                    IdentityHeader::ClientIp | IdentityHeader::Scopes => continue,
                };
                if let Some(value) = value {
                    out.push((name, value));
                }
            }
        }
    }
    out.retain(|(name, value)| {
        let safe = header_value_is_safe(value);
        if !safe {
            tracing::warn!(
                header = name,
                "identity header value has control characters; not sent"
            );
        }
        safe
    });
    out
}

fn join<'a>(items: impl Iterator<Item = &'a String>, sep: &str) -> String {
    items.map(String::as_str).collect::<Vec<_>>().join(sep)
}

/// Visible characters, spaces and tabs only: no CR/LF header injection.
pub(crate) fn header_value_is_safe(value: &str) -> bool {
    value.chars().all(|c| c == '\t' || !c.is_control())
}

/// A header set on the request, replacing any value it had.
pub(crate) fn overwrite(key: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_string(),
            value,
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

/// The response for a refused request.
pub fn deny(deny: &Deny, realm: &str) -> CheckResponse {
    let description = deny.to_string();
    let mut headers = vec![
        overwrite("cache-control", "no-cache, no-store".into()),
        overwrite("content-type", "application/json".into()),
    ];
    if let Some(challenge) = challenge(deny, realm, &description) {
        headers.push(overwrite("www-authenticate", challenge));
    }
    let body = serde_json::json!({
        "error": deny.error_code(),
        "error_description": description,
    })
    .to_string();
    CheckResponse {
        status: Some(rpc::Status {
            code: deny.grpc_code() as i32,
            message: deny.reason_label().to_string(),
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(deny.http_status()),
            }),
            headers,
            body,
        })),
        dynamic_metadata: None,
    }
}

/// The `WWW-Authenticate` challenge (RFC 6750 §3), if the denial has one.
pub(crate) fn challenge(deny: &Deny, realm: &str, description: &str) -> Option<String> {
    let realm = quote(realm);
    match deny {
        Deny::NoCredential {
            auth_type: AuthType::Bearer,
        } => Some(format!("Bearer realm={realm}")),
        Deny::InvalidCertificate {
            auth_type: AuthType::Bearer,
            ..
        } => Some(format!("Bearer realm={realm}")),
        Deny::NoCredential {
            auth_type: AuthType::Basic,
        }
        | Deny::InvalidCertificate {
            auth_type: AuthType::Basic,
            ..
        }
        | Deny::InvalidToken {
            auth_type: AuthType::Basic,
            ..
        } => Some(format!("Basic realm={realm}")),
        Deny::InvalidToken {
            auth_type: AuthType::Bearer,
            ..
        } => Some(format!(
            "Bearer realm={realm}, error=\"invalid_token\", error_description={}",
            quote(description)
        )),
        Deny::InsufficientScope { scopes, .. } => Some(format!(
            "Bearer realm={realm}, error=\"insufficient_scope\", error_description={}, scope={}",
            quote(description),
            quote(&scopes.join(" "))
        )),
        _ => None,
    }
}

/// An HTTP quoted-string: `"` and `\` escaped, control characters dropped.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

pub mod upstream;

#[cfg(test)]
mod tests;
