//! libtorch operators that tch 0.26 has no bindings for, and CPU kernels ATen has no fused form
//! of, called through a small C++ shim (`shim/`) compiled against the same libtorch.
//!
//! - [`fused_adamw`]: PyTorch's fused AdamW kernel (`aten::_fused_adamw_`, what
//!   `torch.optim.AdamW(fused=True)` runs): one vectorised pass over each parameter, its gradient
//!   and both moments, where the same update written as tensor operations makes a dozen passes
//!   and several parameter-sized temporaries (docs/performance.md).
//! - [`backward`]: one backward pass from several outputs with their gradients
//!   (`torch.autograd.backward`; tch seeds a backward from one scalar only).
//! - [`softmax_stats`]: log-sum-exp, softmax mean logit (hence entropy) and top-K of each row of
//!   a CPU logits matrix in one pass over the row, where ATen needs a pass per statistic.
//! - [`invariant_attention`]: attention whose outputs do not depend on how queries and keys are
//!   batched or padded (a cached decode step equals the full-sequence pass bit for bit).
//! - [`invariant_linear`]: `x Wᵀ + b` whose rows do not depend on the rows computed with them
//!   (libtorch's GEMM follows the matrix sizes and the CPU).
//! - [`invariant_swiglu`]: `silu(gate) · up` with one arithmetic for every element (libtorch's
//!   SIMD body and scalar tail differ, so its result follows the batch and thread count).
//! - [`inverse_cdf_sample`]: one token per row of a log-probability matrix, the inverse-CDF rule
//!   in one pass over each row's prefix (the tensor form makes eight passes over f64 copies).
//! - [`PackedLinear`]: `x Wᵀ` on a weight packed once into MKL's GEMM layout, where a plain
//!   product repacks it at every call (generation's decode steps).
//! - MKL's vendor check, answered so that libtorch's MKL runs the code path of the CPU's
//!   instruction set on AMD processors too ([`mkl_code_path`] reports it).

mod adamw;
mod invariant_attention;
mod invariant_linear;
mod invariant_swiglu;
mod inverse_cdf;
mod mkl_vendor;
mod packed_linear;
mod softmax_stats;
mod swiglu;

pub use adamw::{backward, fused_adamw, release_grads, AdamWStep};
pub use invariant_attention::invariant_attention;
pub use invariant_linear::{invariant_linear, invariant_linear_portable};
pub use invariant_swiglu::invariant_swiglu;
pub use inverse_cdf::{inverse_cdf_sample, inverse_cdf_sample_portable};
pub use mkl_vendor::mkl_code_path;
pub use packed_linear::PackedLinear;
pub use softmax_stats::{softmax_stats, SoftmaxStats};
pub use swiglu::{swiglu, swiglu_backward};

use std::ffi::{c_char, c_int, CStr};

/// A libtorch operator or shim kernel failed; the message is libtorch's or the check's.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {message}")]
pub struct KernelError {
    /// The operator.
    pub op: &'static str,
    /// What went wrong.
    pub message: String,
}

extern "C" {
    fn rlvr_kernels_free_message(message: *mut c_char);
}

/// The outcome of a shim call that returned `rc` and, on failure, a message in `error`.
fn shim_result(op: &'static str, rc: c_int, error: *mut c_char) -> Result<(), KernelError> {
    if rc == 0 {
        return Ok(());
    }
    let message = if error.is_null() {
        "libtorch raised an error without a message".to_string()
    } else {
        // SAFETY: the shim returns a NUL-terminated malloc'd copy, freed once here.
        let text = unsafe { CStr::from_ptr(error) }
            .to_string_lossy()
            .into_owned();
        unsafe { rlvr_kernels_free_message(error) };
        text
    };
    Err(KernelError { op, message })
}

#[cfg(test)]
pub(crate) mod test_support {
    /// `n` standard normal draws from a fixed seed (splitmix64, Box–Muller), independent of
    /// libtorch's global generator, which tests running in parallel share.
    pub fn normal(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut uniform = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let (u, v) = (uniform().max(1e-300), uniform());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect()
    }
}
