//! The request being checked, in our own normalized form. The request
//! phase (`crate::check::request`) builds it once from Envoy's `CheckRequest`;
//! everything after sees only this.

use std::collections::HashMap;
use std::net::IpAddr;

/// The host an authority names, for matching: without the port, and
/// without one trailing dot (`api.example.com.` is the absolute form of
/// `api.example.com`, the same host; a rule for one must hold for the
/// other). `authority` is lower case already. `[::1]:80` → `[::1]`.
pub fn host_of(authority: &str) -> &str {
    let host = if authority.starts_with('[') {
        authority
            .find(']')
            .map_or(authority, |end| &authority[..=end])
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        }
    };
    match host.strip_suffix('.') {
        Some(bare) if !bare.is_empty() => bare,
        _ => host,
    }
}

/// The request being checked, normalized.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Upper-case HTTP method.
    pub method: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Lower-case host, without port.
    pub host: String,
    /// Lower-case host with the port the client gave (`:authority`), for
    /// rebuilding the URL the client asked for (a login redirect's `rd`,
    /// the request's own origin).
    pub authority: String,
    /// Normalized path (see [`path::normalize`]); rules match on this.
    pub path: String,
    /// The raw query string, without `?`, if any.
    pub query: Option<String>,
    /// Headers with lower-case names.
    pub headers: HashMap<String, String>,
    /// Address of the direct peer (the downstream connection).
    pub source_ip: Option<IpAddr>,
    /// The client's address after walking `X-Forwarded-For`.
    pub client_ip: Option<IpAddr>,
    /// The peer's authenticated principal (e.g. a SPIFFE ID), if any.
    pub principal: String,
    /// URL-encoded PEM of the peer certificate, if Envoy sent it.
    pub certificate: String,
    /// Per-route settings from Envoy's `context_extensions`.
    pub context_extensions: HashMap<String, String>,
}

impl Request {
    /// A header's value by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}
