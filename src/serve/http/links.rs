//! `POST /auth/jwt/request` (mint a signed link) and `GET /auth/jwt/set`
//! (store a link in a cookie and redirect), kube-gateway style.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::redirect::safe_location;
use super::request::{from_http, json_body, parse_query};
use super::{AppState, now_secs};
use crate::check::authn::jwt::JwtError;
use crate::check::pipeline::Engine;
use crate::check::upstream::once;
use crate::config::AuthType;
use crate::issuer::InternalIssuer;
use crate::issuer::link::{LinkRequest, LinkSubject, MintError};
use crate::model::deny::Deny;
use crate::secret::Secret;

fn issuer(engine: &Engine) -> Result<&InternalIssuer, ApiError> {
    engine
        .issuer
        .as_deref()
        .ok_or_else(|| ApiError::NotFound("gatehouse has no issuer configured".into()))
}

fn denied(engine: &Engine, deny: Deny) -> ApiError {
    ApiError::Denied {
        deny,
        realm: engine.realm.clone(),
    }
}

fn no_store(response: &mut Response) {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
}

/// `POST /auth/jwt/request`: the caller authenticates like at the check
/// (a browser with its session cookie too, proving its origin or sending
/// the session's `X-CSRF-Token`: kube-gateway's web front end), must hold
/// a mint scope, and gets `{"Token": "…"}`.
pub(super) async fn request(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let engine = state.engine.current();
    let issuer = issuer(&engine)?;
    let request = from_http(&method, &uri, &headers, peer, &engine.trusted_proxies)?;
    let caller = match engine.authenticate_caller(&request, AuthType::Bearer).await {
        Ok(Some(identity)) => identity,
        Ok(None) => {
            return Err(denied(
                &engine,
                Deny::NoCredential {
                    auth_type: AuthType::Bearer,
                },
            ));
        }
        Err(deny) => return Err(denied(&engine, deny)),
    };
    let links = issuer.links();
    let allowed = links.allowed_prefixes(&caller).inspect_err(|e| {
        tracing::info!(subject = %caller.subject, reason = %e, "link mint refused");
    })?;

    let link_request: LinkRequest = json_body(&headers, body)?;

    let now = now_secs();
    let (token, grant) = links
        .mint(
            issuer,
            &LinkSubject::from(&caller),
            &link_request,
            Some(&allowed),
            now,
        )
        .inspect_err(|e| {
            tracing::info!(subject = %caller.subject, reason = %e, "link mint refused");
        })?;
    tracing::info!(
        subject = %caller.subject,
        urls = grant.urls.len(),
        verbs = %grant.verbs.join(","),
        not_before = grant.not_before,
        expires_at = grant.expires_at,
        once = grant.once,
        token_fingerprint = %token.fingerprint(),
        "link minted"
    );
    let mut response = axum::Json(serde_json::json!({ "Token": token.expose() })).into_response();
    no_store(&mut response);
    Ok(response)
}

/// `GET /auth/jwt/set?token=…&then=/path`: validates the link, stores it
/// in the link cookie for its remaining lifetime, and redirects (302) to
/// `then` (a same-origin path; default `/`). A one-time link is used up
/// here: the cookie holds a copy without `once`, valid for the same
/// window, so the browser can keep using it.
pub(super) async fn set(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let engine = state.engine.current();
    let issuer = issuer(&engine)?;
    let query = parse_query(uri.query())?;
    let location = safe_location(query.get("then").map_or("", String::as_str))
        .map_err(ApiError::BadRequest)?;
    let token = match query.get("token") {
        Some(t) if !t.is_empty() => Secret::new(t.clone()),
        _ => {
            return Err(ApiError::BadRequest(
                "the token query parameter is required".into(),
            ));
        }
    };
    let cookie = issuer.links().cookie().ok_or_else(|| {
        ApiError::NotFound("no cookie token source is configured (jwt.sources)".into())
    })?;
    let invalid = |reason: String| {
        denied(
            &engine,
            Deny::InvalidToken {
                reason,
                auth_type: AuthType::Bearer,
            },
        )
    };
    let identity = match engine.authn.jwt.verify(&token).await {
        Ok(identity) => identity,
        Err(JwtError::KeysUnavailable) => return Err(denied(&engine, Deny::KeysUnavailable)),
        Err(e) => {
            tracing::info!(token_fingerprint = %token.fingerprint(), reason = %e, "link hand-off refused");
            return Err(invalid(e.to_string()));
        }
    };
    let Some(grant) = identity.grant.clone() else {
        return Err(ApiError::BadRequest(
            "only signed links can be set as a cookie".into(),
        ));
    };
    let now = now_secs();
    let value = if grant.once {
        once::consume(engine.store.as_ref(), &grant, AuthType::Bearer)
            .await
            .map_err(|deny| denied(&engine, deny))?;
        let mut reusable = (*grant).clone();
        reusable.once = false;
        let claims = issuer
            .links()
            .claims(issuer, &LinkSubject::from(&identity), &reusable, now)
            .map_err(ApiError::Mint)?;
        issuer
            .sign(&claims)
            .map_err(|_| ApiError::Mint(MintError::Signing))?
    } else {
        token.clone()
    };
    let max_age = grant.expires_at.saturating_sub(now).max(1);
    let set_cookie = format!(
        "{cookie}={}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age={max_age}",
        value.expose()
    );
    let set_cookie = HeaderValue::from_str(&set_cookie)
        .map_err(|_| ApiError::Internal("the cookie could not be built"))?;
    let location =
        HeaderValue::from_str(&location).map_err(|_| ApiError::BadRequest("bad then".into()))?;
    tracing::info!(
        subject = %identity.subject,
        token_fingerprint = %token.fingerprint(),
        once = grant.once,
        "link stored in a cookie"
    );
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::SET_COOKIE, set_cookie);
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    no_store(&mut response);
    Ok(response)
}
