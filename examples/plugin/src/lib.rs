//! # rlvr-plugin-example
//!
//! A worked example of extending rlvr from outside its crates: a new policy loss
//! (`vanilla-pg`, plain REINFORCE-style −A·log π without ratio or clipping) and a new token gate
//! (`first-tokens`, only the first N response tokens), registered at link time. The library
//! depends on `rlvr-core` (the contracts) and `rlvr-algos` (for the gate plumbing a loss reuses);
//! the binary `rlvr-with-plugin` in `examples/plugin-cli` names this crate and runs rlvr's CLI, so
//! both appear in `rlvr-with-plugin list` and can be chosen in a config:
//!
//! ```toml
//! [algo]
//! preset = "grpo"
//! [algo.loss]
//! type = "vanilla-pg"
//! [algo.loss.gate]
//! type = "first-tokens"
//! n = 8
//! ```

use documented::DocumentedFields;
use rlvr_algos::loss::{build_gate, gate_needs, gate_weights};
use rlvr_core::{
    CoreError, GateConfig, GateInput, LossConfig, LossInput, LossOutput, PolicyLoss, Result,
    StatsNeeds, TokenGate,
};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Configuration of the `vanilla-pg` loss.
#[derive(Serialize, Deserialize, DocumentedFields, Default)]
#[serde(default)]
pub struct VanillaPgConfig {
    /// Optional gate restricting the loss to some tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<Box<dyn GateConfig>>,
}

rlvr_core::describe_fields!(VanillaPgConfig);
rlvr_core::register!(
    loss,
    "vanilla-pg",
    "plugin example: −A·log π, no ratio, no clipping",
    VanillaPgConfig
);

/// The checked `vanilla-pg` loss.
pub struct VanillaPg {
    gate: Option<Box<dyn TokenGate>>,
}

#[typetag::serde(name = "vanilla-pg")]
impl LossConfig for VanillaPgConfig {
    fn build(&self) -> Result<Box<dyn PolicyLoss>> {
        Ok(Box::new(VanillaPg {
            gate: build_gate(&self.gate)?,
        }))
    }
}

impl PolicyLoss for VanillaPg {
    fn needs(&self) -> StatsNeeds {
        gate_needs(&self.gate)
    }

    fn per_token_loss(&self, input: &LossInput<'_>) -> Result<LossOutput> {
        let mut per_token = input.advantages.f_neg()?.f_mul(&input.stats.logp)?;
        if let Some(gate) = &self.gate {
            per_token = per_token.f_mul(&gate_weights(gate.as_ref(), input)?)?;
        }
        Ok(LossOutput {
            per_token,
            metrics: Vec::new(),
        })
    }
}

/// Configuration of the `first-tokens` gate.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct FirstTokensConfig {
    /// Number of leading response tokens that pass (>= 1).
    pub n: i64,
}

impl Default for FirstTokensConfig {
    fn default() -> Self {
        FirstTokensConfig { n: 16 }
    }
}

rlvr_core::describe_fields!(FirstTokensConfig);
rlvr_core::register!(
    gate,
    "first-tokens",
    "plugin example: only the first n response tokens",
    FirstTokensConfig
);

#[typetag::serde(name = "first-tokens")]
impl GateConfig for FirstTokensConfig {
    fn build(&self) -> Result<Box<dyn TokenGate>> {
        if self.n < 1 {
            return Err(CoreError::invalid("gate.n", self.n, "must be >= 1"));
        }
        Ok(Box::new(self.clone()))
    }
}

impl TokenGate for FirstTokensConfig {
    fn weights(&self, input: &GateInput<'_>) -> Result<Tensor> {
        let t = input.mask.size().last().copied().unwrap_or(0);
        let pos = Tensor::f_arange(t, (Kind::Int64, input.mask.device()))?;
        Ok(pos
            .f_lt(self.n)?
            .f_to_kind(Kind::Float)?
            .f_unsqueeze(0)?
            .f_mul(input.mask)?)
    }
}

/// A symbol for the binary to reference so this crate's registrations are linked.
pub fn link() {}
