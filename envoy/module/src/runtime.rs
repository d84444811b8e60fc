//! The module's own Tokio runtime: one worker thread, started on first use
//! and kept for the life of the Envoy process (Envoy never unloads a
//! module). It runs gatehouse's background work (key-set discovery and
//! refresh, the configuration file watch, store upkeep) and the rare check
//! that has to wait (an unknown `kid`, keys not loaded yet), which then
//! resumes on Envoy's worker through its scheduler.
//!
//! Checks themselves run on Envoy's worker threads, inside this runtime's
//! context ([`enter`]) so that gatehouse's timers and locks find it.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The runtime's handle, started on first call; an error when the
/// runtime cannot start (no thread could be spawned).
pub(crate) fn handle() -> Result<Handle, String> {
    RUNTIME
        .get_or_init(|| {
            Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(2)
                .thread_name("gatehouse-bg")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the module's runtime: {e}"))
        })
        .as_ref()
        .map(|rt| rt.handle().clone())
        .map_err(Clone::clone)
}
