//! Hot reload: SIGHUP, or a change of the configuration file or of a
//! file it references (key sets, shared secrets, signing keys: see
//! [`Config::referenced_files`]) ([`watch`]), loads the configuration file again (with the same `GATEHOUSE_*`
//! overrides), builds a new engine and swaps it in whole.
//!
//! * Validated first: a file that does not load or build keeps the
//!   running engine; the error (naming the key) is logged and
//!   `gatehouse_config_reloads_total{result="failure"}` counts it.
//! * Atomic: checks load the engine once ([`LiveEngine`]); a check in
//!   flight finishes on the engine it started with.
//! * Carried over: the store when `store` is unchanged (one-time link
//!   uses survive), and each remote key set whose issuer name, key source
//!   and refresh settings are unchanged (its keys stay loaded, its refresh
//!   keeps running). The verified-token cache starts empty.
//! * New or changed remote issuers: their keys are fetched *before* the
//!   swap, for at most `reload.keys_timeout`; if they do not load, the
//!   reload fails. Swapping anyway would answer that issuer's tokens with
//!   503 and — with the same file rolled out to every replica at once —
//!   could turn the whole fleet NOT_SERVING over an unreachable JWKS URL;
//!   waiting keeps the invariant that the serving engine, once ready,
//!   stays ready, and a failed reload is visible (log, metric) and
//!   retried by the next SIGHUP or change.
//! * Settings read only at start (listen addresses, drain timeout,
//!   logging, the watch itself) are compared with the ones in force; a
//!   change is logged as needing a restart and shown by
//!   `gatehouse_config_restart_required`, never silently ignored.

mod tasks;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::app::{self, Carry};
use crate::check::authn::jwt::keys::IssuerKeys;
use crate::check::pipeline::Engine;
use crate::config::{self, Config, ConfigError, ConfigSource};
use crate::metrics::Metrics;
use crate::serve::live::LiveEngine;
use tasks::Tasks;

/// How often a reload checks whether new key sets have loaded.
const KEYS_POLL: Duration = Duration::from_millis(25);

/// Why a reload did not happen; the running engine stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Serving the embedded demo configuration: there is no file.
    #[error("the embedded demo configuration cannot be reloaded (start with --config FILE)")]
    NoFile,
    /// The file does not load or does not build an engine.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// New or changed remote issuers' keys did not load in time.
    #[error(
        "keys of issuer(s) {issuers} not loaded within {}; see the key set fetch warnings",
        humantime::format_duration(*timeout)
    )]
    KeysNotLoaded {
        /// Their names, comma-separated.
        issuers: String,
        /// The `reload.keys_timeout` waited.
        timeout: Duration,
    },
    /// Building the engine was interrupted (the blocking task died).
    #[error("building the engine failed: {0}")]
    Build(String),
}

/// What a successful reload did.
#[derive(Debug)]
pub struct Reloaded {
    /// Keys whose change waits for a restart.
    pub restart_required: Vec<&'static str>,
    /// Remote key sets fetched anew (not carried over).
    pub new_key_sets: usize,
    /// Whether the store was kept.
    pub store_kept: bool,
}

/// What a reload compares against and replaces.
struct State {
    /// The configuration the process started with: settings read only at
    /// start stay in force from it.
    started: Config,
    /// The serving engine's configuration.
    applied: Config,
    tasks: Tasks,
}

/// Reloads the configuration into a [`LiveEngine`], one reload at a time.
pub struct Reloader {
    source: ConfigSource,
    env: Vec<(String, String)>,
    live: LiveEngine,
    metrics: Arc<Metrics>,
    state: tokio::sync::Mutex<State>,
    /// [`inputs_hash`] of what was last loaded, good or bad: the watcher
    /// reloads when the inputs differ from it.
    loaded: Mutex<Option<[u8; 32]>>,
    /// The files the last parsed configuration references.
    referenced: Mutex<Vec<PathBuf>>,
}

impl Reloader {
    /// Serves `engine` (built from `config`, loaded from `source` with the
    /// overrides in `env`) and starts its background tasks. Call within
    /// the runtime.
    pub fn start(
        config: Config,
        source: ConfigSource,
        env: Vec<(String, String)>,
        engine: Engine,
        metrics: Arc<Metrics>,
    ) -> Arc<Reloader> {
        let tasks = Tasks::start(&engine);
        let referenced = config.referenced_files(&source);
        let loaded = file_of(&source)
            .and_then(file_hash)
            .map(|config| inputs_hash(config, &referenced));
        metrics.config_started();
        Arc::new(Reloader {
            source,
            env,
            live: LiveEngine::new(Arc::new(engine)),
            metrics,
            state: tokio::sync::Mutex::new(State {
                started: config.clone(),
                applied: config,
                tasks,
            }),
            loaded: Mutex::new(loaded),
            referenced: Mutex::new(referenced),
        })
    }

    /// The serving engine, for the servers.
    pub fn live(&self) -> LiveEngine {
        self.live.clone()
    }

    /// The configuration file, unless serving the embedded demo.
    pub fn file(&self) -> Option<&Path> {
        file_of(&self.source)
    }

    /// [`inputs_hash`] of the configuration and referenced files last
    /// loaded.
    pub fn loaded_hash(&self) -> Option<[u8; 32]> {
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The files the last parsed configuration references (watched along
    /// with it).
    pub fn referenced_files(&self) -> Vec<PathBuf> {
        self.referenced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_loaded(&self, hash: Option<[u8; 32]>) {
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) = hash;
    }

    /// How many remote key sets are being refreshed (for tests).
    pub async fn refreshing(&self) -> usize {
        self.state.lock().await.tasks.refreshing()
    }

    /// Reloads now (`trigger` names why, for the log): logs the outcome
    /// and counts it in the reload metrics.
    pub async fn reload(&self, trigger: &str) -> Result<Reloaded, ReloadError> {
        let mut state = self.state.lock().await;
        match self.try_reload(&mut state).await {
            Ok(done) => {
                let engine = self.live.load();
                tracing::info!(
                    trigger,
                    issuers = engine.authn.key_sets().len(),
                    new_key_sets = done.new_key_sets,
                    store_kept = done.store_kept,
                    "configuration reloaded"
                );
                if !done.restart_required.is_empty() {
                    tracing::warn!(
                        keys = %done.restart_required.join(", "),
                        "configuration changes that take effect only after a restart; the values in force are kept"
                    );
                }
                self.metrics
                    .config_loaded(true, !done.restart_required.is_empty());
                Ok(done)
            }
            Err(ReloadError::NoFile) => {
                tracing::warn!(trigger, "{}", ReloadError::NoFile);
                Err(ReloadError::NoFile)
            }
            Err(e) => {
                tracing::error!(trigger, error = %e, "configuration reload failed; the running configuration stays");
                self.metrics.config_loaded(false, false);
                Err(e)
            }
        }
    }

    async fn try_reload(&self, state: &mut State) -> Result<Reloaded, ReloadError> {
        let path = self.file().ok_or(ReloadError::NoFile)?;
        // Hashed before anything is read for the new engine: a change made
        // while it is built shows as a difference at the next look (one
        // extra reload at worst), never as a change already applied.
        let config_hash = file_hash(path);
        let mut referenced = self.referenced_files();
        self.set_loaded(config_hash.map(|c| inputs_hash(c, &referenced)));
        let config = config::load(&self.source, self.env.iter().cloned())?;
        let now_referenced = config.referenced_files(&self.source);
        if now_referenced != referenced {
            referenced = now_referenced;
            self.set_loaded(config_hash.map(|c| inputs_hash(c, &referenced)));
            *self.referenced.lock().unwrap_or_else(|e| e.into_inner()) = referenced;
        }
        let current = self.live.current();
        let store_kept = config.store == state.applied.store;
        let carry = Carry {
            metrics: self.metrics.clone(),
            key_sets: current.authn.key_sets(),
            store: store_kept.then(|| current.store.clone()),
        };
        drop(current);
        // Compiling rules and reading key files is blocking work.
        let (config, source) = (Arc::new(config), self.source.clone());
        let mut engine = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || app::build_engine_with(&config, &source, &carry))
                .await
                .map_err(|e| ReloadError::Build(e.to_string()))??
        };
        // The OTLP exporter is set up once, at start: spans are made
        // exactly when it runs, whatever the new `tracing:` says.
        engine.telemetry.spans = state.started.tracing.is_some();
        let fresh = state.tasks.start_new(&engine);
        let timeout = config.reload.keys_timeout;
        if !keys_loaded(&fresh, timeout).await {
            state.tasks.stop(&fresh);
            let issuers = fresh
                .iter()
                .filter(|k| !k.is_ready())
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ReloadError::KeysNotLoaded { issuers, timeout });
        }
        let engine = Arc::new(engine);
        self.live.swap(engine.clone());
        state.tasks.adopt(&engine);
        let config = Arc::unwrap_or_clone(config);
        let restart_required = restart_only_changes(&state.started, &config);
        state.applied = config;
        Ok(Reloaded {
            restart_required,
            new_key_sets: fresh.len(),
            store_kept,
        })
    }
}

/// Waits until every key set in `keys` is loaded, at most `timeout`.
async fn keys_loaded(keys: &[Arc<IssuerKeys>], timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if keys.iter().all(|k| k.is_ready()) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(KEYS_POLL).await;
    }
}

/// The settings read only at start whose value differs in `new`.
pub fn restart_only_changes(started: &Config, new: &Config) -> Vec<&'static str> {
    let (s, n) = (started, new);
    [
        (s.server.grpc_addr != n.server.grpc_addr, "server.grpc_addr"),
        (s.server.http_addr != n.server.http_addr, "server.http_addr"),
        (
            s.server.drain_timeout != n.server.drain_timeout,
            "server.drain_timeout",
        ),
        (
            s.server.grpc_threads != n.server.grpc_threads,
            "server.grpc_threads",
        ),
        (
            s.server.grpc_socket != n.server.grpc_socket,
            "server.grpc_socket",
        ),
        (
            s.server.max_request_bytes != n.server.max_request_bytes,
            "server.max_request_bytes",
        ),
        (
            s.server.max_concurrent_streams != n.server.max_concurrent_streams,
            "server.max_concurrent_streams",
        ),
        // log.decisions is read per check (it lives in the engine).
        (
            s.log.format != n.log.format || s.log.level != n.log.level,
            "log",
        ),
        (s.tracing != n.tracing, "tracing"),
        // The store (and the state in it) is kept across reloads.
        (s.store != n.store, "store"),
        (s.reload.watch != n.reload.watch, "reload.watch"),
        (s.reload.interval != n.reload.interval, "reload.interval"),
    ]
    .into_iter()
    .filter_map(|(changed, key)| changed.then_some(key))
    .collect()
}

fn file_of(source: &ConfigSource) -> Option<&Path> {
    match source {
        ConfigSource::File(path) => Some(path),
        ConfigSource::Text(_) => None,
    }
}

/// SHA-256 of the file's content (through symlinks), `None` if unreadable.
pub fn file_hash(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}

/// One hash of everything a reload reads from disk: the configuration
/// file's hash `config` and each referenced file's path and content (an
/// unreadable file counts as a state of its own, so its return is a change).
pub fn inputs_hash(config: [u8; 32], referenced: &[PathBuf]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(config);
    for path in referenced {
        hasher.update(path.as_os_str().as_encoded_bytes());
        hasher.update([0]);
        match file_hash(path) {
            Some(content) => hasher.update(content),
            None => hasher.update(b"unreadable"),
        }
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests;
