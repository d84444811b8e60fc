//! The API-token REST API (Gafaelfawr's `/auth/api/v1`), on the side port:
//!
//! | route | what |
//! |---|---|
//! | `POST /auth/api/v1/users/{user}/tokens` | create: `{name, scopes, expires?, tool?}` → 201 with the token, shown once |
//! | `GET /auth/api/v1/users/{user}/tokens` | list, without secrets |
//! | `DELETE /auth/api/v1/users/{user}/tokens/{key}` | revoke → 204 |
//! | `GET /auth/api/v1/user-info` | who the caller is: user, scopes, tool, credential kind |
//!
//! The caller is authenticated from the request's own credential with the
//! engine's authenticators, as at the check: a JWT or an API token from
//! the token sources, or a client certificate (the XFCC header Envoy
//! forwards, from a trusted proxy). The rules (own tokens unless admin,
//! scopes a subset of the caller's, …) are [`crate::tokens::service`]'s.
//! Every answer carries `Cache-Control: no-store`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::ApiError;
use super::request::{from_http, json_body};
use super::{AppState, now_secs};
use crate::config::AuthType;
use crate::model::deny::Deny;
use crate::model::identity::Identity;
use crate::tokens::{ApiTokens, Caller, NewToken};

/// The prefix of every route of this API.
pub const PREFIX: &str = "/auth/api/v1";

/// Longest accepted `expires` text.
const MAX_EXPIRES_CHARS: usize = 64;

/// The body of a creation request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    expires: Option<Expires>,
    #[serde(default)]
    tool: Option<String>,
}

/// `expires`: seconds since the epoch, or an RFC 3339 timestamp.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Expires {
    Seconds(u64),
    Text(String),
}

impl Expires {
    fn seconds(&self) -> Result<u64, ApiError> {
        match self {
            Expires::Seconds(s) => Ok(*s),
            Expires::Text(text) => {
                let bad = || {
                    ApiError::BadRequest(
                        "expires: seconds since the epoch or an RFC 3339 timestamp (e.g. \"2030-01-01T00:00:00Z\")".into(),
                    )
                };
                if text.len() > MAX_EXPIRES_CHARS {
                    return Err(bad());
                }
                let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| bad())?;
                u64::try_from(at.unix_timestamp()).map_err(|_| bad())
            }
        }
    }
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    response
}

/// The API's caller, extracted from the request before any handler runs:
/// the engine it was authenticated on (this API needs `api_tokens`: 404
/// without), who it is, and whether it is a superuser. 401 (with a
/// challenge) without a credential, as at the check.
pub(super) struct ApiCaller {
    tokens: Arc<ApiTokens>,
    identity: Identity,
    superuser: bool,
}

impl ApiCaller {
    fn tokens(&self) -> &ApiTokens {
        &self.tokens
    }

    fn caller(&self) -> Caller<'_> {
        Caller {
            identity: &self.identity,
            superuser: self.superuser,
        }
    }
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let engine = state.engine.current();
        let Some(tokens) = engine.authn.api_tokens.clone() else {
            return Err(ApiError::NotFound(
                "API tokens are not configured (api_tokens)".into(),
            ));
        };
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0)
            .ok_or(ApiError::Internal(
                "the connection's peer address is unknown",
            ))?;
        let denied = |deny| ApiError::Denied {
            deny,
            realm: engine.realm.clone(),
        };
        let request = from_http(
            &parts.method,
            &parts.uri,
            &parts.headers,
            peer,
            &engine.trusted_proxies,
        )?;
        let identity = match engine
            .authenticate_caller(&request, AuthType::Bearer)
            .await
        {
            Ok(Some(identity)) => identity,
            Ok(None) => {
                return Err(denied(Deny::NoCredential {
                    auth_type: AuthType::Bearer,
                }));
            }
            Err(deny) => return Err(denied(deny)),
        };
        let superuser = engine.tools.is_superuser(&identity);
        Ok(ApiCaller {
            tokens,
            identity,
            superuser,
        })
    }
}

/// `POST …/users/{user}/tokens`.
pub(super) async fn create(
    who: ApiCaller,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: CreateBody = json_body(&headers, body)?;
    let expires = body.expires.as_ref().map(Expires::seconds).transpose()?;
    let caller = who.caller();
    let new = NewToken {
        name: body.name,
        scopes: body.scopes,
        expires,
        tool: body.tool,
    };
    let created = who
        .tokens()
        .create(&caller, &user, new, now_secs())
        .await
        .inspect_err(|e| {
            tracing::info!(user, caller = caller.user(), reason = %e, "API token not created");
        })?;
    let mut json = serde_json::to_value(&created.info)
        .map_err(|_| ApiError::Internal("the answer could not be encoded"))?;
    if let Some(object) = json.as_object_mut() {
        object.remove("last_used");
        object.insert(
            "token".into(),
            serde_json::Value::String(created.token.expose().to_string()),
        );
    }
    Ok(no_store(
        (StatusCode::CREATED, axum::Json(json)).into_response(),
    ))
}

/// `GET …/users/{user}/tokens`.
pub(super) async fn list(who: ApiCaller, Path(user): Path<String>) -> Result<Response, ApiError> {
    let listed = who.tokens().list(&who.caller(), &user, now_secs()).await?;
    Ok(no_store(axum::Json(listed).into_response()))
}

/// `DELETE …/users/{user}/tokens/{key}`.
pub(super) async fn revoke(
    who: ApiCaller,
    Path((user, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    who.tokens().revoke(&who.caller(), &user, &key).await?;
    Ok(no_store(StatusCode::NO_CONTENT.into_response()))
}

/// `GET /auth/api/v1/user-info`: who the caller is, as this API sees it
/// (what `gatehouse tokens` uses when `--user` is not given).
pub(super) async fn user_info(who: ApiCaller) -> Result<Response, ApiError> {
    let identity = &who.identity;
    let body = serde_json::json!({
        "username": who.caller().user(),
        "subject": identity.subject,
        "scopes": identity.scopes,
        "tool": identity.tool,
        "credential": identity.kind.as_str(),
        "expires": identity.expires_at,
    });
    Ok(no_store(axum::Json(body).into_response()))
}

#[cfg(test)]
mod tests;
