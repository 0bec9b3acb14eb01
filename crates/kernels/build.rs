//! Compiles the C++ shim (`shim/`: libtorch operators tch does not expose, the softmax-statistics
//! kernel, MKL's vendor check and packed GEMM) against the libtorch headers torch-sys builds with, and embeds
//! libtorch's library folder as a run-time path and exports the vendor check from this crate's
//! test binaries (`build/rpath.rs`, which every other crate's build script is).
#[path = "../../build/rpath.rs"]
mod rpath;

use std::path::PathBuf;

fn main() {
    for file in [
        "shim/kernels.cpp",
        "shim/softmax_stats.cpp",
        "shim/invariant_attention.cpp",
        "shim/invariant_linear.cpp",
        "shim/invariant_swiglu.cpp",
        "shim/swiglu.cpp",
        "shim/simd_exp.h",
        "shim/mkl_vendor.cpp",
        "shim/packed_linear.cpp",
        "shim/inverse_cdf.cpp",
        "shim/message.h",
    ] {
        println!("cargo:rerun-if-changed={file}");
    }
    for var in ["DEP_TCH_LIBTORCH_LIB", "LIBTORCH_CXX11_ABI"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        eprintln!(
            "rlvr-kernels: torch-sys did not export DEP_TCH_LIBTORCH_LIB (libtorch's lib folder)"
        );
        std::process::exit(1);
    };
    let root = PathBuf::from(&lib).join("..");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("shim/kernels.cpp")
        .file("shim/softmax_stats.cpp")
        .file("shim/invariant_attention.cpp")
        .file("shim/invariant_linear.cpp")
        .file("shim/invariant_swiglu.cpp")
        .file("shim/swiglu.cpp")
        .file("shim/mkl_vendor.cpp")
        .file("shim/packed_linear.cpp")
        .file("shim/inverse_cdf.cpp")
        .include(root.join("include"))
        .flag("-std=c++17")
        .opt_level(3)
        .flag("-w")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str());
    // at::parallel_for runs on libtorch's OpenMP threads where torch-sys links libgomp (Linux);
    // elsewhere the kernel runs on the calling thread.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        build.flag("-fopenmp");
    }
    build.compile("rlvr_kernels");
    // mkl_vendor.cpp's dlsym (in libc from glibc 2.34, in libdl before).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-lib=dl");
    }
    rpath::main();
}
