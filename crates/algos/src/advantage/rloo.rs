//! RLOO leave-one-out advantages (Ahmadian et al. 2024, arXiv 2402.14740; verl
//! `compute_rloo_outcome_advantage`): A_i = r_i − mean_{j≠i} r_j; a group of one keeps r_i.

use super::per_response;
use documented::DocumentedFields;
use rlvr_core::{AdvantageConfig, AdvantageEstimator, AdvantageInput, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Configuration of the `rloo` estimator (no parameters).
#[derive(Debug, Clone, Default, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct RlooConfig {}

rlvr_core::describe_fields!(RlooConfig);
rlvr_core::register!(
    advantage,
    "rloo",
    "leave-one-out baseline r_i − mean of the others (Ahmadian et al. 2024)",
    RlooConfig
);

#[typetag::serde(name = "rloo")]
impl AdvantageConfig for RlooConfig {
    fn build(&self) -> Result<Box<dyn AdvantageEstimator>> {
        Ok(Box::new(self.clone()))
    }
}

impl AdvantageEstimator for RlooConfig {
    fn min_group_size(&self) -> usize {
        2
    }

    fn compute(&self, input: &AdvantageInput<'_>) -> Result<Tensor> {
        per_response(input, |scores, groups| {
            let mut adv = scores.to_vec();
            for g in groups.iter().filter(|g| g.len() > 1) {
                let n = g.len() as f64;
                let sum: f64 = g.iter().map(|&i| scores[i]).sum();
                for &i in g {
                    adv[i] = scores[i] - (sum - scores[i]) / (n - 1.0);
                }
            }
            Ok(adv)
        })
    }
}
