//! The one connection the store talks through, made when first needed and
//! made anew after it broke.
//!
//! Nothing connects at start-up: gatehouse must start (and `check-config`
//! must pass) while Redis is down. The first operation, or the health
//! ping, starts a connection attempt in a task of its own, bounded by
//! `connect_timeout`; operations wait for it at most until their own
//! deadline and otherwise fail as unavailable. One attempt runs at a time,
//! and after a failed one the next waits [`RETRY_DELAY`], so that a dead
//! Redis under load costs a refused connection now and then, not one per
//! check.
//!
//! A connection that fails (an I/O error, no answer in time, `READONLY`
//! from a master demoted by a Sentinel failover) is dropped; the next
//! attempt connects from scratch, which under Sentinel asks the sentinels
//! for the master again instead of talking to the old address.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::connect::{Conn, Target};

/// Least time between the end of a failed connection attempt and the
/// next attempt.
pub(crate) const RETRY_DELAY: Duration = Duration::from_millis(250);

#[derive(Clone)]
enum State {
    /// No connection: never tried, lost (`failed` is `None`: try at once)
    /// or the last attempt failed at `failed`.
    Down {
        error: String,
        failed: Option<Instant>,
    },
    /// An attempt is running.
    Connecting,
    /// Connected; `generation` tells this connection from later ones.
    Up { conn: Conn, generation: u64 },
}

/// The store's connection and its state.
pub(crate) struct Link {
    pub(crate) target: Target,
    state: watch::Sender<State>,
    generations: AtomicU64,
    /// The last connection failure logged as a warning (empty once
    /// connected), so that an outage is logged once per cause.
    reported: std::sync::Mutex<String>,
}

impl Link {
    /// A link to `target`, not connected yet.
    pub(crate) fn new(target: Target) -> Arc<Link> {
        Arc::new(Link {
            target,
            state: watch::Sender::new(State::Down {
                error: "not connected yet".into(),
                failed: None,
            }),
            generations: AtomicU64::new(0),
            reported: std::sync::Mutex::new(String::new()),
        })
    }

    /// The connection and its generation, connecting first if there is
    /// none; waits at most until `deadline`. The error says why there is
    /// no connection.
    pub(crate) async fn get(
        self: &Arc<Self>,
        deadline: tokio::time::Instant,
    ) -> Result<(Conn, u64), String> {
        let mut state = self.state.subscribe();
        loop {
            let start = match &*state.borrow_and_update() {
                State::Up { conn, generation } => return Ok((conn.clone(), *generation)),
                State::Connecting => false,
                State::Down {
                    error,
                    failed: Some(at),
                } if at.elapsed() < RETRY_DELAY => return Err(error.clone()),
                State::Down { .. } => true,
            };
            if start {
                self.start_connecting();
                continue;
            }
            match tokio::time::timeout_at(deadline, state.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives in `self`, which outlives this call.
                Ok(Err(_)) => return Err("the store was dropped".into()),
                Err(_) => {
                    return Err(format!(
                        "still connecting to {} (no connection within the command timeout)",
                        self.target.label
                    ));
                }
            }
        }
    }

    /// Starts a connection attempt unless one runs or the last one failed
    /// less than [`RETRY_DELAY`] ago.
    fn start_connecting(self: &Arc<Self>) {
        let started = self.state.send_if_modified(|state| match state {
            State::Down { failed, .. } if failed.is_none_or(|at| at.elapsed() >= RETRY_DELAY) => {
                *state = State::Connecting;
                true
            }
            _ => false,
        });
        if !started {
            return;
        }
        let link = self.clone();
        tokio::spawn(async move {
            // Should this task be dropped mid-attempt (its runtime shutting
            // down), the link must not stay `Connecting` forever.
            let mut pending = Pending(Some(link.clone()));
            let result =
                tokio::time::timeout(link.target.connect_timeout, link.target.connect()).await;
            pending.0 = None;
            let error = match result {
                Ok(Ok(conn)) => {
                    let generation = link.generations.fetch_add(1, Ordering::Relaxed) + 1;
                    link.report("");
                    tracing::info!(redis = %link.target.label, "connected to Redis");
                    link.state.send_replace(State::Up { conn, generation });
                    return;
                }
                Ok(Err(e)) => link.target.describe(&e),
                Err(_) => format!(
                    "no connection within {}",
                    humantime::format_duration(link.target.connect_timeout)
                ),
            };
            let error = format!("cannot connect to {}: {error}", link.target.label);
            link.state.send_replace(State::Down {
                error: error.clone(),
                failed: Some(Instant::now()),
            });
            if link.report(&error) {
                tracing::debug!(error = %error, "Redis still unreachable");
            } else {
                tracing::warn!(error = %error, "Redis unreachable; store operations fail until it answers");
            }
        });
    }

    /// Records `error` as the last failure reported; returns whether it
    /// already was.
    fn report(&self, error: &str) -> bool {
        let mut last = match self.reported.lock() {
            Ok(last) => last,
            Err(poisoned) => poisoned.into_inner(),
        };
        let same = *last == error;
        if !same {
            error.clone_into(&mut last);
        }
        same
    }

    /// Drops connection `generation` after `error`, so that the next
    /// operation connects anew; later connections are left alone.
    pub(crate) fn broken(&self, generation: u64, error: &str) {
        let dropped = self.state.send_if_modified(|state| match state {
            State::Up { generation: g, .. } if *g == generation => {
                *state = State::Down {
                    error: error.to_string(),
                    failed: None,
                };
                true
            }
            _ => false,
        });
        if dropped {
            tracing::warn!(redis = %self.target.label, error, "Redis connection dropped; reconnecting");
        }
    }
}

/// Resets the link to `Down` if a connection attempt is abandoned.
struct Pending(Option<Arc<Link>>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(link) = self.0.take() {
            link.state.send_replace(State::Down {
                error: "connection attempt abandoned".into(),
                failed: None,
            });
        }
    }
}
