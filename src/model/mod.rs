//! The leaf layer: the types every phase of a check passes along and the
//! observers read. Nothing here imports the pipeline, its phases, the
//! servers or the operator tools, so they can all import it.
//!
//! - [`request::Request`]: our view of the request being checked;
//! - [`path`]: path normalization, shared by requests and link grants;
//! - [`requirement::Requirement`]: what the matched rule demands;
//! - [`identity::Identity`]: who the caller is;
//! - [`condition::Condition`]: a rule's CEL `when` expression;
//! - [`grant::LinkGrant`]: what a signed link allows;
//! - [`deny::Deny`]: why a request is refused, with every rendering fact
//!   beside each reason;
//! - [`outcome::Outcome`]: the answer before an edge renders it;
//! - [`observe`]: the phases, the decision, and the observer trait that
//!   metrics, tracing and `gatehouse explain` watch a check through.

pub mod claims;
pub mod condition;
pub mod deny;
pub mod grant;
pub mod identity;
pub mod observe;
pub mod outcome;
pub mod path;
pub mod request;
pub mod requirement;
