//! Route policy (placeholder: replaced by the full implementation).

use std::sync::Arc;

use crate::config::{AuthType, ConfigError, IdentityHeader, PolicyConfig, Satisfy};
use crate::deny::Deny;
use crate::request::Request;

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
    _config: PolicyConfig,
}

impl Policy {
    /// Compiles the configured rules.
    pub fn compile(config: &PolicyConfig) -> Result<Policy, ConfigError> {
        Ok(Policy {
            _config: config.clone(),
        })
    }

    /// Finds what the route demands of `request`.
    pub fn requirement(&self, _request: &Request) -> Result<Requirement, Deny> {
        Err(Deny::NoRule)
    }
}
