//! Compiles gatehouse's own `.proto` files (Envoy's ext_authz v3 API subset)
//! with `protox`, a pure-Rust protobuf compiler, so no system `protoc` is
//! needed, then generates prost messages and the tonic service from the
//! descriptor set. The descriptor set is also written to `OUT_DIR` for the
//! gRPC reflection service.

use prost::Message;

const PROTOS: &[&str] = &[
    "envoy/service/auth/v3/external_auth.proto",
    "envoy/service/auth/v3/attribute_context.proto",
    "envoy/config/core/v3/base.proto",
    "envoy/config/core/v3/address.proto",
    "envoy/type/v3/http_status.proto",
    "google/rpc/status.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("gatehouse_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
