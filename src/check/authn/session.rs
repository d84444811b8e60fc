//! The session cookie as a credential (`login` configured): the cookie
//! named `login.session.cookie_name` is looked up in the store
//! ([`crate::sessions::Sessions::lookup`]) and its session becomes the
//! identity, with the same authz and headers as a JWT's.
//!
//! **Order.** Asked after the token sources and before the client
//! certificate: a bearer token is an explicit, per-request credential and
//! wins over a cookie the browser sends along by itself.
//!
//! **A stale cookie is no credential.** A cookie whose session is unknown,
//! ended or expired counts as absent, not as a 401: browsers keep sending
//! the cookie after the session ended, and the useful answer to them is
//! the login redirect that a missing credential gets on a `login:
//! redirect` rule (a 401 would strand the user on an error page). Nothing
//! is granted by it either way. A store outage is a 503: nothing can be
//! said about the session.
//!
//! **Tokens.** The identity's token is the provider's access token while
//! it is valid, so that `headers: [token]` forwards it. When it is due,
//! it is refreshed here ([`crate::sessions::Sessions::refresh_if_due`])
//! through the engine's [`Refresher`] (supplied with the login; until
//! then there is none, no refresh happens and an expired access token is
//! simply not forwarded). A refresh the provider refuses ends the session,
//! which then counts as absent. The refresh runs in authn, not in the
//! upstream step with the other side effects, because its outcome decides
//! whether the credential is valid at all.

use std::sync::Arc;

use super::sources::cookie_value;
use crate::model::deny::Deny;
use crate::model::identity::{CredentialKind, Identity};
use crate::model::request::Request;
use crate::sessions::{Refresher, Session, SessionError, Sessions};

/// The issuer label of a session's identity: `session:<provider>`.
pub const ISSUER_PREFIX: &str = "session:";

/// Sessions as a credential source.
pub struct SessionAuthenticator {
    /// The session service.
    pub sessions: Arc<Sessions>,
    /// Refreshes access tokens; `None` until the login supplies one.
    pub refresher: Option<Arc<dyn Refresher>>,
}

impl SessionAuthenticator {
    /// The session cookie's value, if the request carries a non-empty one.
    pub fn cookie<'r>(&self, request: &'r Request) -> Option<&'r str> {
        request
            .header("cookie")
            .and_then(|c| cookie_value(c, self.sessions.cookie_name()))
            .filter(|v| !v.is_empty())
    }

    /// The identity of the request's session; `Ok(None)` without a live
    /// one (no cookie, or an unknown, ended or expired session).
    pub async fn authenticate(&self, request: &Request) -> Result<Option<Identity>, Deny> {
        let Some(cookie) = self.cookie(request) else {
            return Ok(None);
        };
        let mut session = match self.sessions.lookup(cookie).await.map_err(denial)? {
            Some(session) => session,
            None => {
                tracing::debug!("session cookie without a live session: treated as absent");
                return Ok(None);
            }
        };
        if let Some(refresher) = &self.refresher {
            match self
                .sessions
                .refresh_if_due(session, refresher)
                .await
                .map_err(denial)?
            {
                Some(refreshed) => session = refreshed,
                None => return Ok(None),
            }
        }
        Ok(Some(self.identity(&session)))
    }

    /// The identity a session stands for.
    fn identity(&self, session: &Session) -> Identity {
        let record = &session.record;
        let who = &record.identity;
        let token = record
            .tokens
            .access_token_at(self.sessions.now())
            .cloned()
            .unwrap_or_default();
        Identity {
            subject: who.subject.clone(),
            username: who.username.clone(),
            email: who.email.clone(),
            uid: who.uid.clone(),
            groups: who.groups.clone(),
            scopes: who.scopes.clone(),
            kind: CredentialKind::Session,
            issuer: format!("{ISSUER_PREFIX}{}", record.provider),
            expires_at: Some(self.sessions.expires_at(session)),
            token,
            query_parameter: None,
            tool: None,
            grant: None,
        }
    }
}

/// A session error as a denial: the store's outage is a 503; so is an
/// internal failure (no random bytes, a refresh task that died), which
/// says nothing about the caller either.
fn denial(e: SessionError) -> Deny {
    match e {
        SessionError::Unavailable(ref store) => {
            tracing::warn!(error = %store, "session not checked: store unavailable");
        }
        SessionError::Invalid(_) | SessionError::Internal(_) => {
            tracing::warn!(error = %e, "session not checked");
        }
    }
    Deny::StoreUnavailable
}
