//! Inverse-CDF sampling of one token per row of a CPU log-probability matrix in one pass over the
//! row's prefix (`shim/inverse_cdf.cpp`, rows on libtorch's threads): the first token whose
//! cumulative probability exceeds the row's uniform draw. The probabilities are SIMD f32
//! exponentials of a defined arithmetic (the AVX-512 and the portable path give the same bits)
//! summed in f64 by blocks of 16; the tensor form (`exp`, `cumsum`, `searchsorted`, `gather`:
//! eight passes over `[rows, vocab]` f64 copies, the GPU path) follows the same rule up to the
//! rounding of its terms.

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
        portable: i32,
        error: *mut *mut c_char,
    ) -> i32;
}

/// Draws one token per row of `logp` `[R, V]` (f32, CPU) given one uniform `u[r]` in `[0, 1)` per
/// row: the first `j` whose cumulative probability `Σ_{i ≤ j} p_i` exceeds `u[r]`, with
/// `p_i = exp(logp[r, i])` in f32 (0 below −87: e^−87 ≈ 1.6e−38) and the running sum in f64 by
/// blocks of 16 (the exact rule is in `shim/inverse_cdf.cpp`). When no prefix exceeds `u[r]`
/// (the total mass rounds below it), the last token with positive probability (`V − 1` when
/// none has). Returns the ids and their log-probs (as f64).
pub fn inverse_cdf_sample(logp: &Tensor, u: &[f64]) -> Result<(Vec<i64>, Vec<f64>), KernelError> {
    sample(logp, u, false)
}

/// [`inverse_cdf_sample`] on the portable exponentials (no SIMD): the same draws, slower. For
/// tests that the fast path follows the defined arithmetic.
pub fn inverse_cdf_sample_portable(
    logp: &Tensor,
    u: &[f64],
) -> Result<(Vec<i64>, Vec<f64>), KernelError> {
    sample(logp, u, true)
}

fn sample(logp: &Tensor, u: &[f64], portable: bool) -> Result<(Vec<i64>, Vec<f64>), KernelError> {
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
            i32::from(portable),
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

    /// The tensor form of the rule (the GPU path; f64 exponentials, one cumulative sum).
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

    /// `[rows, vocab]` standard normal logits times `scale`.
    fn random_logits(rows: usize, vocab: usize, scale: f64, seed: u64) -> Tensor {
        Tensor::from_slice(&normal(rows * vocab, seed)).view([rows as i64, vocab as i64]) * scale
    }

    /// The exponential of `shim/inverse_cdf.cpp`, written again from its definition.
    fn sampling_exp(x: f32) -> f32 {
        if x.is_nan() || x < -87.0 {
            return 0.0;
        }
        let xc = if x < 88.0 { x } else { 88.0 };
        let k = (xc * std::f32::consts::LOG2_E).round_ties_even();
        let r = k.mul_add(-0.693_359_4, xc);
        let r = k.mul_add(2.121_944_4e-4, r);
        let taylor = [
            1.0 / 5040.0,
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0f32,
        ];
        let p = taylor[1..].iter().fold(taylor[0], |p, &c| p.mul_add(r, c));
        p * f32::from_bits(((k as i32 + 127) << 23) as u32)
    }

    /// The sampling rule of `shim/inverse_cdf.cpp`, written again from its definition.
    fn rule(row: &[f32], u: f64) -> i64 {
        let mut mass = 0.0f64;
        for (b, chunk) in row.chunks(16).enumerate() {
            let mut p = [0f32; 16];
            for (pi, &x) in p.iter_mut().zip(chunk) {
                *pi = sampling_exp(x);
            }
            let s: Vec<f64> = (0..8).map(|l| p[l] as f64 + p[l + 8] as f64).collect();
            let block = ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
            if mass + block > u {
                let mut run = mass;
                for (i, &pi) in p.iter().enumerate().take(chunk.len()) {
                    run += pi as f64;
                    if run > u && pi > 0.0 {
                        return (b * 16 + i) as i64;
                    }
                }
            }
            mass += block;
        }
        row.iter()
            .rposition(|&x| sampling_exp(x) > 0.0)
            .unwrap_or(row.len() - 1) as i64
    }

    #[test]
    fn both_paths_draw_what_the_defined_rule_draws() {
        let inf = f32::NEG_INFINITY;
        for (rows, vocab, scale, seed) in [
            (1, 1, 1.0, 11),
            (5, 7, 0.5, 12),
            (64, 1000, 3.0, 13),
            (257, 4099, 8.0, 14),
            (33, 32768, 1.0, 15),
        ] {
            let logits = random_logits(rows, vocab, scale, seed);
            // Even seeds: every third token masked (top-k style). The last row draws near 1.
            let logits = if seed % 2 == 0 {
                let masked = Tensor::arange(vocab as i64, (Kind::Int64, Device::Cpu))
                    .remainder(3)
                    .eq(1)
                    .view([1, vocab as i64]);
                logits.masked_fill(&masked, f64::from(inf))
            } else {
                logits
            };
            let logp = logits.log_softmax(-1, Kind::Float);
            let mut u = uniforms(rows, seed + 100);
            u[rows - 1] = 0.999_999_999;
            let fast = inverse_cdf_sample(&logp, &u).unwrap();
            let portable = inverse_cdf_sample_portable(&logp, &u).unwrap();
            assert_eq!(fast, portable, "{rows} x {vocab}");
            let flat = Vec::<f32>::try_from(logp.view([-1])).unwrap();
            let want: Vec<i64> = flat
                .chunks(vocab)
                .zip(&u)
                .map(|(row, &u)| rule(row, u))
                .collect();
            assert_eq!(fast.0, want, "{rows} x {vocab}");
            for (r, &j) in fast.0.iter().enumerate() {
                assert_eq!(fast.1[r], flat[r * vocab + j as usize] as f64);
            }
        }
    }

    #[test]
    fn the_exponential_is_within_two_f32_roundings_of_exp() {
        let mut worst = 0.0f64;
        for i in 0..=2_000_000 {
            let x = -87.0 + 87.0 * i as f32 / 2_000_000.0;
            let want = (x as f64).exp();
            worst = worst.max(((sampling_exp(x) as f64) - want).abs() / want);
        }
        assert!(worst < 2.0 * f64::from(f32::EPSILON) / 2.0, "{worst}");
        assert_eq!(sampling_exp(-87.5), 0.0);
        assert_eq!(sampling_exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(sampling_exp(f32::NAN), 0.0);
        assert_eq!(sampling_exp(0.0), 1.0);
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
            let logits = random_logits(rows, vocab, scale, seed);
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
