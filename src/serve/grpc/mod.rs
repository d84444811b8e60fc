//! The gRPC server: `envoy.service.auth.v3.Authorization`, `grpc.health.v1`
//! and server reflection, with readiness tied to key loading and a
//! draining shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

mod io;

pub use io::BatchedWrites;

use crate::proto::auth::authorization_server::{Authorization, AuthorizationServer};
use crate::proto::auth::{CheckRequest, CheckResponse};
use crate::serve::live::LiveEngine;

/// Bounds on what one client (normally an Envoy) may make the gRPC server
/// hold: each is a refusal, never an unbounded allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcLimits {
    /// Largest request message accepted (a CheckRequest: headers and, if
    /// Envoy sends one, a body); a larger one is refused before it is
    /// decoded (`OUT_OF_RANGE`).
    pub max_request_bytes: usize,
    /// HTTP/2 streams (checks) in flight per connection; the client queues
    /// the rest.
    pub max_concurrent_streams: u32,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        GrpcLimits {
            max_request_bytes: 256 << 10,
            max_concurrent_streams: 1024,
        }
    }
}

/// The largest HTTP/2 header block (gRPC metadata) accepted: a request's
/// own headers travel inside the message, so metadata stays small.
const MAX_METADATA_BYTES: u32 = 16 << 10;

/// The `Authorization` service over the current engine.
pub struct CheckService {
    engine: LiveEngine,
}

impl CheckService {
    /// Serves checks with whatever engine `engine` holds at each check.
    pub fn new(engine: impl Into<LiveEngine>) -> Self {
        CheckService {
            engine: engine.into(),
        }
    }
}

#[tonic::async_trait]
impl Authorization for CheckService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        Ok(Response::new(self.engine.check(request.into_inner()).await))
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listening address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The reflection service could not be built.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The Unix domain socket could not be set up.
    #[error("unix socket {}: {source}", path.display())]
    Unix {
        /// The socket's path.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A serving thread (or its runtime, or its copy of the socket) could
    /// not be set up.
    #[error("starting a serving thread: {source}")]
    Thread {
        /// The OS error.
        source: std::io::Error,
    },
}

/// A bound, not yet serving, gRPC listener (binding first lets callers
/// learn the real port when configured with port 0).
pub struct Listener {
    listener: TcpListener,
    unix: Option<std::os::unix::net::UnixListener>,
    threads: usize,
    limits: GrpcLimits,
}

impl Listener {
    /// Binds `addr`; checks are served by one thread until
    /// [`Self::with_threads`] says otherwise.
    pub async fn bind(addr: SocketAddr) -> Result<Listener, ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Listener {
            listener,
            unix: None,
            threads: 1,
            limits: GrpcLimits::default(),
        })
    }

    /// Also serves on the Unix domain socket `path` (a sidecar Envoy in
    /// the same pod): no TCP stack on either side of each check. A stale
    /// socket file left by an earlier run is replaced; any other file at
    /// `path` is an error.
    pub fn with_unix_socket(mut self, path: &std::path::Path) -> Result<Listener, ServeError> {
        use std::os::unix::fs::FileTypeExt as _;
        let unix_error = |source| ServeError::Unix {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                std::fs::remove_file(path).map_err(unix_error)?;
            }
            Ok(_) => {
                return Err(unix_error(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "exists and is not a socket",
                )));
            }
            Err(_) => {}
        }
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(unix_error)?;
        listener.set_nonblocking(true).map_err(unix_error)?;
        self.unix = Some(listener);
        Ok(self)
    }

    /// Serves checks on `threads` threads (at least one), each with its own
    /// single-threaded runtime accepting from the shared socket.
    ///
    /// Why thread-per-core rather than one multi-threaded runtime: a
    /// check is a few microseconds of work, and on a work-stealing runtime
    /// the HTTP/2 connection task and the per-stream task it spawns often
    /// land on different workers, so every check paid a futex wake-up and
    /// a cross-core hand-off (measured: +15–25% CPU per check with two
    /// workers against one; BENCHMARKS.md). Here a connection and all its
    /// streams stay on the thread that accepted it, like Envoy's own
    /// workers; several Envoy workers (one connection each) spread over
    /// the threads.
    pub fn with_threads(mut self, threads: usize) -> Listener {
        self.threads = threads.max(1);
        self
    }

    /// Applies `limits` instead of the defaults.
    pub fn with_limits(mut self, limits: GrpcLimits) -> Listener {
        self.limits = limits;
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` resolves, then reports NOT_SERVING, stops
    /// accepting and waits up to `drain` for in-flight checks. `engine`:
    /// an engine, or a [`LiveEngine`] a reloader swaps.
    pub async fn serve(
        self,
        engine: impl Into<LiveEngine>,
        drain: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let engine: LiveEngine = engine.into();
        let (health, health_service) = tonic_health::server::health_reporter();
        set_status(&health, ServingStatus::NotServing).await;
        let readiness = tokio::spawn(report_ready_when_keys_load(engine.clone(), health.clone()));

        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let check = AuthorizationServer::new(CheckService::new(engine))
            .max_decoding_message_size(self.limits.max_request_bytes);
        // Built once; each serving thread gets a clone (cheap `Arc`s).
        let services = Routes::new(health_service)
            .add_service(reflection)
            .add_service(check);

        // `stop`: stop accepting and finish in-flight checks; `abort`: the
        // drain time is over, drop whatever is left.
        let (stop, _) = tokio::sync::watch::channel(false);
        let (abort, _) = tokio::sync::watch::channel(false);
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let listener = self
            .listener
            .into_std()
            .map_err(|source| ServeError::Thread { source })?;
        for index in 0..self.threads {
            let socket = listener
                .try_clone()
                .map_err(|source| ServeError::Thread { source })?;
            let unix = self
                .unix
                .as_ref()
                .map(std::os::unix::net::UnixListener::try_clone)
                .transpose()
                .map_err(|source| ServeError::Thread { source })?;
            let (services, stop, abort) = (services.clone(), stop.subscribe(), abort.subscribe());
            let done = done_tx.clone();
            let limits = self.limits;
            std::thread::Builder::new()
                .name(format!("gatehouse-grpc-{index}"))
                .spawn(move || {
                    let _ = done.send(serve_thread(socket, unix, services, limits, stop, abort));
                })
                .map_err(|source| ServeError::Thread { source })?;
        }
        drop(done_tx);

        let first = tokio::select! {
            result = done_rx.recv() => Some(result.unwrap_or(Ok(()))),
            () = shutdown => None,
        };
        readiness.abort();
        if let Some(result) = first {
            // A serving thread ended on its own: stop the others too.
            stop.send_replace(true);
            abort.send_replace(true);
            return result;
        }
        tracing::info!(
            drain_secs = drain.as_secs_f64(),
            "shutting down: draining in-flight checks"
        );
        set_status(&health, ServingStatus::NotServing).await;
        stop.send_replace(true);
        let drained = tokio::time::timeout(drain, async {
            let mut outcome = Ok(());
            while let Some(result) = done_rx.recv().await {
                outcome = outcome.and(result);
            }
            outcome
        })
        .await;
        match drained {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::warn!(
                    server = "grpc",
                    "drain timeout reached; closing remaining connections"
                );
                abort.send_replace(true);
                Ok(())
            }
        }
    }
}

/// One serving thread: its own single-threaded runtime and tonic server
/// on a clone of the listening socket (and of the Unix socket, if any),
/// until `stop` (graceful) or `abort`.
fn serve_thread(
    socket: std::net::TcpListener,
    unix: Option<std::os::unix::net::UnixListener>,
    services: Routes,
    limits: GrpcLimits,
    stop: tokio::sync::watch::Receiver<bool>,
    mut abort: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let server = move || {
        tonic::transport::Server::builder()
            .max_concurrent_streams(limits.max_concurrent_streams)
            .http2_max_header_list_size(MAX_METADATA_BYTES)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ServeError::Thread { source })?;
    let stopped = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    runtime.block_on(async move {
        let listener =
            TcpListener::from_std(socket).map_err(|source| ServeError::Thread { source })?;
        let (tcp_services, tcp_stop) = (services.clone(), stop.clone());
        let tcp = async move {
            server()
                .add_routes(tcp_services)
                // TCP_NODELAY: a check answer is one small frame; Nagle's
                // algorithm would hold it back waiting for Envoy's ACK.
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(listener)
                        .with_nodelay(Some(true))
                        .map(|stream| stream.map(BatchedWrites)),
                    stopped(tcp_stop),
                )
                .await
                .map_err(ServeError::from)
        };
        let unix = async move {
            let Some(unix) = unix else {
                return Ok(());
            };
            let unix = tokio::net::UnixListener::from_std(unix)
                .map_err(|source| ServeError::Thread { source })?;
            server()
                .add_routes(services)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::UnixListenerStream::new(unix)
                        .map(|stream| stream.map(BatchedWrites)),
                    stopped(stop),
                )
                .await
                .map_err(ServeError::from)
        };
        tokio::select! {
            // The first error (say, of the Unix socket) ends the thread.
            result = async { tokio::try_join!(tcp, unix) } => result.map(|_| ()),
            _ = abort.wait_for(|aborting| *aborting) => Ok(()),
        }
    })
}

/// Sets the overall status and the Authorization service's status.
async fn set_status(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    health
        .set_service_status("envoy.service.auth.v3.Authorization", status)
        .await;
}

/// NOT_SERVING until every issuer's key set is loaded, then SERVING. A
/// reload swaps in only an engine whose new key sets are loaded, so
/// readiness does not go back.
async fn report_ready_when_keys_load(engine: LiveEngine, health: HealthReporter) {
    while !engine.load().ready() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    set_status(&health, ServingStatus::Serving).await;
    tracing::info!("all issuer keys loaded: serving");
}
