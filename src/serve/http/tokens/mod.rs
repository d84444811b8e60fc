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

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::ApiError;
use super::request::{from_http, json_body};
use super::{AppState, now_secs};
use crate::check::pipeline::Engine;
use crate::config::AuthType;
use crate::model::deny::Deny;
use crate::model::identity::{AcceptedCredentials, Identity};
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

fn api_tokens(engine: &Engine) -> Result<&ApiTokens, ApiError> {
    engine
        .authn
        .api_tokens
        .as_deref()
        .ok_or_else(|| ApiError::NotFound("API tokens are not configured (api_tokens)".into()))
}

/// The caller, authenticated by any credential kind the engine knows;
/// 401 (with a challenge) without one.
async fn authenticate(
    engine: &Engine,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<Identity, ApiError> {
    let denied = |deny| ApiError::Denied {
        deny,
        realm: engine.realm.clone(),
    };
    let request = from_http(method, uri, headers, peer, &engine.trusted_proxies)?;
    match engine
        .authn
        .authenticate_accepting(&request, AuthType::Bearer, AcceptedCredentials::ALL)
        .await
    {
        Ok(Some(identity)) => Ok(identity),
        Ok(None) => Err(denied(Deny::NoCredential {
            auth_type: AuthType::Bearer,
        })),
        Err(deny) => Err(denied(deny)),
    }
}

/// `POST …/users/{user}/tokens`.
pub(super) async fn create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(user): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let engine = state.engine.current();
    let tokens = api_tokens(&engine)?;
    let identity = authenticate(&engine, &method, &uri, &headers, peer).await?;
    let body: CreateBody = json_body(&headers, body)?;
    let expires = body.expires.as_ref().map(Expires::seconds).transpose()?;
    let caller = Caller {
        identity: &identity,
        superuser: engine.tools.is_superuser(&identity),
    };
    let new = NewToken {
        name: body.name,
        scopes: body.scopes,
        expires,
        tool: body.tool,
    };
    let created = tokens
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
pub(super) async fn list(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(user): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let engine = state.engine.current();
    let tokens = api_tokens(&engine)?;
    let identity = authenticate(&engine, &method, &uri, &headers, peer).await?;
    let caller = Caller {
        identity: &identity,
        superuser: engine.tools.is_superuser(&identity),
    };
    let listed = tokens.list(&caller, &user, now_secs()).await?;
    Ok(no_store(axum::Json(listed).into_response()))
}

/// `DELETE …/users/{user}/tokens/{key}`.
pub(super) async fn revoke(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((user, key)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let engine = state.engine.current();
    let tokens = api_tokens(&engine)?;
    let identity = authenticate(&engine, &method, &uri, &headers, peer).await?;
    let caller = Caller {
        identity: &identity,
        superuser: engine.tools.is_superuser(&identity),
    };
    tokens.revoke(&caller, &user, &key).await?;
    Ok(no_store(StatusCode::NO_CONTENT.into_response()))
}

/// `GET /auth/api/v1/user-info`: who the caller is, as this API sees it
/// (what `gatehouse tokens` uses when `--user` is not given).
pub(super) async fn user_info(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let engine = state.engine.current();
    api_tokens(&engine)?;
    let identity = authenticate(&engine, &method, &uri, &headers, peer).await?;
    let caller = Caller {
        identity: &identity,
        superuser: engine.tools.is_superuser(&identity),
    };
    let body = serde_json::json!({
        "username": caller.user(),
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
