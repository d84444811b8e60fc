//! Authorization: a pure function of what the route demands and who the
//! caller is. No I/O; trivially unit-tested. Besides scopes and grants
//! (here): tool ownership (`tool`), the login redirect that replaces a 401
//! for a browser (`login`), allowed origins (`origin`) and CSRF (`csrf`);
//! last, the rule's CEL `when` condition.

pub mod csrf;
pub mod login;
pub mod origin;
pub mod tool;

use crate::config::Satisfy;
use crate::model::deny::Deny;
use crate::model::identity::Identity;
use crate::model::request::Request;
use crate::model::requirement::{Access, Requirement};

/// Decides whether `identity` meets `requirement`.
pub fn authorize(requirement: &Requirement, identity: Option<&Identity>) -> Result<(), Deny> {
    match &requirement.access {
        Access::Anonymous => Ok(()),
        Access::Authenticated { scopes, satisfy } => {
            let c = &requirement.credentials;
            let token_would_do = c.jwt || c.api_token || c.session;
            let identity = identity.ok_or(if token_would_do {
                Deny::NoCredential {
                    auth_type: requirement.auth_type,
                }
            } else {
                Deny::NoCertificate
            })?;
            let held = |s: &String| identity.scopes.contains(s);
            let ok = scopes.is_empty()
                || match satisfy {
                    Satisfy::All => scopes.iter().all(held),
                    Satisfy::Any => scopes.iter().any(held),
                };
            if ok {
                Ok(())
            } else {
                Err(Deny::InsufficientScope {
                    scopes: scopes.to_vec(),
                    satisfy: *satisfy,
                })
            }
        }
    }
}

/// [`authorize`], then, for a signed link, whether it covers the request's
/// normalized path and method (a link is checked first: a path it does not
/// grant is refused whatever the scopes). A missing credential on a route
/// that sends this request to log in (`requirement.login`) is a 302
/// ([`login::required`]) instead of a 401.
pub fn authorize_request(
    requirement: &Requirement,
    identity: Option<&Identity>,
    request: &Request,
) -> Result<(), Deny> {
    if let Some(grant) = identity.and_then(|id| id.grant.as_deref())
        && matches!(requirement.access, Access::Authenticated { .. })
    {
        grant
            .check(&request.method, &request.path)
            .map_err(Deny::LinkNotGranted)?;
    }
    authorize(requirement, identity).map_err(|deny| match (&deny, &requirement.login) {
        (Deny::NoCredential { .. }, Some(login)) => login::required(login, request),
        _ => deny,
    })?;
    check_condition(requirement, identity, request)
}

/// The rule's `when` condition, if any: false is a 403, and so is an
/// evaluation error (fail closed), which is logged with the rule's name.
fn check_condition(
    requirement: &Requirement,
    identity: Option<&Identity>,
    request: &Request,
) -> Result<(), Deny> {
    let Some(condition) = &requirement.condition else {
        return Ok(());
    };
    match condition.evaluate(request, identity) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Deny::ConditionNotMet),
        Err(error) => {
            tracing::warn!(
                rule = %requirement.rule,
                %error,
                "the rule's condition could not be evaluated; denied"
            );
            Err(Deny::ConditionNotMet)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthType, IdentityHeader};
    use crate::model::identity::CredentialKind;
    use crate::secret::Secret;

    fn requirement(scopes: &[&str], satisfy: Satisfy) -> Requirement {
        Requirement {
            rule: "r".into(),
            access: Access::Authenticated {
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                satisfy,
            },
            auth_type: AuthType::Basic,
            headers: IdentityHeader::default_set().into(),
            credentials: crate::model::identity::AcceptedCredentials::ALL,
            tool: None,
            login: None,
            condition: None,
        }
    }

    fn identity(scopes: &[&str]) -> Identity {
        Identity {
            subject: "u".into(),
            username: None,
            email: None,
            uid: None,
            groups: vec![],
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            kind: CredentialKind::Jwt,
            issuer: "i".into(),
            expires_at: None,
            token: Secret::new("t"),
            query_parameter: None,
            tool: None,
            grant: None,
            csrf: None,
            claims: None,
        }
    }

    #[test]
    fn anonymous_passes_without_identity() {
        let r = Requirement {
            access: Access::Anonymous,
            ..requirement(&[], Satisfy::All)
        };
        assert_eq!(authorize(&r, None), Ok(()));
    }

    #[test]
    fn missing_identity_is_401_with_the_rule_challenge() {
        let err = authorize(&requirement(&[], Satisfy::All), None).unwrap_err();
        assert_eq!(
            err,
            Deny::NoCredential {
                auth_type: AuthType::Basic
            }
        );
    }

    #[test]
    fn all_and_any() {
        let all = requirement(&["a", "b"], Satisfy::All);
        let any = requirement(&["a", "b"], Satisfy::Any);
        assert!(authorize(&all, Some(&identity(&["a", "b", "c"]))).is_ok());
        assert!(authorize(&all, Some(&identity(&["a"]))).is_err());
        assert!(authorize(&any, Some(&identity(&["b"]))).is_ok());
        let err = authorize(&any, Some(&identity(&["c"]))).unwrap_err();
        assert_eq!(err.http_status(), 403);
        assert!(authorize(&requirement(&[], Satisfy::All), Some(&identity(&[]))).is_ok());
    }

    #[test]
    fn a_link_is_held_to_its_grant() {
        use crate::model::grant::{LinkGrant, NotGranted, UrlPattern};
        let mut id = identity(&["a"]);
        id.grant = Some(std::sync::Arc::new(LinkGrant {
            urls: vec![UrlPattern::Prefix("/k8s/".into())],
            verbs: vec!["get".into()],
            once: false,
            jti: None,
            not_before: None,
            expires_at: 0,
        }));
        let req = |method: &str, path: &str| Request {
            method: method.into(),
            path: path.into(),
            ..Request::default()
        };
        let r = requirement(&["a"], Satisfy::All);
        assert_eq!(
            authorize_request(&r, Some(&id), &req("GET", "/k8s/pods")),
            Ok(())
        );
        assert_eq!(
            authorize_request(&r, Some(&id), &req("HEAD", "/k8s/pods")),
            Ok(())
        );
        assert_eq!(
            authorize_request(&r, Some(&id), &req("GET", "/other")),
            Err(Deny::LinkNotGranted(NotGranted::Path))
        );
        let err = authorize_request(&r, Some(&id), &req("DELETE", "/k8s/pods")).unwrap_err();
        assert_eq!(err, Deny::LinkNotGranted(NotGranted::Verb));
        assert_eq!(err.http_status(), 403);
        // The grant does not replace the route's scopes.
        let scoped = requirement(&["b"], Satisfy::All);
        assert!(matches!(
            authorize_request(&scoped, Some(&id), &req("GET", "/k8s/pods")),
            Err(Deny::InsufficientScope { .. })
        ));
        // Without a grant, authorize_request is authorize.
        let plain = identity(&["a"]);
        assert_eq!(
            authorize_request(&r, Some(&plain), &req("DELETE", "/other")),
            Ok(())
        );
    }

    #[test]
    fn a_missing_credential_is_a_login_redirect_only_where_the_policy_kept_one() {
        use crate::model::requirement::LoginRedirect;
        let req = Request {
            method: "GET".into(),
            scheme: "https".into(),
            host: "app.example".into(),
            authority: "app.example".into(),
            path: "/home".into(),
            ..Request::default()
        };
        let mut r = requirement(&["a"], Satisfy::All);
        assert!(matches!(
            authorize_request(&r, None, &req),
            Err(Deny::NoCredential { .. })
        ));
        r.login = Some(LoginRedirect {
            login_path: "/auth/login".into(),
            session_cookie: None,
        });
        assert_eq!(
            authorize_request(&r, None, &req),
            Err(Deny::LoginRequired {
                location: "/auth/login?rd=https%3A%2F%2Fapp.example%2Fhome".into(),
                set_cookies: vec![],
                binding: None,
            })
        );
        // A credential that falls short is refused as before.
        assert!(matches!(
            authorize_request(&r, Some(&identity(&[])), &req),
            Err(Deny::InsufficientScope { .. })
        ));
    }

    #[test]
    fn a_false_or_failing_condition_is_a_403_after_the_scopes() {
        let request = Request {
            method: "POST".into(),
            ..Request::default()
        };
        let mut r = requirement(&["read"], Satisfy::All);
        let condition = |source: &str| {
            Some(std::sync::Arc::new(
                crate::model::condition::Condition::compile(source).expect("compiles"),
            ))
        };
        r.condition = condition(r#""admins" in identity.groups"#);
        let mut id = identity(&["read"]);
        assert_eq!(
            authorize_request(&r, Some(&id), &request),
            Err(Deny::ConditionNotMet)
        );
        id.groups.push("admins".into());
        assert_eq!(authorize_request(&r, Some(&id), &request), Ok(()));
        // Scopes come first: without them the answer is about scopes.
        assert!(matches!(
            authorize_request(&r, Some(&identity(&[])), &request),
            Err(Deny::InsufficientScope { .. })
        ));
        // An evaluation error (a header that is not there) denies.
        r.condition = condition(r#"request.headers["x-missing"] == "1""#);
        assert_eq!(
            authorize_request(&r, Some(&id), &request),
            Err(Deny::ConditionNotMet)
        );
    }
}
