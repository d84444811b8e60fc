//! What a route demands of a request: the policy phase's answer, read by
//! every later phase and by the observers.

use std::sync::Arc;

use crate::config::{AuthType, IdentityHeader, Satisfy};
use crate::model::identity::AcceptedCredentials;

/// The rule name of the requirement given when no rule matches and the
/// default action is `authenticated`.
pub const DEFAULT_RULE: &str = "default";
/// The rule name of the requirement built from `context_extensions` alone,
/// when no rule matches but the route carries overrides.
pub const CONTEXT_EXTENSIONS_RULE: &str = "context_extensions";

/// What a route demands of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Name of the rule that matched (for logs and metrics).
    pub rule: Arc<str>,
    /// Whether and how the caller must be authenticated.
    pub access: Access,
    /// The challenge scheme of a 401.
    pub auth_type: AuthType,
    /// Identity headers to set upstream.
    pub headers: Arc<[IdentityHeader]>,
    /// Credential kinds accepted.
    pub credentials: AcceptedCredentials,
    /// The tool this request's path names (a rule's `tool_from_path`):
    /// the caller must own it, or be a superuser.
    pub tool: Option<String>,
    /// Where a request without a credential is sent to log in: set by the
    /// policy only for a browser navigation on a `login: redirect` rule;
    /// `None` means the usual 401.
    pub login: Option<LoginRedirect>,
    /// The rule's `when` condition, checked after its scopes.
    pub condition: Option<Arc<crate::model::condition::Condition>>,
}

/// A rule's login redirect: the login page, and the session cookie a
/// redirect clears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRedirect {
    /// The login page: a path or an absolute URL, without a query.
    pub login_path: Arc<str>,
    /// The session cookie to expire when the request presented one; `None`
    /// when the route does not accept sessions (a cookie it never looked
    /// at is not stale).
    pub session_cookie: Option<SessionCookie>,
}

/// The session cookie as a redirect sees it: its name, and the
/// `Set-Cookie` value that clears it (with the configured attributes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCookie {
    /// The cookie's name (`login.session.cookie_name`).
    pub name: Arc<str>,
    /// `Set-Cookie` value with `Max-Age=0`.
    pub clear: Arc<str>,
    /// The login-binding cookie.
    pub binding: BindingCookie,
}

/// The login-binding cookie: the login redirect sets it (a fresh random
/// value, drawn when the response is rendered) when the request lacks it,
/// and the login's callback requires it, so a login finishes only in the
/// browser that began it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingCookie {
    /// Its name (`login.session.cookie_name` with `_login` for `_session`).
    pub name: Arc<str>,
    /// What follows `name=value` in its `Set-Cookie`.
    pub attributes: Arc<str>,
}

/// Whether and how the caller must be authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone; no credential is examined.
    Anonymous,
    /// A valid credential holding the scopes.
    Authenticated {
        /// Scopes demanded (may be empty).
        scopes: Arc<[String]>,
        /// All or any of them.
        satisfy: Satisfy,
    },
}
