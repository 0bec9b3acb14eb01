//! The PPO clipped surrogate (Schulman et al. 2017, arXiv 1707.06347; verl `compute_policy_loss`)
//! with asymmetric clipping ε_low/ε_high ("clip-higher", DAPO, arXiv 2503.14476) and dual clip
//! (Ye et al. 2020, arXiv 1912.09729), plus the optional KL-to-reference and entropy terms that
//! every loss of this crate shares. Flattened into each loss's config.

use crate::util::check;
use documented::DocumentedFields;
use rlvr_core::{LossInput, LossOutput, Result, StatsNeeds, TokenMetric};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Estimator of KL(π‖π_ref) from samples of π (Schulman 2020, "Approximating KL divergence").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KlEstimator {
    /// k1 = log π − log π_ref.
    K1,
    /// k2 = ½ (log π − log π_ref)².
    K2,
    /// k3 = π_ref/π − log(π_ref/π) − 1, clamped to [−10, 10] (verl `low_var_kl`).
    K3,
}

/// The clipped surrogate and its regularisers.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct Surrogate {
    /// Lower clip range ε_low: the ratio is clipped below at 1 − ε_low.
    pub clip_low: f64,
    /// Upper clip range ε_high: the ratio is clipped above at 1 + ε_high (0.28 = DAPO clip-higher).
    pub clip_high: f64,
    /// Dual-clip constant c > 1 bounding the loss of negative-advantage tokens at −A·c; 0 turns it off.
    pub dual_clip: f64,
    /// Weight of the KL-to-reference term in the loss; 0 turns it off (no reference pass).
    pub kl_coef: f64,
    /// KL estimator: k1 | k2 | k3 (k3 is clamped to ±10).
    pub kl_estimator: KlEstimator,
    /// Weight of the entropy bonus (subtracted from the loss); 0 turns it off.
    pub entropy_coef: f64,
}

impl Default for Surrogate {
    fn default() -> Self {
        Surrogate {
            clip_low: 0.2,
            clip_high: 0.2,
            dual_clip: 0.0,
            kl_coef: 0.0,
            kl_estimator: KlEstimator::K3,
            entropy_coef: 0.0,
        }
    }
}

impl Surrogate {
    /// Checks the hyperparameters.
    pub fn validate(&self) -> Result<()> {
        check(
            self.clip_low > 0.0 && self.clip_low < 1.0,
            "loss.clip_low",
            self.clip_low,
            "must be in (0, 1)",
        )?;
        check(
            self.clip_high > 0.0 && self.clip_high.is_finite(),
            "loss.clip_high",
            self.clip_high,
            "must be a finite number > 0",
        )?;
        check(
            self.dual_clip == 0.0 || self.dual_clip > 1.0,
            "loss.dual_clip",
            self.dual_clip,
            "must be 0 (off) or > 1",
        )?;
        check(
            self.kl_coef >= 0.0 && self.kl_coef.is_finite(),
            "loss.kl_coef",
            self.kl_coef,
            "must be a finite number >= 0",
        )?;
        check(
            self.entropy_coef.is_finite(),
            "loss.entropy_coef",
            self.entropy_coef,
            "must be finite",
        )?;
        Ok(())
    }

    /// Statistics the regularisers need.
    pub fn needs(&self) -> StatsNeeds {
        StatsNeeds {
            entropy: self.entropy_coef != 0.0,
            entropy_grad: self.entropy_coef != 0.0,
            reference: self.kl_coef > 0.0,
            ..Default::default()
        }
    }

    /// Per-token clipped loss max(−A·ratio, −A·clip(ratio)) (dual-clipped where A < 0), and the
    /// clip indicator 1[−A·clip(ratio) > −A·ratio].
    pub fn clipped(&self, ratio: &Tensor, adv: &Tensor) -> Result<(Tensor, Tensor)> {
        let pg1 = adv.f_neg()?.f_mul(ratio)?;
        let clipped_ratio = ratio.f_clamp(1.0 - self.clip_low, 1.0 + self.clip_high)?;
        let pg2 = adv.f_neg()?.f_mul(&clipped_ratio)?;
        let clip_flag = pg2.f_gt_tensor(&pg1)?.f_to_kind(Kind::Float)?;
        let mut loss = pg1.f_maximum(&pg2)?;
        if self.dual_clip > 0.0 {
            let pg3 = adv.f_neg()?.f_mul_scalar(self.dual_clip)?;
            let dual = loss.f_minimum(&pg3)?;
            loss = dual.f_where_self(&adv.f_lt(0.0)?, &loss)?;
        }
        Ok((loss, clip_flag))
    }

    /// The whole per-token objective for a (possibly shaped) ratio and advantage: clipped
    /// surrogate, KL and entropy terms, with the standard diagnostics.
    pub fn loss(&self, ratio: &Tensor, adv: &Tensor, input: &LossInput<'_>) -> Result<LossOutput> {
        let (mut per_token, clip_flag) = self.clipped(ratio, adv)?;
        let mut metrics = vec![
            TokenMetric {
                name: "clipfrac",
                values: clip_flag,
            },
            TokenMetric {
                name: "ppo_kl",
                values: input.old_logp.f_sub(&input.stats.logp.detach())?,
            },
        ];
        if self.kl_coef > 0.0 {
            let kl = self.kl(input)?;
            per_token = per_token.f_add(&kl.f_mul_scalar(self.kl_coef)?)?;
            metrics.push(TokenMetric {
                name: "kl_ref",
                values: kl.detach(),
            });
        }
        if self.entropy_coef != 0.0 {
            let entropy = input.stats.require_entropy()?;
            per_token = per_token.f_sub(&entropy.f_mul_scalar(self.entropy_coef)?)?;
        }
        Ok(LossOutput { per_token, metrics })
    }

    /// Per-token KL estimate to the reference policy.
    pub fn kl(&self, input: &LossInput<'_>) -> Result<Tensor> {
        let ref_logp = input.ref_logp.ok_or_else(|| {
            rlvr_core::CoreError::Shape(
                "kl_coef > 0 needs reference log-probs; the trainer must compute them".into(),
            )
        })?;
        let diff = input.stats.logp.f_sub(ref_logp)?;
        Ok(match self.kl_estimator {
            KlEstimator::K1 => diff,
            KlEstimator::K2 => diff.f_square()?.f_mul_scalar(0.5)?,
            KlEstimator::K3 => {
                let log_ratio = diff.f_neg()?;
                log_ratio
                    .f_exp()?
                    .f_sub(&log_ratio)?
                    .f_sub_scalar(1.0)?
                    .f_clamp(-10.0, 10.0)?
            }
        })
    }
}

/// The importance ratio exp(logp − old_logp).
pub fn ratio(input: &LossInput<'_>) -> Result<Tensor> {
    Ok(input.stats.logp.f_sub(input.old_logp)?.f_exp()?)
}
