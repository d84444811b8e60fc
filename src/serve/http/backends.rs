//! The backend authorization endpoints ([`crate::backends`]):
//!
//! | route | what |
//! |---|---|
//! | `GET /auth/backends/{name}/login?rd=` | 302 to the backend's authorization (a browser without a session logs in first) |
//! | `GET /auth/backends/{name}/callback` | stores the user's token there, 302 to `rd` |
//!
//! Both need the browser's session (the token is kept for its user) and
//! the login-binding cookie. Failures render as the login's do.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::login::{Failure, binding, cookie, found, login_service};
use std::sync::Arc;

use crate::backends::{BackendError, Backends};
use crate::login::{Login, LoginError};
use crate::sessions::SessionError;

/// `/auth/backends/{name}/callback` parameters.
#[derive(Debug, Default, Deserialize)]
pub struct BackendCallback {
    /// The authorization code.
    pub code: Option<String>,
    /// The state the authorization started with.
    pub state: Option<String>,
    /// The backend's error code, instead of a code.
    pub error: Option<String>,
}

/// A backend failure as the login renders failures.
fn failure(e: &BackendError, headers: &HeaderMap) -> Response {
    let mut f = Failure::new(&LoginError::State, headers);
    f.status = match e {
        BackendError::Unknown(_) => StatusCode::NOT_FOUND,
        BackendError::Unreachable(_) | BackendError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        BackendError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    f.message = e.to_string();
    f.into_response()
}

/// The session's subject, or the response to send instead (a login first
/// for a navigation to `/auth/backends/{name}/login`).
async fn subject(
    state: &AppState,
    headers: &HeaderMap,
    here: Option<&str>,
) -> Result<String, Response> {
    let service = login_service(state, headers).map_err(IntoResponse::into_response)?;
    let sessions = service.sessions();
    let session = match cookie(headers, sessions.cookie_name()) {
        Some(c) => sessions
            .lookup(c.expose())
            .await
            .map_err(|e| Failure::new(&LoginError::Session(e), headers).into_response())?,
        None => None,
    };
    match (session, here) {
        (Some(s), _) => Ok(s.record.identity.subject.clone()),
        (None, Some(here)) => {
            let rd = url::form_urlencoded::byte_serialize(here.as_bytes()).collect::<String>();
            Err(found(&format!("/auth/login?rd={rd}"), []))
        }
        (None, None) => Err(Failure::new(
            &LoginError::Session(SessionError::Invalid("log in first")),
            headers,
        )
        .into_response()),
    }
}

/// The login and backends services, when `name` is a configured backend.
fn services(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
) -> Result<(Arc<Login>, Arc<Backends>), Box<Response>> {
    let service = login_service(state, headers).map_err(|f| Box::new(f.into_response()))?;
    match state.engine.current().backends.clone() {
        Some(backends) if backends.get(name).is_some() => Ok((service, backends)),
        _ => Err(Box::new(failure(
            &BackendError::Unknown(name.to_string()),
            headers,
        ))),
    }
}

/// `GET /auth/backends/{name}/login`.
pub async fn login(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<super::login::LoginQuery>,
    headers: HeaderMap,
) -> Response {
    let (service, backends) = match services(&state, &headers, &name) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let rd = match service.return_url(query.rd.as_deref()) {
        Ok(rd) => rd,
        Err(e) => return Failure::new(&LoginError::Redirect(e), &headers).into_response(),
    };
    let here = format!(
        "/auth/backends/{name}/login?rd={}",
        url::form_urlencoded::byte_serialize(rd.as_bytes()).collect::<String>()
    );
    let subject = match subject(&state, &headers, Some(&here)).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let sessions = service.sessions();
    let binding = match binding(&headers, sessions) {
        Ok(b) => b,
        Err(e) => return Failure::new(&e, &headers).into_response(),
    };
    match backends.start(&name, &subject, rd, &binding).await {
        Ok(url) => found(&url, [sessions.set_binding_cookie(&binding)]),
        Err(e) => failure(&e, &headers),
    }
}

/// `GET /auth/backends/{name}/callback`.
pub async fn callback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<BackendCallback>,
    headers: HeaderMap,
) -> Response {
    let (service, backends) = match services(&state, &headers, &name) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let subject = match subject(&state, &headers, None).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let binding = cookie(&headers, &service.sessions().binding_cookie_name());
    let result = backends
        .finish(
            &name,
            query.code.as_deref(),
            query.state.as_deref(),
            query.error.as_deref(),
            binding.as_ref(),
            &subject,
        )
        .await;
    match result {
        // `rd` was validated when the authorization started.
        Ok(rd) => found(&rd, []),
        Err(e) => {
            tracing::info!(backend = %name, error = %e, "backend authorization refused");
            failure(&e, &headers)
        }
    }
}
