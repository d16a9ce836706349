//! Link settings of the shared library: the SONAME carries the ABI major version, so a host
//! linked against libspecdec.so.1 never loads an incompatible library.

fn main() {
    // Keep in sync with SPECDEC_ABI_VERSION in src/ffi/mod.rs (a test checks the built library).
    const ABI: u32 = 1;
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libspecdec.so.{ABI}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
