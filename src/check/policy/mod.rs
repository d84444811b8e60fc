//! Route policy: which rule covers a request, and what it demands.
//!
//! [`Policy::compile`] validates the configured rules once and builds
//! everything a check needs: each rule's matcher, its [`Requirement`]
//! (cheap to clone: it is made of `Arc`s) and an index over the rules.
//! [`Policy::requirement`] then finds the first rule, in configuration
//! order, whose conditions all hold — hosts, path, methods (see
//! `matcher.rs`) — and applies the route's Envoy `context_extensions`
//! (see `overrides.rs`).

pub mod browser;
mod host;
mod index;
mod matcher;
pub(crate) mod overrides;
mod template;

use crate::config::SessionConfig;
use std::collections::HashSet;
use std::sync::Arc;

use crate::config::{
    AuthMode, AuthType, BrowserConfig, ConfigError, CorsConfig, CredentialKindConfig,
    DefaultAction, IdentityHeader, PolicyConfig, RuleConfig, RuleMode, Satisfy,
};
use crate::model::condition::Condition;
use crate::model::deny::Deny;
use crate::model::identity::AcceptedCredentials;
use crate::model::request::Request;
use crate::model::requirement::{Access, CONTEXT_EXTENSIONS_RULE, DEFAULT_RULE, Requirement};

use self::browser::Browser;
use self::index::RuleIndex;
use self::matcher::RuleMatcher;
use self::overrides::Overrides;

/// The compiled rule set.
#[derive(Debug, Clone)]
pub struct Policy {
    /// In configuration order.
    rules: Box<[Rule]>,
    /// Narrows the rules a check looks at.
    index: RuleIndex,
    /// For no match: `None` denies.
    default: Option<Requirement>,
    /// For no match with overrides present.
    extensions_rule: Arc<str>,
    /// The default identity headers, shared.
    default_headers: Arc<[IdentityHeader]>,
    /// Navigations, preflights, login redirects and allowed origins.
    browser: Browser,
}

/// One compiled rule.
#[derive(Debug, Clone)]
struct Rule {
    matcher: RuleMatcher,
    requirement: Requirement,
    /// The `{name}` path segment holding the tool, if the rule checks one.
    tool_segment: Option<Box<str>>,
}

impl Policy {
    /// Validates and compiles the configured rules, with the default
    /// `browser` section and no `cors`. Errors name the offending key,
    /// e.g. `policy.rules[2].match.path`.
    pub fn compile(config: &PolicyConfig) -> Result<Policy, ConfigError> {
        Policy::compile_with(
            config,
            &BrowserConfig::default(),
            None,
            &SessionConfig::default(),
        )
    }

    /// Validates and compiles the rules and the `browser` and `cors`
    /// sections, which decide a rule's login redirect and preflights; a
    /// redirect clears `session`'s cookie when it is stale.
    pub fn compile_with(
        config: &PolicyConfig,
        browser: &BrowserConfig,
        cors: Option<&CorsConfig>,
        session: &SessionConfig,
    ) -> Result<Policy, ConfigError> {
        Policy::compile_rules(config, browser, cors, session, RuleMode::Enforce)
    }

    /// The policy as it would be with the `mode: shadow` rules enforced in
    /// their places; `None` when there are none. The pipeline compares its
    /// decision with the enforcing policy's (never changing the answer).
    pub fn compile_shadow(
        config: &PolicyConfig,
        browser: &BrowserConfig,
        cors: Option<&CorsConfig>,
        session: &SessionConfig,
    ) -> Result<Option<Policy>, ConfigError> {
        if !config.rules.iter().any(|r| r.mode == RuleMode::Shadow) {
            return Ok(None);
        }
        Policy::compile_rules(config, browser, cors, session, RuleMode::Shadow).map(Some)
    }

    /// Compiles every rule (all are checked), keeping the shadow rules
    /// only when `keep` is [`RuleMode::Shadow`].
    fn compile_rules(
        config: &PolicyConfig,
        browser: &BrowserConfig,
        cors: Option<&CorsConfig>,
        session: &SessionConfig,
        keep: RuleMode,
    ) -> Result<Policy, ConfigError> {
        let browser = Browser::compile_for(browser, cors, session)?;
        let default_headers: Arc<[IdentityHeader]> = IdentityHeader::default_set().into();
        let mut names = HashSet::with_capacity(config.rules.len());
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, rule) in config.rules.iter().enumerate() {
            let key = format!("policy.rules[{i}]");
            check_name(&rule.name, &key, &mut names)?;
            let matcher = RuleMatcher::compile(&rule.matcher, &format!("{key}.match"))?;
            let mut requirement = compile_requirement(rule, &key, &default_headers)?;
            requirement.login = browser.login_redirect(rule.login, requirement.credentials.session);
            let tool_segment = tool_segment(rule, &matcher, &requirement, &key)?;
            if rule.mode == RuleMode::Shadow && keep == RuleMode::Enforce {
                continue;
            }
            rules.push(Rule {
                matcher,
                requirement,
                tool_segment,
            });
        }
        let default = match config.default {
            DefaultAction::Deny => None,
            DefaultAction::Authenticated => Some(Requirement {
                rule: DEFAULT_RULE.into(),
                access: Access::Authenticated {
                    scopes: Arc::from([]),
                    satisfy: Satisfy::All,
                },
                auth_type: AuthType::Bearer,
                headers: default_headers.clone(),
                credentials: AcceptedCredentials::ALL,
                tool: None,
                login: browser.login_redirect(None, true),
                condition: None,
            }),
        };
        Ok(Policy {
            index: RuleIndex::build(rules.iter().map(|r| &r.matcher)),
            rules: rules.into(),
            default,
            extensions_rule: CONTEXT_EXTENSIONS_RULE.into(),
            default_headers,
            browser,
        })
    }

    /// The compiled `browser` and `cors` sections.
    pub fn browser(&self) -> &Browser {
        &self.browser
    }

    /// Finds what the route demands of `request`: the first matching
    /// rule's requirement with the route's `context_extensions` applied;
    /// with no matching rule, the extensions alone if the route carries
    /// any, else the default action (`Deny::NoRule` for `deny`). An invalid
    /// extension value is `Deny::Misconfigured`.
    pub fn requirement(&self, request: &Request) -> Result<Requirement, Deny> {
        let matched = self
            .index
            .first_match(&request.host, &request.path, |i| {
                self.rules
                    .get(i)
                    .is_some_and(|r| r.matcher.matches(request))
            })
            .and_then(|i| self.rules.get(i));
        let overrides = Overrides::from_extensions(&request.context_extensions)?;
        let requirement = match (matched, overrides) {
            (Some(rule), None) => rule.for_request(request, rule.requirement.clone())?,
            (Some(rule), Some(o)) => {
                rule.for_request(request, o.apply(rule.requirement.clone()))?
            }
            (None, Some(o)) => {
                let mut r =
                    o.into_requirement(self.extensions_rule.clone(), self.default_headers.clone());
                r.login = self.browser.login_redirect(None, r.credentials.session);
                r
            }
            (None, None) => self.default.clone().ok_or(Deny::NoRule)?,
        };
        Ok(self.browser.apply(request, requirement))
    }
}

impl Rule {
    /// Fills in what depends on the request: the tool its path names.
    fn for_request(
        &self,
        request: &Request,
        mut requirement: Requirement,
    ) -> Result<Requirement, Deny> {
        if let Some(name) = &self.tool_segment {
            let tool = match &self.matcher.path {
                Some(matcher::PathMatcher::Template(t)) => t.capture(&request.path, name),
                _ => None,
            };
            // The template matched, so the segment is there; if it were
            // not, refuse rather than skip the ownership check.
            let tool = tool.ok_or_else(|| {
                Deny::Misconfigured(format!("no `{{{name}}}` segment in the path"))
            })?;
            requirement.tool = Some(tool.to_string());
        }
        Ok(requirement)
    }
}

/// The `tool_from_path` segment, checked against the rule's path template.
fn tool_segment(
    rule: &RuleConfig,
    matcher: &RuleMatcher,
    requirement: &Requirement,
    key: &str,
) -> Result<Option<Box<str>>, ConfigError> {
    let Some(name) = &rule.tool_from_path else {
        return Ok(None);
    };
    let key = format!("{key}.tool_from_path");
    match &matcher.path {
        Some(matcher::PathMatcher::Template(t)) if t.has_name(name) => {}
        _ => {
            return Err(ConfigError::invalid(
                key,
                format!("the rule's path must be a template with a `{{{name}}}` segment"),
            ));
        }
    }
    if requirement.access == Access::Anonymous {
        return Err(ConfigError::invalid(
            key,
            "`auth: anonymous` examines no credential, so it cannot check a tool",
        ));
    }
    Ok(Some(name.as_str().into()))
}

/// Non-blank, unique, and not one of the names gatehouse gives itself.
fn check_name<'a>(
    name: &'a str,
    key: &str,
    seen: &mut HashSet<&'a str>,
) -> Result<(), ConfigError> {
    let key = format!("{key}.name");
    if name.trim().is_empty() {
        return Err(ConfigError::invalid(key, "a rule needs a name"));
    }
    if name == DEFAULT_RULE || name == CONTEXT_EXTENSIONS_RULE {
        return Err(ConfigError::invalid(
            key,
            format!("`{name}` is reserved for requirements no rule produced"),
        ));
    }
    if !seen.insert(name) {
        return Err(ConfigError::invalid(
            key,
            format!("rule name `{name}` is used twice"),
        ));
    }
    Ok(())
}

/// Builds a rule's requirement once, so a check only clones `Arc`s.
fn compile_requirement(
    rule: &RuleConfig,
    key: &str,
    default_headers: &Arc<[IdentityHeader]>,
) -> Result<Requirement, ConfigError> {
    for (j, scope) in rule.scopes.iter().enumerate() {
        if scope.is_empty() || scope.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::invalid(
                format!("{key}.scopes[{j}]"),
                format!("scope {scope:?} must be non-empty, without whitespace"),
            ));
        }
    }
    let access = match rule.auth {
        AuthMode::Anonymous if !rule.scopes.is_empty() => {
            return Err(ConfigError::invalid(
                format!("{key}.scopes"),
                "`auth: anonymous` examines no credential, so it cannot demand scopes",
            ));
        }
        AuthMode::Anonymous => Access::Anonymous,
        AuthMode::Required => Access::Authenticated {
            scopes: rule.scopes.clone().into(),
            satisfy: rule.satisfy,
        },
    };
    let headers = if rule.headers == **default_headers {
        default_headers.clone()
    } else {
        let mut unique = Vec::with_capacity(rule.headers.len());
        for h in &rule.headers {
            if !unique.contains(h) {
                unique.push(*h);
            }
        }
        unique.into()
    };
    let credentials = if rule.credentials.is_empty() {
        AcceptedCredentials::ALL
    } else {
        let has = |k| rule.credentials.contains(&k);
        AcceptedCredentials {
            jwt: has(CredentialKindConfig::Jwt),
            certificate: has(CredentialKindConfig::Certificate),
            spiffe: has(CredentialKindConfig::Spiffe),
            api_token: has(CredentialKindConfig::ApiToken),
            session: has(CredentialKindConfig::Session),
            introspected: has(CredentialKindConfig::Introspected),
        }
    };
    let condition = match &rule.when {
        None => None,
        Some(source) => Some(Arc::new(Condition::compile(source).map_err(|e| {
            ConfigError::invalid(format!("{key}.when"), format!("rule `{}`: {e}", rule.name))
        })?)),
    };
    Ok(Requirement {
        rule: rule.name.as_str().into(),
        access,
        auth_type: rule.auth_type,
        headers,
        credentials,
        tool: None,
        login: None,
        condition,
    })
}

#[cfg(test)]
mod tests;
