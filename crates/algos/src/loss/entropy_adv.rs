//! `entropy-adv`: entropy-based advantage shaping (Cheng et al. 2025, "Reasoning with Exploration:
//! An Entropy Perspective", arXiv 2506.14758): A' = A + min(α·H_detached, |A|/κ), then the PPO
//! clipped surrogate.

use super::surrogate::{ratio, Surrogate};
use crate::util::check;
use documented::DocumentedFields;
use rlvr_core::{LossConfig, LossInput, LossOutput, PolicyLoss, Result, StatsNeeds};
use serde::{Deserialize, Serialize};

/// Configuration of `entropy-adv`.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct EntropyAdvConfig {
    /// Clipped surrogate and regularisers.
    #[serde(flatten)]
    pub surrogate: Surrogate,
    /// α: scale of the entropy term added to the advantage (paper: 0.4).
    pub entropy_alpha: f64,
    /// κ > 0: the entropy term is capped at |A|/κ (paper: 2).
    pub kappa: f64,
}

impl Default for EntropyAdvConfig {
    fn default() -> Self {
        EntropyAdvConfig {
            surrogate: Surrogate::default(),
            entropy_alpha: 0.4,
            kappa: 2.0,
        }
    }
}

rlvr_core::describe_fields!(EntropyAdvConfig, Surrogate);
rlvr_core::register!(
    loss,
    "entropy-adv",
    "advantage + min(α·H, |A|/κ) (Cheng et al. 2025, arXiv 2506.14758)",
    EntropyAdvConfig
);

#[typetag::serde(name = "entropy-adv")]
impl LossConfig for EntropyAdvConfig {
    fn build(&self) -> Result<Box<dyn PolicyLoss>> {
        self.surrogate.validate()?;
        check(
            self.entropy_alpha >= 0.0,
            "loss.entropy_alpha",
            self.entropy_alpha,
            "must be >= 0",
        )?;
        check(self.kappa > 0.0, "loss.kappa", self.kappa, "must be > 0")?;
        Ok(Box::new(self.clone()))
    }
}

impl PolicyLoss for EntropyAdvConfig {
    fn needs(&self) -> StatsNeeds {
        self.surrogate.needs().union(StatsNeeds {
            entropy: true,
            ..Default::default()
        })
    }

    fn per_token_loss(&self, input: &LossInput<'_>) -> Result<LossOutput> {
        let h = input.stats.require_entropy()?.detach();
        let bonus = h
            .f_mul_scalar(self.entropy_alpha)?
            .f_minimum(&input.advantages.f_abs()?.f_div_scalar(self.kappa)?)?;
        let adv = input.advantages.f_add(&bonus)?.f_mul(input.mask)?;
        self.surrogate.loss(&ratio(input)?, &adv, input)
    }
}
