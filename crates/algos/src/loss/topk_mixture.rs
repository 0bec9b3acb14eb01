//! SimKO's positive part, the top-K mixture (arXiv 2510.14807, §4; official
//! `compute_policy_loss_simko`): on gated tokens of correct responses the ratio becomes
//! (1 − αw)·r + αw·Σ_k ω_k·sg(r/r_k)·r_k. Its value equals r; its gradient is
//! r·∇[(1 − αw)·log p_y + αw·Σ_k ω_k·log p_vk], so old-policy top-K log-probs cancel and are never
//! needed: sg(r/r_k)·r_k is computed as sg(r)·exp(log p_vk − sg(log p_vk)).

use crate::util::check;
use rlvr_core::{Result, StatsNeeds};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Weights ω_k of the K candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TopKWeights {
    /// ω_k = 1/K (the paper).
    Uniform,
    /// ω_k = softmax over the K candidates' current log-probs (detached): the paper's ablation.
    Softmax,
}

/// The checked top-K mixture piece.
#[derive(Debug, Clone)]
pub struct TopKMixture {
    /// K ≥ 1.
    pub k: usize,
    /// α in [0, 1].
    pub alpha: f64,
    /// Candidate weights.
    pub weights: TopKWeights,
}

impl TopKMixture {
    /// Validates the hyperparameters.
    pub fn new(k: usize, alpha: f64, weights: TopKWeights) -> Result<TopKMixture> {
        check(k >= 1, "loss.topk", k, "must be >= 1")?;
        check(
            (0.0..=1.0).contains(&alpha),
            "loss.alpha",
            alpha,
            "must be in [0, 1]",
        )?;
        Ok(TopKMixture { k, alpha, weights })
    }

    /// Statistics the piece needs: the current top-K log-probs.
    pub fn needs(&self) -> StatsNeeds {
        StatsNeeds {
            topk: if self.alpha > 0.0 { self.k } else { 0 },
            ..Default::default()
        }
    }

    /// The mixed ratio. `r` = exp(logp − old_logp) `[B, T]`; `topk_logp` `[B, T, ≥K]`;
    /// `active` `[B, T]` = gate × correct × mask (0/1).
    pub fn ratio(&self, r: &Tensor, topk_logp: Option<&Tensor>, active: &Tensor) -> Result<Tensor> {
        if self.alpha == 0.0 {
            return Ok(r.shallow_clone());
        }
        let topk = topk_logp
            .ok_or_else(|| {
                rlvr_core::CoreError::Shape("top-K mixture needs top-K log-probs".into())
            })?
            .f_narrow(-1, 0, self.k as i64)?;
        let sg_r = r.detach();
        let terms = sg_r
            .f_unsqueeze(-1)?
            .f_mul(&topk.f_sub(&topk.detach())?.f_exp()?)?;
        let omega = match self.weights {
            TopKWeights::Uniform => topk.f_ones_like()?.f_div_scalar(self.k as f64)?,
            TopKWeights::Softmax => topk.detach().f_softmax(-1, Kind::Float)?,
        };
        let mix = terms
            .f_mul(&omega)?
            .f_sum_dim_intlist(-1, false, Kind::Float)?;
        let a = active.f_mul_scalar(self.alpha)?;
        Ok(a.f_neg()?
            .f_add_scalar(1.0)?
            .f_mul(r)?
            .f_add(&a.f_mul(&mix)?)?)
    }
}
