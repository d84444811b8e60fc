//! The command-line login endpoints ([`crate::login::cli`]):
//!
//! | route | what |
//! |---|---|
//! | `POST /auth/cli/login` | starts a login: `{login_url, poll_url, poll_token, user_code, expires_in, interval}` |
//! | `GET /auth/cli/authorize?id=` | the browser: log in first (302 to `/auth/login?rd=`), then a confirmation page |
//! | `POST /auth/cli/authorize` | the page's form (`id`, `csrf_token`, `decision`): approve or refuse |
//! | `GET /auth/cli/poll?id=` | the command, with `Authorization: Bearer <poll_token>`: pending, or the API token once |
//! | `POST /auth/cli/device` | RFC 8628's device authorization request, passed on to the provider ([`crate::login::device`]) |
//! | `POST /auth/cli/device/token` | RFC 8628's token request with gatehouse's handle: pending, slow down, or the API token once |
//!
//! The device flow's answers are RFC 8628's exactly (every error a 400,
//! see `device_error`); the poll's below differ in two statuses.
//!
//! **The poll's answers** follow RFC 8628 (section 3.5), so that a
//! client written for the device flow reads them unchanged:
//!
//! | status | body | when |
//! |---|---|---|
//! | 200 | `{access_token, token_type: "Bearer", expires_in, scope}` | approved; only the first poll after approval |
//! | 400 | `{"error": "authorization_pending"}` | not answered yet: poll again after `interval` seconds |
//! | 401 | `{"error": "invalid_client"}` | no poll token, or not this login's: nothing about its state |
//! | 403 | `{"error": "access_denied"}` | the person refused it |
//! | 410 | `{"error": "expired_token"}` | `cli.login_timeout` passed, the token was collected already, or no such login |
//!
//! 410 rather than RFC 8628's 400 for `expired_token`: Renku's CLI and
//! plain HTTP clients tell *gone* from *pending* by the status alone.
//!
//! **The token** is an API token (`api_tokens`) of the approving user,
//! named `cli-<UTC time>-<login fingerprint>`, holding the session's
//! scopes (only those in `cli.token_scopes` when that is set) and expiring
//! after `cli.token_lifetime`. It is made here, not in `login/`, because
//! `login/` must not import `tokens/` (ARCHITECTURE.md). The token
//! service's own rules apply (at most `api_tokens.max_tokens_per_user`).
//!
//! **The confirmation page is CSRF-safe**: approving is a `POST` whose
//! form carries the session's CSRF token (compared in constant time), and
//! an `Origin`, when the browser sends one, must be gatehouse's own. A
//! page elsewhere cannot read the token, so it cannot approve on a
//! logged-in person's behalf; the page may not be framed (no
//! clickjacking). It shows the user code the command printed, so the
//! person can tell their own command's login from one someone sent them.
//!
//! Nothing here logs the poll token, the API token or a session id.

use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::login::escape;
use super::{AppState, now_secs};
use crate::login::Login;
use crate::login::cli::{Approved, CliLoginError, CliLogins, CliState, Polled};
use crate::login::device::{DeviceError, DevicePolled};
use crate::secret::Secret;
use crate::sessions::Session;
use crate::tokens::{ApiTokens, Caller, NewToken, TokenError};

/// Seconds a command should wait between polls.
pub const POLL_INTERVAL: u64 = 2;

/// `?id=` of the authorize page and the poll.
#[derive(Debug, Default, Deserialize)]
pub struct IdQuery {
    /// The login's public id.
    pub id: Option<String>,
}

/// The confirmation page's form.
#[derive(Debug, Default, Deserialize)]
pub struct AnswerForm {
    /// The login's public id.
    pub id: Option<String>,
    /// The session's CSRF token.
    pub csrf_token: Option<String>,
    /// `approve` or `deny`.
    pub decision: Option<String>,
}

/// Everything the endpoints need, or the 404 that says the feature is off.
struct Services {
    cli: Arc<CliLogins>,
    login: Arc<Login>,
    tokens: Arc<ApiTokens>,
}

fn services(state: &AppState) -> Option<Services> {
    let engine = state.engine.current();
    Some(Services {
        cli: engine.cli_login.clone()?,
        login: engine.login.clone()?,
        tokens: engine.authn.api_tokens.clone()?,
    })
}

fn no_store(response: &mut Response) {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
}

/// A JSON answer, never cached.
fn json(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    no_store(&mut response);
    response
}

/// An OAuth-style error answer.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = json(
        status,
        serde_json::json!({"error": error, "error_description": description}),
    );
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_client\""),
        );
    }
    response
}

fn not_configured() -> Response {
    oauth_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "command-line login is not configured",
    )
}

/// A login error for the command (JSON).
fn cli_error(e: &CliLoginError) -> Response {
    let (status, code) = match e {
        CliLoginError::Expired | CliLoginError::Used => (StatusCode::GONE, "expired_token"),
        CliLoginError::WrongSecret => (StatusCode::UNAUTHORIZED, "invalid_client"),
        CliLoginError::Denied => (StatusCode::FORBIDDEN, "access_denied"),
        CliLoginError::Answered => (StatusCode::CONFLICT, "invalid_request"),
        CliLoginError::Unavailable(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
        }
        CliLoginError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
    };
    oauth_error(status, code, &e.to_string())
}

/// `POST /auth/cli/login`.
pub async fn start(State(state): State<AppState>) -> Response {
    let Some(s) = services(&state) else {
        return not_configured();
    };
    let started = match s.cli.start().await {
        Ok(started) => started,
        Err(e) => return cli_error(&e),
    };
    let base = s.cli.base_url();
    json(
        StatusCode::OK,
        serde_json::json!({
            "login_url": format!("{base}/auth/cli/authorize?id={}", started.id),
            "poll_url": format!("{base}/auth/cli/poll?id={}", started.id),
            "poll_token": started.secret.expose(),
            "user_code": started.user_code,
            "expires_in": started.expires_in,
            "interval": POLL_INTERVAL,
        }),
    )
}

/// The poll's secret: `Authorization: Bearer <poll_token>`.
fn bearer(headers: &HeaderMap) -> Option<Secret> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| Secret::new(token))
}

/// `GET /auth/cli/poll?id=`.
pub async fn poll(
    State(state): State<AppState>,
    Query(query): Query<IdQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(s) = services(&state) else {
        return not_configured();
    };
    let id = query.id.unwrap_or_default();
    let secret = bearer(&headers);
    let approved = match s.cli.poll(&id, secret.as_ref()).await {
        Ok(Polled::Pending) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "authorization_pending",
                "not approved in the browser yet; poll again",
            );
        }
        Ok(Polled::Approved(approved)) => approved,
        Err(e) => return cli_error(&e),
    };
    api_token(&s, &approved, &crate::login::cli::fingerprint(&id)[..6]).await
}

/// The approved login's API token, as the poll's 200 answer (RFC 8628
/// section 3.5's shape): for the approving user, holding their scopes
/// (only those in `cli.token_scopes` when set), named
/// `cli-<UTC time>-<label>`. Both ways in (the custom login and the device
/// flow) end here.
async fn api_token(s: &Services, approved: &Approved, label: &str) -> Response {
    let who = &approved.identity;
    let identity = who.to_identity(&approved.provider);
    let caller = Caller {
        identity: &identity,
        superuser: false,
    };
    let config = s.cli.config();
    let scopes: Vec<String> = who
        .scopes
        .iter()
        .filter(|scope| {
            config
                .token_scopes
                .as_ref()
                .is_none_or(|allowed| allowed.contains(scope))
        })
        .cloned()
        .collect();
    let now = now_secs();
    let lifetime = config.token_lifetime.as_secs();
    let name = format!("cli-{}-{}", utc_stamp(now), label);
    let new = NewToken {
        name,
        scopes: scopes.clone(),
        expires: Some(now.saturating_add(lifetime)),
        tool: None,
    };
    let user = caller.user().to_string();
    match s.tokens.create(&caller, &user, new, now).await {
        Ok(created) => json(
            StatusCode::OK,
            serde_json::json!({
                "access_token": created.token.expose(),
                "token_type": "Bearer",
                "expires_in": created.info.expires.saturating_sub(now),
                "scope": scopes.join(" "),
            }),
        ),
        Err(e) => {
            tracing::warn!(
                login = label,
                user,
                reason = %e,
                "command-line login approved but its API token was not created"
            );
            let status =
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = match e {
                TokenError::Unavailable(_) => "temporarily_unavailable",
                _ => "server_error",
            };
            oauth_error(status, code, &format!("no API token: {e}"))
        }
    }
}

/// A request body or query as form fields (RFC 8628's requests are
/// `application/x-www-form-urlencoded`; any other body adds nothing).
fn form_fields(headers: &HeaderMap, body: &[u8]) -> Vec<(String, String)> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !is_form {
        return Vec::new();
    }
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `?provider=` of the device authorization request.
#[derive(Debug, Default, Deserialize)]
pub struct ProviderQuery {
    /// Which login provider (needed when several are configured).
    pub provider: Option<String>,
}

/// A device-flow error as RFC 8628 (section 3.5) and RFC 6749 (5.2) put
/// it: 400 with an OAuth error code for everything the client acts on.
fn device_error(e: &DeviceError) -> Response {
    let (status, code) = match e {
        DeviceError::NeedProvider | DeviceError::UnknownProvider(_) => {
            (StatusCode::BAD_REQUEST, "invalid_request")
        }
        DeviceError::NotOffered(_) => (StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        DeviceError::Expired => (StatusCode::BAD_REQUEST, "expired_token"),
        DeviceError::Used => (StatusCode::BAD_REQUEST, "invalid_grant"),
        DeviceError::Denied | DeviceError::Login(_) => (StatusCode::BAD_REQUEST, "access_denied"),
        DeviceError::ProviderUnavailable(_) | DeviceError::Unavailable(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
        }
        DeviceError::Provider(_) => (StatusCode::BAD_GATEWAY, "server_error"),
        DeviceError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
    };
    oauth_error(status, code, &e.to_string())
}

/// `POST /auth/cli/device`: RFC 8628's device authorization request,
/// passed on to the login provider (`provider=` in the query or form
/// names it when several are configured). Answers RFC 8628 section 3.2's
/// fields: the provider's `user_code` and `verification_uri(_complete)`,
/// and in `device_code` gatehouse's own handle (the provider's device code
/// stays in gatehouse).
pub async fn device_start(
    State(state): State<AppState>,
    Query(query): Query<ProviderQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(s) = services(&state) else {
        return not_configured();
    };
    let fields = form_fields(&headers, &body);
    let provider = query
        .provider
        .as_deref()
        .or_else(|| field(&fields, "provider"));
    let base = s.cli.base_url();
    let started = match s.cli.device().start(&s.login, provider, base).await {
        Ok(started) => started,
        Err(e) => return device_error(&e),
    };
    let mut answer = serde_json::json!({
        "device_code": started.handle.expose(),
        "user_code": started.user_code,
        "verification_uri": started.verification_uri,
        "expires_in": started.expires_in,
        "interval": started.interval,
    });
    if let Some(complete) = started.verification_uri_complete {
        answer["verification_uri_complete"] = complete.into();
    }
    json(StatusCode::OK, answer)
}

/// `POST /auth/cli/device/token`: RFC 8628 section 3.4's token request
/// (`grant_type=urn:ietf:params:oauth:grant-type:device_code`,
/// `device_code=<the handle>`; a `client_id` is accepted and ignored: the
/// handle is the credential). Pending, slow down, refused or expired as
/// RFC 8628 says, or the API token once.
pub async fn device_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(s) = services(&state) else {
        return not_configured();
    };
    let fields = form_fields(&headers, &body);
    if field(&fields, "grant_type") != Some(crate::login::device::GRANT_TYPE) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!(
                "grant_type must be {} (a form-encoded body)",
                crate::login::device::GRANT_TYPE
            ),
        );
    }
    let Some(handle) = field(&fields, "device_code").filter(|h| !h.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "device_code is required",
        );
    };
    let polled = s
        .cli
        .device()
        .poll(&s.login, handle, s.cli.base_url())
        .await;
    match polled {
        Ok(DevicePolled::Pending) => oauth_error(
            StatusCode::BAD_REQUEST,
            "authorization_pending",
            "not approved at the identity provider yet; poll again",
        ),
        Ok(DevicePolled::SlowDown(interval)) => json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({
                "error": "slow_down",
                "error_description": "poll less often",
                "interval": interval,
            }),
        ),
        Ok(DevicePolled::Approved(approved)) => {
            let label = crate::login::device::fingerprint(handle);
            api_token(&s, &approved, &label[..6]).await
        }
        Err(e) => device_error(&e),
    }
}

/// `YYYYMMDDTHHMMSSZ`.
fn utc_stamp(secs: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// A minimal accessible page that may not be framed or cached.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head>\n<body>\n<main>\n<h1>{title}</h1>\n{body}\n</main>\n</body>\n</html>\n"
    );
    let mut response = (status, axum::response::Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; form-action 'self'; frame-ancestors 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    no_store(&mut response);
    response
}

/// A failure as a page.
fn failure_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Command-line login",
        &format!("<p role=\"alert\">{}</p>", escape(message)),
    )
}

/// A login error for the browser (a page).
fn browser_error(e: &CliLoginError) -> Response {
    let status = match e {
        CliLoginError::Expired | CliLoginError::Used => StatusCode::GONE,
        CliLoginError::Answered => StatusCode::CONFLICT,
        CliLoginError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        CliLoginError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        CliLoginError::WrongSecret | CliLoginError::Denied => StatusCode::FORBIDDEN,
    };
    failure_page(status, &e.to_string())
}

/// The browser's session, if it has a live one.
async fn session(login: &Login, headers: &HeaderMap) -> Result<Option<Session>, Response> {
    let sessions = login.sessions();
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| crate::check::authn::sources::cookie_value(v, sessions.cookie_name()));
    let Some(cookie) = cookie else {
        return Ok(None);
    };
    sessions.lookup(cookie).await.map_err(|_| {
        failure_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "sessions are unavailable; try again shortly",
        )
    })
}

/// `GET /auth/cli/authorize?id=`.
pub async fn authorize_page(
    State(state): State<AppState>,
    Query(query): Query<IdQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(s) = services(&state) else {
        return failure_page(
            StatusCode::NOT_FOUND,
            "command-line login is not configured",
        );
    };
    let id = query.id.unwrap_or_default();
    if !crate::login::cli::well_formed(&id) {
        return browser_error(&CliLoginError::Expired);
    }
    match s.cli.state(&id).await {
        Ok(CliState::Pending) => {}
        Ok(_) => return browser_error(&CliLoginError::Answered),
        Err(e) => return browser_error(&e),
    }
    let session = match session(&s.login, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            // Log in first, then come back here (a relative `rd` is
            // always allowed).
            let back = format!("/auth/cli/authorize?id={id}");
            let rd: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
            let mut response = StatusCode::FOUND.into_response();
            if let Ok(location) = HeaderValue::from_str(&format!("/auth/login?rd={rd}")) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            no_store(&mut response);
            return response;
        }
        Err(response) => return response,
    };
    let who = &session.record.identity;
    let user = who.username.as_deref().unwrap_or(&who.subject);
    let body = format!(
        "<p>A command-line program asks to act as <strong>{user}</strong>. \
         Allow it only if you started it yourself and it shows the code \
         <strong><code>{code}</code></strong>.</p>\n\
         <form method=\"post\" action=\"/auth/cli/authorize\">\n\
         <input type=\"hidden\" name=\"id\" value=\"{id}\">\n\
         <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\n\
         <button type=\"submit\" name=\"decision\" value=\"approve\">Allow</button>\n\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Refuse</button>\n\
         </form>",
        user = escape(user),
        code = crate::login::cli::user_code(&id),
        id = escape(&id),
        csrf = escape(session.record.csrf_token.expose()),
    );
    page(
        StatusCode::OK,
        &format!("Allow the command-line login for {}?", escape(user)),
        &body,
    )
}

/// Whether `Origin`, when the browser sends one, is gatehouse's own.
fn same_origin(headers: &HeaderMap, base: &str) -> bool {
    match headers.get(header::ORIGIN).map(HeaderValue::to_str) {
        None => true,
        Some(Ok(origin)) => origin.eq_ignore_ascii_case(base),
        Some(Err(_)) => false,
    }
}

/// `POST /auth/cli/authorize`.
pub async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<AnswerForm>,
) -> Response {
    let Some(s) = services(&state) else {
        return failure_page(
            StatusCode::NOT_FOUND,
            "command-line login is not configured",
        );
    };
    let id = form.id.unwrap_or_default();
    let refused = |why: &str| {
        tracing::info!(login = %crate::login::cli::fingerprint(&id), why, "command-line login answer refused");
        failure_page(
            StatusCode::FORBIDDEN,
            "this answer did not come from gatehouse's own page; open the login link again",
        )
    };
    if !same_origin(&headers, s.cli.base_url()) {
        return refused("another origin");
    }
    let session = match session(&s.login, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            return failure_page(
                StatusCode::UNAUTHORIZED,
                "you are not logged in; open the login link again",
            );
        }
        Err(response) => return response,
    };
    let sent = Secret::new(form.csrf_token.unwrap_or_default());
    if !sent.ct_eq(&session.record.csrf_token) {
        return refused("no or a wrong CSRF token");
    }
    let approve = match form.decision.as_deref() {
        Some("approve") => Some((
            session.record.provider.clone(),
            session.record.identity.clone(),
        )),
        Some("deny") => None,
        _ => {
            return failure_page(StatusCode::BAD_REQUEST, "choose Allow or Refuse");
        }
    };
    let approved = approve.is_some();
    match s.cli.answer(&id, approve).await {
        Ok(()) if approved => page(
            StatusCode::OK,
            "Command-line login allowed",
            "<p role=\"status\">Return to your terminal: the command is logged in.</p>",
        ),
        Ok(()) => page(
            StatusCode::OK,
            "Command-line login refused",
            "<p role=\"status\">The command will not be logged in.</p>",
        ),
        Err(e) => browser_error(&e),
    }
}
