//! Compiles the C++ shim over libtorch's c10d (`shim/c10d.cpp`) against the libtorch headers that
//! torch-sys builds with, and gloo's headers (laid out by `scripts/gloo.sh`, named by
//! `RLVR_GLOO_INCLUDE`); embeds libtorch's library folder as a run-time path (as
//! `build/rpath.rs` does for the other crates).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=shim/c10d.cpp");
    for var in [
        "DEP_TCH_LIBTORCH_LIB",
        "RLVR_GLOO_INCLUDE",
        "LIBTORCH_CXX11_ABI",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        eprintln!(
            "rlvr-dist: torch-sys did not export DEP_TCH_LIBTORCH_LIB (libtorch's lib folder)"
        );
        std::process::exit(1);
    };
    let root = PathBuf::from(&lib).join("..");
    let gloo = std::env::var("RLVR_GLOO_INCLUDE").unwrap_or_default();
    if !PathBuf::from(&gloo).join("gloo/algorithm.h").is_file() {
        eprintln!(
            "rlvr-dist: gloo's headers were not found at RLVR_GLOO_INCLUDE={gloo:?}; run \
             scripts/gloo.sh (it fetches Debian's libgloo-dev headers into .tools/gloo/include)"
        );
        std::process::exit(1);
    }
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("shim/c10d.cpp")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .include(&gloo)
        .flag("-std=c++17")
        .flag("-w")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .compile("rlvr_c10d");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
}
