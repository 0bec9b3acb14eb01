//! Pieces that act on a rollout batch between scoring and advantages (DAPO, arXiv 2503.14476):
//! a [`RewardShaping`] changes the verifier scores (the overlong penalty, §3.4), a
//! [`GroupFilter`] chooses which prompt groups train (dynamic sampling, §3.2). Both are optional
//! parts of `[algo]` (`[algo.shaping]`, `[algo.filter]`), registered like losses and gates.

use crate::describe::Describe;
use crate::error::Result;

/// Changes the scores of a rollout batch before advantages are computed.
pub trait RewardShaping: Send + Sync {
    /// The shaped scores `[B]` from the verifier scores `[B]` and the response lengths `[B]`
    /// (tokens), for responses of at most `max_new_tokens` tokens.
    fn shape(&self, scores: &[f64], lengths: &[i64], max_new_tokens: i64) -> Result<Vec<f64>>;
}

/// Serialisable, tagged configuration of a reward shaping (`type = "overlong"`).
#[typetag::serde(tag = "type")]
pub trait ShapingConfig: Describe + Send + Sync {
    /// Validates and constructs the shaping.
    fn build(&self) -> Result<Box<dyn RewardShaping>>;
}

/// Chooses the prompt groups of a rollout that train.
pub trait GroupFilter: Send + Sync {
    /// How many times the step's prompts to sample so that enough groups survive (≥ 1).
    fn oversample(&self) -> f64;
    /// Whether each group (`scores` of its responses, in order) is kept.
    fn keep(&self, group_scores: &[f64]) -> bool;
}

/// Serialisable, tagged configuration of a group filter (`type = "dynamic-sampling"`).
#[typetag::serde(tag = "type")]
pub trait FilterConfig: Describe + Send + Sync {
    /// Validates and constructs the filter.
    fn build(&self) -> Result<Box<dyn GroupFilter>>;
}
