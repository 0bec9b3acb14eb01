//! Sign-split outcome rewards (Zhu et al. 2025, "The Surprising Effectiveness of Negative
//! Reinforcement", arXiv 2506.01347; the SimKO repository's `compute_psr_nsr_outcome_advantage`):
//! `psr` A = R (learn from correct samples only, for 0/1 rewards), `nsr` A = R − 1 (incorrect only),
//! `w-reinforce` A = w·R for correct and R − 1 for incorrect (w = 0.1 in the paper).

use super::per_response;
use crate::util::check;
use documented::DocumentedFields;
use rlvr_core::{AdvantageConfig, AdvantageEstimator, AdvantageInput, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Configuration of `psr` (no parameters).
#[derive(Debug, Clone, Default, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct PsrConfig {}

/// Configuration of `nsr` (no parameters).
#[derive(Debug, Clone, Default, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct NsrConfig {}

/// Configuration of `w-reinforce`.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct WReinforceConfig {
    /// Weight λ of correct responses' reward (A = λ·R for R = 1, R − 1 otherwise).
    pub positive_weight: f64,
}

impl Default for WReinforceConfig {
    fn default() -> Self {
        WReinforceConfig {
            positive_weight: 0.1,
        }
    }
}

rlvr_core::describe_fields!(PsrConfig);
rlvr_core::describe_fields!(NsrConfig);
rlvr_core::describe_fields!(WReinforceConfig);
rlvr_core::register!(
    advantage,
    "psr",
    "positive sample reinforcement A = R (Zhu et al. 2025)",
    PsrConfig
);
rlvr_core::register!(
    advantage,
    "nsr",
    "negative sample reinforcement A = R − 1 (Zhu et al. 2025)",
    NsrConfig
);
rlvr_core::register!(
    advantage,
    "w-reinforce",
    "A = λR for correct, R − 1 for incorrect, λ = 0.1 (Zhu et al. 2025)",
    WReinforceConfig
);

/// The shared estimator, one rule per registered name.
#[derive(Debug, Clone, Copy)]
enum SignSplit {
    /// A = R.
    Psr,
    /// A = R − 1.
    Nsr,
    /// A = w·R for correct (R ≥ 1), R − 1 otherwise.
    Weighted(f64),
}

impl AdvantageEstimator for SignSplit {
    fn compute(&self, input: &AdvantageInput<'_>) -> Result<Tensor> {
        per_response(input, |scores, _| {
            Ok(scores
                .iter()
                .map(|&r| match *self {
                    SignSplit::Psr => r,
                    SignSplit::Nsr => r - 1.0,
                    SignSplit::Weighted(w) if r >= 1.0 => w * r,
                    SignSplit::Weighted(_) => r - 1.0,
                })
                .collect())
        })
    }
}

#[typetag::serde(name = "psr")]
impl AdvantageConfig for PsrConfig {
    fn build(&self) -> Result<Box<dyn AdvantageEstimator>> {
        Ok(Box::new(SignSplit::Psr))
    }
}

#[typetag::serde(name = "nsr")]
impl AdvantageConfig for NsrConfig {
    fn build(&self) -> Result<Box<dyn AdvantageEstimator>> {
        Ok(Box::new(SignSplit::Nsr))
    }
}

#[typetag::serde(name = "w-reinforce")]
impl AdvantageConfig for WReinforceConfig {
    fn build(&self) -> Result<Box<dyn AdvantageEstimator>> {
        let w = self.positive_weight;
        check(
            w.is_finite() && w >= 0.0,
            "advantage.positive_weight",
            w,
            "must be a finite number >= 0",
        )?;
        Ok(Box::new(SignSplit::Weighted(w)))
    }
}
