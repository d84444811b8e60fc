//! Route policy: which rule covers a request, and what it demands.
//!
//! [`Policy::compile`] validates the configured rules once and builds
//! everything a check needs: each rule's matcher, its [`Requirement`]
//! (cheap to clone: it is made of `Arc`s) and an index over the rules.
//! [`Policy::requirement`] then finds the first rule, in configuration
//! order, whose conditions all hold — hosts, path, methods (see
//! `matcher.rs`) — and applies the route's Envoy `context_extensions`
//! (see `overrides.rs`).

mod host;
mod index;
mod matcher;
mod overrides;

use std::collections::HashSet;
use std::sync::Arc;

use crate::config::{
    AuthMode, AuthType, ConfigError, DefaultAction, IdentityHeader, PolicyConfig, RuleConfig,
    Satisfy,
};
use crate::deny::Deny;
use crate::request::Request;

use self::index::RuleIndex;
use self::matcher::RuleMatcher;
use self::overrides::Overrides;

/// The rule name of the requirement given when no rule matches and the
/// default action is `authenticated`.
pub const DEFAULT_RULE: &str = "default";
/// The rule name of the requirement built from `context_extensions` alone,
/// when no rule matches but the route carries overrides.
pub const CONTEXT_EXTENSIONS_RULE: &str = "context_extensions";

/// What a route demands of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Name of the rule that matched (for logs and metrics).
    pub rule: Arc<str>,
    /// Whether and how the caller must be authenticated.
    pub access: Access,
    /// The challenge scheme of a 401.
    pub auth_type: AuthType,
    /// Identity headers to set upstream.
    pub headers: Arc<[IdentityHeader]>,
}

/// Whether and how the caller must be authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone; no credential is examined.
    Anonymous,
    /// A valid credential holding the scopes.
    Authenticated {
        /// Scopes demanded (may be empty).
        scopes: Arc<[String]>,
        /// All or any of them.
        satisfy: Satisfy,
    },
}

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
}

/// One compiled rule.
#[derive(Debug, Clone)]
struct Rule {
    matcher: RuleMatcher,
    requirement: Requirement,
}

impl Policy {
    /// Validates and compiles the configured rules. Errors name the
    /// offending key, e.g. `policy.rules[2].match.path`.
    pub fn compile(config: &PolicyConfig) -> Result<Policy, ConfigError> {
        let default_headers: Arc<[IdentityHeader]> = IdentityHeader::default_set().into();
        let mut names = HashSet::with_capacity(config.rules.len());
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, rule) in config.rules.iter().enumerate() {
            let key = format!("policy.rules[{i}]");
            check_name(&rule.name, &key, &mut names)?;
            rules.push(Rule {
                matcher: RuleMatcher::compile(&rule.matcher, &format!("{key}.match"))?,
                requirement: compile_requirement(rule, &key, &default_headers)?,
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
            }),
        };
        Ok(Policy {
            index: RuleIndex::build(rules.iter().map(|r| &r.matcher)),
            rules: rules.into(),
            default,
            extensions_rule: CONTEXT_EXTENSIONS_RULE.into(),
            default_headers,
        })
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
        match (matched, overrides) {
            (Some(rule), None) => Ok(rule.requirement.clone()),
            (Some(rule), Some(o)) => Ok(o.apply(rule.requirement.clone())),
            (None, Some(o)) => {
                Ok(o.into_requirement(self.extensions_rule.clone(), self.default_headers.clone()))
            }
            (None, None) => self.default.clone().ok_or(Deny::NoRule),
        }
    }
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
    Ok(Requirement {
        rule: rule.name.as_str().into(),
        access,
        auth_type: rule.auth_type,
        headers,
    })
}

#[cfg(test)]
mod tests;
