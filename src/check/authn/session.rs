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
use crate::model::identity::Identity;
use crate::model::request::Request;
use crate::sessions::{Refresher, Session, SessionError, Sessions};

/// The issuer label of a session's identity: `session:<provider>`.
pub use crate::sessions::record::ISSUER_PREFIX;

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
            expires_at: Some(self.sessions.expires_at(session)),
            token,
            csrf: Some(record.csrf_token.clone()),
            claims: None,
            ..who.to_identity(&record.provider)
        }
    }
}

/// A session error as a denial: the store's outage is a 503; so is an
/// internal failure (no random bytes, a refresh task that died), which
/// says nothing about the caller either.
fn denial(e: SessionError) -> Deny {
    match e {
        SessionError::Unavailable(ref store) => {
            if store.is_failure() {
                tracing::warn!(error = %store, "session not checked: store unavailable");
            }
            store.denial()
        }
        SessionError::Invalid(_) | SessionError::Internal(_) => {
            tracing::warn!(error = %e, "session not checked");
            Deny::StoreUnavailable
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use jsonwebtoken::Algorithm;

    use super::*;
    use crate::app::{Carry, build_engine_with};
    use crate::check::pipeline::Engine;
    use crate::check::request::described::Described;
    use crate::config::{self, ConfigSource};
    use crate::metrics::Metrics;
    use crate::secret::Secret;
    use crate::sessions::{
        NewSession, RefreshError, RefreshedTokens, SessionIdentity, SessionTokens,
    };
    use crate::testkit::flaky::FlakyStore;
    use crate::testkit::{self, TempDir, TestKey};

    const COOKIE: &str = "__Host-gatehouse_session";

    fn engine_with(extra_rules: &str) -> (Engine, Arc<FlakyStore>, TestKey, TempDir) {
        let key = TestKey::generate(Algorithm::ES256, "k");
        let dir = TempDir::new("session-authn");
        std::fs::write(dir.path().join("sa.token"), "sa-token\n").expect("write");
        let yaml = format!(
            r#"
server: {{grpc_addr: "127.0.0.1:0", http_addr: "127.0.0.1:0", realm: test}}
jwt:
  sources: [bearer, {{cookie: gh}}]
  issuers: [{{issuer: "https://idp.test", audiences: [api], algorithms: [ES256], keys: {{jwks: {jwks}}}}}]
login: {{session: {{cache_ttl: 0s}}}}
policy:
  rules:
    - {{name: read, match: {{path: {{prefix: /read/}}}}, scopes: [read], headers: [user, email, groups, token]}}
    - {{name: jwt-only, match: {{path: {{prefix: /jwt/}}}}, credentials: [jwt]}}
    - {{name: session-only, match: {{path: {{prefix: /session/}}}}, credentials: [session]}}
    - {{name: swap, match: {{path: {{prefix: /swap/}}}}, upstream_credential: {{bearer_file: sa.token}}}}
    - {{name: open, match: {{path: {{prefix: /open/}}}}, auth: anonymous}}
{extra_rules}"#,
            jwks = testkit::jwks(&[&key]),
        );
        let path = dir.path().join("gatehouse.yaml");
        std::fs::write(&path, yaml).expect("write");
        let source = ConfigSource::File(path);
        let cfg = config::load(&source, []).expect("config");
        let store = Arc::new(FlakyStore::new(1000));
        let mut carry = Carry::fresh(Arc::new(Metrics::new().expect("metrics")));
        carry.store = Some(store.clone());
        let engine = build_engine_with(&cfg, &source, &carry).expect("engine");
        (engine, store, key, dir)
    }

    fn engine() -> (Engine, Arc<FlakyStore>, TestKey, TempDir) {
        engine_with("")
    }

    fn sessions(engine: &Engine) -> &Arc<Sessions> {
        &engine.authn.sessions.as_ref().expect("login on").sessions
    }

    async fn login(engine: &Engine, access_expires: u64) -> Secret {
        let new = NewSession {
            provider: "kc".into(),
            identity: SessionIdentity {
                subject: "alice-sub".into(),
                username: Some("alice".into()),
                email: Some("alice@example.org".into()),
                groups: vec!["staff".into(), "dev".into()],
                scopes: ["read".to_string()].into(),
                ..Default::default()
            },
            sid: None,
            tokens: SessionTokens {
                access_token: Some(Secret::new("idp-access-1")),
                access_expires: Some(access_expires),
                access_issued: None,
                refresh_token: Some(Secret::new("idp-refresh-1")),
                id_token: None,
            },
            replaces: None,
        };
        sessions(engine).create(new).await.expect("created").id
    }

    fn cookie(id: &Secret) -> String {
        format!("theme=dark; {COOKIE}={}; lang=en", id.expose())
    }

    use crate::testkit::{decide, deny, permit, plan_header as header};

    fn jwt(key: &TestKey, sub: &str) -> String {
        let mut claims = testkit::claims("https://idp.test", "api", sub);
        claims["scope"] = "read".into();
        format!("Bearer {}", key.mint(&claims))
    }

    #[tokio::test]
    async fn a_session_cookie_authenticates_and_never_goes_upstream() {
        let (engine, _, _, _dir) = engine();
        let id = login(&engine, testkit::now() + 3600).await;
        let plan = permit(decide(&engine, "/read/x", &[("cookie", &cookie(&id))]).await);
        assert_eq!(header(&plan, "x-auth-request-user"), Some("alice"));
        assert_eq!(
            header(&plan, "x-auth-request-email"),
            Some("alice@example.org")
        );
        assert_eq!(header(&plan, "x-auth-request-groups"), Some("staff,dev"));
        assert_eq!(header(&plan, "x-auth-request-token"), Some("idp-access-1"));
        // The session cookie is gatehouse's: the upstream gets the others.
        assert_eq!(header(&plan, "cookie"), Some("theme=dark; lang=en"));
        // On a rule that takes sessions only, and on an anonymous rule.
        permit(decide(&engine, "/session/x", &[("cookie", &cookie(&id))]).await);
        let only = format!("{COOKIE}={}", id.expose());
        let open = permit(decide(&engine, "/open/x", &[("cookie", &only)]).await);
        assert!(open.remove.contains(&"cookie".to_string()), "{open:?}");
    }

    #[tokio::test]
    async fn a_credential_swap_removes_the_session_cookie_with_the_token_cookies() {
        let (engine, _, _, _dir) = engine();
        let id = login(&engine, testkit::now() + 3600).await;
        // The swap's list of cookies to remove has the session cookie too.
        let plan = permit(decide(&engine, "/swap/x", &[("cookie", &cookie(&id))]).await);
        assert_eq!(header(&plan, "cookie"), Some("theme=dark; lang=en"));
        assert_eq!(header(&plan, "authorization"), Some("Bearer sa-token"));
    }

    #[tokio::test]
    async fn a_rule_for_jwts_only_ignores_the_session() {
        let (engine, _, _, _dir) = engine();
        let id = login(&engine, testkit::now() + 3600).await;
        assert!(matches!(
            deny(decide(&engine, "/jwt/x", &[("cookie", &cookie(&id))]).await),
            Deny::NoCredential { .. }
        ));
    }

    #[tokio::test]
    async fn a_bearer_token_wins_over_the_session_cookie() {
        let (engine, _, key, _dir) = engine();
        let id = login(&engine, testkit::now() + 3600).await;
        let plan = permit(
            decide(
                &engine,
                "/read/x",
                &[
                    ("cookie", &cookie(&id)),
                    ("authorization", &jwt(&key, "bob")),
                ],
            )
            .await,
        );
        assert_eq!(header(&plan, "x-auth-request-user"), Some("bob"));
        // An invalid bearer token is a 401: no fall-through to the cookie.
        let refused = deny(
            decide(
                &engine,
                "/read/x",
                &[("cookie", &cookie(&id)), ("authorization", "Bearer nope")],
            )
            .await,
        );
        assert_eq!(refused.http_status(), 401);
        // A rule that takes sessions only ignores the token.
        let plan = permit(
            decide(
                &engine,
                "/session/x",
                &[
                    ("cookie", &cookie(&id)),
                    ("authorization", &jwt(&key, "bob")),
                ],
            )
            .await,
        );
        assert_eq!(header(&plan, "x-auth-request-user"), Some("alice"));
    }

    #[tokio::test]
    async fn unknown_ended_and_expired_sessions_are_no_credential() {
        let (engine, _, _, _dir) = engine();
        let unknown = Secret::new("A".repeat(43));
        for value in [unknown, Secret::new("garbage")] {
            assert!(matches!(
                deny(decide(&engine, "/read/x", &[("cookie", &cookie(&value))]).await),
                Deny::NoCredential { .. }
            ));
        }
        let id = login(&engine, testkit::now() + 3600).await;
        assert!(sessions(&engine).end(id.expose()).await.expect("ended"));
        assert!(matches!(
            deny(decide(&engine, "/read/x", &[("cookie", &cookie(&id))]).await),
            Deny::NoCredential { .. }
        ));
        // Past its lifetime (an instance whose clock is 13 hours ahead).
        let id = login(&engine, testkit::now() + 3600).await;
        let later = Sessions::with_clock(
            sessions(&engine).config(),
            engine.store.clone(),
            Arc::new(|| crate::clock::now_secs() + 13 * 3600),
        )
        .expect("valid");
        let authn = SessionAuthenticator {
            sessions: Arc::new(later),
            refresher: None,
        };
        let headers = [("cookie".to_string(), cookie(&id))].into_iter().collect();
        let request = crate::model::request::Request {
            headers,
            ..Default::default()
        };
        assert!(authn.authenticate(&request).await.expect("up").is_none());
    }

    #[tokio::test]
    async fn a_state_changing_session_request_needs_the_sessions_own_csrf_token() {
        let (engine, _store, _key, _dir) = engine();
        let id = login(&engine, u64::MAX).await;
        let session = sessions(&engine)
            .lookup(id.expose())
            .await
            .expect("store up")
            .expect("live");
        let token = session.record.csrf_token.expose().to_string();
        let post = |extra: Option<(&str, &str)>| {
            let mut headers: HashMap<String, String> =
                [("cookie".to_string(), cookie(&id))].into_iter().collect();
            if let Some((k, v)) = extra {
                headers.insert(k.into(), v.into());
            }
            let mut described = Described::get("h.test", "/read/x", "10.0.0.1", headers);
            described.method = "POST".into();
            described
        };
        let outcome = |d: Described| async { engine.decide(Ok(d)).await.0 };
        assert!(matches!(
            deny(outcome(post(None)).await),
            Deny::CsrfRejected(_)
        ));
        assert!(matches!(
            deny(outcome(post(Some(("x-csrf-token", "guessed")))).await),
            Deny::CsrfRejected(_)
        ));
        permit(outcome(post(Some(("x-csrf-token", &token)))).await);
        // Its own origin is proof too.
        permit(outcome(post(Some(("origin", "https://h.test")))).await);
    }

    #[tokio::test]
    async fn a_store_outage_is_503() {
        let (engine, store, _, _dir) = engine();
        let id = login(&engine, testkit::now() + 3600).await;
        store.set_down(true);
        let refused = deny(decide(&engine, "/read/x", &[("cookie", &cookie(&id))]).await);
        assert_eq!(refused, Deny::StoreUnavailable);
        assert_eq!(refused.http_status(), 503);
        store.set_down(false);
        permit(decide(&engine, "/read/x", &[("cookie", &cookie(&id))]).await);
    }

    #[tokio::test]
    async fn the_decision_log_names_a_session_by_fingerprint() {
        let (engine, _, _, _dir) = engine();
        let id = login(&engine, testkit::now() + 3600).await;
        let headers = [("cookie".to_string(), cookie(&id))].into_iter().collect();
        let request = crate::model::request::Request {
            headers,
            ..Default::default()
        };
        let presented = engine.authn.presented(&request, None).expect("presented");
        assert_eq!(presented.kind, "session");
        assert_eq!(presented.fingerprint, Some(id.fingerprint()));
    }

    /// A provider that counts refreshes and hands out `idp-access-2`.
    struct Counting(AtomicUsize);

    #[async_trait]
    impl Refresher for Counting {
        async fn refresh(
            &self,
            _: &str,
            refresh_token: &Secret,
        ) -> Result<RefreshedTokens, RefreshError> {
            assert_eq!(refresh_token.expose(), "idp-refresh-1");
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(RefreshedTokens {
                access_token: Secret::new("idp-access-2"),
                access_expires: Some(testkit::now() + 3600),
                refresh_token: None,
                id_token: None,
            })
        }
    }

    #[tokio::test]
    async fn an_expired_access_token_is_refreshed_on_the_check_or_not_forwarded() {
        let (mut engine, _, _, _dir) = engine();
        let expired = login(&engine, testkit::now() - 1).await;
        // No refresher (before the login step): the session stands, the
        // expired token is not forwarded.
        let plan = permit(decide(&engine, "/read/x", &[("cookie", &cookie(&expired))]).await);
        assert_eq!(header(&plan, "x-auth-request-user"), Some("alice"));
        assert_eq!(header(&plan, "x-auth-request-token"), None);
        let counting = Arc::new(Counting(AtomicUsize::new(0)));
        engine.authn.sessions.as_mut().expect("login on").refresher = Some(counting.clone());
        let plan = permit(decide(&engine, "/read/x", &[("cookie", &cookie(&expired))]).await);
        assert_eq!(header(&plan, "x-auth-request-token"), Some("idp-access-2"));
        permit(decide(&engine, "/read/x", &[("cookie", &cookie(&expired))]).await);
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_session_cookie_cannot_also_be_a_token_cookie() {
        let yaml = "jwt: {sources: [bearer, {cookie: gatehouse_session}]}\nlogin: {session: {cookie_domain: example.org}}\n";
        let source = ConfigSource::Text(yaml.into());
        let cfg = config::load(&source, []).expect("loads");
        let err = build_engine_with(
            &cfg,
            &source,
            &Carry::fresh(Arc::new(Metrics::new().expect("metrics"))),
        )
        .err()
        .expect("refused");
        assert!(
            err.to_string().contains("login.session.cookie_name"),
            "{err}"
        );
    }
}
