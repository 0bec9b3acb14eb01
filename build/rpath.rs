//! The one build script of every workspace crate that links libtorch: it embeds libtorch's library
//! folder as a run-time path, so binaries and test binaries start without LD_LIBRARY_PATH
//! (torch-sys exports the folder as DEP_TCH_LIBTORCH_LIB), and on x86-64 Linux links and exports
//! `rlvr-kernels`' answer to MKL's vendor check (`crates/kernels/shim/mkl_vendor.cpp`), so that
//! every rlvr binary — `rlvr`, tests, examples, benchmarks — runs MKL's code path for the CPU's
//! instruction set. Each crate names this file with `build = "../../build/rpath.rs"` instead of
//! keeping a copy (`rlvr-kernels`' own build script and `build/cli.rs` call it).
pub fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os == "linux" && arch == "x86_64" {
        // Pulled from rlvr-kernels' archive where a binary links it (else libtorch's own
        // definition satisfies the reference), and put in the dynamic symbol table, where
        // libtorch_cpu.so's calls find it first.
        println!("cargo:rustc-link-arg=-Wl,-u,mkl_serv_intel_cpu_true");
        println!("cargo:rustc-link-arg=-Wl,--export-dynamic-symbol=mkl_serv_intel_cpu_true");
    }
}
