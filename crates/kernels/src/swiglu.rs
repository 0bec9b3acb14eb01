//! SwiGLU's gate and its backward in one pass over memory each (`shim/swiglu.cpp`): for the
//! update's recomputed MLP, where libtorch's `silu(gate) * up` and its autograd backward make
//! two and four elementwise passes over `[tokens, intermediate]` tensors, and memory traffic,
//! not arithmetic, is their cost. `act = g σ(g) u`, `∂u = d g σ(g)`,
//! `∂g = d u σ(g) (1 + g (1 − σ(g)))` (σ the logistic function; Shazeer 2020, arXiv 2002.05202,
//! for SwiGLU). Not batch-invariant (an AVX2 exponential with a scalar tail per thread); the
//! batch-invariant gate is [`crate::invariant_swiglu`].

use crate::{shim_result, KernelError};
use std::ffi::c_char;
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn rlvr_kernels_swiglu(
        gate: *mut C_tensor,
        up: *mut C_tensor,
        out: *mut C_tensor,
        portable: i32,
        error: *mut *mut c_char,
    ) -> i32;
    fn rlvr_kernels_swiglu_backward(
        grad: *mut C_tensor,
        gate: *mut C_tensor,
        up: *mut C_tensor,
        d_gate: *mut C_tensor,
        d_up: *mut C_tensor,
        portable: i32,
        error: *mut *mut c_char,
    ) -> i32;
}

/// The operands made contiguous after checking that they are f32 CPU tensors of one shape.
fn operands(op: &'static str, named: &[(&str, &Tensor)]) -> Result<Vec<Tensor>, KernelError> {
    let fail = |message: String| KernelError { op, message };
    let shape = named[0].1.size();
    let mut out = Vec::with_capacity(named.len());
    for (name, t) in named {
        if t.size() != shape {
            return Err(fail(format!(
                "{name} must have the shape of {}, {shape:?}; got {:?}",
                named[0].0,
                t.size()
            )));
        }
        if t.kind() != Kind::Float || t.device() != Device::Cpu {
            return Err(fail(format!(
                "{name} must be Float on the CPU, got {:?} on {:?}",
                t.kind(),
                t.device()
            )));
        }
        out.push(t.f_contiguous().map_err(|e| fail(e.to_string()))?);
    }
    Ok(out)
}

/// `silu(gate) · up` for two f32 CPU tensors of one shape, without autograd.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor, KernelError> {
    swiglu_with(gate, up, false)
}

/// The gradients of `gate` and `up` from `grad`, the gradient of `silu(gate) · up`.
pub fn swiglu_backward(
    grad: &Tensor,
    gate: &Tensor,
    up: &Tensor,
) -> Result<(Tensor, Tensor), KernelError> {
    swiglu_backward_with(grad, gate, up, false)
}

fn swiglu_with(gate: &Tensor, up: &Tensor, portable: bool) -> Result<Tensor, KernelError> {
    let ops = operands("swiglu", &[("gate", gate), ("up", up)])?;
    let out = ops[0].f_empty_like().map_err(|e| KernelError {
        op: "swiglu",
        message: e.to_string(),
    })?;
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: the operands and out are live, contiguous f32 CPU tensors of one shape, owned here
    // for the whole call.
    let rc = unsafe {
        rlvr_kernels_swiglu(
            ops[0].as_ptr() as *mut C_tensor,
            ops[1].as_ptr() as *mut C_tensor,
            out.as_ptr() as *mut C_tensor,
            i32::from(portable),
            &mut error,
        )
    };
    shim_result("swiglu", rc, error)?;
    Ok(out)
}

fn swiglu_backward_with(
    grad: &Tensor,
    gate: &Tensor,
    up: &Tensor,
    portable: bool,
) -> Result<(Tensor, Tensor), KernelError> {
    let ops = operands(
        "swiglu_backward",
        &[("grad", grad), ("gate", gate), ("up", up)],
    )?;
    let empty = || {
        ops[0].f_empty_like().map_err(|e| KernelError {
            op: "swiglu_backward",
            message: e.to_string(),
        })
    };
    let (d_gate, d_up) = (empty()?, empty()?);
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: the operands and outputs are live, contiguous f32 CPU tensors of one shape, owned
    // here for the whole call.
    let rc = unsafe {
        rlvr_kernels_swiglu_backward(
            ops[0].as_ptr() as *mut C_tensor,
            ops[1].as_ptr() as *mut C_tensor,
            ops[2].as_ptr() as *mut C_tensor,
            d_gate.as_ptr() as *mut C_tensor,
            d_up.as_ptr() as *mut C_tensor,
            i32::from(portable),
            &mut error,
        )
    };
    shim_result("swiglu_backward", rc, error)?;
    Ok((d_gate, d_up))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::normal;

    /// `[rows, cols]` normal draws times `scale`, with a few extreme values (large positive and
    /// negative gates, where σ saturates, and exact zeros).
    fn matrix(rows: usize, cols: usize, seed: u64, scale: f64) -> Tensor {
        let t = Tensor::from_slice(&normal(rows * cols, seed)).view([rows as i64, cols as i64]);
        let t = t * scale;
        let flat = t.view([-1]);
        for (i, v) in [
            (0, 95.0),
            (1, -95.0),
            (2, 30.0),
            (3, -30.0),
            (4, 0.0),
            (5, -1e-8),
        ] {
            let _ = flat.get(i).fill_(v);
        }
        t
    }

    /// libtorch's `silu(gate) * up` and its autograd gradients of `gate` and `up` for `grad`,
    /// computed in f64 (the reference the f32 kernels are held to).
    fn reference(grad: &Tensor, gate: &Tensor, up: &Tensor) -> (Tensor, Tensor, Tensor) {
        let g = gate.to_kind(Kind::Double).set_requires_grad(true);
        let u = up.to_kind(Kind::Double).set_requires_grad(true);
        let out = g.silu() * &u;
        (&out * grad.to_kind(Kind::Double))
            .sum(Kind::Double)
            .backward();
        (out.detach(), g.grad(), u.grad())
    }

    /// The largest error of `a` against `b` elementwise, in units of `1e-6 · (|b| + mean |b|)`:
    /// relative where an element is not small, absolute (against the typical magnitude) where it
    /// is (near a zero of `∂g`, where f32 rounding of the sum `σ + gσ(1 − σ)` decides the bits).
    fn err(a: &Tensor, b: &Tensor) -> f64 {
        let mean = b.abs().mean(Kind::Double).double_value(&[]);
        let bound = (b.abs() + mean) * 1e-6;
        ((a.to_kind(Kind::Double) - b).abs() / bound)
            .max()
            .double_value(&[])
    }

    #[test]
    fn forward_and_backward_equal_autograd_in_f64_on_both_paths() {
        // 37 × 131: not a multiple of 8, so every thread's chunk has a scalar tail.
        for (rows, cols, threads) in [(37, 131, 1), (37, 131, 2), (300, 4864 / 8, 2)] {
            let before = tch::get_num_threads();
            tch::set_num_threads(threads);
            let (g, u, d) = (
                matrix(rows, cols, 11, 4.0),
                matrix(rows, cols, 12, 1.0),
                matrix(rows, cols, 13, 1.0),
            );
            let (want, want_dg, want_du) = reference(&d, &g, &u);
            for portable in [false, true] {
                let out = swiglu_with(&g, &u, portable).unwrap();
                let (dg, du) = swiglu_backward_with(&d, &g, &u, portable).unwrap();
                for (name, got, want) in [
                    ("out", &out, &want),
                    ("d_gate", &dg, &want_dg),
                    ("d_up", &du, &want_du),
                ] {
                    let r = err(got, want);
                    assert!(
                        r <= 1.0,
                        "{rows}x{cols}, {threads} threads, portable {portable}: {name} off by {r:e}"
                    );
                }
            }
            tch::set_num_threads(before);
        }
    }

    #[test]
    fn takes_strided_operands_and_refuses_what_it_cannot_compute() {
        let g = matrix(8, 24, 1, 2.0);
        let u = matrix(24, 8, 2, 1.0).tr();
        let got = swiglu(&g, &u).unwrap();
        assert!(err(&got, &reference(&g.ones_like(), &g, &u).0) <= 1.0);
        let ok = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        let cases = [
            (ok.to_kind(Kind::Double), ok.shallow_clone(), "Float"),
            (ok.shallow_clone(), ok.view([3, 2]), "shape"),
        ];
        for (g, u, needle) in cases {
            let e = swiglu(&g, &u).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
            let e = swiglu_backward(&ok, &g, &u).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }
}
