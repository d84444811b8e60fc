//! Configuration of how gatehouse treats browsers: which requests are
//! browser navigations, where one without a credential is sent to log in
//! (`browser`), and which other origins may call protected routes
//! (`cors`). Validated when the policy is compiled
//! (`check::policy::browser`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a browser is sent to log in, unless configured otherwise.
pub const DEFAULT_LOGIN_PATH: &str = "/auth/login";

/// What a request without a credential gets on a rule that needs one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoginMode {
    /// 401 with a challenge, whoever asks.
    #[default]
    Deny,
    /// A browser navigation (see `browser.navigation`) gets a 302 to
    /// `browser.login_path?rd=<the original URL>`; any other request the
    /// usual 401.
    Redirect,
}

/// Browsers: the login redirect and what counts as a navigation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BrowserConfig {
    /// The `login` of every rule that does not set its own: `deny` (a 401
    /// for everyone) or `redirect` (a 302 to the login page for a browser
    /// navigation without a credential).
    pub login: LoginMode,
    /// Where a browser without a credential is sent: a path on the same
    /// host (`/auth/login`) or an absolute `https://` URL. `?rd=` and the
    /// percent-encoded original URL are appended. No query of its own.
    pub login_path: String,
    /// Which requests are browser navigations.
    pub navigation: NavigationConfig,
}

impl Default for BrowserConfig {
    fn default() -> Self {
        BrowserConfig {
            login: LoginMode::Deny,
            login_path: DEFAULT_LOGIN_PATH.into(),
            navigation: NavigationConfig::default(),
        }
    }
}

/// A browser navigation: one of `methods`, an `Accept` header naming one
/// of `accept` (with a non-zero quality), and none of `absent_headers`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NavigationConfig {
    /// Methods a navigation uses (upper case). A form `POST` is left out by
    /// default: after a login the browser comes back with a `GET`, and the
    /// form's body would be lost, so a `POST` without a credential gets a
    /// 401.
    pub methods: Vec<String>,
    /// Media types, one of which `Accept` must name (`*/*` does not count:
    /// API clients send it too).
    pub accept: Vec<String>,
    /// Headers whose presence marks an API or script request (a request
    /// carrying `Authorization` brought its own credential; `fetch` and
    /// XHR libraries send `X-Requested-With`).
    pub absent_headers: Vec<String>,
}

impl Default for NavigationConfig {
    fn default() -> Self {
        NavigationConfig {
            methods: vec!["GET".into(), "HEAD".into()],
            accept: vec!["text/html".into()],
            absent_headers: vec!["authorization".into(), "x-requested-with".into()],
        }
    }
}

/// Cross-origin requests (absent: no origin checks, preflights checked
/// like any request).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins other than the request's own that may send credentialed
    /// requests and preflights: exact `scheme://host[:port]`, or `*` (any
    /// origin; only with `allow_credentials: false`). A request with a
    /// credential and another `Origin` is refused with 403.
    pub allowed_origins: Vec<String>,
    /// Whether the listed origins may send the browser's own credential
    /// (the session cookie), as `Access-Control-Allow-Credentials: true`
    /// lets them. False: only an explicit credential (`Authorization`)
    /// is accepted from another origin.
    pub allow_credentials: bool,
}
