//! Per-token statistics of a policy at the sampled tokens, and their one canonical constructor
//! from logits.
//!
//! A loss declares the statistics it needs ([`StatsNeeds`]); the policy computes only those. All
//! of them come from a single f32 log-softmax per position. Top-K candidates are found on detached
//! logits and their log-probs gathered from that log-softmax: logits are never expanded K-fold
//! (the official SimKO code materialises `[N·K, V]`; see docs/design.md §3).

use crate::error::{CoreError, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// What a loss needs from the policy besides the sampled token's log-prob.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsNeeds {
    /// Entropy of the current policy at each position (detached unless `entropy_grad`).
    pub entropy: bool,
    /// Whether gradients must flow through the entropy (an entropy bonus); gates read it
    /// detached, and then it is computed without building an autograd graph over the vocabulary.
    #[serde(default)]
    pub entropy_grad: bool,
    /// Number of top candidates whose log-probs and ids are needed (0 = none).
    pub topk: usize,
    /// Whether the sampled token is the argmax of the current logits.
    pub top1: bool,
    /// Log-probs of a frozen reference policy (for a KL term).
    pub reference: bool,
}

impl StatsNeeds {
    /// The union of two sets of needs (the larger K wins).
    pub fn union(self, other: StatsNeeds) -> StatsNeeds {
        StatsNeeds {
            entropy: self.entropy || other.entropy,
            entropy_grad: self.entropy_grad || other.entropy_grad,
            topk: self.topk.max(other.topk),
            top1: self.top1 || other.top1,
            reference: self.reference || other.reference,
        }
    }
}

/// Statistics for a batch of response tokens, all of shape `[B, T]` (or `[B, T, K]`).
///
/// `logp`, `entropy` and `topk_logp` carry gradients when computed with gradients enabled;
/// `topk_ids` and `is_top1` never do.
#[derive(Debug)]
pub struct TokenStats {
    /// Log-probability of the sampled (target) token, `[B, T]` f32.
    pub logp: Tensor,
    /// Entropy `-Σ p log p` of the predictive distribution, `[B, T]` f32.
    pub entropy: Option<Tensor>,
    /// Log-probs of the K most likely tokens, descending, `[B, T, K]` f32.
    pub topk_logp: Option<Tensor>,
    /// Ids of the K most likely tokens, `[B, T, K]` i64.
    pub topk_ids: Option<Tensor>,
    /// 1.0 where the sampled token is the argmax of the logits, `[B, T]` f32.
    pub is_top1: Option<Tensor>,
}

impl TokenStats {
    /// Concatenates statistics of consecutive chunks along dimension `dim`.
    pub fn cat(parts: &[TokenStats], dim: i64) -> TokenStats {
        fn cat_opt(
            parts: &[TokenStats],
            f: impl Fn(&TokenStats) -> Option<&Tensor>,
            dim: i64,
        ) -> Option<Tensor> {
            let ts: Option<Vec<&Tensor>> = parts.iter().map(f).collect();
            ts.map(|v| Tensor::cat(&v, dim))
        }
        let logp: Vec<&Tensor> = parts.iter().map(|p| &p.logp).collect();
        TokenStats {
            logp: Tensor::cat(&logp, dim),
            entropy: cat_opt(parts, |p| p.entropy.as_ref(), dim),
            topk_logp: cat_opt(parts, |p| p.topk_logp.as_ref(), dim),
            topk_ids: cat_opt(parts, |p| p.topk_ids.as_ref(), dim),
            is_top1: cat_opt(parts, |p| p.is_top1.as_ref(), dim),
        }
    }

    /// The entropy, or an error naming the loss need that was missing.
    pub fn require_entropy(&self) -> Result<&Tensor> {
        self.entropy.as_ref().ok_or_else(|| {
            CoreError::Shape("token statistics lack `entropy`; declare it in StatsNeeds".into())
        })
    }

    /// The top-K log-probs, or an error naming the missing need.
    pub fn require_topk_logp(&self) -> Result<&Tensor> {
        self.topk_logp.as_ref().ok_or_else(|| {
            CoreError::Shape(
                "token statistics lack `topk_logp`; declare topk > 0 in StatsNeeds".into(),
            )
        })
    }

    /// The top-1 flags, or an error naming the missing need.
    pub fn require_top1(&self) -> Result<&Tensor> {
        self.is_top1.as_ref().ok_or_else(|| {
            CoreError::Shape("token statistics lack `is_top1`; declare top1 in StatsNeeds".into())
        })
    }
}

/// Computes [`TokenStats`] from logits `[..., V]` and target ids `[...]` (any leading shape).
///
/// One log-softmax in f32; the target log-prob and the top-K log-probs are gathered from it, so
/// gradients flow to the logits through both. Entropy keeps its gradient (an entropy bonus needs
/// it); consumers that gate on entropy detach it. Top-K indices come from detached logits.
pub fn token_stats_from_logits(
    logits: &Tensor,
    targets: &Tensor,
    needs: &StatsNeeds,
) -> Result<TokenStats> {
    let lshape = logits.size();
    let tshape = targets.size();
    if lshape.len() != tshape.len() + 1 || lshape[..tshape.len()] != tshape[..] {
        return Err(CoreError::Shape(format!(
            "logits {lshape:?} must be targets {tshape:?} plus a vocabulary dimension"
        )));
    }
    let vocab = *lshape.last().unwrap_or(&0);
    if needs.topk as i64 > vocab {
        return Err(CoreError::invalid(
            "topk",
            needs.topk,
            format!("must be <= vocabulary size {vocab}"),
        ));
    }
    let logp_all = logits
        .f_to_kind(Kind::Float)?
        .f_log_softmax(-1, Kind::Float)?;
    let idx = targets.f_to_kind(Kind::Int64)?.f_unsqueeze(-1)?;
    let logp = logp_all.f_gather(-1, &idx, false)?.f_squeeze_dim(-1)?;
    let entropy = if needs.entropy_grad {
        Some(-(logp_all.f_exp()? * &logp_all).f_sum_dim_intlist(-1, false, Kind::Float)?)
    } else if needs.entropy {
        Some(detached_entropy(&logp_all)?)
    } else {
        None
    };
    let (topk_logp, topk_ids) = if needs.topk > 0 {
        let (_, ids) = logits.detach().f_topk(needs.topk as i64, -1, true, true)?;
        (Some(logp_all.f_gather(-1, &ids, false)?), Some(ids))
    } else {
        (None, None)
    };
    let is_top1 = if needs.top1 {
        let argmax = match &topk_ids {
            Some(ids) => ids.f_select(-1, 0)?,
            None => logits.detach().f_argmax(-1, false)?,
        };
        Some(
            argmax
                .f_eq_tensor(&targets.f_to_kind(Kind::Int64)?)?
                .f_to_kind(Kind::Float)?,
        )
    } else {
        None
    };
    Ok(TokenStats {
        logp,
        entropy,
        topk_logp,
        topk_ids,
        is_top1,
    })
}

/// Entropy of log-probs `[..., V]` without gradient, in row chunks so the temporaries stay small.
fn detached_entropy(logp_all: &Tensor) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let size = logp_all.size();
    let vocab = *size.last().unwrap_or(&1);
    let flat = logp_all.f_reshape([-1, vocab])?;
    let rows = flat.size()[0];
    let chunk = (1 << 22) / vocab.max(1) + 1;
    let mut parts = Vec::new();
    let mut start = 0;
    while start < rows {
        let len = chunk.min(rows - start);
        let x = flat.f_narrow(0, start, len)?;
        parts.push(
            x.f_exp()?
                .f_mul(&x)?
                .f_sum_dim_intlist(-1, false, Kind::Float)?
                .f_neg()?,
        );
        start += len;
    }
    if parts.is_empty() {
        return Ok(flat
            .f_sum_dim_intlist(-1, false, Kind::Float)?
            .f_reshape(&size[..size.len() - 1])?);
    }
    Ok(Tensor::f_cat(&parts, 0)?.f_reshape(&size[..size.len() - 1])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn stats_match_explicit_softmax() {
        tch::manual_seed(0);
        let logits = Tensor::randn([2, 3, 7], (Kind::Float, Device::Cpu));
        let targets = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 5]).view([2, 3]);
        let needs = StatsNeeds {
            entropy: true,
            entropy_grad: false,
            topk: 3,
            top1: true,
            reference: false,
        };
        let s = token_stats_from_logits(&logits, &targets, &needs).unwrap();
        let p = logits.softmax(-1, Kind::Float);
        let ent = -(&p * p.log()).sum_dim_intlist(-1, false, Kind::Float);
        assert!(s.entropy.unwrap().allclose(&ent, 1e-5, 1e-6, false));
        let (vals, ids) = p.topk(3, -1, true, true);
        assert!(s
            .topk_logp
            .unwrap()
            .allclose(&vals.log(), 1e-5, 1e-6, false));
        assert!(s.topk_ids.unwrap().equal(&ids));
        let lp = p
            .log()
            .gather(-1, &targets.unsqueeze(-1), false)
            .squeeze_dim(-1);
        assert!(s.logp.allclose(&lp, 1e-5, 1e-6, false));
        let top1 = ids.select(-1, 0).eq_tensor(&targets).to_kind(Kind::Float);
        assert!(s.is_top1.unwrap().equal(&top1));
    }

    #[test]
    fn entropy_is_detached_unless_its_gradient_is_needed() {
        let logits = Tensor::randn([3, 5, 11], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let targets = Tensor::zeros([3, 5], (Kind::Int64, Device::Cpu));
        let plain = StatsNeeds {
            entropy: true,
            ..Default::default()
        };
        let with_grad = StatsNeeds {
            entropy: true,
            entropy_grad: true,
            ..Default::default()
        };
        let a = token_stats_from_logits(&logits, &targets, &plain)
            .unwrap()
            .entropy
            .unwrap();
        let b = token_stats_from_logits(&logits, &targets, &with_grad)
            .unwrap()
            .entropy
            .unwrap();
        assert!(!a.requires_grad() && b.requires_grad());
        assert!(a.allclose(&b, 1e-6, 1e-7, false));
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let logits = Tensor::zeros([2, 3, 7], (Kind::Float, Device::Cpu));
        let targets = Tensor::zeros([2, 4], (Kind::Int64, Device::Cpu));
        assert!(token_stats_from_logits(&logits, &targets, &StatsNeeds::default()).is_err());
        let ok_targets = Tensor::zeros([2, 3], (Kind::Int64, Device::Cpu));
        let too_many = StatsNeeds {
            topk: 8,
            ..Default::default()
        };
        assert!(token_stats_from_logits(&logits, &ok_targets, &too_many).is_err());
    }
}
