//! MKL's vendor check (`shim/mkl_vendor.cpp`): every rlvr binary answers `mkl_serv_intel_cpu_true`
//! itself, so that libtorch's MKL dispatches by the CPU's instruction set on AMD processors too
//! instead of taking its generic path (`RLVR_MKL_VENDOR_CHECK=keep` restores MKL's answer).

extern "C" {
    fn rlvr_kernels_mkl_code_path() -> i32;
}

/// The code path libtorch's MKL runs (0 generic, 5 AVX2, 7 AVX-512 with oneMKL 2024.2), or
/// `None` where libtorch has no MKL.
pub fn mkl_code_path() -> Option<i32> {
    // SAFETY: a plain C function without arguments; it looks MKL's detector up by name.
    let path = unsafe { rlvr_kernels_mkl_code_path() };
    (path >= 0).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn mkl_runs_the_path_of_the_cpus_instruction_set() {
        let Some(path) = mkl_code_path() else {
            panic!("this libtorch links MKL on x86-64 Linux; its detector was not found");
        };
        let keep = std::env::var("RLVR_MKL_VENDOR_CHECK").as_deref() == Ok("keep");
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && !keep
        {
            assert!(
                path >= 5,
                "MKL code path {path} on an AVX2 CPU (5 = AVX2, 7 = AVX-512)"
            );
        }
        if std::arch::is_x86_feature_detected!("avx512f") && !keep {
            assert!(
                path >= 7,
                "MKL code path {path} on an AVX-512 CPU (7 = AVX-512)"
            );
        }
    }
}
