//! SimKO's negative part, the top-1 penalty (arXiv 2510.14807, §4; official
//! `compute_policy_loss_simko`): on gated tokens of responses with negative advantage where the
//! sampled token is the current argmax, the penalty is multiplied by λ > 1. The official code
//! scales the advantage (a response is negative when the sum of its token advantages is < 0); the
//! paper writes the factor on the ratio before clipping, which clips differently. Both are modes.

use crate::util::check;
use rlvr_core::{Result, StatsNeeds};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Where λ is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PenaltyOn {
    /// A ← λA (the official code).
    Advantage,
    /// ratio ← λ·ratio before clipping (the paper's formula).
    Ratio,
}

/// The checked top-1 penalty piece.
#[derive(Debug, Clone)]
pub struct Top1Penalty {
    /// λ ≥ 1 (1 disables the piece).
    pub lambda: f64,
    /// Where λ applies.
    pub on: PenaltyOn,
}

impl Top1Penalty {
    /// Validates the hyperparameters.
    pub fn new(lambda: f64, on: PenaltyOn) -> Result<Top1Penalty> {
        check(
            lambda >= 1.0 && lambda.is_finite(),
            "loss.lambda",
            lambda,
            "must be a finite number >= 1",
        )?;
        Ok(Top1Penalty { lambda, on })
    }

    /// Statistics the piece needs: top-1 flags.
    pub fn needs(&self) -> StatsNeeds {
        StatsNeeds {
            top1: self.lambda != 1.0,
            ..Default::default()
        }
    }

    /// The multiplicative factor 1 + (λ − 1)·1[row advantage sum < 0]·top1·gate, `[B, T]`.
    pub fn factor(&self, adv: &Tensor, is_top1: Option<&Tensor>, gate: &Tensor) -> Result<Tensor> {
        if self.lambda == 1.0 {
            return Ok(adv.f_ones_like()?);
        }
        let top1 = is_top1
            .ok_or_else(|| rlvr_core::CoreError::Shape("top-1 penalty needs top-1 flags".into()))?;
        let negative = adv
            .f_sum_dim_intlist(-1, true, Kind::Float)?
            .f_lt(0.0)?
            .f_to_kind(Kind::Float)?;
        let hit = negative.f_mul(top1)?.f_mul(gate)?;
        Ok(hit.f_mul_scalar(self.lambda - 1.0)?.f_add_scalar(1.0)?)
    }
}
