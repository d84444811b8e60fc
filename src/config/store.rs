//! Configuration of the store: where shared state lives (one-time link
//! uses, API tokens, sessions) and the key its values are encrypted with.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where gatehouse's state lives. Name at most one backend: `memory`
/// (the default, one replica) or `redis` (shared by every replica).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// In this process's memory (the default when no backend is named):
    /// lost on restart, not shared between replicas.
    pub memory: Option<MemoryStoreConfig>,
    /// A Redis server, Sentinel group or Cluster shared by every replica.
    pub redis: Option<RedisStoreConfig>,
    /// A file holding AES-256 keys that encrypt every stored value
    /// (AES-256-GCM): one or more lines of 64 hex characters. The first
    /// key encrypts; every key decrypts, so a new key is rolled out by
    /// putting it first and dropped once the old values expired. Required
    /// with `redis`; without it, the memory store uses a random key that
    /// lives as long as the process.
    pub encryption_key_file: Option<PathBuf>,
}

/// Settings of the in-memory store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryStoreConfig {
    /// Most live entries (and index members) held; when full, operations
    /// that add one fail (closed: 503) until entries expire.
    pub max_entries: usize,
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        MemoryStoreConfig {
            max_entries: 1_000_000,
        }
    }
}

/// A Redis deployment: set exactly one of `url` (one server), `sentinel`
/// or `cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RedisStoreConfig {
    /// One server: `redis://host:6379/0`, or `rediss://` for TLS. Put no
    /// password in the URL; use `password_file`.
    pub url: Option<String>,
    /// A Sentinel group that names the current master.
    pub sentinel: Option<SentinelConfig>,
    /// A Redis Cluster.
    pub cluster: Option<ClusterConfig>,
    /// Prepended to every key, so that several deployments can share one
    /// Redis. May be empty, for a Redis (or database) gatehouse has to
    /// itself.
    pub key_prefix: String,
    /// The ACL user name (Redis 6+); absent: the default user.
    pub username: Option<String>,
    /// A file holding the Redis password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA that signed the server certificates, for
    /// `rediss://`; absent: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Longest wait for a connection to be set up.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "super::schema::DurationText")]
    pub connect_timeout: Duration,
    /// Longest wait for one command's answer; past it the check fails
    /// closed (503).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "super::schema::DurationText")]
    pub command_timeout: Duration,
    /// How often the connection is pinged to keep `gatehouse_store_up`
    /// current while no check uses the store.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "super::schema::DurationText")]
    pub health_interval: Duration,
}

impl Default for RedisStoreConfig {
    fn default() -> Self {
        RedisStoreConfig {
            url: None,
            sentinel: None,
            cluster: None,
            key_prefix: "gatehouse:".into(),
            username: None,
            password_file: None,
            ca_file: None,
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_millis(500),
            health_interval: Duration::from_secs(5),
        }
    }
}

/// Redis Sentinel: the sentinels to ask for the master of `master_name`
/// (both required).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SentinelConfig {
    /// The monitored master's name (`sentinel monitor <name> ...`).
    pub master_name: String,
    /// The sentinels, as `redis://host:26379` (or `rediss://`) URLs.
    pub nodes: Vec<String>,
    /// A file holding the sentinels' own password, when they require one
    /// (the master's is `password_file`).
    pub sentinel_password_file: Option<PathBuf>,
    /// The database number on the master.
    pub db: i64,
}

/// Redis Cluster: some of its nodes (at least one); the rest are
/// discovered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Seed nodes, as `redis://host:port` (or `rediss://`) URLs.
    pub nodes: Vec<String>,
}
