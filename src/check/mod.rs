//! One check, phase by phase, each phase a module that imports only the
//! phases before it and the leaf types ([`crate::model`]):
//!
//! [`request`] (Envoy's `CheckRequest` → our `Request`) → [`policy`]
//! (which rule, what it demands) → [`authn`] (who the caller is) →
//! [`authz`] (may they: pure) → [`upstream`] (the one step with side
//! effects: a one-time link used up, a reissued token, a swapped
//! credential) → [`response`] (the allow's header mutations, or the
//! denial). [`pipeline`] walks them in that order.

pub mod authn;
pub mod authz;
pub mod pipeline;
pub mod policy;
pub mod request;
pub mod response;
pub mod upstream;

pub use pipeline::Engine;
