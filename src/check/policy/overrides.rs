//! Per-route overrides from Envoy's `context_extensions`: the knobs
//! Gafaelfawr takes as query parameters of its auth URL.
//!
//! | key         | value                                      | effect                          |
//! |-------------|--------------------------------------------|---------------------------------|
//! | `scope`     | scopes separated by spaces and/or commas   | replaces the scopes; the route becomes authenticated |
//! | `satisfy`   | `all` or `any`                             | how the scopes combine          |
//! | `auth_type` | `bearer` or `basic`                        | the challenge scheme of a 401   |
//!
//! Other keys are ignored (they belong to other features or other filters).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Access, Requirement};
use crate::config::{AuthType, IdentityHeader, Satisfy};
use crate::model::deny::Deny;

/// Extension key replacing the rule's scopes.
pub(crate) const SCOPE: &str = "scope";
/// Extension key choosing `all` or `any`.
pub(crate) const SATISFY: &str = "satisfy";
/// Extension key choosing the challenge scheme.
pub(crate) const AUTH_TYPE: &str = "auth_type";

/// The overrides one route carries; at least one is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Overrides {
    scopes: Option<Arc<[String]>>,
    satisfy: Option<Satisfy>,
    auth_type: Option<AuthType>,
}

impl Overrides {
    /// Reads the overrides from `extensions`: `None` when none of the keys
    /// is present, a `Misconfigured` denial when a value is invalid.
    pub(crate) fn from_extensions(
        extensions: &HashMap<String, String>,
    ) -> Result<Option<Self>, Deny> {
        if extensions.is_empty() {
            return Ok(None);
        }
        let scopes = extensions.get(SCOPE).map(|v| parse_scopes(v)).transpose()?;
        let satisfy = extensions
            .get(SATISFY)
            .map(|v| parse_satisfy(v))
            .transpose()?;
        let auth_type = extensions
            .get(AUTH_TYPE)
            .map(|v| parse_auth_type(v))
            .transpose()?;
        if scopes.is_none() && satisfy.is_none() && auth_type.is_none() {
            return Ok(None);
        }
        Ok(Some(Overrides {
            scopes,
            satisfy,
            auth_type,
        }))
    }

    /// Applies the overrides to a matched rule's requirement. `scope`
    /// makes even an anonymous route authenticated; `satisfy` alone leaves
    /// an anonymous route anonymous (there are no scopes to combine).
    pub(crate) fn apply(self, mut requirement: Requirement) -> Requirement {
        if let Some(auth_type) = self.auth_type {
            requirement.auth_type = auth_type;
        }
        requirement.access = match (requirement.access, self.scopes) {
            (Access::Authenticated { scopes, satisfy }, replacement) => Access::Authenticated {
                scopes: replacement.unwrap_or(scopes),
                satisfy: self.satisfy.unwrap_or(satisfy),
            },
            (Access::Anonymous, Some(scopes)) => Access::Authenticated {
                scopes,
                satisfy: self.satisfy.unwrap_or_default(),
            },
            (Access::Anonymous, None) => Access::Anonymous,
        };
        requirement
    }

    /// The requirement of a route no rule matched: the route itself (its
    /// extensions) is the matcher. Always authenticated; unset knobs take
    /// their defaults (no scopes, `all`, `bearer`).
    pub(crate) fn into_requirement(
        self,
        rule: Arc<str>,
        headers: Arc<[IdentityHeader]>,
    ) -> Requirement {
        Requirement {
            rule,
            access: Access::Authenticated {
                scopes: self.scopes.unwrap_or_else(|| Arc::from([])),
                satisfy: self.satisfy.unwrap_or_default(),
            },
            auth_type: self.auth_type.unwrap_or_default(),
            headers,
            credentials: crate::model::identity::AcceptedCredentials::ALL,
            tool: None,
            login: None,
            condition: None,
        }
    }
}

/// `read:data write:data` or `read:data,write:data` (or both mixed).
fn parse_scopes(value: &str) -> Result<Arc<[String]>, Deny> {
    let scopes: Arc<[String]> = value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return Err(Deny::Misconfigured(format!(
            "context extension `{SCOPE}` lists no scope"
        )));
    }
    if let Some(bad) = scopes.iter().find(|s| s.chars().any(char::is_control)) {
        return Err(Deny::Misconfigured(format!(
            "context extension `{SCOPE}` holds an invalid scope {bad:?}"
        )));
    }
    Ok(scopes)
}

fn parse_satisfy(value: &str) -> Result<Satisfy, Deny> {
    match value.trim() {
        v if v.eq_ignore_ascii_case("all") => Ok(Satisfy::All),
        v if v.eq_ignore_ascii_case("any") => Ok(Satisfy::Any),
        _ => Err(Deny::Misconfigured(format!(
            "context extension `{SATISFY}` must be `all` or `any`, not {value:?}"
        ))),
    }
}

fn parse_auth_type(value: &str) -> Result<AuthType, Deny> {
    match value.trim() {
        v if v.eq_ignore_ascii_case("bearer") => Ok(AuthType::Bearer),
        v if v.eq_ignore_ascii_case("basic") => Ok(AuthType::Basic),
        _ => Err(Deny::Misconfigured(format!(
            "context extension `{AUTH_TYPE}` must be `bearer` or `basic`, not {value:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<Option<Overrides>, Deny> {
        Overrides::from_extensions(&ext(pairs))
    }

    fn scopes(list: &[&str]) -> Arc<[String]> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn rule(access: Access) -> Requirement {
        Requirement {
            rule: "r".into(),
            access,
            auth_type: AuthType::Bearer,
            headers: Arc::from([IdentityHeader::User]),
            credentials: crate::model::identity::AcceptedCredentials::ALL,
            tool: None,
            login: None,
            condition: None,
        }
    }

    #[test]
    fn no_known_key_means_no_overrides() {
        assert_eq!(parse(&[]), Ok(None));
        assert_eq!(parse(&[("audience", "x"), ("Scope", "read")]), Ok(None));
    }

    #[test]
    fn scopes_split_on_spaces_and_commas() {
        let o = parse(&[("scope", " read:a, write:b\tadmin,,x ")])
            .expect("valid")
            .expect("present");
        assert_eq!(o.scopes, Some(scopes(&["read:a", "write:b", "admin", "x"])));
        assert_eq!(o.satisfy, None);
        assert_eq!(o.auth_type, None);
    }

    #[test]
    fn satisfy_and_auth_type_parse() {
        let o = parse(&[("satisfy", "any"), ("auth_type", "basic")])
            .expect("valid")
            .expect("present");
        assert_eq!(o.satisfy, Some(Satisfy::Any));
        assert_eq!(o.auth_type, Some(AuthType::Basic));
        let o = parse(&[("satisfy", "ALL"), ("auth_type", "Bearer")])
            .expect("valid")
            .expect("present");
        assert_eq!(o.satisfy, Some(Satisfy::All));
        assert_eq!(o.auth_type, Some(AuthType::Bearer));
    }

    #[test]
    fn invalid_values_are_misconfigurations() {
        for pairs in [
            [("satisfy", "maybe")],
            [("satisfy", "")],
            [("auth_type", "digest")],
            [("scope", "")],
            [("scope", " , ,")],
            [("scope", "a\u{1}b")],
        ] {
            match parse(&pairs) {
                Err(Deny::Misconfigured(msg)) => assert!(msg.contains(pairs[0].0), "{msg}"),
                other => panic!("{pairs:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn scope_replaces_the_rules_scopes_and_keeps_its_satisfy() {
        let base = rule(Access::Authenticated {
            scopes: scopes(&["a", "b"]),
            satisfy: Satisfy::Any,
        });
        let o = parse(&[("scope", "c")]).expect("valid").expect("present");
        let got = o.apply(base);
        assert_eq!(
            got.access,
            Access::Authenticated {
                scopes: scopes(&["c"]),
                satisfy: Satisfy::Any
            }
        );
        assert_eq!(&*got.rule, "r");
        assert_eq!(got.auth_type, AuthType::Bearer);
    }

    #[test]
    fn satisfy_and_auth_type_alone_keep_the_scopes() {
        let base = rule(Access::Authenticated {
            scopes: scopes(&["a", "b"]),
            satisfy: Satisfy::All,
        });
        let o = parse(&[("satisfy", "any"), ("auth_type", "basic")])
            .expect("valid")
            .expect("present");
        let got = o.apply(base);
        assert_eq!(
            got.access,
            Access::Authenticated {
                scopes: scopes(&["a", "b"]),
                satisfy: Satisfy::Any
            }
        );
        assert_eq!(got.auth_type, AuthType::Basic);
        assert_eq!(&*got.headers, &[IdentityHeader::User]);
    }

    #[test]
    fn scope_makes_an_anonymous_route_authenticated() {
        let o = parse(&[("scope", "read"), ("satisfy", "any")])
            .expect("valid")
            .expect("present");
        assert_eq!(
            o.apply(rule(Access::Anonymous)).access,
            Access::Authenticated {
                scopes: scopes(&["read"]),
                satisfy: Satisfy::Any
            }
        );
        let o = parse(&[("scope", "read")])
            .expect("valid")
            .expect("present");
        assert_eq!(
            o.apply(rule(Access::Anonymous)).access,
            Access::Authenticated {
                scopes: scopes(&["read"]),
                satisfy: Satisfy::All
            }
        );
    }

    #[test]
    fn satisfy_alone_leaves_an_anonymous_route_anonymous() {
        let o = parse(&[("satisfy", "any"), ("auth_type", "basic")])
            .expect("valid")
            .expect("present");
        let got = o.apply(rule(Access::Anonymous));
        assert_eq!(got.access, Access::Anonymous);
        assert_eq!(got.auth_type, AuthType::Basic);
    }

    #[test]
    fn without_a_rule_the_route_is_the_matcher() {
        let headers: Arc<[IdentityHeader]> = IdentityHeader::default_set().into();
        let o = parse(&[("auth_type", "basic")])
            .expect("valid")
            .expect("present");
        let got = o.into_requirement("context_extensions".into(), headers.clone());
        assert_eq!(
            got,
            Requirement {
                rule: "context_extensions".into(),
                access: Access::Authenticated {
                    scopes: scopes(&[]),
                    satisfy: Satisfy::All
                },
                auth_type: AuthType::Basic,
                headers,
                credentials: crate::model::identity::AcceptedCredentials::ALL,
                tool: None,
                login: None,
                condition: None,
            }
        );
    }
}
