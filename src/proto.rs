//! Generated protobuf and gRPC types for Envoy's ext_authz v3 API.
//!
//! The module tree mirrors the protobuf packages because prost's generated
//! code refers to other packages by relative path. Only the request
//! conversion ([`crate::check::request`]) and response rendering
//! ([`crate::check::response`]) touch these types; the pipeline works on our own.
#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

pub mod envoy {
    pub mod service {
        pub mod auth {
            pub mod v3 {
                tonic::include_proto!("envoy.service.auth.v3");
            }
        }
    }
    pub mod config {
        pub mod core {
            pub mod v3 {
                tonic::include_proto!("envoy.config.core.v3");
            }
        }
    }
    pub mod r#type {
        pub mod v3 {
            tonic::include_proto!("envoy.r#type.v3");
        }
    }
}

pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

/// `envoy.config.core.v3`: headers, addresses, metadata.
pub use envoy::config::core::v3 as core;
/// `envoy.service.auth.v3`: the Authorization service and its messages.
pub use envoy::service::auth::v3 as auth;
/// `envoy.type.v3`: HTTP status codes.
pub use envoy::r#type::v3 as http_type;
/// `google.rpc`: the status carried in a CheckResponse.
pub use google::rpc;

/// Serialized descriptor set of all our protos, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("gatehouse_descriptor");
