//! Gates without a threshold: all tokens, top-1 tokens, and non-truncated responses.

use documented::DocumentedFields;
use rlvr_core::{GateConfig, GateInput, Result, StatsNeeds, TokenGate};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Configuration of the `all` gate: every valid token.
#[derive(Debug, Clone, Default, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct AllTokensConfig {}

/// Configuration of the `top1` gate: tokens where the sampled token is the argmax.
#[derive(Debug, Clone, Default, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct Top1Config {}

/// Configuration of the `not-truncated` gate: drops responses cut at the length limit
/// (DAPO's overlong filtering, Yu et al. 2025, arXiv 2503.14476).
#[derive(Debug, Clone, Default, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct NotTruncatedConfig {}

rlvr_core::describe_fields!(AllTokensConfig);
rlvr_core::describe_fields!(Top1Config);
rlvr_core::describe_fields!(NotTruncatedConfig);
rlvr_core::register!(gate, "all", "every valid response token", AllTokensConfig);
rlvr_core::register!(
    gate,
    "top1",
    "tokens where the sampled token is the current argmax",
    Top1Config
);
rlvr_core::register!(
    gate,
    "not-truncated",
    "zero for responses cut at the length limit (DAPO overlong filtering)",
    NotTruncatedConfig
);

#[typetag::serde(name = "all")]
impl GateConfig for AllTokensConfig {
    fn build(&self) -> Result<Box<dyn TokenGate>> {
        Ok(Box::new(self.clone()))
    }
}

impl TokenGate for AllTokensConfig {
    fn weights(&self, input: &GateInput<'_>) -> Result<Tensor> {
        Ok(input.mask.f_to_kind(Kind::Float)?)
    }
}

#[typetag::serde(name = "top1")]
impl GateConfig for Top1Config {
    fn build(&self) -> Result<Box<dyn TokenGate>> {
        Ok(Box::new(self.clone()))
    }
}

impl TokenGate for Top1Config {
    fn needs(&self) -> StatsNeeds {
        StatsNeeds {
            top1: true,
            ..Default::default()
        }
    }

    fn weights(&self, input: &GateInput<'_>) -> Result<Tensor> {
        Ok(input.stats.require_top1()?.f_mul(input.mask)?)
    }
}

#[typetag::serde(name = "not-truncated")]
impl GateConfig for NotTruncatedConfig {
    fn build(&self) -> Result<Box<dyn TokenGate>> {
        Ok(Box::new(self.clone()))
    }
}

impl TokenGate for NotTruncatedConfig {
    fn weights(&self, input: &GateInput<'_>) -> Result<Tensor> {
        let mask = input.mask.f_to_kind(Kind::Float)?;
        match input.truncated {
            Some(tr) => Ok(mask.f_mul(&tr.f_neg()?.f_add_scalar(1.0)?.f_unsqueeze(-1)?)?),
            None => Ok(mask),
        }
    }
}
