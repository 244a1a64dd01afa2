//! Sets the SONAME of the shared library. Never writes into the source tree.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let abi = env!("CARGO_PKG_VERSION_MAJOR");
    // The ABI version is the major version; 0.x releases use ABI 0.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libvx.so.{abi}");
    }
}
