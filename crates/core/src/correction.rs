//! Rollout–trainer mismatch corrections (docs/rollouts.md): the engine that sampled a response
//! (another process, other kernels or precision) gives its tokens slightly other log-probs than
//! the trainer's own old-policy pass. A [`RolloutCorrection`] turns the two into per-token
//! weights that multiply the per-token loss: truncated importance sampling (TIS; Yao et al.,
//! "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training", 2025; verl's
//! `rollout_is` with mode "truncate") or masked importance sampling (MIS; verl's mode "mask").
//! Optional part of `[algo]` (`[algo.correction]`), registered like losses and gates.

use crate::describe::Describe;
use crate::error::Result;
use tch::Tensor;

/// Per-token weights from the trainer's and the rollout engine's log-probs.
pub trait RolloutCorrection: Send + Sync {
    /// Weights `[B, T]` f32 (no gradient) from the trainer's old log-probs `[B, T]`, the
    /// engine's log-probs `[B, T]` of the same tokens, and the response mask `[B, T]`; 0 on
    /// padding.
    fn weights(&self, old_logp: &Tensor, rollout_logp: &Tensor, mask: &Tensor) -> Result<Tensor>;
}

/// Serialisable, tagged configuration of a correction (`type = "tis"`).
#[typetag::serde(tag = "type")]
pub trait CorrectionConfig: Describe + Send + Sync {
    /// Validates and constructs the correction.
    fn build(&self) -> Result<Box<dyn RolloutCorrection>>;
}
