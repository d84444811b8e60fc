//! Compiles gatehouse's own `.proto` files (Envoy's ext_authz v3 API subset)
//! with `protox`, a pure-Rust protobuf compiler, so no system `protoc` is
//! needed, then generates prost messages and the tonic service from the
//! descriptor set. The descriptor set is also written to `OUT_DIR` for the
//! gRPC reflection service.
//!
//! Also stamps the build for `gatehouse version`: `GATEHOUSE_GIT_COMMIT`
//! (`git rev-parse --short HEAD`, or the variable of that name when set,
//! e.g. by a Docker build without `.git`; else `unknown`) and
//! `GATEHOUSE_BUILD_DATE` (UTC, from `SOURCE_DATE_EPOCH` when set, for
//! reproducible builds; else today).

use std::path::{Path, PathBuf};
use std::process::Command;

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
    stamp_version();
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
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

/// Emits the commit and build date as compile-time environment variables.
fn stamp_version() {
    println!("cargo:rerun-if-env-changed=GATEHOUSE_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let commit = std::env::var("GATEHOUSE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=GATEHOUSE_GIT_COMMIT={}", commit.trim());
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
        });
    // Out of `time`'s range (years ±9999) only for a nonsense epoch.
    let date = time::OffsetDateTime::from_unix_timestamp(epoch)
        .map_or_else(|_| "unknown".to_string(), |t| t.date().to_string());
    println!("cargo:rustc-env=GATEHOUSE_BUILD_DATE={date}");
}

/// The short commit of this source tree, when it is a git checkout of its
/// own (not a tarball unpacked inside some other repository). Watches the
/// files that change with the commit, so the stamp follows a commit or a
/// checkout without rebuilding on every build.
fn git_commit() -> Option<String> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").ok()?);
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(&manifest)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let top = git(&["rev-parse", "--show-toplevel"])?;
    if !same_dir(Path::new(&top), &manifest) {
        return None;
    }
    // `.git` may be a file (a worktree): ask git where HEAD and the
    // branch's ref live. A path that does not exist is not watched: cargo
    // would rerun the script on every build.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
        watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    }
    for path in watched.into_iter().flatten() {
        let path = manifest.join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    git(&["rev-parse", "--short", "HEAD"])
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
