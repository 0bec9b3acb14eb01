//! Token sampling: temperature, top-k, top-p (nucleus) and greedy, with a seeded ChaCha generator
//! so equal seeds give equal samples on any machine.

use crate::error::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rlvr_core::SamplingConfig;
use tch::{Kind, Tensor};

/// The sampling distribution's log-probs `[B, V]`: logits / temperature, then top-k and top-p
/// filtering (removed tokens get −∞), renormalised. Temperature 0 is greedy: all mass on the argmax.
pub fn filtered_logprobs(logits: &Tensor, cfg: &SamplingConfig) -> Result<Tensor> {
    let logits = logits.f_to_kind(Kind::Float)?;
    let vocab = logits.size().last().copied().unwrap_or(0);
    if cfg.temperature <= 0.0 {
        let argmax = logits.f_argmax(-1, true)?;
        let neg = logits.f_full_like(f64::NEG_INFINITY)?;
        return Ok(neg.f_scatter_value(-1, &argmax, 0.0)?);
    }
    let mut scaled = logits.f_div_scalar(cfg.temperature)?;
    if cfg.top_k > 0 && cfg.top_k < vocab {
        let (vals, _) = scaled.f_topk(cfg.top_k, -1, true, true)?;
        let kth = vals.f_narrow(-1, cfg.top_k - 1, 1)?;
        scaled = scaled.f_masked_fill(&scaled.f_lt_tensor(&kth)?, f64::NEG_INFINITY)?;
    }
    if cfg.top_p < 1.0 {
        let (sorted, idx) = scaled.f_sort(-1, true)?;
        let probs = sorted.f_softmax(-1, Kind::Float)?;
        let before = probs.f_cumsum(-1, Kind::Float)?.f_sub(&probs)?;
        // Remove a token when the mass strictly before it already reaches top_p (keeps ≥ 1).
        let remove_sorted = before.f_ge(cfg.top_p)?;
        let remove = remove_sorted.f_scatter(-1, &idx, &remove_sorted)?;
        scaled = scaled.f_masked_fill(&remove, f64::NEG_INFINITY)?;
    }
    Ok(scaled.f_log_softmax(-1, Kind::Float)?)
}

/// A seeded sampler.
pub struct Sampler {
    rng: ChaCha8Rng,
}

impl Sampler {
    /// A sampler whose draws depend only on `seed`.
    pub fn new(seed: u64) -> Sampler {
        Sampler {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Draws one token per row from log-probs `[B, V]`; returns ids `[B]` and their log-probs.
    pub fn sample(&mut self, logp: &Tensor) -> Result<(Vec<i64>, Vec<f64>)> {
        let size = logp.size();
        let (b, v) = (size[0] as usize, size[1] as usize);
        let flat = logp
            .f_to_device(tch::Device::Cpu)?
            .f_to_kind(Kind::Double)?
            .f_reshape([-1])?;
        let values = Vec::<f64>::try_from(&flat)?;
        let mut ids = Vec::with_capacity(b);
        let mut lps = Vec::with_capacity(b);
        for row in values.chunks(v) {
            let u: f64 = self.rng.random::<f64>();
            let mut acc = 0.0;
            let mut chosen = None;
            let mut last_valid = 0;
            for (j, &lp) in row.iter().enumerate() {
                if lp == f64::NEG_INFINITY {
                    continue;
                }
                last_valid = j;
                acc += lp.exp();
                if u < acc {
                    chosen = Some(j);
                    break;
                }
            }
            let j = chosen.unwrap_or(last_valid);
            ids.push(j as i64);
            lps.push(row[j]);
        }
        Ok((ids, lps))
    }
}
