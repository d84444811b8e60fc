//! CORS on the authorization side (with `cors` configured): a request that
//! carries a credential and an `Origin` other than its own must come from
//! an allowed origin (Renku's `GATEWAY_ALLOW_ORIGIN`), and so must a
//! preflight, which the policy lets through without a credential. The
//! CORS response headers themselves are Envoy's CORS filter's or the
//! upstream's to send.

use crate::check::policy::browser::{Origins, is_preflight, normalize_origin, request_origin};
use crate::model::deny::Deny;
use crate::model::identity::{CredentialKind, Identity};
use crate::model::request::Request;

/// The longest `Origin` quoted back in a refusal.
const QUOTED_ORIGIN_MAX: usize = 200;

/// Refuses a credentialed request or a preflight whose `Origin` is neither
/// the request's own nor allowed; anything else passes (as does everything
/// when `origins` is `None`: no `cors` section).
pub fn check(
    origins: Option<&Origins>,
    identity: Option<&Identity>,
    request: &Request,
) -> Result<(), Deny> {
    let Some(origins) = origins else {
        return Ok(());
    };
    let Some(raw) = request.header("origin") else {
        return Ok(());
    };
    if identity.is_none() && !is_preflight(request) {
        return Ok(());
    }
    let origin = normalize_origin(raw);
    let ambient = identity.is_some_and(|id| id.kind == CredentialKind::Session);
    let allowed = origin.as_deref().is_some_and(|o| {
        request_origin(request).as_deref() == Some(o) || origins.allows(o, ambient)
    });
    if allowed {
        Ok(())
    } else {
        Err(Deny::OriginNotAllowed {
            origin: raw
                .chars()
                .filter(|c| !c.is_control())
                .take(QUOTED_ORIGIN_MAX)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::policy::browser::Browser;
    use crate::config::{BrowserConfig, CorsConfig};
    use crate::testkit;

    fn origins(list: &[&str], allow_credentials: bool) -> Origins {
        let cors = CorsConfig {
            allowed_origins: list.iter().map(|s| s.to_string()).collect(),
            allow_credentials,
        };
        Browser::compile(&BrowserConfig::default(), Some(&cors))
            .expect("valid")
            .origins()
            .cloned()
            .expect("configured")
    }

    fn request(method: &str, headers: &[(&str, &str)]) -> Request {
        testkit::request(method, "/api", headers)
    }

    fn identity(kind: CredentialKind) -> Identity {
        let mut id = testkit::identity("alice", &[]);
        id.kind = kind;
        id
    }

    #[test]
    fn a_credentialed_request_from_a_foreign_origin_is_403() {
        let o = origins(&["https://ui.example"], false);
        let jwt = identity(CredentialKind::Jwt);
        let evil = request("GET", &[("origin", "https://evil.example")]);
        let err = check(Some(&o), Some(&jwt), &evil).unwrap_err();
        assert_eq!(err.http_status(), 403);
        assert_eq!(err.reason_label(), "origin_not_allowed");
        assert_eq!(
            err,
            Deny::OriginNotAllowed {
                origin: "https://evil.example".into()
            }
        );
        // Listed, same origin (default port written or not), no Origin at all.
        for origin in [
            Some("https://ui.example"),
            Some("HTTPS://UI.example:443"),
            Some("https://app.example"),
            Some("https://app.example:443"),
            None,
        ] {
            let headers: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
            assert_eq!(
                check(Some(&o), Some(&jwt), &request("GET", &headers)),
                Ok(()),
                "{origin:?}"
            );
        }
        // Another port or scheme is another origin; `null` is never allowed.
        for origin in ["https://app.example:8443", "http://app.example", "null"] {
            let r = request("POST", &[("origin", origin)]);
            assert!(check(Some(&o), Some(&jwt), &r).is_err(), "{origin}");
        }
    }

    #[test]
    fn without_a_credential_or_without_cors_nothing_is_checked() {
        let o = origins(&["https://ui.example"], false);
        let evil = request("GET", &[("origin", "https://evil.example")]);
        assert_eq!(check(Some(&o), None, &evil), Ok(()));
        let jwt = identity(CredentialKind::Jwt);
        assert_eq!(check(None, Some(&jwt), &evil), Ok(()));
    }

    #[test]
    fn preflights_need_an_allowed_origin() {
        let o = origins(&["https://ui.example"], false);
        let preflight = |origin: &str| {
            request(
                "OPTIONS",
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                ],
            )
        };
        assert_eq!(
            check(Some(&o), None, &preflight("https://ui.example")),
            Ok(())
        );
        assert_eq!(
            check(Some(&o), None, &preflight("https://app.example")),
            Ok(())
        );
        let err = check(Some(&o), None, &preflight("https://evil.example")).unwrap_err();
        assert_eq!(err.http_status(), 403);
        let any = origins(&["*"], false);
        assert_eq!(
            check(Some(&any), None, &preflight("https://evil.example")),
            Ok(())
        );
    }

    #[test]
    fn star_admits_explicit_credentials_but_not_the_session_cookie() {
        let any = origins(&["*"], false);
        let from = request("GET", &[("origin", "https://elsewhere.example")]);
        assert_eq!(
            check(Some(&any), Some(&identity(CredentialKind::Jwt)), &from),
            Ok(())
        );
        let session = identity(CredentialKind::Session);
        assert!(check(Some(&any), Some(&session), &from).is_err());
        // The session cookie from a listed origin needs allow_credentials.
        let listed = request("GET", &[("origin", "https://ui.example")]);
        let without = origins(&["https://ui.example"], false);
        assert!(check(Some(&without), Some(&session), &listed).is_err());
        let with = origins(&["https://ui.example"], true);
        assert_eq!(check(Some(&with), Some(&session), &listed), Ok(()));
        // The request's own origin is always fine, session or not.
        let own = request("GET", &[("origin", "https://app.example")]);
        assert_eq!(check(Some(&without), Some(&session), &own), Ok(()));
    }
}
