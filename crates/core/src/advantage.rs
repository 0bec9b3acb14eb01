//! The advantage-estimator contract: outcome scores of grouped responses in, per-token advantages
//! out.

use crate::describe::Describe;
use crate::error::Result;
use tch::Tensor;

/// Inputs of an advantage estimator for `B` responses of up to `T` tokens.
#[derive(Debug)]
pub struct AdvantageInput<'a> {
    /// Verifier score of each response, `[B]` f32.
    pub scores: &'a Tensor,
    /// The score placed on the last valid token of each response, 0 elsewhere, `[B, T]` f32.
    pub token_level_scores: &'a Tensor,
    /// 1 for valid response tokens, 0 for padding, `[B, T]` f32.
    pub mask: &'a Tensor,
    /// Prompt index of each response; equal values form one group, `[B]` i64.
    pub group: &'a Tensor,
}

/// Turns outcome scores into per-token advantages `[B, T]` (zero on padding). Computed once per
/// rollout batch, without gradient.
pub trait AdvantageEstimator: Send + Sync {
    /// Smallest number of responses per prompt the estimator is defined for (1 if any).
    fn min_group_size(&self) -> usize {
        1
    }
    /// Per-token advantages `[B, T]` f32, zero where `mask` is 0.
    fn compute(&self, input: &AdvantageInput<'_>) -> Result<Tensor>;
}

/// Serialisable, tagged configuration of an advantage estimator (`type = "grpo"`); `build`
/// validates the hyperparameters once and returns the checked estimator.
#[typetag::serde(tag = "type")]
pub trait AdvantageConfig: Describe + Send + Sync {
    /// Validates and constructs the estimator.
    fn build(&self) -> Result<Box<dyn AdvantageEstimator>>;
}
