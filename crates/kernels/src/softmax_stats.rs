//! Softmax row statistics in one pass over each row (`shim/softmax_stats.cpp`).
//!
//! For logits `z` `[N, V]`, with `m = max z`, `s = Σ e^{z−m}`: `lse = m + log s` and the mean
//! logit under `p = softmax(z)`, `Σ p z = m + Σ e^{z−m}(z − m) / s`, so the entropy is
//! `H = lse − Σ p z`; and the K largest logits. The kernel reads each row once from memory (a max
//! loop, then an exp-and-sum loop that also keeps the K largest, while the row is still in
//! cache); written as ATen operations the same statistics take six passes over the whole block,
//! an intermediate tensor and a separate top-K search.

use crate::{shim_result, KernelError};
use std::ffi::{c_char, c_int};
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn rlvr_kernels_softmax_stats(
        logits: *mut C_tensor,
        k: i64,
        lse: *mut C_tensor,
        mean: *mut C_tensor,
        topk_vals: *mut C_tensor,
        topk_ids: *mut C_tensor,
        allow_simd: c_int,
        error: *mut *mut c_char,
    ) -> c_int;
}

/// Statistics of each row of a logits matrix `[N, V]`.
#[derive(Debug)]
pub struct SoftmaxStats {
    /// `log Σ_j e^{z_j}`, `[N]`.
    pub lse: Tensor,
    /// `Σ_j softmax(z)_j · z_j`, `[N]`; the entropy is `lse − mean_logit`. Logits of −∞ count
    /// as probability 0 (not `0 · −∞`).
    pub mean_logit: Tensor,
    /// The `k` largest logits `[N, k]` (f32, descending; among equal values the lower id first)
    /// and their ids `[N, k]` (i64), when `k > 0` was asked for.
    pub topk: Option<(Tensor, Tensor)>,
}

/// [`SoftmaxStats`] of `logits`, a 2-D f32 CPU tensor, with the `k` largest logits of each row
/// (`0 <= k <= V`; 0 for none). NaN in a row gives NaN statistics, like ATen's reductions (it
/// enters the top-K only where nothing else is left).
pub fn softmax_stats(logits: &Tensor, k: i64) -> Result<SoftmaxStats, KernelError> {
    softmax_stats_with(logits, k, true)
}

/// [`softmax_stats`], through the vectorised loops where the CPU has them when `simd`, else the
/// plain ones (which tests compare).
fn softmax_stats_with(logits: &Tensor, k: i64, simd: bool) -> Result<SoftmaxStats, KernelError> {
    let fail = |message: String| KernelError {
        op: "softmax_stats",
        message,
    };
    let size = logits.size();
    let [n, v] = size[..] else {
        return Err(fail(format!(
            "logits must be 2-D [rows, vocabulary], got {size:?}"
        )));
    };
    if logits.kind() != Kind::Float || logits.device() != Device::Cpu {
        return Err(fail(format!(
            "logits must be f32 on the CPU, got {:?} on {:?}",
            logits.kind(),
            logits.device()
        )));
    }
    if !(0..=v).contains(&k) {
        return Err(fail(format!(
            "k must be between 0 and the vocabulary size {v}, got {k}"
        )));
    }
    let logits = logits.contiguous();
    let opts = (Kind::Float, Device::Cpu);
    let lse = Tensor::empty([n], opts);
    let mean_logit = Tensor::empty([n], opts);
    let topk = (k > 0).then(|| {
        (
            Tensor::empty([n, k], opts),
            Tensor::empty([n, k], (Kind::Int64, Device::Cpu)),
        )
    });
    let ptr = |t: Option<&Tensor>| t.map_or(std::ptr::null_mut(), |t| t.as_ptr() as *mut C_tensor);
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: every pointer is a live at::Tensor owned here for the whole call; the outputs are
    // contiguous of the sizes and kinds the kernel writes ([n] f32 twice, [n, k] f32 and i64,
    // absent when k = 0) and the input is contiguous f32 [n, v] with 0 <= k <= v, as checked.
    let rc = unsafe {
        rlvr_kernels_softmax_stats(
            logits.as_ptr() as *mut C_tensor,
            k,
            lse.as_ptr() as *mut C_tensor,
            mean_logit.as_ptr() as *mut C_tensor,
            ptr(topk.as_ref().map(|t| &t.0)),
            ptr(topk.as_ref().map(|t| &t.1)),
            c_int::from(simd),
            &mut error,
        )
    };
    shim_result("softmax_stats", rc, error)?;
    Ok(SoftmaxStats {
        lse,
        mean_logit,
        topk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::normal;

    fn f64s(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap_or_default()
    }

    /// lse and Σ p z of each row, written out in f64.
    fn reference(z: &Tensor) -> Vec<(f64, f64)> {
        let v = z.size()[1] as usize;
        let all = f64s(z);
        all.chunks(v)
            .map(|row| {
                let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = row.iter().map(|x| (x - m).exp()).sum();
                let t: f64 = row
                    .iter()
                    .filter(|x| x.is_finite())
                    .map(|x| (x - m).exp() * x)
                    .sum();
                (m + s.ln(), t / s)
            })
            .collect()
    }

    #[test]
    fn statistics_equal_the_formula() {
        // Widths with and without a vector tail, one past a flush span, a real vocabulary.
        for (n, v, k, scale) in [
            (3, 1, 0, 1.0),
            (3, 1, 1, 1.0),
            (5, 40, 8, 4.0),
            (4, 1000, 0, 10.0),
            (7, 2051, 3, 3.0),
            (9, 4096, 5, 20.0),
            (2, 151_936, 3, 3.0),
            (3, 96, 96, 1.0),
        ] {
            let z = Tensor::from_slice(&normal((n * v) as usize, v as u64)).view([n, v]) * scale;
            for simd in [true, false] {
                check(&z, k, scale, simd);
            }
        }
    }

    /// [`softmax_stats_with`] of `z` against the f64 formula and libtorch's `topk`.
    fn check(z: &Tensor, k: i64, scale: f64, simd: bool) {
        let (n, v) = (z.size()[0], z.size()[1]);
        let got = softmax_stats_with(z, k, simd).expect("stats");
        let want = reference(z);
        for (r, (lse, mean)) in want.iter().enumerate() {
            let (gl, gm) = (
                got.lse.double_value(&[r as i64]),
                got.mean_logit.double_value(&[r as i64]),
            );
            // About one f32 ulp of lse (measured: at most 0.3 ulp); Σ p z within 5e-7 of the
            // logits' scale (measured: 1.7e-7). An exp 1e-5 off fails both.
            assert!(
                (gl - lse).abs() <= f64::from(f32::EPSILON) * lse.abs().max(1.0),
                "{n}x{v} simd {simd} row {r} lse {gl} vs {lse}"
            );
            assert!(
                (gm - mean).abs() <= 5e-7 * (1.0 + scale),
                "{n}x{v} simd {simd} row {r} mean {gm} vs {mean}"
            );
        }
        match got.topk {
            Some((vals, ids)) => {
                let (want_v, want_i) = z.topk(k, -1, true, true);
                assert!(vals.equal(&want_v), "{n}x{v} simd {simd} k {k}: values");
                assert!(ids.equal(&want_i), "{n}x{v} simd {simd} k {k}: ids");
            }
            None => assert_eq!(k, 0),
        }
    }

    #[test]
    fn minus_infinity_is_probability_zero_and_nan_propagates() {
        let z = Tensor::from_slice(&[
            0.0f32,
            f32::NEG_INFINITY,
            1.0,
            2.0,
            f32::NEG_INFINITY,
            0.5,
            -1.0,
            3.0,
        ])
        .view([1, 8]);
        for simd in [true, false] {
            minus_infinity_and_nan(&z, simd);
        }
    }

    fn minus_infinity_and_nan(z: &Tensor, simd: bool) {
        let got = softmax_stats_with(z, 8, simd).expect("stats");
        // Every column is among the 8 largest, the −∞ ones last (lower id first).
        let (_, ids) = got.topk.as_ref().expect("top-k");
        assert_eq!(
            Vec::<i64>::try_from(ids.reshape([-1])).unwrap(),
            vec![7, 3, 2, 5, 0, 6, 1, 4]
        );
        let finite = Tensor::from_slice(&[0.0f32, 1.0, 2.0, 0.5, -1.0, 3.0]).view([1, 6]);
        let want = reference(&finite)[0];
        assert!((got.lse.double_value(&[0]) - want.0).abs() < 1e-6);
        assert!((got.mean_logit.double_value(&[0]) - want.1).abs() < 1e-6);
        // NaN anywhere in a row (past the vector loop's first lane too) spoils that row only.
        for at in [0, 5, 37] {
            let z = Tensor::zeros([2, 40], (Kind::Float, Device::Cpu));
            let _ = z.get(1).get(at).fill_(f64::NAN);
            let got = softmax_stats_with(&z, 40, simd).expect("stats");
            assert!(got.lse.double_value(&[1]).is_nan(), "NaN at {at}: lse");
            assert!(got.mean_logit.double_value(&[1]).is_nan(), "NaN at {at}");
            assert!(got.lse.double_value(&[0]).is_finite());
            // The top-40 of the NaN row is its 39 zeros (ids ascending), then the NaN.
            let (vals, ids) = got.topk.expect("top-k");
            let ids = Vec::<i64>::try_from(ids.get(1)).unwrap();
            let want: Vec<i64> = (0..40).filter(|&c| c != at).chain([at]).collect();
            assert_eq!(ids, want, "NaN at {at}: ids");
            assert!(vals.double_value(&[1, 39]).is_nan());
        }
    }

    #[test]
    fn invalid_inputs_are_errors() {
        let z = Tensor::zeros([2, 12], (Kind::Float, Device::Cpu));
        let err = softmax_stats(&z, 13).unwrap_err().to_string();
        assert!(
            err.contains("between 0 and the vocabulary size 12"),
            "{err}"
        );
        let err = softmax_stats(&z.view([24]), 0).unwrap_err().to_string();
        assert!(err.contains("2-D"), "{err}");
        let err = softmax_stats(&z.to_kind(Kind::Double), 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("f32 on the CPU"), "{err}");
        // A transposed (non-contiguous) view is read as its values, not its storage.
        let t = Tensor::randn([12, 2], (Kind::Float, Device::Cpu)).transpose(0, 1);
        let got = softmax_stats(&t, 0).expect("stats");
        let want = t.logsumexp([-1].as_slice(), false);
        assert!(got.lse.allclose(&want, 1e-6, 1e-6, false));
    }
}
