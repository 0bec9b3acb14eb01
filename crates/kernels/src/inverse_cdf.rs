//! Inverse-CDF sampling of one token per row of a CPU log-probability matrix in one pass over the
//! row's prefix (`shim/inverse_cdf.cpp`, rows on libtorch's threads): the first token whose
//! cumulative probability exceeds the row's uniform draw. The tensor form of the same rule (`exp`, `cumsum`, `searchsorted`, the fallback for a draw
//! past the total mass, `gather`) makes eight passes over `[rows, vocab]` f64 copies — at a 32k
//! vocabulary and 256 rows, more time per decode step than the LM head.

use crate::{shim_result, KernelError};
use std::ffi::c_char;
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn rlvr_kernels_inverse_cdf_sample(
        logp: *mut C_tensor,
        u: *const f64,
        ids: *mut i64,
        chosen: *mut f64,
        error: *mut *mut c_char,
    ) -> i32;
}

/// Draws one token per row of `logp` `[R, V]` (f32, CPU) given one uniform `u[r]` in `[0, 1)` per
/// row: the first `j` with `Σ_{i ≤ j} exp(logp[r, i]) > u[r]`, the exponentials and their running
/// sum in f64, in increasing `i`. When no prefix exceeds `u[r]` (the total mass rounds below
/// it), the last token with positive probability (`V − 1` when none has). Returns the ids and
/// their log-probs (as f64).
///
/// This is the rule of `torch.searchsorted(cumsum(exp(logp.double())), u, right=True)` with
/// that fallback; it differs from it only where the two `exp` implementations round a term
/// differently and `u` falls within that rounding of a boundary.
pub fn inverse_cdf_sample(logp: &Tensor, u: &[f64]) -> Result<(Vec<i64>, Vec<f64>), KernelError> {
    let fail = |message: String| KernelError {
        op: "inverse_cdf_sample",
        message,
    };
    let size = logp.size();
    let &[rows, vocab] = &size[..] else {
        return Err(fail(format!("logp must be [rows, vocab], got {size:?}")));
    };
    if logp.kind() != Kind::Float || logp.device() != Device::Cpu {
        return Err(fail(format!(
            "logp must be Float on the CPU, got {:?} on {:?}",
            logp.kind(),
            logp.device()
        )));
    }
    if rows as usize != u.len() || vocab == 0 && rows > 0 {
        return Err(fail(format!(
            "{} uniform draws for logp {size:?} (one per row, a non-empty vocabulary)",
            u.len()
        )));
    }
    let logp = logp.f_contiguous().map_err(|e| fail(e.to_string()))?;
    let rows = rows as usize;
    let mut ids = vec![0i64; rows];
    let mut chosen = vec![0f64; rows];
    if rows == 0 {
        return Ok((ids, chosen));
    }
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: logp is a live contiguous f32 [rows, vocab] CPU tensor (vocab ≥ 1), and u, ids
    // and chosen hold `rows` entries each; all outlive the call.
    let rc = unsafe {
        rlvr_kernels_inverse_cdf_sample(
            logp.as_ptr() as *mut C_tensor,
            u.as_ptr(),
            ids.as_mut_ptr(),
            chosen.as_mut_ptr(),
            &mut error,
        )
    };
    shim_result("inverse_cdf_sample", rc, error)?;
    Ok((ids, chosen))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::normal;

    /// The tensor form of the rule (what rlvr ran before this kernel; also its GPU path).
    fn reference(logp: &Tensor, u: &[f64]) -> (Vec<i64>, Vec<f64>) {
        let (b, v) = (logp.size()[0], logp.size()[1]);
        let u = Tensor::from_slice(u).view([b, 1]);
        let lp = logp.to_kind(Kind::Double);
        let probs = lp.exp();
        let cdf = probs.cumsum(-1, Kind::Double);
        let idx = u
            .searchsorted(&cdf, false, true, "right", None::<Tensor>)
            .clamp_max(v - 1);
        let positive = probs.gt(0.0);
        let last = positive
            .flip([-1])
            .to_kind(Kind::Int8)
            .argmax(-1, true)
            .neg()
            + (v - 1);
        let ok = positive.gather(-1, &idx, false);
        let idx = idx.where_self(&ok, &last);
        let chosen = lp.gather(-1, &idx, false);
        (
            Vec::<i64>::try_from(idx.view([-1])).unwrap(),
            Vec::<f64>::try_from(chosen.view([-1])).unwrap(),
        )
    }

    fn uniforms(n: usize, seed: u64) -> Vec<f64> {
        let z = normal(n, seed);
        // Φ-free uniforms in [0, 1): the fractional part of scaled normals.
        z.iter()
            .map(|&x| (f64::from(x) * 7.3).rem_euclid(1.0))
            .collect()
    }

    #[test]
    fn draws_what_the_tensor_form_draws() {
        for (rows, vocab, scale, seed) in [
            (1, 1, 1.0, 1),
            (3, 5, 0.5, 2),
            (64, 1000, 3.0, 3),
            (257, 4099, 8.0, 4),
        ] {
            let logits = Tensor::from_slice(&normal(rows * vocab, seed))
                .view([rows as i64, vocab as i64])
                * scale;
            let logp = logits.log_softmax(-1, Kind::Float);
            let u = uniforms(rows, seed + 100);
            assert_eq!(
                inverse_cdf_sample(&logp, &u).unwrap(),
                reference(&logp, &u),
                "{rows} x {vocab}"
            );
        }
    }

    #[test]
    fn masked_tokens_are_never_drawn_and_draws_past_the_mass_take_the_last_positive() {
        // Tokens 1 and 3 of 5 kept (top-k style −∞ elsewhere); u at the edges.
        let inf = f32::NEG_INFINITY;
        let half = 0.5f32.ln();
        let logp = Tensor::from_slice(&[inf, half, inf, half, inf, inf, half, inf, half, inf])
            .view([2, 5]);
        let (ids, lps) = inverse_cdf_sample(&logp, &[0.0, 0.999_999_999_999]).unwrap();
        assert_eq!(ids, vec![1, 3]);
        assert_eq!(lps, vec![f64::from(half); 2]);
        // A row whose mass rounds below u: the last positive token, as in the tensor form.
        let short = Tensor::from_slice(&[-0.7f32, -0.7, inf]).view([1, 3]);
        let u = [0.999_999];
        assert_eq!(
            inverse_cdf_sample(&short, &u).unwrap(),
            reference(&short, &u)
        );
        assert_eq!(inverse_cdf_sample(&short, &u).unwrap().0, vec![1]);
        // No positive token at all: V − 1, as in the tensor form.
        let none = Tensor::from_slice(&[inf, inf]).view([1, 2]);
        assert_eq!(
            inverse_cdf_sample(&none, &[0.3]).unwrap(),
            reference(&none, &[0.3])
        );
    }

    #[test]
    fn draws_follow_the_distribution() {
        // 20,000 draws from one 4-token distribution (rows repeated): frequencies within 4σ.
        let p = [0.1f64, 0.2, 0.3, 0.4];
        let n = 20_000usize;
        let row: Vec<f32> = p.iter().map(|&x| x.ln() as f32).collect();
        let logp = Tensor::from_slice(&row.repeat(n)).view([n as i64, 4]);
        let u = uniforms(n, 7);
        let (ids, _) = inverse_cdf_sample(&logp, &u).unwrap();
        for (k, &pk) in p.iter().enumerate() {
            let seen = ids.iter().filter(|&&i| i == k as i64).count() as f64;
            let sd = (n as f64 * pk * (1.0 - pk)).sqrt();
            assert!((seen - n as f64 * pk).abs() < 4.0 * sd, "token {k}: {seen}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_sample() {
        let ok = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        let cases = [
            (ok.to_kind(Kind::Double), 2, "Float"),
            (ok.view([6]), 2, "[rows, vocab]"),
            (ok.shallow_clone(), 3, "one per row"),
            (
                Tensor::zeros([2, 0], (Kind::Float, Device::Cpu)),
                2,
                "non-empty",
            ),
        ];
        for (t, n, needle) in cases {
            let e = inverse_cdf_sample(&t, &vec![0.5; n])
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{e}");
        }
    }
}
