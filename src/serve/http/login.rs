//! The browser login endpoints ([`crate::login`]):
//!
//! | route | what |
//! |---|---|
//! | `GET /auth/login?rd=&provider=` | 302 to the provider; with several and none named, a choice page |
//! | `GET /auth/callback` | finishes the login: session cookie, 302 to `rd` |
//! | `GET`, `POST /auth/logout?rd=` | ends the session, clears the cookie, RP-initiated logout |
//! | `GET /auth/userinfo` | the session's identity and CSRF token (401 without a session) |
//! | `POST /auth/backchannel-logout` | OIDC Back-Channel Logout: a provider's signed logout token ends sessions |
//!
//! Failures are a page for browsers (`Accept: text/html`) and JSON
//! otherwise. Nothing here logs a code, a token or a session id.

use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use crate::login::{Callback, Login, LoginError, LogoutError};
use crate::secret::Secret;
use crate::sessions::SessionError;
use crate::sessions::record::random_token;

/// A binding value as gatehouse makes them: 43 base64url characters.
fn well_formed_binding(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `/auth/login` and `/auth/logout` parameters.
#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    /// The return URL.
    pub rd: Option<String>,
    /// The provider's name.
    pub provider: Option<String>,
}

/// A login failure with its status, rendered for the client.
pub(super) struct Failure {
    pub(super) status: StatusCode,
    pub(super) message: String,
    html: bool,
}

impl Failure {
    pub(super) fn new(error: &LoginError, headers: &HeaderMap) -> Failure {
        let status = match error {
            LoginError::ProviderUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            LoginError::NotAllowed => StatusCode::FORBIDDEN,
            LoginError::UnknownProvider(_) => StatusCode::NOT_FOUND,
            LoginError::Session(SessionError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            LoginError::Session(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        Failure {
            status,
            message: error.to_string(),
            html: wants_html(headers),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = if self.html {
            let body = page(
                "Login failed",
                &format!(
                    "<p role=\"alert\">{}</p>\n<p><a href=\"/\">Back to the start page</a></p>",
                    escape(&self.message)
                ),
            );
            (self.status, axum::response::Html(body)).into_response()
        } else {
            let error = if self.status == StatusCode::SERVICE_UNAVAILABLE {
                "temporarily_unavailable"
            } else {
                "login_failed"
            };
            (
                self.status,
                axum::Json(serde_json::json!({"error": error, "error_description": self.message})),
            )
                .into_response()
        };
        no_store(&mut response);
        response
    }
}

pub(super) fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

pub(super) fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A minimal accessible page.
pub(super) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head>\n<body>\n<main>\n<h1>{title}</h1>\n{body}\n</main>\n</body>\n</html>\n"
    )
}

/// HTML text escaping.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A 302 to `location`, with each of `cookies` set.
pub(super) fn found(location: &str, cookies: impl IntoIterator<Item = String>) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, value);
    }
    for cookie in cookies
        .into_iter()
        .filter_map(|c| HeaderValue::from_str(&c).ok())
    {
        headers.append(header::SET_COOKIE, cookie);
    }
    no_store(&mut response);
    response
}

pub(super) fn login_service(state: &AppState, headers: &HeaderMap) -> Result<Arc<Login>, Failure> {
    state.engine.current().login.clone().ok_or_else(|| Failure {
        status: StatusCode::NOT_FOUND,
        message: "browser login is not configured".into(),
        html: wants_html(headers),
    })
}

/// The value of the cookie `name`, if the request carries one (read as
/// the check reads it: [`crate::check::authn::sources::cookie_value`]).
pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<Secret> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| crate::check::authn::sources::cookie_value(v, name))
        .map(Secret::new)
}

/// The browser's login binding: kept when it has a well-formed one
/// (several tabs logging in at once share it), else a fresh one; the
/// caller sets it again either way so it outlives the login's state.
pub(super) fn binding(
    headers: &HeaderMap,
    sessions: &crate::sessions::Sessions,
) -> Result<Secret, LoginError> {
    match cookie(headers, &sessions.binding_cookie_name())
        .filter(|b| well_formed_binding(b.expose()))
    {
        Some(b) => Ok(b),
        None => random_token()
            .map_err(|_| LoginError::Session(SessionError::Internal("no random bytes"))),
    }
}

/// `GET /auth/login`.
pub async fn login(
    State(state): State<AppState>,
    Query(query): Query<LoginQuery>,
    headers: HeaderMap,
) -> Response {
    let service = match login_service(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let rd = match service.return_url(query.rd.as_deref()) {
        Ok(rd) => rd,
        Err(e) => return Failure::new(&e.into(), &headers).into_response(),
    };
    let name = match (&query.provider, service.providers()) {
        (Some(name), _) => name.clone(),
        (None, [only]) => only.config.name.clone(),
        (None, providers) => return choice_page(providers, &rd),
    };
    let sessions = service.sessions();
    let binding = match binding(&headers, sessions) {
        Ok(b) => b,
        Err(e) => return Failure::new(&e, &headers).into_response(),
    };
    match service.start(&name, rd, &binding).await {
        Ok(url) => found(&url, [sessions.set_binding_cookie(&binding)]),
        Err(e) => Failure::new(&e, &headers).into_response(),
    }
}

/// The provider choice: one link per provider, no script.
fn choice_page(providers: &[Arc<crate::login::Provider>], rd: &str) -> Response {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let items: String = providers
        .iter()
        .map(|p| {
            format!(
                "<li><a href=\"/auth/login?provider={}&amp;rd={}\">{}</a></li>\n",
                encode(&p.config.name),
                encode(rd),
                escape(&p.config.name)
            )
        })
        .collect();
    let body = format!(
        "<p>Choose where to log in:</p>\n<nav aria-label=\"Identity providers\">\n<ul>\n{items}</ul>\n</nav>"
    );
    let mut response = axum::response::Html(page("Log in", &body)).into_response();
    no_store(&mut response);
    response
}

/// `GET /auth/callback`.
pub async fn callback(
    State(state): State<AppState>,
    Query(query): Query<Callback>,
    headers: HeaderMap,
) -> Response {
    let service = match login_service(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let sessions = service.sessions();
    let replaces = cookie(&headers, sessions.cookie_name());
    let binding = cookie(&headers, &sessions.binding_cookie_name());
    match service.finish(&query, binding.as_ref(), replaces).await {
        Ok((created, rd)) => {
            let eager = state
                .engine
                .current()
                .backends
                .as_ref()
                .map(|b| b.eager())
                .unwrap_or_default();
            found(&chain(&eager, rd), [sessions.set_cookie(&created.id)])
        }
        Err(e) => {
            tracing::info!(error = %e, "login refused");
            Failure::new(&e, &headers).into_response()
        }
    }
}

/// After a login, through every eager backend's authorization, then to
/// `rd`: `/auth/backends/a/login?rd=/auth/backends/b/login?rd=<rd>`.
fn chain(eager: &[String], rd: String) -> String {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    eager.iter().rev().fold(rd, |next, name| {
        format!("/auth/backends/{name}/login?rd={}", encode(&next))
    })
}

/// `GET` or `POST /auth/logout`.
pub async fn logout(
    State(state): State<AppState>,
    Query(query): Query<LoginQuery>,
    headers: HeaderMap,
) -> Response {
    let service = match login_service(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let rd = match service.return_url(query.rd.as_deref()) {
        Ok(rd) => rd,
        Err(e) => return Failure::new(&e.into(), &headers).into_response(),
    };
    let sessions = service.sessions();
    let mut target = rd.clone();
    if let Some(cookie) = cookie(&headers, sessions.cookie_name()) {
        let session = match sessions.lookup(cookie.expose()).await {
            Ok(s) => s,
            Err(e) => return Failure::new(&e.into(), &headers).into_response(),
        };
        if let Err(e) = sessions.end(cookie.expose()).await {
            return Failure::new(&e.into(), &headers).into_response();
        }
        if let (Some(session), Some(backends)) = (&session, &state.engine.current().backends)
            && let Err(e) = backends.forget(&session.record.identity.subject).await
        {
            tracing::warn!(error = %e, "backend tokens not dropped at logout");
        }
        if let Some(session) = session {
            target = service
                .logout_url(
                    &session.record.provider,
                    session.record.tokens.id_token.as_ref(),
                    rd,
                )
                .await;
        }
    }
    found(&target, [sessions.clear_cookie()])
}

/// `GET /auth/userinfo`.
pub async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let service = match login_service(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let sessions = service.sessions();
    let session = match cookie(&headers, sessions.cookie_name()) {
        Some(cookie) => match sessions.lookup(cookie.expose()).await {
            Ok(s) => s,
            Err(e) => return Failure::new(&e.into(), &headers).into_response(),
        },
        None => None,
    };
    let mut response = match session {
        Some(session) => {
            let record = &session.record;
            let identity = &record.identity;
            axum::Json(serde_json::json!({
                "provider": record.provider,
                "sub": identity.subject,
                "username": identity.username,
                "email": identity.email,
                "uid": identity.uid,
                "groups": identity.groups,
                "scopes": identity.scopes,
                "expires_at": sessions.expires_at(&session),
                "csrf_token": record.csrf_token.expose(),
            }))
            .into_response()
        }
        None => (
            StatusCode::UNAUTHORIZED,
            axum::Json(
                serde_json::json!({"error": "no_session", "error_description": "not logged in"}),
            ),
        )
            .into_response(),
    };
    no_store(&mut response);
    response
}

/// The form a provider posts to `/auth/backchannel-logout`.
#[derive(Debug, Default, Deserialize)]
pub struct LogoutForm {
    /// The signed logout token.
    pub logout_token: Option<String>,
}

/// `POST /auth/backchannel-logout` (OpenID Connect Back-Channel Logout
/// 1.0, section 2.8): 200 when the token is valid (its sessions ended, or
/// none was live), 400 with an OAuth error otherwise, 503 when the store
/// or the provider's keys are unavailable; never cached.
pub async fn backchannel_logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    let service = match login_service(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let result = match form.logout_token.as_deref() {
        Some(token) if !token.is_empty() => service.backchannel_logout(token).await,
        _ => Err(LogoutError::Malformed("no logout_token")),
    };
    let mut response = match result {
        Ok(subject) => {
            if let (Some(subject), Some(backends)) = (subject, &state.engine.current().backends)
                && let Err(e) = backends.forget(&subject).await
            {
                tracing::warn!(error = %e, "backend tokens not dropped at back-channel logout");
            }
            StatusCode::OK.into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "back-channel logout refused");
            let (status, error) = match e {
                LogoutError::ProviderUnavailable
                | LogoutError::Session(SessionError::Unavailable(_)) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
                }
                LogoutError::Session(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
                _ => (StatusCode::BAD_REQUEST, "invalid_request"),
            };
            let body = serde_json::json!({"error": error, "error_description": e.to_string()});
            (status, axum::Json(body)).into_response()
        }
    };
    no_store(&mut response);
    response
}
