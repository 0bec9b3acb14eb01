//! Batch-invariant matrix product (`shim/invariant_linear.cpp`): `x Wᵀ + b` where each output
//! element follows one fixed sequence of floating-point operations that depends only on the
//! inner dimension — eight lane sums in `k` order with fused multiply-adds, a fixed tree, then the
//! bias — not on how many rows are computed together, their position, the thread or the CPU's
//! code path. libtorch's GEMM (MKL) picks kernels and blocking by the matrix sizes and the CPU,
//! so its rows are batch-invariant on some CPUs and not on others. Same aim as
//! [`invariant_attention`](crate::invariant_attention) (Thinking Machines, "Defeating
//! Nondeterminism in LLM Inference", 2025).

use crate::{shim_result, KernelError};
use std::ffi::c_char;
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn rlvr_kernels_invariant_linear(
        x: *mut C_tensor,
        w: *mut C_tensor,
        bias: *mut C_tensor,
        out: *mut C_tensor,
        portable: i32,
        error: *mut *mut c_char,
    ) -> i32;
}

/// `x Wᵀ (+ bias)` for `x` `[..., K]`, `weight` `[N, K]` and `bias` `[N]`, all f32 on the CPU;
/// the result is `[..., N]`. Each element is bit-identical however `x`'s rows are batched.
pub fn invariant_linear(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor, KernelError> {
    linear(x, weight, bias, false)
}

/// [`invariant_linear`] on the portable micro-kernel (no SIMD): the same bits, slower. For
/// tests that the fast path follows the defined arithmetic.
pub fn invariant_linear_portable(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor, KernelError> {
    linear(x, weight, bias, true)
}

fn linear(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    portable: bool,
) -> Result<Tensor, KernelError> {
    let fail = |message: String| KernelError {
        op: "invariant_linear",
        message,
    };
    let (xs, ws) = (x.size(), weight.size());
    let (Some(&k), &[n, wk]) = (xs.last(), &ws[..]) else {
        return Err(fail(format!(
            "x must be [..., K] and weight [N, K], got {xs:?} and {ws:?}"
        )));
    };
    if wk != k || bias.is_some_and(|b| b.size() != [n]) {
        return Err(fail(format!(
            "shapes do not fit: x {xs:?}, weight {ws:?}, bias {:?} (x [..., K], weight [N, K], \
             bias [N])",
            bias.map(|b| b.size())
        )));
    }
    let named = [("x", Some(x)), ("weight", Some(weight)), ("bias", bias)];
    for (name, t) in named.iter().filter_map(|(n, t)| t.map(|t| (n, t))) {
        if t.kind() != Kind::Float || t.device() != Device::Cpu {
            return Err(fail(format!(
                "{name} must be Float on the CPU, got {:?} on {:?}",
                t.kind(),
                t.device()
            )));
        }
    }
    let rows = if k == 0 {
        xs[..xs.len() - 1].iter().product()
    } else {
        x.numel() as i64 / k
    };
    let mut out_shape = xs.clone();
    if let Some(last) = out_shape.last_mut() {
        *last = n;
    }
    let x2 = x
        .f_reshape([rows, k])
        .and_then(|t| t.f_contiguous())
        .map_err(|e| fail(e.to_string()))?;
    let w = weight.f_contiguous().map_err(|e| fail(e.to_string()))?;
    let b = bias
        .map(|b| b.f_contiguous())
        .transpose()
        .map_err(|e| fail(e.to_string()))?;
    let out =
        Tensor::f_empty([rows, n], (Kind::Float, Device::Cpu)).map_err(|e| fail(e.to_string()))?;
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: x2, w, b and out are live, contiguous f32 CPU tensors owned here for the whole
    // call, of the shapes checked above ([rows, K], [N, K], [N], [rows, N]).
    let rc = unsafe {
        rlvr_kernels_invariant_linear(
            x2.as_ptr() as *mut C_tensor,
            w.as_ptr() as *mut C_tensor,
            b.as_ref()
                .map_or(std::ptr::null_mut(), |b| b.as_ptr() as *mut C_tensor),
            out.as_ptr() as *mut C_tensor,
            i32::from(portable),
            &mut error,
        )
    };
    shim_result("invariant_linear", rc, error)?;
    out.f_reshape(out_shape.as_slice())
        .map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::normal;

    fn randn(shape: &[i64], seed: u64) -> Tensor {
        let n = shape.iter().product::<i64>() as usize;
        Tensor::from_slice(&normal(n, seed)).view(shape)
    }

    #[test]
    fn equals_the_product_in_f64_within_f32_rounding() {
        for (m, k, n, with_bias) in [
            (1, 1, 1, false),
            (3, 7, 5, true),
            (17, 64, 33, true),
            (130, 100, 70, false),
            (5, 896, 131, true),
        ] {
            let x = randn(&[m, k], 1);
            let w = randn(&[n, k], 2);
            let b = randn(&[n], 3);
            let bias = with_bias.then_some(&b);
            let got = invariant_linear(&x, &w, bias).unwrap();
            let want = x.to_kind(Kind::Double).linear(
                &w.to_kind(Kind::Double),
                bias.map(|b| b.to_kind(Kind::Double)),
            );
            // f32 sums of k products of N(0, 1) numbers: error ≲ k · 2⁻²⁴ · |terms|.
            let err = (got.to_kind(Kind::Double) - &want)
                .abs()
                .max()
                .double_value(&[]);
            let bound = 1e-6 * (k as f64).max(8.0) * 4.0;
            assert!(err < bound, "{m}x{k}x{n}: {err} ≥ {bound}");
            assert_eq!(got.size(), [m, n]);
        }
    }

    #[test]
    fn a_row_does_not_depend_on_the_rows_computed_with_it_nor_on_the_code_path() {
        for (k, n) in [(64, 64), (13, 9), (160, 66), (896, 130)] {
            let w = randn(&[n, k], 4);
            let b = randn(&[n], 5);
            let x = randn(&[301, k], 6);
            let all = invariant_linear(&x, &w, Some(&b)).unwrap();
            assert!(
                invariant_linear_portable(&x, &w, Some(&b))
                    .unwrap()
                    .equal(&all),
                "{k}x{n}: the SIMD path differs from the portable one"
            );
            for rows in [1, 2, 3, 5, 16, 63, 64, 65, 130] {
                for start in [0, 1, 7, 301 - rows] {
                    let got = invariant_linear(&x.narrow(0, start, rows), &w, Some(&b)).unwrap();
                    assert!(
                        got.equal(&all.narrow(0, start, rows)),
                        "{k}x{n}: {rows} rows from {start}"
                    );
                }
            }
            // Columns too: a weight row's outputs do not depend on the other weight rows.
            let some = invariant_linear(&x, &w.narrow(0, 1, n - 2), Some(&b.narrow(0, 1, n - 2)));
            assert!(
                some.unwrap().equal(&all.narrow(1, 1, n - 2)),
                "{k}x{n}: columns"
            );
        }
    }

    #[test]
    fn keeps_leading_dimensions_and_refuses_what_does_not_fit() {
        let x = randn(&[2, 3, 8], 7);
        let w = randn(&[5, 8], 8);
        let y = invariant_linear(&x, &w, None).unwrap();
        assert_eq!(y.size(), [2, 3, 5]);
        assert!(y
            .view([6, 5])
            .equal(&invariant_linear(&x.view([6, 8]), &w, None).unwrap()));
        let e = invariant_linear(&x, &randn(&[5, 7], 9), None).unwrap_err();
        assert!(e.to_string().contains("shapes do not fit"), "{e}");
        let e = invariant_linear(&x.to_kind(Kind::Double), &w, None).unwrap_err();
        assert!(e.to_string().contains("x must be Float"), "{e}");
        let e = invariant_linear(&x, &w, Some(&randn(&[4], 1))).unwrap_err();
        assert!(e.to_string().contains("bias"), "{e}");
    }
}
