//! The policy-loss contract and the aggregation of per-token losses.
//!
//! A loss returns per-token values; the reduction to a scalar happens outside the loss with global
//! counts of the whole mini-batch ([`GlobalCounts`]), so splitting a mini-batch into micro-batches
//! and summing their gradients never changes the result (docs/design.md §2).

use crate::describe::Describe;
use crate::error::{CoreError, Result};
use crate::stats::{StatsNeeds, TokenStats};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Everything a loss may read for `B` responses of `T` tokens.
#[derive(Debug)]
pub struct LossInput<'a> {
    /// Current-policy statistics, with gradient.
    pub stats: &'a TokenStats,
    /// Log-prob of the sampled token under the rollout (old) policy, `[B, T]` f32.
    pub old_logp: &'a Tensor,
    /// Log-prob under the frozen reference policy, when the loss declared `reference`.
    pub ref_logp: Option<&'a Tensor>,
    /// Per-token advantages, `[B, T]` f32.
    pub advantages: &'a Tensor,
    /// 1 for valid response tokens, `[B, T]` f32.
    pub mask: &'a Tensor,
    /// Verifier score of each response, `[B]` f32.
    pub scores: &'a Tensor,
    /// Sampled token ids, `[B, T]` i64.
    pub tokens: &'a Tensor,
    /// 1.0 for responses cut at the length limit, `[B]` f32, when known.
    pub truncated: Option<&'a Tensor>,
}

/// A named per-token diagnostic (`[B, T]`, no gradient) that the trainer averages over valid
/// tokens, e.g. the clip indicator whose mean is the clip fraction.
#[derive(Debug)]
pub struct TokenMetric {
    /// Metric name as it appears in `metrics.jsonl`.
    pub name: &'static str,
    /// Per-token values `[B, T]`.
    pub values: Tensor,
}

/// Output of a loss: per-token values to aggregate, plus diagnostics.
#[derive(Debug)]
pub struct LossOutput {
    /// Per-token loss `[B, T]`, with gradient; padding positions are ignored by aggregation.
    pub per_token: Tensor,
    /// Diagnostics averaged over valid tokens.
    pub metrics: Vec<TokenMetric>,
}

/// A policy loss: per-token values whose aggregate is minimised.
pub trait PolicyLoss: Send + Sync {
    /// The statistics the loss (and its gates) need from the policy.
    fn needs(&self) -> StatsNeeds;
    /// Per-token loss and diagnostics.
    fn per_token_loss(&self, input: &LossInput<'_>) -> Result<LossOutput>;
    /// Whether the old log-probs must come from a pass of their own even where they equal the
    /// update's (one on-policy step per batch): true for a loss with a term that is not
    /// differentiable where they are equal (KL-Cov's |log π − log π_old|), whose gradient
    /// there the recompute's rounding decides — leaving the pass out would change the update.
    fn needs_old_pass(&self) -> bool {
        false
    }
}

/// Serialisable, tagged configuration of a policy loss (`type = "simko"`).
#[typetag::serde(tag = "type")]
pub trait LossConfig: Describe + Send + Sync {
    /// Validates and constructs the loss.
    fn build(&self) -> Result<Box<dyn PolicyLoss>>;
}

/// How per-token losses become one scalar (verl's `loss_agg_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregation {
    /// Σ loss / (valid tokens of the mini-batch).
    #[default]
    TokenMean,
    /// mean over responses of (Σ_t loss / response length).
    SeqMeanTokenMean,
    /// mean over responses of Σ_t loss.
    SeqMeanTokenSum,
    /// Σ loss / (normaliser × responses of the mini-batch): Dr. GRPO (Liu et al. 2025).
    Constant,
}

/// Counts over the whole mini-batch that every micro-batch divides by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlobalCounts {
    /// Valid tokens in the mini-batch.
    pub tokens: f64,
    /// Responses in the mini-batch (those with at least one valid token).
    pub sequences: f64,
}

impl GlobalCounts {
    /// Counts of a mask `[B, T]`.
    pub fn of_mask(mask: &Tensor) -> Result<GlobalCounts> {
        let tokens = mask.f_sum(Kind::Double)?.f_double_value(&[])?;
        let sequences = mask
            .f_sum_dim_intlist(-1, false, Kind::Double)?
            .f_gt(0.0)?
            .f_sum(Kind::Double)?
            .f_double_value(&[])?;
        Ok(GlobalCounts { tokens, sequences })
    }
}

impl Aggregation {
    /// Reduces `per_token` `[B, T]` of one micro-batch to its share of the mini-batch loss, so
    /// that the shares of all micro-batches sum to the mini-batch loss.
    pub fn reduce(
        self,
        per_token: &Tensor,
        mask: &Tensor,
        counts: GlobalCounts,
        normalizer: f64,
    ) -> Result<Tensor> {
        if counts.tokens <= 0.0 || counts.sequences <= 0.0 {
            return Err(CoreError::Shape(
                "aggregation over a mini-batch without valid tokens".into(),
            ));
        }
        let masked = per_token.f_mul(mask)?;
        Ok(match self {
            Aggregation::TokenMean => masked.f_sum(Kind::Float)?.f_div_scalar(counts.tokens)?,
            Aggregation::SeqMeanTokenSum => {
                masked.f_sum(Kind::Float)?.f_div_scalar(counts.sequences)?
            }
            Aggregation::SeqMeanTokenMean => {
                let len = mask
                    .f_sum_dim_intlist(-1, false, Kind::Float)?
                    .f_clamp_min(1.0)?;
                masked
                    .f_sum_dim_intlist(-1, false, Kind::Float)?
                    .f_div(&len)?
                    .f_sum(Kind::Float)?
                    .f_div_scalar(counts.sequences)?
            }
            Aggregation::Constant => {
                if normalizer <= 0.0 {
                    return Err(CoreError::invalid(
                        "loss_normalizer",
                        normalizer,
                        "must be > 0",
                    ));
                }
                masked
                    .f_sum(Kind::Float)?
                    .f_div_scalar(normalizer * counts.sequences)?
            }
        })
    }
}
