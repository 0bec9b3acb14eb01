//! `ppo-clip`: the PPO clipped surrogate on any advantages (GRPO's loss, Shao et al. 2024; verl
//! `compute_policy_loss`), optionally restricted to the tokens of a gate — with the batch-level
//! entropy gate this is the forking-token method (Wang et al. 2025, arXiv 2506.01939).

use super::surrogate::{ratio, Surrogate};
use super::{build_gate, gate_needs, gate_weights};
use documented::DocumentedFields;
use rlvr_core::{
    GateConfig, LossConfig, LossInput, LossOutput, PolicyLoss, Result, StatsNeeds, TokenGate,
    TokenMetric,
};
use serde::{Deserialize, Serialize};

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
}

#[typetag::serde(name = "ppo-clip")]
impl LossConfig for PpoClipConfig {
    fn build(&self) -> Result<Box<dyn PolicyLoss>> {
        self.surrogate.validate()?;
        Ok(Box::new(PpoClip {
            surrogate: self.surrogate.clone(),
            gate: build_gate(&self.gate)?,
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
            out.metrics.push(TokenMetric {
                name: "gate_frac",
                values: w,
            });
        }
        Ok(out)
    }
}
