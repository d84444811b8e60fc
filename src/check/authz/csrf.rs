//! Cross-site request forgery: a browser sends its session cookie with a
//! request another site makes it send, so a state-changing request (`POST`,
//! `PUT`, `PATCH`, `DELETE`) authenticated by the session cookie alone must
//! prove it comes from an allowed page: an `Origin` (or, without one, a
//! `Referer`) that is the request's own or a `cors.allowed_origins` entry
//! that may send credentials, or an `X-CSRF-Token` header. A bearer token,
//! an API token or a certificate is not sent by the browser on its own, so
//! those requests are not subject to this.
//!
//! The token: when the session's own CSRF token is known (`expected`), the
//! header must match it (compared in constant time). Until sessions carry
//! one, the header's presence is the proof: a page on another origin
//! cannot add a custom header without a CORS preflight, and preflights
//! from origins that are not allowed are refused (`authz::origin`) or,
//! without `cors`, need a credential a preflight never carries.

use subtle::ConstantTimeEq as _;

use crate::check::policy::browser::{Origins, normalize_origin, referer_origin, request_origin};
use crate::model::deny::{CsrfFailure, Deny};
use crate::model::identity::{CredentialKind, Identity};
use crate::model::request::Request;
use crate::secret::Secret;

/// The header a front end sends its session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Whether `method` changes state (and so needs proof of its origin).
fn changes_state(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
}

/// Refuses a state-changing, session-authenticated request without proof
/// that an allowed page sent it. `expected`: the session's CSRF token, when
/// the identity carries one.
pub fn check(
    origins: Option<&Origins>,
    identity: Option<&Identity>,
    request: &Request,
    expected: Option<&Secret>,
) -> Result<(), Deny> {
    let session = identity.is_some_and(|id| id.kind == CredentialKind::Session);
    if !session || !changes_state(&request.method) {
        return Ok(());
    }
    let claimed = match request.header("origin") {
        Some(origin) => Some(normalize_origin(origin)),
        None => request.header("referer").map(referer_origin),
    };
    if let Some(Some(origin)) = &claimed
        && (request_origin(request).as_deref() == Some(origin.as_str())
            || origins.is_some_and(|o| o.allows(origin, true)))
    {
        return Ok(());
    }
    let failure = match (request.header(CSRF_HEADER), expected) {
        (Some(token), Some(expected)) if token_matches(expected, token) => return Ok(()),
        (Some(token), None) if !token.is_empty() => return Ok(()),
        (Some(_), _) => CsrfFailure::TokenMismatch,
        (None, _) if claimed.is_some() => CsrfFailure::ForeignOrigin,
        (None, _) => CsrfFailure::NoProof,
    };
    Err(Deny::CsrfRejected(failure))
}

/// The presented token equals the session's, compared in constant time.
pub fn token_matches(expected: &Secret, presented: &str) -> bool {
    let expected = expected.expose().as_bytes();
    !expected.is_empty() && bool::from(expected.ct_eq(presented.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::policy::browser::Browser;
    use crate::config::{BrowserConfig, CorsConfig};
    use crate::testkit;

    fn origins(list: &[&str], allow_credentials: bool) -> Option<Origins> {
        let cors = CorsConfig {
            allowed_origins: list.iter().map(|s| s.to_string()).collect(),
            allow_credentials,
        };
        Browser::compile(&BrowserConfig::default(), Some(&cors))
            .expect("valid")
            .origins()
            .cloned()
    }

    fn request(method: &str, headers: &[(&str, &str)]) -> Request {
        testkit::request(method, "/api/items", headers)
    }

    fn identity(kind: CredentialKind) -> Identity {
        let mut id = testkit::identity("alice", &[]);
        id.kind = kind;
        id
    }

    const STATE_CHANGING: [&str; 4] = ["POST", "PUT", "PATCH", "DELETE"];

    #[test]
    fn every_state_changing_method_needs_proof() {
        let session = identity(CredentialKind::Session);
        for method in STATE_CHANGING {
            let err = check(None, Some(&session), &request(method, &[]), None).unwrap_err();
            assert_eq!(err, Deny::CsrfRejected(CsrfFailure::NoProof), "{method}");
            assert_eq!(err.http_status(), 403);
            let evil = request(method, &[("origin", "https://evil.example")]);
            assert_eq!(
                check(None, Some(&session), &evil, None),
                Err(Deny::CsrfRejected(CsrfFailure::ForeignOrigin)),
                "{method}"
            );
            let own = request(method, &[("origin", "https://app.example")]);
            assert_eq!(check(None, Some(&session), &own, None), Ok(()), "{method}");
        }
        for method in ["GET", "HEAD", "OPTIONS"] {
            assert_eq!(
                check(None, Some(&session), &request(method, &[]), None),
                Ok(()),
                "{method}"
            );
        }
    }

    #[test]
    fn origin_wins_over_referer_and_referer_stands_in_for_it() {
        let session = identity(CredentialKind::Session);
        let referer = request("POST", &[("referer", "https://app.example/page?x=1")]);
        assert_eq!(check(None, Some(&session), &referer, None), Ok(()));
        let foreign_referer = request("POST", &[("referer", "https://evil.example/app.example")]);
        assert!(check(None, Some(&session), &foreign_referer, None).is_err());
        // With an Origin, the Referer is not consulted.
        let both = request(
            "POST",
            &[
                ("origin", "https://evil.example"),
                ("referer", "https://app.example/"),
            ],
        );
        assert!(check(None, Some(&session), &both, None).is_err());
        // `Origin: null` (sandboxed frames, some redirects) is no proof.
        let null = request("POST", &[("origin", "null")]);
        assert!(check(None, Some(&session), &null, None).is_err());
    }

    #[test]
    fn listed_origins_count_only_with_allow_credentials() {
        let session = identity(CredentialKind::Session);
        let ui = request("PUT", &[("origin", "https://ui.example")]);
        assert!(
            check(
                origins(&["https://ui.example"], false).as_ref(),
                Some(&session),
                &ui,
                None
            )
            .is_err()
        );
        assert_eq!(
            check(
                origins(&["https://ui.example"], true).as_ref(),
                Some(&session),
                &ui,
                None
            ),
            Ok(())
        );
        // `*` never vouches for a session request.
        assert!(check(origins(&["*"], false).as_ref(), Some(&session), &ui, None).is_err());
    }

    #[test]
    fn the_csrf_header_is_proof_and_is_compared_when_known() {
        let session = identity(CredentialKind::Session);
        let with = |token: &str| request("DELETE", &[(CSRF_HEADER, token)]);
        // Presence, while sessions carry no token of their own.
        assert_eq!(check(None, Some(&session), &with("anything"), None), Ok(()));
        assert!(check(None, Some(&session), &with(""), None).is_err());
        // Compared with the session's token when there is one.
        let expected = Secret::new("s3cret-token");
        assert_eq!(
            check(None, Some(&session), &with("s3cret-token"), Some(&expected)),
            Ok(())
        );
        assert_eq!(
            check(None, Some(&session), &with("s3cret-tokeN"), Some(&expected)),
            Err(Deny::CsrfRejected(CsrfFailure::TokenMismatch))
        );
        assert!(!token_matches(&Secret::new(""), ""));
    }

    #[test]
    fn bearer_tokens_and_anonymous_requests_are_exempt() {
        let evil = request("POST", &[("origin", "https://evil.example")]);
        for kind in [
            CredentialKind::Jwt,
            CredentialKind::ApiToken,
            CredentialKind::Link,
            CredentialKind::Certificate,
            CredentialKind::Spiffe,
        ] {
            assert_eq!(
                check(None, Some(&identity(kind)), &evil, None),
                Ok(()),
                "{kind:?}"
            );
        }
        assert_eq!(check(None, None, &evil, None), Ok(()));
    }
}
