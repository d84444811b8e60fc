//! Links the module with immediate binding (`-z now`): every Envoy
//! callback it calls is resolved when Envoy loads it, so an Envoy that
//! lacks one refuses the module with "undefined symbol: …" at start,
//! rather than ending the process at the first call of the missing one.
//! (rustc's Linux default already does; this makes it the module's
//! contract, whatever the toolchain's defaults become.)

fn main() {
    let target = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
    }
}
