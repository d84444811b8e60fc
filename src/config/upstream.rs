//! Configuration of what an allowed request carries upstream instead of
//! the caller's credential.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The credential a rule sends upstream in place of the caller's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum UpstreamCredentialConfig {
    /// A file holding a bearer token (e.g. a projected Kubernetes
    /// service-account token), sent as `Authorization: Bearer …`. Re-read
    /// when the file changes.
    BearerFile(PathBuf),
}
