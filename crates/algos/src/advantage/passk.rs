//! Pass@k training advantages (Chen et al. 2025, "Pass@k Training for Adaptively Balancing
//! Exploration and Exploitation", arXiv 2508.10751, analytic form): for a group of N responses with
//! N_neg incorrect, R̄ = 1 − C(N_neg,k)/C(N,k), σ = sqrt(R̄(1−R̄)),
//! Â_pos = (1 − R̄)/σ, Â_neg = (1 − R̄ − C(N_neg−1,k−1)/C(N−1,k−1))/σ, and 0 when σ = 0.
//! A response is correct when its score is ≥ 1.

use super::per_response;
use crate::util::{binom_ratio, check};
use documented::DocumentedFields;
use rlvr_core::{AdvantageConfig, AdvantageEstimator, AdvantageInput, CoreError, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Configuration of `passk`.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct PasskConfig {
    /// k of the pass@k objective (must not exceed the group size).
    pub k: usize,
}

impl Default for PasskConfig {
    fn default() -> Self {
        PasskConfig { k: 4 }
    }
}

rlvr_core::describe_fields!(PasskConfig);
rlvr_core::register!(
    advantage,
    "passk",
    "analytic pass@k advantages (Chen et al. 2025, arXiv 2508.10751)",
    PasskConfig
);

/// Advantages of one group of 0/1 outcomes.
pub fn passk_group(correct: &[bool], k: usize) -> Vec<f64> {
    let n = correct.len();
    let n_neg = correct.iter().filter(|c| !**c).count();
    let mean = 1.0 - binom_ratio(n_neg, n, k);
    let sigma = (mean * (1.0 - mean)).max(0.0).sqrt();
    if sigma == 0.0 {
        return vec![0.0; n];
    }
    let a_pos = (1.0 - mean) / sigma;
    let a_neg = if n_neg >= 1 {
        (1.0 - mean - binom_ratio(n_neg - 1, n - 1, k - 1)) / sigma
    } else {
        0.0
    };
    correct
        .iter()
        .map(|&c| if c { a_pos } else { a_neg })
        .collect()
}

#[typetag::serde(name = "passk")]
impl AdvantageConfig for PasskConfig {
    fn build(&self) -> Result<Box<dyn AdvantageEstimator>> {
        check(self.k >= 1, "advantage.k", self.k, "must be >= 1")?;
        Ok(Box::new(self.clone()))
    }
}

impl AdvantageEstimator for PasskConfig {
    fn min_group_size(&self) -> usize {
        self.k.max(2)
    }

    fn compute(&self, input: &AdvantageInput<'_>) -> Result<Tensor> {
        per_response(input, |scores, groups| {
            let mut adv = vec![0.0; scores.len()];
            for g in groups {
                if g.len() < self.k {
                    return Err(CoreError::invalid(
                        "advantage.k",
                        self.k,
                        format!("must be <= the group size {}", g.len()),
                    ));
                }
                let correct: Vec<bool> = g.iter().map(|&i| scores[i] >= 1.0).collect();
                for (&i, a) in g.iter().zip(passk_group(&correct, self.k)) {
                    adv[i] = a;
                }
            }
            Ok(adv)
        })
    }
}
