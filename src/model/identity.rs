//! Who the caller is, as established by one authenticator.

use std::collections::BTreeSet;

use crate::secret::Secret;

/// Which kind of credential established an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A JWT from a configured issuer.
    Jwt,
    /// A client certificate, identified by its subject DN.
    Certificate,
    /// A SPIFFE ID (a certificate's URI SAN, or an mTLS principal).
    Spiffe,
    /// A signed link from gatehouse's own issuer.
    Link,
    /// A user-issued API token (`<prefix>-<key>.<secret>`) from the store.
    ApiToken,
    /// A browser session (the session cookie) from a login at an OpenID
    /// provider.
    Session,
    /// An opaque access token the authorization server vouched for at its
    /// introspection endpoint (RFC 7662).
    Introspected,
}

impl CredentialKind {
    /// Lower-case label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Jwt => "jwt",
            CredentialKind::Certificate => "certificate",
            CredentialKind::Spiffe => "spiffe",
            CredentialKind::Link => "link",
            CredentialKind::ApiToken => "api_token",
            CredentialKind::Session => "session",
            CredentialKind::Introspected => "introspected",
        }
    }
}

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The `sub` claim (or equivalent stable subject).
    pub subject: String,
    /// The user name shown upstream.
    pub username: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Numeric user id, as text.
    pub uid: Option<String>,
    /// Group names.
    pub groups: Vec<String>,
    /// Scopes held: from the token plus those mapped from groups.
    pub scopes: BTreeSet<String>,
    /// The kind of credential.
    pub kind: CredentialKind,
    /// Which issuer (or authenticator instance) vouched for it.
    pub issuer: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: Option<u64>,
    /// The credential itself, for `X-Auth-Request-Token` when a rule opts in.
    pub token: Secret,
    /// The query parameter the credential came from, if it came from one:
    /// it is removed from the upstream request so the token does not leak
    /// into upstream URLs and logs.
    pub query_parameter: Option<String>,
    /// The tool the caller acts as (from a certificate, or the tool a
    /// superuser acts for), for tool-ownership rules and `X-…-Tool`.
    pub tool: Option<String>,
    /// What a signed link grants (paths, verbs): set only for links, and
    /// checked by [`crate::check::authz`].
    pub grant: Option<std::sync::Arc<crate::model::grant::LinkGrant>>,
    /// The session's CSRF token: set only for sessions, and compared in
    /// constant time with `X-CSRF-Token` by [`crate::check::authz`].
    pub csrf: Option<Secret>,
    /// A JWT's claims, kept only when a rule's `when` condition reads
    /// `identity.claims` (see [`crate::model::condition`]).
    pub claims: Option<std::sync::Arc<serde_json::Map<String, serde_json::Value>>>,
}

/// Which kinds of credential a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AcceptedCredentials {
    /// Tokens (JWTs) from the configured token sources.
    pub jwt: bool,
    /// Client certificates identified by their subject.
    pub certificate: bool,
    /// SPIFFE IDs.
    pub spiffe: bool,
    /// User-issued API tokens, from the same sources as JWTs.
    pub api_token: bool,
    /// Browser sessions (the session cookie).
    pub session: bool,
    /// Opaque tokens checked by introspection, from the same sources as
    /// JWTs.
    pub introspected: bool,
}

impl AcceptedCredentials {
    /// Every kind.
    pub const ALL: AcceptedCredentials = AcceptedCredentials {
        jwt: true,
        certificate: true,
        spiffe: true,
        api_token: true,
        session: true,
        introspected: true,
    };

    /// Whether an identity of `kind` is accepted.
    pub fn accepts(self, kind: CredentialKind) -> bool {
        match kind {
            CredentialKind::Jwt => self.jwt,
            CredentialKind::Certificate => self.certificate,
            CredentialKind::Spiffe => self.spiffe,
            // Links are JWTs from gatehouse's own issuer.
            CredentialKind::Link => self.jwt,
            CredentialKind::ApiToken => self.api_token,
            CredentialKind::Session => self.session,
            CredentialKind::Introspected => self.introspected,
        }
    }
}

impl Default for AcceptedCredentials {
    fn default() -> Self {
        AcceptedCredentials::ALL
    }
}

/// Inverts the configured `scopes.group_mapping` (scope → groups) into
/// group → scopes, the direction identities are built in.
pub fn scopes_by_group(
    mapping: &std::collections::BTreeMap<String, Vec<String>>,
) -> std::collections::HashMap<String, Vec<String>> {
    let mut by_group: std::collections::HashMap<String, Vec<String>> = Default::default();
    for (scope, groups) in mapping {
        for group in groups {
            by_group
                .entry(group.clone())
                .or_default()
                .push(scope.clone());
        }
    }
    by_group
}

/// The credential a request carries, as logs and `gatehouse explain` name
/// it: where it was found and a fingerprint, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// Where it was found: a token source (`bearer`, `basic`, `header`,
    /// `cookie`, `query`), the session cookie (`session`), a
    /// client-certificate origin (`peer-certificate`, `xfcc`,
    /// `principal`), or `unreadable`.
    pub kind: &'static str,
    /// First 8 bytes of the credential's SHA-256, hex (none when unreadable
    /// or a bare principal).
    pub fingerprint: Option<String>,
}

/// `X-Auth-Request-Groups`: the names joined with `,`, where a `%` or a
/// `,` inside a name is percent-encoded (`%25`, `%2C`), so `Acme, Inc.`
/// stays one group (`Acme%2C Inc.`) and splitting on `,` then decoding
/// gives the names back. Names without either character are unchanged.
pub fn groups_header(groups: &[String]) -> String {
    let mut out = String::new();
    for (i, group) in groups.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for c in group.chars() {
            match c {
                '%' => out.push_str("%25"),
                ',' => out.push_str("%2C"),
                c => out.push(c),
            }
        }
    }
    out
}
