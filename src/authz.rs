//! Authorization: a pure function of what the route demands and who the
//! caller is. No I/O; trivially unit-tested.

pub mod tool;

use crate::config::Satisfy;
use crate::deny::Deny;
use crate::identity::Identity;
use crate::policy::{Access, Requirement};

/// Decides whether `identity` meets `requirement`.
pub fn authorize(requirement: &Requirement, identity: Option<&Identity>) -> Result<(), Deny> {
    match &requirement.access {
        Access::Anonymous => Ok(()),
        Access::Authenticated { scopes, satisfy } => {
            let identity = identity.ok_or(Deny::NoCredential {
                auth_type: requirement.auth_type,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthType, IdentityHeader};
    use crate::identity::CredentialKind;
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
            credentials: crate::identity::AcceptedCredentials::ALL,
            tool: None,
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
}
