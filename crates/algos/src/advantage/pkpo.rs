//! PKPO, pass@k policy optimisation by an unbiased reward transform (Walder & Karkhanis 2025,
//! arXiv 2505.15201), binary rewards. Each response i of a group of n with c correct gets the mean,
//! over all k-subsets that contain it, of the subset's best reward: 1 if i is correct, else
//! 1 − C(n−c−1,k−1)/C(n−1,k−1). Averaged over responses these give the unbiased pass@k estimate
//! 1 − C(n−c,k)/C(n,k). The `leave-one-out` variant subtracts, from each, the pass@k estimate of
//! the other n−1 responses (a baseline independent of response i; needs n − 1 ≥ k).

use super::per_response;
use crate::util::{binom_ratio, check};
use documented::DocumentedFields;
use rlvr_core::{AdvantageConfig, AdvantageEstimator, AdvantageInput, CoreError, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Configuration of `pkpo`.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct PkpoConfig {
    /// k of the pass@k objective (must not exceed the group size).
    pub k: usize,
    /// Subtract the other responses' pass@k estimate as a baseline (needs group size > k).
    pub leave_one_out: bool,
}

impl Default for PkpoConfig {
    fn default() -> Self {
        PkpoConfig {
            k: 4,
            leave_one_out: true,
        }
    }
}

rlvr_core::describe_fields!(PkpoConfig);
rlvr_core::register!(
    advantage,
    "pkpo",
    "unbiased pass@k reward transform (Walder & Karkhanis 2025)",
    PkpoConfig
);

/// Transformed rewards of one group of 0/1 outcomes.
pub fn pkpo_group(correct: &[bool], k: usize, leave_one_out: bool) -> Vec<f64> {
    let n = correct.len();
    let c = correct.iter().filter(|x| **x).count();
    correct
        .iter()
        .map(|&ci| {
            let s = if ci {
                1.0
            } else {
                1.0 - binom_ratio(n - c - 1, n - 1, k - 1)
            };
            if !leave_one_out {
                return s;
            }
            // pass@k of the other n−1 responses, which hold n−c−(1−ci) failures.
            let neg_others = n - c - usize::from(!ci);
            s - (1.0 - binom_ratio(neg_others, n - 1, k))
        })
        .collect()
}

#[typetag::serde(name = "pkpo")]
impl AdvantageConfig for PkpoConfig {
    fn build(&self) -> Result<Box<dyn AdvantageEstimator>> {
        check(self.k >= 1, "advantage.k", self.k, "must be >= 1")?;
        Ok(Box::new(self.clone()))
    }
}

impl AdvantageEstimator for PkpoConfig {
    fn min_group_size(&self) -> usize {
        self.k + usize::from(self.leave_one_out)
    }

    fn compute(&self, input: &AdvantageInput<'_>) -> Result<Tensor> {
        per_response(input, |scores, groups| {
            let mut adv = vec![0.0; scores.len()];
            for g in groups {
                if g.len() < self.min_group_size() {
                    return Err(CoreError::invalid(
                        "advantage.k",
                        self.k,
                        format!(
                            "needs groups of at least {} responses, got {}",
                            self.min_group_size(),
                            g.len()
                        ),
                    ));
                }
                let correct: Vec<bool> = g.iter().map(|&i| scores[i] >= 1.0).collect();
                for (&i, a) in g
                    .iter()
                    .zip(pkpo_group(&correct, self.k, self.leave_one_out))
                {
                    adv[i] = a;
                }
            }
            Ok(adv)
        })
    }
}
