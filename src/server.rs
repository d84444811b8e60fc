//! The gRPC server: `envoy.service.auth.v3.Authorization`, `grpc.health.v1`
//! and server reflection, with readiness tied to key loading and a
//! draining shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::live::LiveEngine;
use crate::proto::auth::authorization_server::{Authorization, AuthorizationServer};
use crate::proto::auth::{CheckRequest, CheckResponse};

/// Largest CheckRequest accepted (headers and, if configured, a body).
const MAX_MESSAGE_BYTES: usize = 4 << 20;

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
        // One load per check: a reload during the check does not affect it.
        let engine = self.engine.load();
        let started = Instant::now();
        let (response, decision) = engine.check_owned(request.into_inner()).await;
        engine.metrics.record(&decision, started.elapsed());
        Ok(Response::new(response))
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
}

/// A bound, not yet serving, gRPC listener (binding first lets callers
/// learn the real port when configured with port 0).
pub struct Listener {
    listener: TcpListener,
}

impl Listener {
    /// Binds `addr`.
    pub async fn bind(addr: SocketAddr) -> Result<Listener, ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Listener { listener })
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
            .max_decoding_message_size(MAX_MESSAGE_BYTES);

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(check)
            // TCP_NODELAY: a check answer is one small frame; Nagle's
            // algorithm would hold it back waiting for Envoy's ACK.
            .serve_with_incoming_shutdown(
                TcpIncoming::from(self.listener).with_nodelay(Some(true)),
                async {
                    let _ = stop_rx.await;
                },
            );
        let mut server = tokio::spawn(server);

        tokio::select! {
            result = &mut server => {
                readiness.abort();
                return crate::drain::flatten("grpc", result).map_err(ServeError::from);
            }
            () = shutdown => {}
        }
        tracing::info!(
            drain_secs = drain.as_secs_f64(),
            "shutting down: draining in-flight checks"
        );
        readiness.abort();
        set_status(&health, ServingStatus::NotServing).await;
        let _ = stop_tx.send(());
        crate::drain::finish("grpc", &mut server, drain)
            .await
            .map_err(ServeError::from)
    }
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
