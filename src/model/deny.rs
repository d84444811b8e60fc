//! Why a request is refused, with the HTTP status, gRPC code and challenge
//! declared beside each reason (one place maps failures to responses).

use tonic::Code;

use crate::config::{AuthType, Satisfy};

/// The rendering facts of one reason: every row of the one table that
/// maps a refusal to what the client and the operator see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// HTTP status sent to the client.
    pub status: u16,
    /// gRPC code placed in `CheckResponse.status`.
    pub code: tonic::Code,
    /// The OAuth 2.0 / RFC 6750 error string (JSON body and challenge).
    pub error: &'static str,
    /// Short machine-friendly label for logs and metrics.
    pub label: &'static str,
}

const fn row(status: u16, code: tonic::Code, error: &'static str, label: &'static str) -> Row {
    Row {
        status,
        code,
        error,
        label,
    }
}

/// Every reason's row, indexed by [`Deny::reason_index`].
pub const TABLE: [Row; 21] = [
    row(400, Code::InvalidArgument, "invalid_request", "bad_request"),
    row(401, Code::Unauthenticated, "unauthorized", "no_credential"),
    row(401, Code::Unauthenticated, "invalid_token", "invalid_token"),
    row(
        403,
        Code::PermissionDenied,
        "insufficient_scope",
        "insufficient_scope",
    ),
    row(403, Code::PermissionDenied, "access_denied", "no_rule"),
    row(
        503,
        Code::Unavailable,
        "temporarily_unavailable",
        "keys_unavailable",
    ),
    row(500, Code::Internal, "server_error", "misconfigured"),
    row(
        401,
        Code::Unauthenticated,
        "invalid_certificate",
        "invalid_certificate",
    ),
    row(
        403,
        Code::PermissionDenied,
        "access_denied",
        "tool_mismatch",
    ),
    row(
        403,
        Code::PermissionDenied,
        "access_denied",
        "link_not_granted",
    ),
    row(
        503,
        Code::Unavailable,
        "temporarily_unavailable",
        "store_unavailable",
    ),
    row(
        302,
        Code::Unauthenticated,
        "login_required",
        "login_required",
    ),
    row(
        403,
        Code::PermissionDenied,
        "access_denied",
        "origin_not_allowed",
    ),
    row(
        403,
        Code::PermissionDenied,
        "access_denied",
        "csrf_rejected",
    ),
    row(
        401,
        Code::Unauthenticated,
        "backend_login_required",
        "backend_login_required",
    ),
    row(401, Code::Unauthenticated, "unauthorized", "no_certificate"),
    row(
        403,
        Code::PermissionDenied,
        "access_denied",
        "condition_not_met",
    ),
    row(
        503,
        Code::Unavailable,
        "temporarily_unavailable",
        "provider_unavailable",
    ),
    row(
        403,
        Code::PermissionDenied,
        "access_denied",
        "exchange_refused",
    ),
    row(
        429,
        Code::ResourceExhausted,
        "rate_limited",
        "quota_exceeded",
    ),
    row(
        503,
        Code::Unavailable,
        "temporarily_unavailable",
        "needs_state",
    ),
];

/// Every deny reason label, indexed by [`Deny::reason_index`].
pub const REASON_LABELS: [&str; TABLE.len()] = {
    let mut labels = [""; TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        labels[i] = TABLE[i].label;
        i += 1;
    }
    labels
};

/// A refusal. Rendering lives in [`crate::check::response`]; this type only says
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
    /// A browser navigation without a credential, on a route that sends
    /// browsers to log in: a 302 to the login page.
    #[error("login required")]
    LoginRequired {
        /// The `Location`: the login page with `rd=<the original URL>`.
        location: String,
        /// `Set-Cookie` values sent with the redirect (e.g. a stale session
        /// cookie expired); each its own header.
        set_cookies: Vec<String>,
        /// The login-binding cookie to set as well (the request lacks it);
        /// its random value is drawn when the response is rendered.
        binding: Option<crate::model::requirement::BindingCookie>,
    },
    /// A credentialed request (or a preflight) from an origin that is
    /// neither the request's own nor in `cors.allowed_origins`.
    #[error("origin {origin} is not allowed")]
    OriginNotAllowed {
        /// The `Origin` the request carried.
        origin: String,
    },
    /// A state-changing request authenticated by the session cookie alone,
    /// without proof that it comes from an allowed page.
    #[error("cross-site request refused: {0}")]
    CsrfRejected(CsrfFailure),
    /// No credential, on a rule that accepts client certificates (or
    /// SPIFFE IDs) only: a 401 with no `WWW-Authenticate` challenge, since
    /// no token would do.
    #[error("a client certificate is required")]
    NoCertificate,
    /// The route sends the caller's own token at a backend upstream, and
    /// there is none (never authorized, or it could not be refreshed). A
    /// browser navigation gets a [`Deny::LoginRequired`] to the backend's
    /// login instead.
    #[error("no {backend} token for this user: authorize at {login_path}")]
    BackendLoginRequired {
        /// The backend's name.
        backend: String,
        /// Where to authorize (`/auth/backends/<name>/login`).
        login_path: String,
    },
    /// The rule's `when` condition is false for this request, or could not
    /// be evaluated (fail closed; the error is logged, not sent).
    #[error("the rule's condition does not hold")]
    ConditionNotMet,
    /// The authorization server gave no usable answer to an introspection
    /// or a token exchange (unreachable, slow, an error): fail closed.
    #[error("the authorization server is not available")]
    ProviderUnavailable,
    /// The authorization server refused to exchange the caller's token for
    /// one for the route's upstream (RFC 8693).
    #[error("the token cannot be exchanged for this upstream: {0}")]
    ExchangeRefused(String),
    /// The caller has used up the rule's quota (`quota: {per, limit,
    /// window}`): a 429 with `Retry-After` and the `RateLimit` headers.
    #[error(
        "quota exceeded: {} requests per {} s; retry in {} s",
        .0.limit, .0.window_secs, .0.retry_after_secs
    )]
    QuotaExceeded(QuotaStatus),
    /// The check needs shared state (an API token, a session, a one-time
    /// link, a quota) and this process keeps none: the in-process Envoy
    /// filter without a shared store, whose Envoy hands such checks to
    /// the service (or answers 503).
    #[error("this request needs shared state, which this process does not keep")]
    NeedsState,
}

/// Where a caller stands against a rule's quota, in whole seconds
/// (rounded up): what the `Retry-After` and `RateLimit` headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaStatus {
    /// The rule whose quota it is (the policy's name in the headers).
    pub rule: std::sync::Arc<str>,
    /// Requests allowed per window.
    pub limit: u64,
    /// The window.
    pub window_secs: u64,
    /// Requests the caller could still make at once.
    pub remaining: u64,
    /// Until the whole allowance is back.
    pub reset_secs: u64,
    /// Until one more request is allowed (at least 1 on a refusal).
    pub retry_after_secs: u64,
}

/// Why a session-authenticated state-changing request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfFailure {
    /// No `Origin`, no `Referer` and no `X-CSRF-Token`.
    #[error("no Origin, Referer or X-CSRF-Token header")]
    NoProof,
    /// The `Origin` (or `Referer`) is not the request's own nor allowed.
    #[error("the request's origin is not allowed")]
    ForeignOrigin,
    /// The `X-CSRF-Token` does not match the session's.
    #[error("the X-CSRF-Token header does not match the session")]
    TokenMismatch,
}

impl Deny {
    /// This reason's row of [`TABLE`].
    pub fn row(&self) -> &'static Row {
        &TABLE[self.reason_index()]
    }

    /// HTTP status sent to the client.
    pub fn http_status(&self) -> u16 {
        self.row().status
    }

    /// gRPC code placed in `CheckResponse.status`.
    pub fn grpc_code(&self) -> tonic::Code {
        self.row().code
    }

    /// The OAuth 2.0 / RFC 6750 error string for the JSON body and challenge.
    pub fn error_code(&self) -> &'static str {
        self.row().error
    }

    /// A short machine-friendly reason label for logs and metrics.
    pub fn reason_label(&self) -> &'static str {
        self.row().label
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3), if this denial
    /// has one; `description` is the text of the error.
    pub fn challenge(&self, realm: &str, description: &str) -> Option<String> {
        let realm = quote(realm);
        match self {
            Deny::NoCredential {
                auth_type: AuthType::Bearer,
            }
            | Deny::InvalidCertificate {
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
            Deny::BackendLoginRequired { .. } => Some(format!(
                "Bearer realm={realm}, error=\"backend_login_required\", error_description={}",
                quote(description)
            )),
            _ => None,
        }
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
            Deny::LoginRequired { .. } => 11,
            Deny::OriginNotAllowed { .. } => 12,
            Deny::CsrfRejected(_) => 13,
            Deny::BackendLoginRequired { .. } => 14,
            Deny::NoCertificate => 15,
            Deny::ConditionNotMet => 16,
            Deny::ProviderUnavailable => 17,
            Deny::ExchangeRefused(_) => 18,
            Deny::QuotaExceeded(_) => 19,
            Deny::NeedsState => 20,
        }
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
            Deny::LoginRequired {
                location: "/auth/login?rd=x".into(),
                set_cookies: vec![],
                binding: None,
            },
            Deny::OriginNotAllowed {
                origin: "https://evil.example".into(),
            },
            Deny::CsrfRejected(CsrfFailure::NoProof),
            Deny::BackendLoginRequired {
                backend: "gitlab".into(),
                login_path: "/auth/backends/gitlab/login".into(),
            },
            Deny::NoCertificate,
            Deny::ConditionNotMet,
            Deny::ProviderUnavailable,
            Deny::ExchangeRefused("invalid_target".into()),
            Deny::QuotaExceeded(QuotaStatus {
                rule: "api".into(),
                limit: 5,
                window_secs: 60,
                remaining: 0,
                reset_secs: 60,
                retry_after_secs: 12,
            }),
            Deny::NeedsState,
        ];
        let indexes: Vec<usize> = all.iter().map(Deny::reason_index).collect();
        assert_eq!(indexes, (0..REASON_LABELS.len()).collect::<Vec<_>>());
        assert_eq!(all[2].reason_label(), "invalid_token");
        assert_eq!(all[10].reason_label(), "store_unavailable");
        assert_eq!(
            (
                all[11].http_status(),
                all[11].grpc_code(),
                all[11].reason_label()
            ),
            (302, Code::Unauthenticated, "login_required")
        );
        assert_eq!(all[11].challenge("r", "d"), None);
        assert_eq!(
            (all[12].http_status(), all[12].reason_label()),
            (403, "origin_not_allowed")
        );
        assert_eq!(
            (all[13].http_status(), all[13].reason_label()),
            (403, "csrf_rejected")
        );
        assert_eq!(
            (
                all[19].http_status(),
                all[19].grpc_code(),
                all[19].error_code(),
                all[19].reason_label()
            ),
            (
                429,
                Code::ResourceExhausted,
                "rate_limited",
                "quota_exceeded"
            )
        );
        assert_eq!(
            all[19].to_string(),
            "quota exceeded: 5 requests per 60 s; retry in 12 s"
        );
        assert_eq!(all[19].challenge("r", "d"), None);
        let mut labels = REASON_LABELS.to_vec();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), REASON_LABELS.len());
    }
}
