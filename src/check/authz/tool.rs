//! Tool ownership (Toolforge-style): a route whose path names a tool is
//! for that tool's own credentials; superusers may act for any tool, and
//! may name the tool they act for in a configured header. A pure function
//! of (requirement, identity, request, tool policy).

use std::collections::HashSet;

use crate::config::{ConfigError, DEFAULT_TOOL_NAME_PATTERN, ToolsConfig, header_name};
use crate::model::deny::Deny;
use crate::model::identity::{CredentialKind, Identity};
use crate::model::request::Request;
use crate::model::requirement::Requirement;

/// Longest tool name accepted from the act-as header.
pub const MAX_TOOL_BYTES: usize = 255;

/// Compiled `tools` settings.
#[derive(Debug, Clone)]
pub struct ToolPolicy {
    superusers: HashSet<String>,
    /// Lower-case header name.
    act_as_header: Option<String>,
    /// What a tool name must look like.
    name_pattern: regex::Regex,
}

impl Default for ToolPolicy {
    fn default() -> Self {
        // The default `tools` section compiles (a test proves it).
        ToolPolicy::compile(&ToolsConfig::default()).unwrap_or_else(|_| unreachable!())
    }
}

impl ToolPolicy {
    /// Validates the `tools` section.
    pub fn compile(config: &ToolsConfig) -> Result<Self, ConfigError> {
        if config.superusers.iter().any(|s| s.trim().is_empty()) {
            return Err(ConfigError::invalid(
                "tools.superusers",
                "user names must be non-empty",
            ));
        }
        let act_as_header = config
            .act_as_header
            .as_deref()
            .map(|h| header_name(h, "tools.act_as_header"))
            .transpose()?;
        let pattern = config
            .name_pattern
            .as_deref()
            .unwrap_or(DEFAULT_TOOL_NAME_PATTERN);
        let name_pattern = regex::Regex::new(pattern)
            .map_err(|e| ConfigError::invalid("tools.name_pattern", e.to_string()))?;
        Ok(ToolPolicy {
            superusers: config.superusers.iter().cloned().collect(),
            act_as_header,
            name_pattern,
        })
    }

    /// The act-as header (lower-case), if configured.
    pub fn act_as_header(&self) -> Option<&str> {
        self.act_as_header.as_deref()
    }

    /// Whether `identity` is a superuser. Never through an API token,
    /// whoever created it: a token carries the scopes (and the tool) it
    /// was given, not its creator's power to act for every tool.
    pub fn is_superuser(&self, identity: &Identity) -> bool {
        identity.kind != CredentialKind::ApiToken
            && identity
                .username
                .as_ref()
                .is_some_and(|u| self.superusers.contains(u))
    }
}

/// Checks tool ownership and returns the tool the caller acts for (the
/// identity is not changed: the response phase sends the settled tool):
/// - a superuser acts for the tool named in the act-as header, else for
///   the tool the path names, else for none (its own certificate's tool,
///   if any, does not count);
/// - anyone else acts for their own tool; naming another tool in the
///   act-as header is refused;
/// - where the path names a tool, the caller must act for that one.
pub fn authorize(
    requirement: &Requirement,
    identity: Option<&Identity>,
    request: &Request,
    policy: &ToolPolicy,
) -> Result<Option<String>, Deny> {
    let Some(identity) = identity else {
        return Ok(None);
    };
    let act_as = match policy.act_as_header() {
        Some(name) => request
            .header(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| {
                if v.contains(',') {
                    // Envoy joins repeated headers with a comma.
                    Err(Deny::BadRequest(format!(
                        "exactly one {name} value, please"
                    )))
                } else if v.len() > MAX_TOOL_BYTES || !policy.name_pattern.is_match(v) {
                    Err(Deny::BadRequest(format!(
                        "{name}: {:?} is not a tool name",
                        printable(v)
                    )))
                } else {
                    Ok(v)
                }
            })
            .transpose()?,
        None => None,
    };
    let path_tool = requirement.tool.as_deref();
    if let Some(tool) = path_tool
        && !policy.name_pattern.is_match(tool)
    {
        return Err(Deny::BadRequest(format!(
            "the path names {:?}, which is not a tool name",
            printable(tool)
        )));
    }
    if policy.is_superuser(identity) {
        if let (Some(named), Some(path)) = (act_as, path_tool)
            && named != path
        {
            return Err(Deny::ToolMismatch);
        }
        return Ok(act_as.or(path_tool).map(str::to_string));
    }
    let own = identity.tool.as_deref();
    if act_as.is_some_and(|named| Some(named) != own) {
        return Err(Deny::ToolMismatch);
    }
    if path_tool.is_some_and(|path| Some(path) != own) {
        return Err(Deny::ToolMismatch);
    }
    Ok(own.map(str::to_string))
}

/// A name for an error message: at most 64 characters, control
/// characters dropped.
fn printable(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthType, IdentityHeader, Satisfy};
    use crate::model::identity::AcceptedCredentials;
    use crate::model::requirement::Access;
    use crate::secret::Secret;

    fn policy() -> ToolPolicy {
        ToolPolicy::compile(&ToolsConfig {
            superusers: vec!["components-api".into()],
            act_as_header: Some("X-Toolforge-Act-As".into()),
            name_pattern: None,
        })
        .expect("valid")
    }

    fn requirement(tool: Option<&str>) -> Requirement {
        Requirement {
            rule: "r".into(),
            access: Access::Authenticated {
                scopes: std::sync::Arc::from([]),
                satisfy: Satisfy::All,
            },
            auth_type: AuthType::Bearer,
            headers: IdentityHeader::default_set().into(),
            credentials: AcceptedCredentials::ALL,
            tool: tool.map(Into::into),
            login: None,
            condition: None,
        }
    }

    fn identity(user: &str, tool: Option<&str>) -> Identity {
        Identity {
            subject: format!("CN={user}"),
            username: Some(user.into()),
            email: None,
            uid: None,
            groups: vec![],
            scopes: Default::default(),
            kind: CredentialKind::Certificate,
            issuer: "peer-certificate".into(),
            expires_at: None,
            token: Secret::default(),
            query_parameter: None,
            tool: tool.map(Into::into),
            grant: None,
            csrf: None,
            claims: None,
        }
    }

    fn request(act_as: Option<&str>) -> Request {
        let mut r = Request::default();
        if let Some(v) = act_as {
            r.headers.insert("x-toolforge-act-as".into(), v.into());
        }
        r
    }

    fn tool_of(result: Result<Option<String>, Deny>) -> Result<Option<String>, Deny> {
        result
    }

    #[test]
    fn owners_pass_others_do_not() {
        let p = policy();
        let alpha = || Some(identity("alpha", Some("alpha")));
        let ok = authorize(
            &requirement(Some("alpha")),
            alpha().as_ref(),
            &request(None),
            &p,
        );
        assert_eq!(tool_of(ok), Ok(Some("alpha".into())));
        let err = authorize(
            &requirement(Some("beta")),
            alpha().as_ref(),
            &request(None),
            &p,
        );
        assert_eq!(err.unwrap_err(), Deny::ToolMismatch);
        let toolless = Some(identity("someone", None));
        let err = authorize(
            &requirement(Some("beta")),
            toolless.as_ref(),
            &request(None),
            &p,
        );
        assert_eq!(err.unwrap_err(), Deny::ToolMismatch);
        // No tool in the path: nothing to check.
        let ok = authorize(&requirement(None), alpha().as_ref(), &request(None), &p);
        assert_eq!(tool_of(ok), Ok(Some("alpha".into())));
        assert!(matches!(
            authorize(&requirement(Some("x")), None, &request(None), &p),
            Ok(None)
        ));
    }

    #[test]
    fn only_superusers_may_act_for_another_tool() {
        let p = policy();
        let alpha = || Some(identity("alpha", Some("alpha")));
        // Naming one's own tool is harmless; naming another is refused.
        let ok = authorize(
            &requirement(None),
            alpha().as_ref(),
            &request(Some("alpha")),
            &p,
        );
        assert_eq!(tool_of(ok), Ok(Some("alpha".into())));
        let err = authorize(
            &requirement(None),
            alpha().as_ref(),
            &request(Some("beta")),
            &p,
        );
        assert_eq!(err.unwrap_err(), Deny::ToolMismatch);
    }

    #[test]
    fn superusers_act_for_the_named_or_the_path_tool() {
        let p = policy();
        let su = || Some(identity("components-api", Some("components-api")));
        let got = authorize(
            &requirement(Some("beta")),
            su().as_ref(),
            &request(None),
            &p,
        );
        assert_eq!(tool_of(got), Ok(Some("beta".into())));
        let got = authorize(
            &requirement(None),
            su().as_ref(),
            &request(Some("gamma")),
            &p,
        );
        assert_eq!(tool_of(got), Ok(Some("gamma".into())));
        let got = authorize(
            &requirement(Some("beta")),
            su().as_ref(),
            &request(Some("beta")),
            &p,
        );
        assert_eq!(tool_of(got), Ok(Some("beta".into())));
        let err = authorize(
            &requirement(Some("beta")),
            su().as_ref(),
            &request(Some("gamma")),
            &p,
        );
        assert_eq!(err.unwrap_err(), Deny::ToolMismatch);
        // Its own certificate's tool does not count.
        let got = authorize(&requirement(None), su().as_ref(), &request(None), &p);
        assert_eq!(tool_of(got), Ok(None));
    }

    /// An API token of `user`, a deploy token when `tool` is set.
    fn api_token(user: &str, tool: Option<&str>) -> Option<Identity> {
        let mut id = identity(user, tool);
        id.kind = CredentialKind::ApiToken;
        id.subject = user.into();
        Some(id)
    }

    #[test]
    fn a_deploy_token_passes_for_its_own_tool_only() {
        let p = policy();
        let deploy = api_token("alice", Some("alpha"));
        let ok = authorize(
            &requirement(Some("alpha")),
            deploy.as_ref(),
            &request(None),
            &p,
        );
        assert_eq!(ok, Ok(Some("alpha".into())));
        for (path, act_as) in [
            (Some("beta"), None),
            (None, Some("beta")),
            (Some("beta"), Some("beta")),
            (Some("alpha"), Some("beta")),
        ] {
            let err = authorize(&requirement(path), deploy.as_ref(), &request(act_as), &p);
            assert_eq!(err, Err(Deny::ToolMismatch), "{path:?} {act_as:?}");
        }
        // A plain token (no tool) passes no tool rule.
        let plain = api_token("alice", None);
        let err = authorize(
            &requirement(Some("alpha")),
            plain.as_ref(),
            &request(None),
            &p,
        );
        assert_eq!(err, Err(Deny::ToolMismatch));
    }

    #[test]
    fn a_superusers_token_has_no_superuser_powers() {
        let p = policy();
        // The same user by certificate is a superuser…
        let cert = Some(identity("components-api", None));
        assert!(p.is_superuser(cert.as_ref().expect("some")));
        let got = authorize(
            &requirement(Some("beta")),
            cert.as_ref(),
            &request(None),
            &p,
        );
        assert_eq!(got, Ok(Some("beta".into())));
        // …but not through its tokens, deploy or plain.
        for token in [
            api_token("components-api", Some("alpha")),
            api_token("components-api", None),
        ] {
            assert!(!p.is_superuser(token.as_ref().expect("some")));
            let err = authorize(
                &requirement(Some("beta")),
                token.as_ref(),
                &request(Some("beta")),
                &p,
            );
            assert_eq!(err, Err(Deny::ToolMismatch));
        }
    }

    #[test]
    fn malformed_act_as_values_are_bad_requests() {
        let p = policy();
        let su = || Some(identity("components-api", None));
        let long = "a".repeat(MAX_TOOL_BYTES + 1);
        // Too long, control characters, path tricks, upper case, and two
        // values (Envoy joins repeated headers with a comma).
        for bad in [
            long.as_str(),
            "a\u{7}b",
            "../etc",
            "tool/x",
            "Tool",
            "tool-b,tool-c",
            "-lead",
            "a".repeat(33).as_str(),
        ] {
            let err =
                authorize(&requirement(None), su().as_ref(), &request(Some(bad)), &p).unwrap_err();
            assert_eq!(err.http_status(), 400, "{bad:?}");
        }
        let two = authorize(
            &requirement(None),
            su().as_ref(),
            &request(Some("tool-b, tool-c")),
            &p,
        );
        assert!(matches!(two, Err(Deny::BadRequest(m)) if m.contains("exactly one")));
        // A good one passes.
        let ok = authorize(
            &requirement(None),
            su().as_ref(),
            &request(Some("tool-b")),
            &p,
        );
        assert_eq!(ok, Ok(Some("tool-b".into())));
    }

    #[test]
    fn a_tool_named_by_the_path_must_be_a_tool_name() {
        let p = policy();
        let su = Some(identity("components-api", None));
        for bad in ["..", "Upper", "a.b"] {
            let err = authorize(&requirement(Some(bad)), su.as_ref(), &request(None), &p);
            assert!(
                matches!(err, Err(Deny::BadRequest(ref m)) if m.contains("the path names")),
                "{bad:?}: {err:?}"
            );
        }
        // A pattern of the operator's own.
        let custom = ToolPolicy::compile(&ToolsConfig {
            superusers: vec!["components-api".into()],
            act_as_header: None,
            name_pattern: Some("^[a-z.]+$".into()),
        })
        .expect("valid");
        let got = authorize(
            &requirement(Some("a.b")),
            su.as_ref(),
            &request(None),
            &custom,
        );
        assert_eq!(got, Ok(Some("a.b".into())));
        assert!(ToolPolicy::default().name_pattern.is_match("tool-1"));
    }

    #[test]
    fn config_errors_name_the_key() {
        let bad = ToolsConfig {
            superusers: vec![" ".into()],
            act_as_header: None,
            name_pattern: None,
        };
        assert!(
            ToolPolicy::compile(&bad)
                .unwrap_err()
                .to_string()
                .contains("tools.superusers")
        );
        let bad = ToolsConfig {
            superusers: vec![],
            act_as_header: Some("bad header".into()),
            name_pattern: None,
        };
        assert!(
            ToolPolicy::compile(&bad)
                .unwrap_err()
                .to_string()
                .contains("tools.act_as_header")
        );
        let bad = ToolsConfig {
            name_pattern: Some("([".into()),
            ..ToolsConfig::default()
        };
        assert!(
            ToolPolicy::compile(&bad)
                .unwrap_err()
                .to_string()
                .contains("tools.name_pattern")
        );
    }
}
