//! `simko`: Simple Pass@K Policy Optimization (Peng et al. 2025, arXiv 2510.14807), assembled from
//! reusable pieces on the PPO clipped surrogate (docs/design.md §3):
//! a gate ([`rlvr_core::TokenGate`], by default the per-response entropy quantile, τ = 0.8),
//! the top-K mixture on correct responses ([`TopKMixture`]) and the top-1 penalty on negative
//! responses ([`Top1Penalty`]). α = 0 turns the positive part off, λ = 1 the negative part;
//! both off give the plain `ppo-clip` gradient exactly. Any advantage estimator can feed it.

use super::surrogate::{ratio, Surrogate};
use super::top1_penalty::{PenaltyOn, Top1Penalty};
use super::topk_mixture::{TopKMixture, TopKWeights};
use super::{build_gate, gate_needs, gate_weights};
use crate::gate::entropy_quantile::EntropyQuantileConfig;
use documented::DocumentedFields;
use rlvr_core::{
    CoreError, GateConfig, LossConfig, LossInput, LossOutput, PolicyLoss, Result, StatsNeeds,
    TokenGate, TokenMetric,
};
use serde::{Deserialize, Serialize};
use tch::Kind;

/// Which responses count as correct for the top-K mixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CorrectIf {
    /// score == 1 exactly (the official code).
    ScoreOne,
    /// score >= `correct_threshold`.
    AtLeastThreshold,
}

/// Configuration of `simko`.
#[derive(Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct SimkoConfig {
    /// Clipped surrogate and regularisers.
    #[serde(flatten)]
    pub surrogate: Surrogate,
    /// K: number of top candidates the positive part spreads probability over (paper: 3).
    pub topk: usize,
    /// α in [0, 1]: weight of the top-K mixture on gated tokens of correct responses; 0 = no positive part.
    pub alpha: f64,
    /// Weights of the K candidates: uniform (paper) | softmax (over their current probabilities).
    pub topk_weights: TopKWeights,
    /// λ >= 1: extra penalty on gated top-1 tokens of negative responses; 1 = no negative part.
    pub lambda: f64,
    /// Where λ applies: advantage (official code) | ratio (paper formula, before clipping).
    pub penalty_on: PenaltyOn,
    /// Correctness rule for the positive part: score-one | at-least-threshold.
    pub correct_if: CorrectIf,
    /// Threshold used when correct_if = "at-least-threshold".
    pub correct_threshold: f64,
    /// Gate selecting the forking tokens both parts act on (default: per-response entropy quantile, τ = 0.8).
    pub gate: Box<dyn GateConfig>,
}

impl Default for SimkoConfig {
    fn default() -> Self {
        SimkoConfig {
            surrogate: Surrogate::default(),
            topk: 3,
            alpha: 0.01,
            topk_weights: TopKWeights::Uniform,
            lambda: 1.1,
            penalty_on: PenaltyOn::Advantage,
            correct_if: CorrectIf::ScoreOne,
            correct_threshold: 1.0,
            gate: Box::new(EntropyQuantileConfig::default()),
        }
    }
}

rlvr_core::describe_fields!(SimkoConfig, Surrogate);
rlvr_core::register!(
    loss,
    "simko",
    "SimKO: top-K mixture on correct, top-1 penalty on incorrect responses at forking tokens (arXiv 2510.14807)",
    SimkoConfig
);

/// The checked SimKO loss.
pub struct Simko {
    surrogate: Surrogate,
    mixture: TopKMixture,
    penalty: Top1Penalty,
    correct_if: CorrectIf,
    correct_threshold: f64,
    gate: Option<Box<dyn TokenGate>>,
}

#[typetag::serde(name = "simko")]
impl LossConfig for SimkoConfig {
    fn build(&self) -> Result<Box<dyn PolicyLoss>> {
        self.surrogate.validate()?;
        if !self.correct_threshold.is_finite() {
            return Err(CoreError::invalid(
                "loss.correct_threshold",
                self.correct_threshold,
                "must be finite",
            ));
        }
        Ok(Box::new(Simko {
            surrogate: self.surrogate.clone(),
            mixture: TopKMixture::new(self.topk, self.alpha, self.topk_weights)?,
            penalty: Top1Penalty::new(self.lambda, self.penalty_on)?,
            correct_if: self.correct_if,
            correct_threshold: self.correct_threshold,
            gate: build_gate(&Some(self.gate_clone()?))?,
        }))
    }
}

impl SimkoConfig {
    fn gate_clone(&self) -> Result<Box<dyn GateConfig>> {
        // Trait objects are cloned through their serialised form.
        let value =
            toml::Value::try_from(&self.gate).map_err(|e| CoreError::config("loss.gate", e))?;
        value
            .try_into()
            .map_err(|e| CoreError::config("loss.gate", e))
    }
}

impl PolicyLoss for Simko {
    fn needs(&self) -> StatsNeeds {
        self.surrogate
            .needs()
            .union(self.mixture.needs())
            .union(self.penalty.needs())
            .union(gate_needs(&self.gate))
    }

    fn per_token_loss(&self, input: &LossInput<'_>) -> Result<LossOutput> {
        let w = match &self.gate {
            Some(g) => gate_weights(g.as_ref(), input)?,
            None => input.mask.f_to_kind(Kind::Float)?,
        };
        let correct = match self.correct_if {
            CorrectIf::ScoreOne => input.scores.f_eq(1.0)?,
            CorrectIf::AtLeastThreshold => input.scores.f_ge(self.correct_threshold)?,
        }
        .f_to_kind(Kind::Float)?
        .f_unsqueeze(-1)?;
        let active = w.f_mul(&correct)?.f_mul(input.mask)?;
        let mut r = self
            .mixture
            .ratio(&ratio(input)?, input.stats.topk_logp.as_ref(), &active)?;
        let factor = self
            .penalty
            .factor(input.advantages, input.stats.is_top1.as_ref(), &w)?;
        let adv = match self.penalty.on {
            PenaltyOn::Advantage => input.advantages.f_mul(&factor)?,
            PenaltyOn::Ratio => {
                r = r.f_mul(&factor)?;
                input.advantages.shallow_clone()
            }
        };
        let mut out = self.surrogate.loss(&r, &adv, input)?;
        out.metrics.push(TokenMetric {
            name: "gate_frac",
            values: w,
        });
        out.metrics.push(TokenMetric {
            name: "top1_penalized",
            values: factor.f_gt(1.0)?.f_to_kind(Kind::Float)?,
        });
        Ok(out)
    }
}
