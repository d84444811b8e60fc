//! Gatehouse: an Envoy external authorization service.
//!
//! One `Check` walks the pipeline visible in the module tree:
//! [`request`] (our view of Envoy's `CheckRequest`) → [`policy`] (which rule,
//! what it demands) → [`authn`] (who the caller is) → [`authz`] (may they) →
//! [`response`] (header mutations or a denial). [`app`] wires it together.
#![forbid(unsafe_code)]

pub mod app;
pub mod authn;
pub mod authz;
pub mod cli;
pub mod clock;
pub mod config;
pub mod drain;
pub mod explain;
pub mod http;
pub mod issuer;
pub mod live;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod pipeline;
pub mod policy;
pub mod proto;
pub mod reload;
pub mod request;
pub mod response;
pub mod secret;
pub mod server;
pub mod store;
pub mod telemetry;
#[doc(hidden)]
pub mod testkit;
pub mod upstream;
