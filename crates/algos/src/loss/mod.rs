//! Policy losses and the pieces they are assembled from (docs/design.md §3–§4).

pub mod cov;
pub mod entropy_adv;
pub mod ppo_clip;
pub mod simko;
pub mod surrogate;
pub mod top1_penalty;
pub mod topk_mixture;

use rlvr_core::{GateConfig, GateInput, LossInput, Result, StatsNeeds, TokenGate};
use tch::Tensor;

/// Builds an optional gate (public for plugin losses that take a `gate` field).
pub fn build_gate(cfg: &Option<Box<dyn GateConfig>>) -> Result<Option<Box<dyn TokenGate>>> {
    cfg.as_ref().map(|g| g.build()).transpose()
}

/// The needs of an optional gate.
pub fn gate_needs(gate: &Option<Box<dyn TokenGate>>) -> StatsNeeds {
    gate.as_ref().map(|g| g.needs()).unwrap_or_default()
}

/// Evaluates a gate on a loss input: per-token weights `[B, T]` (public for plugin losses).
pub fn gate_weights(gate: &dyn TokenGate, input: &LossInput<'_>) -> Result<Tensor> {
    gate.weights(&GateInput {
        stats: input.stats,
        mask: input.mask,
        tokens: input.tokens,
        truncated: input.truncated,
    })
}
