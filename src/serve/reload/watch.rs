//! What triggers a reload: SIGHUP, and a change of the configuration
//! file's content or of a file it references (JWKS files, shared secrets,
//! signing keys), found by reading them every `reload.interval`.
//!
//! Polling the content rather than subscribing to file events: a
//! Kubernetes ConfigMap update swaps a `..data` symlink in the mounted
//! directory and never writes the file itself, editors replace files by
//! rename, and a read of a few kilobytes a second costs nothing. Reading
//! through the path follows whatever the symlinks point at now. A change
//! is applied once two reads in a row see the same new content, so a file
//! caught half-written is not loaded (debounce).

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use super::Reloader;
use crate::config::ReloadConfig;

/// Starts the triggers: SIGHUP (always: without a file it is logged and
/// ignored, rather than ending the process as by default) and, when
/// `config.watch` and there is a file, the watch.
pub fn spawn(reloader: Arc<Reloader>, config: &ReloadConfig) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(on_sighup(reloader.clone()))];
    tasks.extend(spawn_file_watch(reloader, config, true));
    tasks
}

/// Starts the file watch alone, when `config.watch` and there is a file:
/// for a host process whose signals are not ours (the in-process Envoy
/// filter). `sighup`: whether SIGHUP also reloads, for the log line.
pub fn spawn_file_watch(
    reloader: Arc<Reloader>,
    config: &ReloadConfig,
    sighup: bool,
) -> Option<JoinHandle<()>> {
    match reloader.file() {
        None => {
            tracing::info!("configuration reload is off: serving the embedded demo configuration");
            None
        }
        Some(path) if config.watch => {
            tracing::info!(
                file = %path.display(),
                interval = %humantime::format_duration(config.interval),
                referenced = reloader.referenced_files().len(),
                "watching the configuration file and the files it references for changes{}",
                if sighup { " (SIGHUP also reloads)" } else { "" }
            );
            Some(tokio::spawn(watch_file(reloader, config.interval)))
        }
        Some(_) => {
            tracing::info!(
                "configuration file not watched (reload.watch: false){}",
                if sighup { "; SIGHUP reloads" } else { "" }
            );
            None
        }
    }
}

/// Reloads on every SIGHUP.
async fn on_sighup(reloader: Arc<Reloader>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload by SIGHUP is off");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            let _ = reloader.reload("SIGHUP").await;
        }
    }
    #[cfg(not(unix))]
    drop(reloader);
}

/// Reads the file and the files it references every `interval`; reloads
/// when their content differs from the last loaded and is the same as at
/// the previous read. A file that cannot be read at two reads in a row
/// (not just missing for a moment while being replaced) is reported once,
/// through a reload that fails, and again only after it was readable.
/// How long the watched file has been unreadable.
#[derive(Clone, Copy)]
enum Unreadable {
    No,
    /// At the last read only.
    Once,
    /// Long enough to have been reported.
    Reported,
}

async fn watch_file(reloader: Arc<Reloader>, interval: Duration) {
    let Some(path) = reloader.file().map(|p| p.to_path_buf()) else {
        return;
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Option<[u8; 32]> = None;
    let mut unreadable = Unreadable::No;
    loop {
        tick.tick().await;
        let Ok(content) = tokio::fs::read(&path).await else {
            // Missing for a moment while being replaced: look again later;
            // still unreadable then, the failing reload logs and counts it.
            pending = None;
            unreadable = match unreadable {
                Unreadable::No => Unreadable::Once,
                Unreadable::Once => {
                    let _ = reloader.reload("file unreadable").await;
                    Unreadable::Reported
                }
                Unreadable::Reported => Unreadable::Reported,
            };
            continue;
        };
        unreadable = Unreadable::No;
        let hash = super::inputs_hash(
            Sha256::digest(&content).into(),
            &reloader.referenced_files(),
        );
        if Some(hash) == reloader.loaded_hash() {
            pending = None;
        } else if pending == Some(hash) {
            pending = None;
            let _ = reloader.reload("file changed").await;
        } else {
            pending = Some(hash);
        }
    }
}
