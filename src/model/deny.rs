//! Why a request is refused, with the HTTP status, gRPC code and challenge
//! declared beside each reason (one place maps failures to responses).

use crate::config::{AuthType, Satisfy};

/// gRPC status codes used in `CheckResponse.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcCode {
    /// 0: the request is allowed.
    Ok = 0,
    /// 3: the request itself is malformed.
    InvalidArgument = 3,
    /// 7: authenticated, but not allowed.
    PermissionDenied = 7,
    /// 13: gatehouse or the route is misconfigured.
    Internal = 13,
    /// 14: a dependency (an issuer's keys) is not available.
    Unavailable = 14,
    /// 16: no valid credential.
    Unauthenticated = 16,
}

/// Every deny reason label, indexed by [`Deny::reason_index`].
pub const REASON_LABELS: [&str; 11] = [
    "bad_request",
    "no_credential",
    "invalid_token",
    "insufficient_scope",
    "no_rule",
    "keys_unavailable",
    "misconfigured",
    "invalid_certificate",
    "tool_mismatch",
    "link_not_granted",
    "store_unavailable",
];

/// A refusal. Rendering lives in [`crate::response`]; this type only says
/// what went wrong and which status, code and challenge that means.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Deny {
    /// The request is malformed (bad path, bad header).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No credential was presented where one is needed.
    #[error("authentication required")]
    NoCredential {
        /// The challenge scheme to answer with.
        auth_type: AuthType,
    },
    /// A credential was presented but is not valid.
    #[error("invalid token: {reason}")]
    InvalidToken {
        /// Why (safe to show the client: never contains the token).
        reason: String,
        /// The challenge scheme to answer with.
        auth_type: AuthType,
    },
    /// The caller lacks the scopes the route demands.
    #[error("insufficient scope: requires {} of {}", satisfy.as_str(), scopes.join(" "))]
    InsufficientScope {
        /// The scopes demanded.
        scopes: Vec<String>,
        /// Whether all or any were needed.
        satisfy: Satisfy,
    },
    /// No rule covers this request and the default is to deny.
    #[error("no rule allows this request")]
    NoRule,
    /// The issuer's keys could not be loaded, so the token cannot be checked.
    #[error("signing keys for the token's issuer are not available")]
    KeysUnavailable,
    /// The route's configuration (e.g. a context extension) is invalid.
    #[error("route misconfigured: {0}")]
    Misconfigured(String),
    /// A client certificate (or a trusted proxy's account of one) was
    /// presented but is not acceptable.
    #[error("invalid client certificate: {reason}")]
    InvalidCertificate {
        /// Why (safe to show the client: never contains the certificate).
        reason: String,
        /// The challenge scheme to answer with.
        auth_type: AuthType,
    },
    /// The route belongs to a tool the caller may not act for.
    #[error("the caller may not act for this tool")]
    ToolMismatch,
    /// A signed link is valid but does not cover this path or method.
    #[error("{0}")]
    LinkNotGranted(crate::model::grant::NotGranted),
    /// The store (one-time link uses) cannot be reached or is full.
    #[error("state store unavailable")]
    StoreUnavailable,
}

impl Deny {
    /// HTTP status sent to the client.
    pub fn http_status(&self) -> u16 {
        match self {
            Deny::BadRequest(_) => 400,
            Deny::NoCredential { .. } | Deny::InvalidToken { .. } => 401,
            Deny::InsufficientScope { .. } | Deny::NoRule => 403,
            Deny::Misconfigured(_) => 500,
            Deny::KeysUnavailable => 503,
            Deny::InvalidCertificate { .. } => 401,
            Deny::ToolMismatch => 403,
            Deny::LinkNotGranted(_) => 403,
            Deny::StoreUnavailable => 503,
        }
    }

    /// gRPC code placed in `CheckResponse.status`.
    pub fn grpc_code(&self) -> GrpcCode {
        match self {
            Deny::BadRequest(_) => GrpcCode::InvalidArgument,
            Deny::NoCredential { .. } | Deny::InvalidToken { .. } => GrpcCode::Unauthenticated,
            Deny::InsufficientScope { .. } | Deny::NoRule => GrpcCode::PermissionDenied,
            Deny::Misconfigured(_) => GrpcCode::Internal,
            Deny::KeysUnavailable => GrpcCode::Unavailable,
            Deny::InvalidCertificate { .. } => GrpcCode::Unauthenticated,
            Deny::ToolMismatch => GrpcCode::PermissionDenied,
            Deny::LinkNotGranted(_) => GrpcCode::PermissionDenied,
            Deny::StoreUnavailable => GrpcCode::Unavailable,
        }
    }

    /// The OAuth 2.0 / RFC 6750 error string for the JSON body and challenge.
    pub fn error_code(&self) -> &'static str {
        match self {
            Deny::BadRequest(_) => "invalid_request",
            Deny::NoCredential { .. } => "unauthorized",
            Deny::InvalidToken { .. } => "invalid_token",
            Deny::InsufficientScope { .. } => "insufficient_scope",
            Deny::NoRule => "access_denied",
            Deny::KeysUnavailable => "temporarily_unavailable",
            Deny::Misconfigured(_) => "server_error",
            Deny::InvalidCertificate { .. } => "invalid_certificate",
            Deny::ToolMismatch => "access_denied",
            Deny::LinkNotGranted(_) => "access_denied",
            Deny::StoreUnavailable => "temporarily_unavailable",
        }
    }

    /// A short machine-friendly reason label for logs and metrics.
    pub fn reason_label(&self) -> &'static str {
        REASON_LABELS[self.reason_index()]
    }

    /// This reason's position in [`REASON_LABELS`], so metrics can keep
    /// one pre-made counter per reason in an array.
    pub fn reason_index(&self) -> usize {
        match self {
            Deny::BadRequest(_) => 0,
            Deny::NoCredential { .. } => 1,
            Deny::InvalidToken { .. } => 2,
            Deny::InsufficientScope { .. } => 3,
            Deny::NoRule => 4,
            Deny::KeysUnavailable => 5,
            Deny::Misconfigured(_) => 6,
            Deny::InvalidCertificate { .. } => 7,
            Deny::ToolMismatch => 8,
            Deny::LinkNotGranted(_) => 9,
            Deny::StoreUnavailable => 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_label_and_index() {
        let auth_type = AuthType::Bearer;
        let all = [
            Deny::BadRequest("x".into()),
            Deny::NoCredential { auth_type },
            Deny::InvalidToken {
                reason: "x".into(),
                auth_type,
            },
            Deny::InsufficientScope {
                scopes: vec![],
                satisfy: Satisfy::All,
            },
            Deny::NoRule,
            Deny::KeysUnavailable,
            Deny::Misconfigured("x".into()),
            Deny::InvalidCertificate {
                reason: "x".into(),
                auth_type,
            },
            Deny::ToolMismatch,
            Deny::LinkNotGranted(crate::model::grant::NotGranted::Path),
            Deny::StoreUnavailable,
        ];
        let indexes: Vec<usize> = all.iter().map(Deny::reason_index).collect();
        assert_eq!(indexes, (0..REASON_LABELS.len()).collect::<Vec<_>>());
        assert_eq!(all[2].reason_label(), "invalid_token");
        assert_eq!(all[10].reason_label(), "store_unavailable");
        let mut labels = REASON_LABELS.to_vec();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), REASON_LABELS.len());
    }
}
