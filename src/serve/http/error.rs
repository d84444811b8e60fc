//! Errors of the side port, each with its HTTP status, rendered as
//! gatehouse's usual JSON body `{"error", "error_description"}` with
//! `Cache-Control: no-store` (and a challenge on 401).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::issuer::link::MintError;
use crate::model::deny::Deny;
use crate::tokens::TokenError;

/// A refused side-port request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed input (body, query, `then`).
    #[error("{0}")]
    BadRequest(String),
    /// 401/403/503…: authentication or authorization failed, as at the
    /// check (status, challenge and code from the [`Deny`]).
    #[error("{deny}")]
    Denied {
        /// Why.
        deny: Deny,
        /// Realm of the challenge.
        realm: String,
    },
    /// 400/403/500: a link could not be minted (status from the error).
    #[error("{0}")]
    Mint(#[from] MintError),
    /// 400/403/404/409/503: a request about API tokens was refused
    /// (status from the error).
    #[error("{0}")]
    Token(#[from] TokenError),
    /// 404: no such endpoint, or the feature is not configured.
    #[error("{0}")]
    NotFound(String),
    /// 413: the body is larger than allowed.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 415: the body is not declared as JSON.
    #[error("the body must be sent as Content-Type: application/json")]
    UnsupportedMediaType,
    /// 500: an internal failure (never details).
    #[error("{0}")]
    Internal(&'static str),
}

impl ApiError {
    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        let code = match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Denied { deny, .. } => deny.http_status(),
            ApiError::Mint(e) => e.http_status(),
            ApiError::Token(e) => e.http_status(),
            ApiError::NotFound(_) => 404,
            ApiError::PayloadTooLarge => 413,
            ApiError::UnsupportedMediaType => 415,
            ApiError::Internal(_) => 500,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The `error` string of the body.
    pub fn error_code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "invalid_request",
            ApiError::Denied { deny, .. } => deny.error_code(),
            ApiError::Mint(e) => e.error_code(),
            ApiError::Token(e) => e.error_code(),
            ApiError::NotFound(_) => "not_found",
            ApiError::PayloadTooLarge => "invalid_request",
            ApiError::UnsupportedMediaType => "invalid_request",
            ApiError::Internal(_) => "server_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let description = self.to_string();
        let body = serde_json::json!({
            "error": self.error_code(),
            "error_description": description,
        });
        let mut response = (self.status(), axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-store"),
        );
        if let ApiError::Denied { deny, realm } = &self
            && let Some(challenge) = deny
                .challenge(realm, &description)
                .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}
