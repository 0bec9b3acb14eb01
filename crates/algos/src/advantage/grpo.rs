//! GRPO group-relative advantages (Shao et al. 2024, arXiv 2402.03300; verl
//! `compute_grpo_outcome_advantage`): A = (r − mean_group)/(std + ε) with the unbiased std; a
//! group of one gets mean 0 and std 1. `scale = "batch"` divides by the std of the whole batch,
//! `scale = "none"` only centres (Dr. GRPO, Liu et al. 2025, arXiv 2503.20783).

use super::per_response;
use crate::util::{check, mean_std};
use documented::DocumentedFields;
use rlvr_core::{AdvantageConfig, AdvantageEstimator, AdvantageInput, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// What GRPO divides the centred score by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrpoScale {
    /// Standard deviation of the prompt's group (GRPO).
    Group,
    /// Standard deviation of all scores of the batch.
    Batch,
    /// No scaling (Dr. GRPO).
    None,
}

/// Configuration of the `grpo` estimator.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct GrpoConfig {
    /// Divisor of the centred score: group | batch | none (none = Dr. GRPO).
    pub scale: GrpoScale,
    /// Added to the standard deviation before dividing.
    pub eps: f64,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        GrpoConfig {
            scale: GrpoScale::Group,
            eps: 1e-6,
        }
    }
}

rlvr_core::describe_fields!(GrpoConfig);
rlvr_core::register!(
    advantage,
    "grpo",
    "group-relative (r − mean)/(std + eps) (Shao et al. 2024; verl)",
    GrpoConfig
);

#[typetag::serde(name = "grpo")]
impl AdvantageConfig for GrpoConfig {
    fn build(&self) -> Result<Box<dyn AdvantageEstimator>> {
        check(
            self.eps >= 0.0 && self.eps.is_finite(),
            "advantage.eps",
            self.eps,
            "must be a finite number >= 0",
        )?;
        Ok(Box::new(self.clone()))
    }
}

impl AdvantageEstimator for GrpoConfig {
    fn min_group_size(&self) -> usize {
        2
    }

    fn compute(&self, input: &AdvantageInput<'_>) -> Result<Tensor> {
        per_response(input, |scores, groups| {
            let (_, batch_std) = mean_std(scores);
            let mut adv = vec![0.0; scores.len()];
            for g in groups {
                let xs: Vec<f64> = g.iter().map(|&i| scores[i]).collect();
                let (mean, std) = if xs.len() == 1 {
                    (0.0, 1.0)
                } else {
                    mean_std(&xs)
                };
                for &i in g {
                    adv[i] = match self.scale {
                        GrpoScale::Group => (scores[i] - mean) / (std + self.eps),
                        GrpoScale::Batch => (scores[i] - mean) / (batch_std + self.eps),
                        GrpoScale::None => scores[i] - mean,
                    };
                }
            }
            Ok(adv)
        })
    }
}
