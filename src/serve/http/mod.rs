//! The HTTP side port (axum), in the same process as the gRPC server:
//!
//! | route | what |
//! |---|---|
//! | `GET /.well-known/jwks.json` | the internal issuer's public keys |
//! | `GET /.well-known/openid-configuration` | `issuer`, `jwks_uri`, algorithms |
//! | `POST /auth/jwt/request` | mint a signed link (`links.rs`) |
//! | `GET /auth/jwt/set` | store a link in a cookie, redirect (`links.rs`) |
//! | `POST`, `GET /auth/api/v1/users/{user}/tokens`, `DELETE …/tokens/{key}`, `GET /auth/api/v1/user-info` | API tokens ([`tokens`]) |
//! | `POST /auth/cli/device`, `POST /auth/cli/device/token` | command-line login by RFC 8628's device flow ([`cli`]) |
//! | `GET /auth/backends/{name}/login`, `/auth/backends/{name}/callback` | per-user backend tokens ([`backends`]) |
//! | `GET /auth/login`, `/auth/callback`, `GET`/`POST /auth/logout`, `GET /auth/userinfo`, `POST /auth/backchannel-logout` | browser login ([`login`]) |
//! | `POST /auth/cli/login`, `GET`/`POST /auth/cli/authorize`, `GET /auth/cli/poll` | command-line login ([`cli`]) |
//! | `GET /healthz` | 200 when ready (every issuer's keys loaded), else 503 |
//! | `/ext_authz/<path>` | a check asked by Envoy's HTTP ext_authz ([`check`]) |
//! | `/auth` | a forward-auth check (nginx `auth_request`, Traefik) ([`check`]) |
//! | `GET /metrics` | Prometheus text exposition ([`crate::metrics`]) |
//!
//! It starts with the gRPC server and drains with it on SIGTERM.

pub mod backends;
pub mod check;
pub mod cli;
pub mod error;
mod links;
pub mod login;
pub mod redirect;
pub mod request;
pub mod tokens;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;

use crate::check::authn::jwt::keys::gauges;
use crate::issuer::{DISCOVERY_PATH, JWKS_PATH};
use crate::serve::live::LiveEngine;
use error::ApiError;

/// Largest request body (a link request is a few hundred bytes).
const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long clients may cache the JWKS and discovery document.
const KEYS_MAX_AGE: &str = "public, max-age=300";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The serving engine (authenticators, issuer, store); each request
    /// takes the current one once.
    pub engine: LiveEngine,
    /// Set when shutdown begins: `/healthz` answers 503 from then on.
    pub draining: Arc<AtomicBool>,
}

/// The side port's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(JWKS_PATH, get(jwks))
        .route(DISCOVERY_PATH, get(discovery))
        .route("/auth/jwt/request", post(links::request))
        .route("/auth/jwt/set", get(links::set))
        .route(
            &format!("{}/users/{{user}}/tokens", tokens::PREFIX),
            get(tokens::list).post(tokens::create),
        )
        .route(
            &format!("{}/users/{{user}}/tokens/{{key}}", tokens::PREFIX),
            delete(tokens::revoke),
        )
        .route(
            &format!("{}/user-info", tokens::PREFIX),
            get(tokens::user_info),
        )
        .route("/auth/login", get(login::login))
        .route("/auth/callback", get(login::callback))
        .route("/auth/logout", get(login::logout).post(login::logout))
        .route("/auth/userinfo", get(login::userinfo))
        .route("/auth/backchannel-logout", post(login::backchannel_logout))
        .route("/auth/backends/{name}/login", get(backends::login))
        .route("/auth/backends/{name}/callback", get(backends::callback))
        .route("/auth/cli/login", post(cli::start))
        .route(
            "/auth/cli/authorize",
            get(cli::authorize_page).post(cli::authorize),
        )
        .route("/auth/cli/poll", get(cli::poll))
        .route("/auth/cli/device", post(cli::device_start))
        .route("/auth/cli/device/token", post(cli::device_token))
        .route("/healthz", get(healthz))
        .route(check::ENVOY_PREFIX, any(check::envoy))
        .route(
            &format!("{}/{{*path}}", check::ENVOY_PREFIX),
            any(check::envoy),
        )
        .route("/auth", any(check::forward_auth))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

fn cached_json(value: &serde_json::Value) -> Response {
    let mut response = axum::Json(value).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(KEYS_MAX_AGE),
    );
    response
}

async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let engine = state.engine.current();
    let issuer = engine
        .issuer
        .as_deref()
        .ok_or_else(|| ApiError::NotFound("gatehouse has no issuer configured".into()))?;
    Ok(cached_json(issuer.jwks()))
}

async fn discovery(State(state): State<AppState>) -> Result<Response, ApiError> {
    let engine = state.engine.current();
    let issuer = engine
        .issuer
        .as_deref()
        .ok_or_else(|| ApiError::NotFound("gatehouse has no issuer configured".into()))?;
    Ok(cached_json(issuer.openid_configuration()))
}

/// 200 when the engine is ready and not draining (the gRPC health
/// service's SERVING), else 503.
async fn healthz(State(state): State<AppState>) -> Response {
    let serving = state.engine.load().ready() && !state.draining.load(Ordering::Relaxed);
    let (status, text) = if serving {
        (StatusCode::OK, "SERVING")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "NOT_SERVING")
    };
    let mut response = (status, axum::Json(serde_json::json!({ "status": text }))).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The Prometheus text exposition; the key-set gauges describe the
/// serving engine's issuers.
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let engine = state.engine.current();
    let text = engine
        .metrics
        .registry()
        .render(
            &gauges(&engine.authn.key_sets()),
            engine.authn.jwt.cached_tokens(),
        )
        .map_err(|e| {
            tracing::error!(error = %e, "cannot render metrics");
            ApiError::Internal("metrics could not be rendered")
        })?;
    let mut response = text.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Seconds since the epoch.
pub(crate) use crate::clock::now_secs;

/// A bound, not yet serving, side-port listener.
pub struct HttpListener {
    listener: TcpListener,
}

impl HttpListener {
    /// Binds `addr`.
    pub async fn bind(addr: SocketAddr) -> Result<HttpListener, std::io::Error> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("binding the HTTP side port {addr}: {e}"))
        })?;
        Ok(HttpListener { listener })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` resolves, then stops accepting and waits
    /// up to `drain` for in-flight requests. `engine`: an engine, or a
    /// [`LiveEngine`] a reloader swaps.
    pub async fn serve(
        self,
        engine: impl Into<LiveEngine>,
        drain: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), std::io::Error> {
        let draining = Arc::new(AtomicBool::new(false));
        let app = router(AppState {
            engine: engine.into(),
            draining: draining.clone(),
        });
        let (begin_tx, begin_rx) = tokio::sync::oneshot::channel::<()>();
        // TCP_NODELAY: a check answered over HTTP is one small write that
        // Nagle's algorithm would hold back waiting for the proxy's ACK.
        let listener = self.listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = begin_rx.await;
        });
        let mut server = tokio::spawn(async move { server.await });
        tokio::select! {
            result = &mut server => return crate::serve::drain::flatten("http", result),
            () = shutdown => {}
        }
        draining.store(true, Ordering::Relaxed);
        let _ = begin_tx.send(());
        crate::serve::drain::finish("http", &mut server, drain).await
    }
}

#[cfg(test)]
mod tests;
