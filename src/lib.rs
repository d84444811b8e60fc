//! Gatehouse: an Envoy external authorization service.
//!
//! One `Check` walks the pipeline visible in the module tree:
//! [`request`] (our view of Envoy's `CheckRequest`) → [`policy`] (which rule,
//! what it demands) → [`authn`] (who the caller is) → [`authz`] (may they) →
//! [`response`] (header mutations or a denial). [`app`] wires it together.
#![forbid(unsafe_code)]

pub mod app;
pub mod backends;
pub mod check;
pub mod clock;
pub mod config;
pub mod issuer;
pub mod login;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod outbound;
pub mod proto;
pub mod secret;
pub mod serve;
pub mod sessions;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "testkit"))]
#[doc(hidden)]
pub mod testkit;
pub mod tokens;
