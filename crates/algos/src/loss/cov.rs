//! Covariance-based entropy control (Cui et al. 2025, "The Entropy Mechanism of Reinforcement
//! Learning for Reasoning Language Models", arXiv 2505.22617; verl `compute_policy_loss_clip_cov`
//! and `compute_policy_loss_kl_cov`). With cov_t = (A_t − mean A)·(log p_t − mean log p) over valid
//! tokens: `clip-cov` detaches the gradient of a random `clip_ratio` fraction of the tokens whose
//! covariance lies in (lb, ub) and that the PPO clip has not already clipped; `kl-cov` adds
//! `kl_penalty_coef`·|log p − log p_old| to the `kl_ratio` fraction of tokens with the largest
//! covariance. Both use the unclipped ratio elsewhere, as the reference code.

use super::surrogate::{ratio, Surrogate};
use crate::util::{check, masked_mean};
use documented::DocumentedFields;
use rlvr_core::{LossConfig, LossInput, LossOutput, PolicyLoss, Result, StatsNeeds, TokenMetric};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Configuration of `clip-cov`.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct ClipCovConfig {
    /// Clipped surrogate and regularisers.
    #[serde(flatten)]
    pub surrogate: Surrogate,
    /// Fraction of valid tokens whose gradient is detached (paper: 2e-4).
    pub clip_ratio: f64,
    /// Lower bound of the covariance window.
    pub cov_lb: f64,
    /// Upper bound of the covariance window.
    pub cov_ub: f64,
    /// Seed of the random choice among candidate tokens.
    pub seed: i64,
}

impl Default for ClipCovConfig {
    fn default() -> Self {
        ClipCovConfig {
            surrogate: Surrogate::default(),
            clip_ratio: 2e-4,
            cov_lb: 1.0,
            cov_ub: 5.0,
            seed: 0,
        }
    }
}

/// Configuration of `kl-cov`.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct KlCovConfig {
    /// Clipped surrogate and regularisers.
    #[serde(flatten)]
    pub surrogate: Surrogate,
    /// Fraction of valid tokens (largest covariance) that get the KL penalty (paper: 2e-3).
    pub kl_ratio: f64,
    /// Weight of |log p − log p_old| on those tokens.
    pub kl_penalty_coef: f64,
}

impl Default for KlCovConfig {
    fn default() -> Self {
        KlCovConfig {
            surrogate: Surrogate::default(),
            kl_ratio: 2e-3,
            kl_penalty_coef: 1.0,
        }
    }
}

rlvr_core::describe_fields!(ClipCovConfig, Surrogate);
rlvr_core::describe_fields!(KlCovConfig, Surrogate);
rlvr_core::register!(
    loss,
    "clip-cov",
    "detach high-covariance tokens (Cui et al. 2025, arXiv 2505.22617)",
    ClipCovConfig
);
rlvr_core::register!(
    loss,
    "kl-cov",
    "KL penalty on the highest-covariance tokens (Cui et al. 2025, arXiv 2505.22617)",
    KlCovConfig
);

/// Per-token covariance of advantage and current log-prob over valid tokens (no gradient).
fn token_cov(input: &LossInput<'_>) -> Result<Tensor> {
    let logp = input.stats.logp.detach();
    let adv_c = input
        .advantages
        .f_sub(&masked_mean(input.advantages, input.mask)?)?;
    let logp_c = logp.f_sub(&masked_mean(&logp, input.mask)?)?;
    Ok(adv_c.f_mul(&logp_c)?)
}

#[typetag::serde(name = "clip-cov")]
impl LossConfig for ClipCovConfig {
    fn build(&self) -> Result<Box<dyn PolicyLoss>> {
        self.surrogate.validate()?;
        check(
            (0.0..=1.0).contains(&self.clip_ratio),
            "loss.clip_ratio",
            self.clip_ratio,
            "must be in [0, 1]",
        )?;
        check(
            self.cov_lb < self.cov_ub,
            "loss.cov_lb",
            self.cov_lb,
            "must be < cov_ub",
        )?;
        Ok(Box::new(self.clone()))
    }
}

impl PolicyLoss for ClipCovConfig {
    fn needs(&self) -> StatsNeeds {
        self.surrogate.needs()
    }

    fn per_token_loss(&self, input: &LossInput<'_>) -> Result<LossOutput> {
        let r = ratio(input)?;
        let mut out = self.surrogate.loss(&r, input.advantages, input)?;
        let (_, clip_flag) = self.surrogate.clipped(&r, input.advantages)?;
        let cov = token_cov(input)?;
        let candidate = cov
            .f_gt(self.cov_lb)?
            .f_logical_and(&cov.f_lt(self.cov_ub)?)?
            .f_logical_and(&input.mask.f_gt(0.0)?)?
            .f_logical_and(&clip_flag.f_eq(0.0)?)?;
        let idx = candidate.f_reshape([-1])?.f_nonzero()?.f_squeeze_dim(-1)?;
        let n_valid = input.mask.f_sum(Kind::Double)?.f_double_value(&[])?;
        let n_clip = ((self.clip_ratio * n_valid) as i64).max(1);
        let mut keep = input.mask.f_ones_like()?.f_reshape([-1])?;
        let n_cand = idx.size()[0];
        if n_cand > 0 {
            let _guard = tch::no_grad_guard();
            tch::manual_seed(self.seed);
            let perm = Tensor::f_randperm(n_cand, (Kind::Int64, idx.device()))?;
            let chosen = idx.f_index_select(0, &perm.f_narrow(0, 0, n_clip.min(n_cand))?)?;
            keep = keep.f_index_fill(0, &chosen, 0.0)?;
        }
        let keep = keep.f_reshape(input.mask.size())?;
        out.per_token = out.per_token.f_mul(&keep)?;
        out.metrics.push(TokenMetric {
            name: "cov_detached",
            values: keep.f_neg()?.f_add_scalar(1.0)?,
        });
        Ok(out)
    }
}

#[typetag::serde(name = "kl-cov")]
impl LossConfig for KlCovConfig {
    fn build(&self) -> Result<Box<dyn PolicyLoss>> {
        self.surrogate.validate()?;
        check(
            (0.0..=1.0).contains(&self.kl_ratio),
            "loss.kl_ratio",
            self.kl_ratio,
            "must be in [0, 1]",
        )?;
        check(
            self.kl_penalty_coef >= 0.0,
            "loss.kl_penalty_coef",
            self.kl_penalty_coef,
            "must be >= 0",
        )?;
        Ok(Box::new(self.clone()))
    }
}

impl PolicyLoss for KlCovConfig {
    fn needs(&self) -> StatsNeeds {
        self.surrogate.needs()
    }

    /// |log π − log π_old| has no gradient at exactly 0; after a recompute it has the sign of
    /// the rounding difference (verl's behaviour), which the penalised tokens then follow.
    fn needs_old_pass(&self) -> bool {
        true
    }

    fn per_token_loss(&self, input: &LossInput<'_>) -> Result<LossOutput> {
        let r = ratio(input)?;
        // The reference code leaves the ratio unclipped and penalises the chosen tokens.
        let mut out = self.surrogate.loss(&r, input.advantages, input)?;
        let unclipped = input.advantages.f_neg()?.f_mul(&r)?;
        let cov = token_cov(input)?.f_masked_fill(&input.mask.f_eq(0.0)?, f64::NEG_INFINITY)?;
        let n_valid = input.mask.f_sum(Kind::Double)?.f_double_value(&[])? as i64;
        let n_pick = ((n_valid as f64 * self.kl_ratio) as i64)
            .max(1)
            .min(n_valid);
        let mut picked = input.mask.f_zeros_like()?.f_reshape([-1])?;
        if n_pick > 0 {
            let (_, top) = cov.f_reshape([-1])?.f_topk(n_pick, 0, true, false)?;
            picked = picked.f_index_fill(0, &top, 1.0)?;
        }
        let picked = picked.f_reshape(input.mask.size())?;
        let abs_kl = input.stats.logp.f_sub(input.old_logp)?.f_abs()?;
        let penalised = unclipped.f_add(&abs_kl.f_mul_scalar(self.kl_penalty_coef)?)?;
        let extra = out
            .per_token
            .f_sub(&self.surrogate.clipped(&r, input.advantages)?.0)?;
        out.per_token = penalised
            .f_mul(&picked)?
            .f_add(&unclipped.f_mul(&picked.f_neg()?.f_add_scalar(1.0)?)?)?
            .f_add(&extra)?;
        out.metrics.push(TokenMetric {
            name: "cov_penalized",
            values: picked,
        });
        Ok(out)
    }
}
