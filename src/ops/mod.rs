//! Operator tools, apart from the request path: [`explain`] (one request
//! walked through the pipeline, step by step), [`replay`] (a decision log
//! decided again against another configuration), [`openapi`] (the
//! aggregated spec), [`config`] (the configuration's JSON Schema and
//! reference) and the [`cli`] commands.

pub mod cli;
pub mod config;
pub mod explain;
pub mod openapi;
pub mod replay;
