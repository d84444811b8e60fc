//! Configuration of the store (shared state: one-time link uses).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which store backend holds gatehouse's state.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// In this process's memory (the default; one replica).
    Memory(MemoryStoreConfig),
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Memory(MemoryStoreConfig::default())
    }
}

/// Settings of the in-memory store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryStoreConfig {
    /// Most live entries held; when full, operations that add one fail
    /// (closed: 503) until entries expire.
    pub max_entries: usize,
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        MemoryStoreConfig {
            max_entries: 1_000_000,
        }
    }
}
