//! Batch-invariant SwiGLU gate (`shim/invariant_swiglu.cpp`): `silu(gate) · up` computed the same
//! way for every element. libtorch's `silu` runs a SIMD body with its own `exp` and a scalar tail
//! with glibc's, which differ in the last bit for a few percent of inputs; which elements fall in
//! a tail follows the thread chunks, so a row's result depends on the rows beside it and the
//! thread count. This kernel is libtorch's scalar formula, `x / (1 + exp(−x))`, on every element.

use crate::{shim_result, KernelError};
use std::ffi::c_char;
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn rlvr_kernels_invariant_swiglu(
        gate: *mut C_tensor,
        up: *mut C_tensor,
        out: *mut C_tensor,
        error: *mut *mut c_char,
    ) -> i32;
}

/// `silu(gate) · up` for two f32 CPU tensors of one shape; each element is bit-identical however
/// the rows are batched and however many threads run.
pub fn invariant_swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor, KernelError> {
    let fail = |message: String| KernelError {
        op: "invariant_swiglu",
        message,
    };
    if gate.size() != up.size() {
        return Err(fail(format!(
            "gate and up must have one shape, got {:?} and {:?}",
            gate.size(),
            up.size()
        )));
    }
    for (name, t) in [("gate", gate), ("up", up)] {
        if t.kind() != Kind::Float || t.device() != Device::Cpu {
            return Err(fail(format!(
                "{name} must be Float on the CPU, got {:?} on {:?}",
                t.kind(),
                t.device()
            )));
        }
    }
    let g = gate.f_contiguous().map_err(|e| fail(e.to_string()))?;
    let u = up.f_contiguous().map_err(|e| fail(e.to_string()))?;
    let out = g.f_empty_like().map_err(|e| fail(e.to_string()))?;
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: g, u and out are live, contiguous f32 CPU tensors of one shape, owned here for the
    // whole call.
    let rc = unsafe {
        rlvr_kernels_invariant_swiglu(
            g.as_ptr() as *mut C_tensor,
            u.as_ptr() as *mut C_tensor,
            out.as_ptr() as *mut C_tensor,
            &mut error,
        )
    };
    shim_result("invariant_swiglu", rc, error)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::normal;

    fn matrix(rows: usize, cols: usize, seed: u64) -> Tensor {
        Tensor::from_slice(&normal(rows * cols, seed)).view([rows as i64, cols as i64]) * 4.0
    }

    /// libtorch's scalar path: each element alone (a one-element tensor has no SIMD body).
    fn libtorch_scalar(gate: &Tensor, up: &Tensor) -> Tensor {
        let g = gate.view([-1]);
        let parts: Vec<Tensor> = (0..g.size()[0]).map(|i| g.narrow(0, i, 1).silu()).collect();
        Tensor::cat(&parts, 0).view_as(gate) * up
    }

    #[test]
    fn equals_libtorchs_scalar_silu_times_up_bit_for_bit() {
        let (g, u) = (matrix(40, 50, 1), matrix(40, 50, 2));
        let got = invariant_swiglu(&g, &u).unwrap();
        assert!(got.equal(&libtorch_scalar(&g, &u)));
        // And libtorch's SIMD path to the last bits (it is the scalar one, off by an ulp at most).
        let simd = g.silu() * &u;
        let diff = (&got - &simd).abs().max().double_value(&[]);
        let scale = simd.abs().max().double_value(&[]);
        assert!(diff <= scale * 4.0 * f64::from(f32::EPSILON), "{diff}");
    }

    #[test]
    fn a_row_among_hundreds_on_several_threads_equals_the_row_alone() {
        // Width 160 (the test decoders' MLP): from 205 rows up libtorch splits the elements
        // between threads, and chunk tails run its scalar path. Checked against libtorch's own
        // silu too, so that the case is one where batching changes the bits.
        let before = tch::get_num_threads();
        let (g, u) = (matrix(300, 160, 3), matrix(300, 160, 4));
        let mut libtorch_differs = false;
        for threads in [2, 3] {
            tch::set_num_threads(threads);
            for rows in [207, 209, 213, 251, 300] {
                let (gb, ub) = (g.narrow(0, 0, rows), u.narrow(0, 0, rows));
                let batch = invariant_swiglu(&gb, &ub).unwrap();
                let libtorch = gb.silu() * &ub;
                for r in 0..rows {
                    let (gr, ur) = (gb.narrow(0, r, 1), ub.narrow(0, r, 1));
                    let alone = invariant_swiglu(&gr, &ur).unwrap();
                    assert!(
                        batch.narrow(0, r, 1).equal(&alone),
                        "{threads} threads, row {r} of {rows}"
                    );
                    libtorch_differs |= !libtorch.narrow(0, r, 1).equal(&(gr.silu() * &ur));
                }
            }
        }
        tch::set_num_threads(before);
        assert!(
            libtorch_differs,
            "libtorch's silu was batch-invariant in every case"
        );
    }

    #[test]
    fn refuses_what_it_cannot_compute() {
        let ok = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        let cases = [
            (ok.to_kind(Kind::Double), ok.shallow_clone(), "Float"),
            (ok.shallow_clone(), ok.view([3, 2]), "one shape"),
        ];
        for (g, u, needle) in cases {
            let e = invariant_swiglu(&g, &u).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }
}
