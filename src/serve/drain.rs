//! Waiting for a server task to finish its in-flight work after shutdown
//! began, shared by the gRPC server and the HTTP side port.

use std::time::Duration;

use tokio::task::{JoinError, JoinHandle};

/// The outcome of a server task: its own result, or `Ok` when the task
/// panicked or was cancelled (logged; shutdown carries on).
pub fn flatten<E>(name: &str, result: Result<Result<(), E>, JoinError>) -> Result<(), E> {
    result.unwrap_or_else(|join| {
        tracing::error!(server = name, error = %join, "server task failed");
        Ok(())
    })
}

/// Waits up to `drain` for `server` to finish, then aborts it.
pub async fn finish<E>(
    name: &str,
    server: &mut JoinHandle<Result<(), E>>,
    drain: Duration,
) -> Result<(), E> {
    match tokio::time::timeout(drain, &mut *server).await {
        Ok(result) => flatten(name, result),
        Err(_) => {
            tracing::warn!(
                server = name,
                "drain timeout reached; closing remaining connections"
            );
            server.abort();
            Ok(())
        }
    }
}
