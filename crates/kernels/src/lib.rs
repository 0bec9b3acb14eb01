//! libtorch operators that tch 0.26 has no bindings for, and CPU kernels ATen has no fused form
//! of, called through a small C++ shim (`shim/`) compiled against the same libtorch.
//!
//! - [`fused_adamw`]: PyTorch's fused AdamW kernel (`aten::_fused_adamw_`, what
//!   `torch.optim.AdamW(fused=True)` runs): one vectorised pass over each parameter, its gradient
//!   and both moments, where the same update written as tensor operations makes a dozen passes
//!   and several parameter-sized temporaries (docs/performance.md).
//! - [`softmax_stats`]: log-sum-exp, softmax mean logit (hence entropy) and top-K of each row of
//!   a CPU logits matrix in one pass over the row, where ATen needs a pass per statistic.

mod adamw;
mod softmax_stats;

pub use adamw::{fused_adamw, AdamWStep};
pub use softmax_stats::{softmax_stats, SoftmaxStats};

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
