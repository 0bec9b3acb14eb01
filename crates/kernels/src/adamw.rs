//! PyTorch's fused AdamW step, the release of gradients and a backward pass from several outputs,
//! through the shim (`shim/kernels.cpp`).

use crate::{shim_result, KernelError};
use std::ffi::{c_char, c_int};
use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn rlvr_kernels_fused_adamw(
        params: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        exp_avgs: *const *mut C_tensor,
        exp_avg_sqs: *const *mut C_tensor,
        n: i64,
        step: f64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        grad_scale: f64,
        error: *mut *mut c_char,
    ) -> c_int;
}

extern "C" {
    fn rlvr_kernels_release_grads(
        tensors: *const *mut C_tensor,
        n: i64,
        error: *mut *mut c_char,
    ) -> c_int;
}

/// Drops the `.grad` of every tensor in `params` (PyTorch's `zero_grad(set_to_none=True)`): the
/// next backward allocates them again as it reaches each parameter, so between updates — and
/// during the part of the next update before its backward — they take no memory.
pub fn release_grads(params: &[Tensor]) -> Result<(), KernelError> {
    let ptrs: Vec<*mut C_tensor> = params.iter().map(|t| t.as_ptr() as *mut C_tensor).collect();
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: every pointer is a live at::Tensor owned by the caller for the whole call.
    let rc = unsafe { rlvr_kernels_release_grads(ptrs.as_ptr(), ptrs.len() as i64, &mut error) };
    shim_result("release_grads", rc, error)
}

extern "C" {
    fn rlvr_kernels_backward(
        outputs: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        n: i64,
        error: *mut *mut c_char,
    ) -> c_int;
}

/// Backpropagates `grads[i]` from `outputs[i]`, all in one backward pass, into the leaves of
/// their graphs (PyTorch's `torch.autograd.backward(outputs, grads)`; tch's `backward` takes one
/// scalar): what the graphs share is traversed once, and each gradient enters as it is. Consumes
/// its arguments so that the backward holds their only references (pass a `shallow_clone` to
/// keep one): each is freed as soon as the graph is done with it.
pub fn backward(outputs: Vec<Tensor>, grads: Vec<Tensor>) -> Result<(), KernelError> {
    if outputs.len() != grads.len() {
        return Err(KernelError {
            op: "backward",
            message: format!("{} outputs but {} gradients", outputs.len(), grads.len()),
        });
    }
    let outs: Vec<*mut C_tensor> = outputs
        .iter()
        .map(|t| t.as_ptr() as *mut C_tensor)
        .collect();
    let gs: Vec<*mut C_tensor> = grads.iter().map(|t| t.as_ptr() as *mut C_tensor).collect();
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: every pointer is a live at::Tensor owned by `outputs` / `grads` for the whole call;
    // the shim moves from them (they become undefined tensors, which drop without effect).
    let rc =
        unsafe { rlvr_kernels_backward(outs.as_ptr(), gs.as_ptr(), outs.len() as i64, &mut error) };
    drop((outputs, grads));
    shim_result("backward", rc, error)
}

/// The hyper-parameters of one AdamW step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    /// The 1-based step count of this update (bias corrections `1 − βᵗ`).
    pub step: i64,
    /// Learning rate.
    pub lr: f64,
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// ε.
    pub eps: f64,
    /// Gradients are multiplied by this first (global-norm clipping); 1 for none.
    pub grad_scale: f64,
}

/// One AdamW step in place over `params` with their `grads` and moments `exp_avgs` (m) and
/// `exp_avg_sqs` (v), all four lists of equal length, each position of one shape, dtype and device
/// (Loshchilov & Hutter 2019, Algorithm 2, as `torch.optim.AdamW`: `θ ← θ(1 − lr·wd)`,
/// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`, `θ ← θ − lr/bc₁ · m / (√v/√bc₂ + ε)`).
/// `grads` may be overwritten with the scaled gradients.
pub fn fused_adamw(
    params: &[Tensor],
    grads: &[Tensor],
    exp_avgs: &[Tensor],
    exp_avg_sqs: &[Tensor],
    hyper: AdamWStep,
) -> Result<(), KernelError> {
    let fail = |message: String| KernelError {
        op: "fused_adamw",
        message,
    };
    let n = params.len();
    if grads.len() != n || exp_avgs.len() != n || exp_avg_sqs.len() != n {
        return Err(fail(format!(
            "{n} parameters but {} gradients, {} first and {} second moments",
            grads.len(),
            exp_avgs.len(),
            exp_avg_sqs.len()
        )));
    }
    if !(hyper.grad_scale.is_finite() && hyper.grad_scale > 0.0) {
        return Err(fail(format!(
            "grad_scale must be finite and > 0, got {}",
            hyper.grad_scale
        )));
    }
    // The kernel trusts its inputs (it walks each parameter's storage by the parameter's size).
    for i in 0..n {
        let (p, rest) = (&params[i], [&grads[i], &exp_avgs[i], &exp_avg_sqs[i]]);
        for (name, t) in ["gradient", "first moment", "second moment"]
            .iter()
            .zip(rest)
        {
            if t.size() != p.size() || t.kind() != p.kind() || t.device() != p.device() {
                return Err(fail(format!(
                    "parameter {i} is {:?} {:?} on {:?} but its {name} is {:?} {:?} on {:?}",
                    p.size(),
                    p.kind(),
                    p.device(),
                    t.size(),
                    t.kind(),
                    t.device()
                )));
            }
            if !t.is_contiguous() {
                return Err(fail(format!(
                    "the {name} of parameter {i} is not contiguous"
                )));
            }
        }
        if !p.is_contiguous() || p.device() != params[0].device() {
            return Err(fail(format!(
                "parameter {i} must be contiguous and on the first parameter's device"
            )));
        }
    }
    let ptrs = |ts: &[Tensor]| -> Vec<*mut C_tensor> {
        ts.iter().map(|t| t.as_ptr() as *mut C_tensor).collect()
    };
    let (p, g, m, v) = (ptrs(params), ptrs(grads), ptrs(exp_avgs), ptrs(exp_avg_sqs));
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: every pointer is a live at::Tensor owned by the slices above for the whole call;
    // the shim only reads the lists and updates the tensors' storage in place.
    let rc = unsafe {
        rlvr_kernels_fused_adamw(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            n as i64,
            hyper.step as f64,
            hyper.lr,
            hyper.beta1,
            hyper.beta2,
            hyper.weight_decay,
            hyper.eps,
            // The kernel divides the gradients by its grad_scale (AMP's unscaling).
            1.0 / hyper.grad_scale,
            &mut error,
        )
    };
    shim_result("fused_adamw", rc, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn released_gradients_are_undefined_and_come_back_with_the_next_backward() {
        let w = Tensor::ones([3, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        (&w * 2.0).sum(Kind::Float).backward();
        assert!(w.grad().defined());
        release_grads(std::slice::from_ref(&w)).unwrap();
        assert!(!w.grad().defined());
        (&w * 3.0).sum(Kind::Float).backward();
        // A fresh gradient, not added to the released one.
        assert_eq!(w.grad().double_value(&[0, 0]), 3.0);
    }

    #[test]
    fn backward_from_several_outputs_seeds_each_with_its_gradient() {
        let x = Tensor::from_slice(&[1.0f32, -2.0, 3.0]).set_requires_grad(true);
        let w = Tensor::from_slice(&[0.5f32, 4.0, -1.0]).set_requires_grad(true);
        // Two outputs sharing `h`, whose graph the single pass traverses once.
        let h = &x * &w;
        let (y1, y2) = (&h * 2.0, &h * &h);
        let g1 = Tensor::from_slice(&[1.0f32, 10.0, 100.0]);
        let g2 = Tensor::from_slice(&[-1.0f32, 0.5, 2.0]);
        backward(vec![y1, y2], vec![g1, g2]).unwrap();
        // ∂/∂h = 2 g1 + 2 h g2; ∂x = w ∂h, ∂w = x ∂h (by hand, in f64).
        let (xs, ws, a, b) = (
            [1.0, -2.0, 3.0],
            [0.5, 4.0, -1.0],
            [1.0, 10.0, 100.0],
            [-1.0, 0.5, 2.0],
        );
        for i in 0..3 {
            let dh = 2.0 * a[i] + 2.0 * xs[i] * ws[i] * b[i];
            assert_eq!(x.grad().double_value(&[i as i64]), ws[i] * dh);
            assert_eq!(w.grad().double_value(&[i as i64]), xs[i] * dh);
        }
        // Refused, not panicking: counts or shapes that do not match.
        let y = &x * 3.0;
        assert!(backward(vec![y.shallow_clone()], vec![]).is_err());
        let wrong = Tensor::ones([2], (Kind::Float, Device::Cpu));
        assert!(backward(vec![y], vec![wrong]).is_err());
    }

    /// The update written out element by element in f64 (Loshchilov & Hutter 2019, Algorithm 2).
    fn reference(p: &[f64], g: &[f64], m: &[f64], v: &[f64], h: AdamWStep) -> Vec<[f64; 3]> {
        let bc1 = 1.0 - h.beta1.powi(h.step as i32);
        let bc2 = 1.0 - h.beta2.powi(h.step as i32);
        (0..p.len())
            .map(|i| {
                let g = g[i] * h.grad_scale;
                let m = h.beta1 * m[i] + (1.0 - h.beta1) * g;
                let v = h.beta2 * v[i] + (1.0 - h.beta2) * g * g;
                let p = p[i] * (1.0 - h.lr * h.weight_decay);
                let p = p - h.lr / bc1 * m / (v.sqrt() / bc2.sqrt() + h.eps);
                [p, m, v]
            })
            .collect()
    }

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap_or_default()
    }

    #[test]
    fn fused_adamw_equals_the_formula() {
        tch::manual_seed(3);
        let opts = (Kind::Float, Device::Cpu);
        let shapes: [&[i64]; 3] = [&[5, 7], &[300], &[2, 3, 4]];
        let params: Vec<Tensor> = shapes.iter().map(|s| Tensor::randn(*s, opts)).collect();
        let grads: Vec<Tensor> = shapes.iter().map(|s| Tensor::randn(*s, opts)).collect();
        let m: Vec<Tensor> = shapes
            .iter()
            .map(|s| Tensor::randn(*s, opts) * 0.1)
            .collect();
        let v: Vec<Tensor> = shapes
            .iter()
            .map(|s| Tensor::rand(*s, opts) * 0.1)
            .collect();
        let hyper = AdamWStep {
            step: 3,
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 0.1,
            eps: 1e-8,
            grad_scale: 0.25,
        };
        let want: Vec<Vec<[f64; 3]>> = (0..3)
            .map(|i| {
                reference(
                    &values(&params[i]),
                    &values(&grads[i]),
                    &values(&m[i]),
                    &values(&v[i]),
                    hyper,
                )
            })
            .collect();
        fused_adamw(&params, &grads, &m, &v, hyper).expect("fused step");
        for i in 0..3 {
            let got = [values(&params[i]), values(&m[i]), values(&v[i])];
            assert_eq!(got[0].len(), want[i].len());
            for (j, w) in want[i].iter().enumerate() {
                for k in 0..3 {
                    let (a, b) = (got[k][j], w[k]);
                    assert!(
                        (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                        "tensor {i} element {j} field {k}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn mismatched_lists_are_an_error() {
        let t = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let hyper = AdamWStep {
            step: 1,
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 0.0,
            eps: 1e-8,
            grad_scale: 1.0,
        };
        let err = fused_adamw(
            &[t.shallow_clone()],
            &[],
            &[t.shallow_clone()],
            &[t.shallow_clone()],
            hyper,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("1 parameters but 0 gradients"),
            "{err}"
        );
        // A gradient of another shape would make the kernel read out of bounds: refused first.
        let other = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        let err = fused_adamw(
            &[t.shallow_clone()],
            &[other],
            &[t.shallow_clone()],
            &[t.shallow_clone()],
            hyper,
        )
        .unwrap_err();
        assert!(err.to_string().contains("its gradient is [3]"), "{err}");
        // libtorch's own checks (integer parameters) come back as an error, not an abort.
        let ints = || Tensor::zeros([2], (Kind::Int64, Device::Cpu));
        let err = fused_adamw(&[ints()], &[ints()], &[ints()], &[ints()], hyper).unwrap_err();
        assert!(err.to_string().starts_with("fused_adamw: "), "{err}");
    }
}
