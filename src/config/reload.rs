//! Configuration of hot reload (SIGHUP always reloads; this section
//! decides whether the file is also watched).

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

/// Hot reload settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadConfig {
    /// Watch the configuration file and reload when its content changes
    /// (also through a replaced symlink, as a Kubernetes ConfigMap
    /// update does). Takes effect at restart.
    #[schemars(extend("x-reload" = "restart"))]
    pub watch: bool,
    /// How often the watched file is read; a change is applied once two
    /// reads in a row see the same new content. Takes effect at restart.
    #[schemars(with = "schema::DurationText")]
    #[serde(with = "humantime_serde")]
    #[schemars(extend("x-reload" = "restart"))]
    pub interval: Duration,
    /// How long a reload waits for the keys of new or changed remote
    /// issuers; if they do not load in time, the reload fails and the
    /// running configuration stays.
    #[schemars(with = "schema::DurationText")]
    #[serde(with = "humantime_serde")]
    pub keys_timeout: Duration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig {
            watch: true,
            interval: Duration::from_secs(1),
            keys_timeout: Duration::from_secs(10),
        }
    }
}
