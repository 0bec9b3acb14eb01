//! REINFORCE++ (Hu 2025, arXiv 2501.03262; verl
//! `compute_reinforce_plus_plus_outcome_advantage`): discounted returns of the token-level scores
//! (γ, reset after the last valid token), whitened over all valid tokens of the batch with the
//! unbiased variance and 1e-8 inside the square root. `reinforce++-baseline` first subtracts the
//! group mean of the scores (verl `compute_reinforce_plus_plus_baseline_outcome_advantage`).

use super::per_response;
use crate::util::{check, masked_mean};
use documented::DocumentedFields;
use rlvr_core::{AdvantageConfig, AdvantageEstimator, AdvantageInput, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Configuration of `reinforce++`.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct ReinforcePpConfig {
    /// Discount factor γ of the returns.
    pub gamma: f64,
}

impl Default for ReinforcePpConfig {
    fn default() -> Self {
        ReinforcePpConfig { gamma: 1.0 }
    }
}

/// Configuration of `reinforce++-baseline` (no parameters).
#[derive(Debug, Clone, Default, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct ReinforcePpBaselineConfig {}

rlvr_core::describe_fields!(ReinforcePpConfig);
rlvr_core::describe_fields!(ReinforcePpBaselineConfig);
rlvr_core::register!(
    advantage,
    "reinforce++",
    "discounted returns whitened over the batch (Hu 2025; verl)",
    ReinforcePpConfig
);
rlvr_core::register!(
    advantage,
    "reinforce++-baseline",
    "group-mean baseline, then whitening over the batch (Hu 2025; verl)",
    ReinforcePpBaselineConfig
);

/// (x − mean)/sqrt(var + 1e-8) over valid tokens, unbiased variance (verl `masked_whiten`).
fn masked_whiten(values: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mean = masked_mean(values, mask)?;
    let centred = values.f_sub(&mean)?;
    let n = mask.f_sum(Kind::Float)?;
    let var = masked_mean(&centred.f_square()?, mask)?;
    let unbiased = var
        .f_mul(&n)?
        .f_div(&n.f_sub_scalar(1.0)?.f_clamp_min(1.0)?)?;
    Ok(centred
        .f_mul(&unbiased.f_add_scalar(1e-8)?.f_rsqrt()?)?
        .f_mul(mask)?)
}

#[derive(Debug, Clone)]
struct ReinforcePp {
    gamma: f64,
}

impl AdvantageEstimator for ReinforcePp {
    fn compute(&self, input: &AdvantageInput<'_>) -> Result<Tensor> {
        let rewards = input.token_level_scores.f_to_kind(Kind::Float)?;
        let t_len = rewards.size().get(1).copied().unwrap_or(0);
        let mut running = rewards.f_select(1, 0)?.f_zeros_like()?;
        let mut columns = Vec::with_capacity(t_len as usize);
        for t in (0..t_len).rev() {
            running = rewards
                .f_select(1, t)?
                .f_add(&running.f_mul_scalar(self.gamma)?)?;
            columns.push(running.shallow_clone());
            running = running.f_mul(&input.mask.f_select(1, t)?)?;
        }
        columns.reverse();
        let returns = Tensor::f_stack(&columns, 1)?;
        masked_whiten(&returns, input.mask)
    }
}

#[derive(Debug, Clone)]
struct ReinforcePpBaseline;

impl AdvantageEstimator for ReinforcePpBaseline {
    fn min_group_size(&self) -> usize {
        2
    }

    fn compute(&self, input: &AdvantageInput<'_>) -> Result<Tensor> {
        let centred = per_response(input, |scores, groups| {
            let mut adv = scores.to_vec();
            for g in groups.iter().filter(|g| g.len() > 1) {
                let mean = g.iter().map(|&i| scores[i]).sum::<f64>() / g.len() as f64;
                for &i in g {
                    adv[i] = scores[i] - mean;
                }
            }
            Ok(adv)
        })?;
        masked_whiten(&centred, input.mask)
    }
}

#[typetag::serde(name = "reinforce++")]
impl AdvantageConfig for ReinforcePpConfig {
    fn build(&self) -> Result<Box<dyn AdvantageEstimator>> {
        check(
            (0.0..=1.0).contains(&self.gamma),
            "advantage.gamma",
            self.gamma,
            "must be in [0, 1]",
        )?;
        Ok(Box::new(ReinforcePp { gamma: self.gamma }))
    }
}

#[typetag::serde(name = "reinforce++-baseline")]
impl AdvantageConfig for ReinforcePpBaselineConfig {
    fn build(&self) -> Result<Box<dyn AdvantageEstimator>> {
        Ok(Box::new(ReinforcePpBaseline))
    }
}
