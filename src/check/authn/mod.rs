//! Authentication: which credential the request carries and who it names.
//!
//! The accepted authenticators look for their credential in order; the
//! first credential present decides. An invalid credential is a 401, never
//! a fall-through to the next authenticator.
//!
//! A token found in the token sources is an API token when it starts with
//! the configured `<prefix>-` ([`api_token`]); else, with `introspection`
//! configured, an opaque token ([`introspection`]) when it is not shaped
//! like a JWT; else a JWT. With `login`
//! configured, the session cookie ([`session`]) comes after the token
//! sources and before the client certificate; a cookie without a live
//! session counts as absent.

pub mod api_token;
pub mod cert;
pub mod introspection;
pub mod jwt;
pub mod session;
pub mod sources;

use std::sync::Arc;

use crate::config::AuthType;
use crate::model::deny::Deny;
use crate::model::identity::{AcceptedCredentials, CredentialKind, Identity};
use crate::model::request::Request;
use crate::tokens::ApiTokens;
use jwt::keys::IssuerKeys;
use jwt::{JwtError, JwtVerifier};
use sources::TokenSource;

pub use crate::model::identity::Presented;

/// All configured authenticators.
pub struct Authenticators {
    /// Where bearer tokens are looked for.
    pub sources: Vec<TokenSource>,
    /// The longest token accepted (`jwt.max_token_bytes`).
    pub max_token_bytes: usize,
    /// JWT verification against the configured issuers.
    pub jwt: JwtVerifier,
    /// Client-certificate authentication, when configured.
    pub certificates: Option<cert::CertAuthenticator>,
    /// User-issued API tokens, when configured (`api_tokens`).
    pub api_tokens: Option<Arc<ApiTokens>>,
    /// Browser sessions (the session cookie), when `login` is configured.
    pub sessions: Option<session::SessionAuthenticator>,
    /// Opaque tokens checked at the introspection endpoint, when
    /// `introspection` is configured.
    pub introspection: Option<introspection::Introspector>,
}

impl Authenticators {
    /// Authenticates the request with the token it carries (a JWT or an
    /// API token): `Ok(None)` when it carries none.
    pub async fn authenticate(
        &self,
        request: &Request,
        auth_type: AuthType,
    ) -> Result<Option<Identity>, Deny> {
        self.authenticate_token(request, auth_type, AcceptedCredentials::ALL)
            .await
    }

    /// The token from the sources, judged as an API token when it has our
    /// prefix, else as a JWT; a token of a kind `accepted` leaves out
    /// counts as absent.
    async fn authenticate_token(
        &self,
        request: &Request,
        auth_type: AuthType,
        accepted: AcceptedCredentials,
    ) -> Result<Option<Identity>, Deny> {
        let invalid = |reason: String| Deny::InvalidToken { reason, auth_type };
        let (token, source) =
            match sources::find_token(&self.sources, request, self.max_token_bytes) {
                Ok(Some(found)) => found,
                Ok(None) => return Ok(None),
                Err(e) => return Err(invalid(e.to_string())),
            };
        if let Some(tokens) = &self.api_tokens
            && tokens.claims(token.expose())
        {
            if !accepted.api_token {
                return Ok(None);
            }
            return api_token::authenticate(tokens, &token, auth_type)
                .await
                .map(Some);
        }
        if let Some(introspector) = &self.introspection
            && introspection::Introspector::claims_token(token.expose())
        {
            if !accepted.introspected {
                return Ok(None);
            }
            return match introspector.authenticate(&token).await {
                Ok(mut identity) => {
                    if let TokenSource::Query(name) = source {
                        identity.query_parameter = Some(name.clone());
                    }
                    Ok(Some(identity))
                }
                Err(introspection::IntrospectionError::Unavailable(_)) => {
                    Err(Deny::ProviderUnavailable)
                }
                Err(e) => Err(invalid(e.to_string())),
            };
        }
        if !accepted.jwt {
            return Ok(None);
        }
        match self.jwt.verify(&token).await {
            Ok(mut identity) => {
                if let TokenSource::Query(name) = source {
                    identity.query_parameter = Some(name.clone());
                }
                Ok(Some(identity))
            }
            Err(JwtError::KeysUnavailable) => Err(Deny::KeysUnavailable),
            Err(e) => {
                tracing::debug!(token_fingerprint = %token.fingerprint(), reason = %e, "token refused");
                Err(invalid(e.to_string()))
            }
        }
    }

    /// Authenticates with the credential kinds a route accepts: tokens
    /// first (an explicit, per-request credential), then the session
    /// cookie (sent by the browser with every request), then the client
    /// certificate (a property of the connection). The first credential
    /// present decides; an invalid one is a 401, never a fall-through. A
    /// credential of a kind the route does not accept counts as absent,
    /// and so does a session cookie without a live session.
    pub async fn authenticate_accepting(
        &self,
        request: &Request,
        auth_type: AuthType,
        accepted: AcceptedCredentials,
    ) -> Result<Option<Identity>, Deny> {
        if (accepted.jwt || accepted.api_token || accepted.introspected)
            && let Some(identity) = self
                .authenticate_token(request, auth_type, accepted)
                .await?
        {
            return Ok(Some(identity));
        }
        if accepted.session
            && let Some(sessions) = &self.sessions
            && let Some(identity) = sessions.authenticate(request).await?
        {
            return Ok(Some(identity));
        }
        let Some(certificates) = &self.certificates else {
            return Ok(None);
        };
        if !(accepted.certificate || accepted.spiffe) {
            return Ok(None);
        }
        match certificates.authenticate(request) {
            Ok(Some(identity)) if accepted.accepts(identity.kind) => Ok(Some(identity)),
            Ok(_) => Ok(None),
            Err(e) => Err(Deny::InvalidCertificate {
                reason: e.to_string(),
                auth_type,
            }),
        }
    }

    /// The credential the request carries, looked for the way
    /// [`Self::authenticate_accepting`] does (tokens, the session cookie,
    /// then a client certificate) but not verified; with `decided_by` (the
    /// kind of the identity the check settled on), only where that kind
    /// comes from, so a bearer token a certificate-only rule ignored is
    /// not named. For the decision log and `explain`: only called off the
    /// hot path.
    pub fn presented(
        &self,
        request: &Request,
        decided_by: Option<CredentialKind>,
    ) -> Option<Presented> {
        use CredentialKind::*;
        let look = |kinds: &[CredentialKind]| decided_by.is_none_or(|k| kinds.contains(&k));
        if look(&[Jwt, ApiToken, Link, Introspected])
            && let Some(found) = self.presented_token(request)
        {
            return Some(found);
        }
        if look(&[Session])
            && let Some(cookie) = self.sessions.as_ref().and_then(|s| s.cookie(request))
        {
            return Some(Presented {
                kind: "session",
                fingerprint: Some(crate::secret::fingerprint(cookie.as_bytes())),
            });
        }
        if !look(&[Certificate, Spiffe]) {
            return None;
        }
        match self.certificates.as_ref()?.credential(request) {
            Ok(Some(credential)) => Some(Presented {
                kind: credential.origin.as_str(),
                fingerprint: credential.fingerprint,
            }),
            Ok(None) => None,
            Err(_) => Some(Presented {
                kind: "unreadable",
                fingerprint: None,
            }),
        }
    }

    /// A token from the sources, as [`Self::presented`] reports it.
    fn presented_token(&self, request: &Request) -> Option<Presented> {
        match sources::find_token(&self.sources, request, self.max_token_bytes) {
            Ok(Some((token, source))) => Some(Presented {
                kind: source.label(),
                fingerprint: Some(token.fingerprint()),
            }),
            Ok(None) => None,
            Err(_) => Some(Presented {
                kind: "unreadable",
                fingerprint: None,
            }),
        }
    }

    /// Every issuer's key set.
    pub fn key_sets(&self) -> Vec<Arc<IssuerKeys>> {
        self.jwt.key_sets().cloned().collect()
    }
}
