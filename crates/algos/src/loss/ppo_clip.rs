//! `ppo-clip`: the PPO clipped surrogate on any advantages (GRPO's loss, Shao et al. 2024; verl
//! `compute_policy_loss`), optionally restricted to the tokens of a gate — with the batch-level
//! entropy gate this is the forking-token method (Wang et al. 2025, arXiv 2506.01939). That
//! method's verl code replaces the response mask by the entropy mask before the token-mean, so the
//! loss is averaged over the gated tokens only: `gate_normalizer = "gated"` (its preset's default);
//! `"valid"` keeps dividing by every valid token.

use super::surrogate::{ratio, Surrogate};
use super::{build_gate, gate_needs, gate_weights};
use documented::DocumentedFields;
use rlvr_core::{
    GateConfig, LossConfig, LossInput, LossOutput, PolicyLoss, Result, StatsNeeds, TokenGate,
    TokenMetric,
};
use serde::{Deserialize, Serialize};
use tch::Kind;

/// Configuration of `ppo-clip`.
#[derive(Serialize, Deserialize, DocumentedFields, Default)]
#[serde(default)]
pub struct PpoClipConfig {
    /// Clipped surrogate and regularisers.
    #[serde(flatten)]
    pub surrogate: Surrogate,
    /// Optional gate: only tokens it passes contribute to the loss (absent = every token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<Box<dyn GateConfig>>,
    /// With a gate, the tokens the token-mean divides by: valid (every valid token) | gated (only
    /// the tokens the gate passes, as the forking-token paper's verl code does).
    pub gate_normalizer: GateNormalizer,
}

/// The denominator of a gated loss's token-mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateNormalizer {
    /// Every valid token of the mini-batch (gated-out tokens count as zeros).
    #[default]
    Valid,
    /// The gated tokens only: each (micro-)batch's loss is rescaled by valid / gated tokens, so
    /// the token-mean becomes Σ w·ℓ / Σ w over the valid tokens (Wang et al. 2025's code).
    Gated,
}

rlvr_core::describe_fields!(PpoClipConfig, Surrogate);
rlvr_core::register!(
    loss,
    "ppo-clip",
    "PPO clipped surrogate, ε_low/ε_high, dual clip, KL and entropy terms, optional gate",
    PpoClipConfig
);

/// The checked `ppo-clip` loss.
pub struct PpoClip {
    surrogate: Surrogate,
    gate: Option<Box<dyn TokenGate>>,
    normalizer: GateNormalizer,
}

#[typetag::serde(name = "ppo-clip")]
impl LossConfig for PpoClipConfig {
    fn build(&self) -> Result<Box<dyn PolicyLoss>> {
        self.surrogate.validate()?;
        if self.gate_normalizer == GateNormalizer::Gated && self.gate.is_none() {
            return Err(rlvr_core::CoreError::invalid(
                "gate_normalizer",
                "gated",
                "needs a gate (set [algo.loss.gate]) or use valid",
            ));
        }
        Ok(Box::new(PpoClip {
            surrogate: self.surrogate.clone(),
            gate: build_gate(&self.gate)?,
            normalizer: self.gate_normalizer,
        }))
    }
}

impl PolicyLoss for PpoClip {
    fn needs(&self) -> StatsNeeds {
        self.surrogate.needs().union(gate_needs(&self.gate))
    }

    fn per_token_loss(&self, input: &LossInput<'_>) -> Result<LossOutput> {
        let mut out = self
            .surrogate
            .loss(&ratio(input)?, input.advantages, input)?;
        if let Some(gate) = &self.gate {
            let w = gate_weights(gate.as_ref(), input)?;
            out.per_token = out.per_token.f_mul(&w)?;
            if self.normalizer == GateNormalizer::Gated {
                // valid / gated tokens of this batch: the aggregation's token-mean then averages
                // over the gated tokens (no gated token: the loss is zero).
                let valid = input.mask.f_sum(Kind::Double)?.f_double_value(&[])?;
                let gated = (input.mask * &w).f_sum(Kind::Double)?.f_double_value(&[])?;
                let scale = if gated > 0.0 { valid / gated } else { 0.0 };
                out.per_token = out.per_token.f_mul_scalar(scale)?;
            }
            out.metrics.push(TokenMetric {
                name: "gate_frac",
                values: w,
            });
        }
        Ok(out)
    }
}
