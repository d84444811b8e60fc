//! Operator tools, apart from the request path: [`explain`] (one request
//! walked through the pipeline, step by step), [`openapi`] (the
//! aggregated spec) and the [`cli`] commands.

pub mod cli;
pub mod explain;
pub mod openapi;
