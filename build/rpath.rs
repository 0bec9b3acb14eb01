//! The one build script of every workspace crate that links libtorch: it embeds libtorch's library
//! folder as a run-time path, so binaries and test binaries start without LD_LIBRARY_PATH
//! (torch-sys exports the folder as DEP_TCH_LIBTORCH_LIB). Each crate names this file with
//! `build = "../../build/rpath.rs"` instead of keeping a copy.
pub fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
