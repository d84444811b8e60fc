//! Gatehouse inside Envoy: its check, run by Envoy's worker threads as an
//! HTTP filter of `envoy.filters.http.dynamic_modules`, with no RPC.
//!
//! The filter reads gatehouse's own configuration file and runs the same
//! pipeline the gRPC service runs (request → policy → authn → authz →
//! upstream → response), with the same denials, bodies and identity
//! headers. What needs shared state (one-time links, API tokens, sessions,
//! backend tokens) is refused with 503 unless a shared Redis store is
//! configured; such routes go to the service over `ext_authz`
//! (`envoy/envoy-inprocess.yaml` shows both together).
//!
//! Modules: [`abi`] (the C declarations), [`envoy`] (safe wrappers),
//! [`hooks`] (what Envoy calls), [`filter`] (one config, one stream's
//! check), [`request`] (Envoy's request as gatehouse describes it),
//! [`config`] (the module's JSON settings), [`stats`] (the check metrics,
//! as Envoy stats), [`log`], [`runtime`].

pub mod abi;
pub mod config;
pub mod envoy;
pub mod filter;
pub mod hooks;
pub mod log;
pub mod request;
pub mod runtime;
pub mod stats;
