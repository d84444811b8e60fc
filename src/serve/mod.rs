//! The edges that serve checks: [`grpc`] (Envoy's ext_authz, health,
//! reflection), [`http`] (the side port: HTTP checks, links, JWKS,
//! metrics), [`live`] (the engine being served, swapped whole) and
//! [`reload`] (building and swapping it), plus [`drain`] for shutdown.
//! Each edge converts at its border and renders the pipeline's answer.

pub mod drain;
pub mod grpc;
pub mod http;
pub mod live;
pub mod reload;
