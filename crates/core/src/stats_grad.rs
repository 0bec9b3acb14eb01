//! Memory-bounded gradients of a loss over token statistics (docs/performance.md).
//!
//! Holding `[tokens, vocab]` logits with an autograd graph costs gigabytes at real vocabularies
//! (151 936 for Qwen2.5). Instead the statistics are computed chunk by chunk without a graph, in
//! one fused pass per chunk (logsumexp, entropy and top-K from one `exp`); the loss is
//! differentiated with respect to the statistics alone (they are small leaves, so any loss —
//! including batch-coupled ones like KL-Cov — stays exact); and each chunk's logits then receive
//! their analytic gradient, which the caller pushes into whatever produced them (the LM head).
//!
//! With `p = softmax(z)`, `lse = logsumexp(z)`, `H = −Σ p log p`:
//! `∂ log p_t/∂z = e_t − p`, `∂ log p_{(k)}/∂z = e_{(k)} − p` (top-K ids fixed), and
//! `∂H/∂z = −p ⊙ (log p + H)`.

use crate::error::{CoreError, Result};
use crate::stats::{StatsNeeds, TokenStats};
use tch::{Kind, Tensor};

/// Gradient of a loss with respect to the differentiable statistics (same shapes).
#[derive(Debug)]
pub struct StatsGrad {
    /// `∂L/∂logp`.
    pub logp: Tensor,
    /// `∂L/∂entropy`, when the loss differentiates the entropy (an entropy bonus).
    pub entropy: Option<Tensor>,
    /// `∂L/∂topk_logp`.
    pub topk_logp: Option<Tensor>,
}

/// Where the logits of a flat batch of `rows()` positions come from, chunk by chunk.
pub trait ChunkedLogits {
    /// Number of positions.
    fn rows(&self) -> i64;
    /// Logits `[len, V]` of positions `start..start + len`, without a graph.
    fn logits(&self, start: i64, len: i64) -> Result<Tensor>;
    /// Recomputes the logits of positions `start..start + len` with their graph, asks `grad_of`
    /// for their loss gradient `[len, V]` (given the logits' values) and backpropagates it into
    /// their producer (gradients accumulate).
    fn backward(
        &self,
        start: i64,
        len: i64,
        grad_of: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<()>;
}

/// Statistics of logits `[N, V]` and targets `[N]` without an autograd graph, in f32 from one
/// `exp` pass: `lse = m + log Σ e^{z−m}`, `log p_t = z_t − lse`, `H = lse − Σ p z`, top-K from the
/// logits. Values equal [`crate::token_stats_from_logits`]'s up to rounding.
pub fn fused_token_stats(
    logits: &Tensor,
    targets: &Tensor,
    needs: &StatsNeeds,
) -> Result<TokenStats> {
    let _guard = tch::no_grad_guard();
    let z = logits.f_to_kind(Kind::Float)?;
    let vocab = z.size().last().copied().unwrap_or(0);
    if needs.topk as i64 > vocab {
        return Err(CoreError::invalid(
            "topk",
            needs.topk,
            format!("must be <= vocabulary size {vocab}"),
        ));
    }
    let max = z.f_amax([-1].as_slice(), true)?;
    let e = z.f_sub(&max)?.f_exp()?;
    let sum = e.f_sum_dim_intlist(-1, true, Kind::Float)?;
    let lse = max.f_add(&sum.f_log()?)?;
    let idx = targets.f_to_kind(Kind::Int64)?.f_unsqueeze(-1)?;
    let logp = z
        .f_gather(-1, &idx, false)?
        .f_sub(&lse)?
        .f_squeeze_dim(-1)?;
    let entropy = if needs.entropy || needs.entropy_grad {
        // Σ e·z as a batched dot product: one pass, no [N, V] temporary.
        let ez = e
            .f_unsqueeze(-2)?
            .f_matmul(&z.f_unsqueeze(-1)?)?
            .f_squeeze_dim(-1)?;
        Some(lse.f_sub(&ez.f_div(&sum)?)?.f_squeeze_dim(-1)?)
    } else {
        None
    };
    let (topk_logp, topk_ids) = if needs.topk > 0 {
        let (vals, ids) = z.f_topk(needs.topk as i64, -1, true, true)?;
        (Some(vals.f_sub(&lse)?), Some(ids))
    } else {
        (None, None)
    };
    let is_top1 = if needs.top1 {
        let argmax = match &topk_ids {
            Some(ids) => ids.f_select(-1, 0)?,
            None => z.f_argmax(-1, false)?,
        };
        Some(
            argmax
                .f_eq_tensor(&idx.f_squeeze_dim(-1)?)?
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

/// `∂(Σ g·stats)/∂z` for one chunk: logits `[N, V]`, targets `[N]`, the chunk's statistics (as
/// returned by [`fused_token_stats`]) and their loss gradient. Returns f32 `[N, V]`.
pub fn logits_grad(
    logits: &Tensor,
    targets: &Tensor,
    stats: &TokenStats,
    grad: &StatsGrad,
) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let z = logits.f_to_kind(Kind::Float)?;
    let idx = targets.f_to_kind(Kind::Int64)?.f_unsqueeze(-1)?;
    // lse from the target's logit and log-prob: no second reduction over the vocabulary.
    let lse = z
        .f_gather(-1, &idx, false)?
        .f_sub(&stats.logp.f_unsqueeze(-1)?)?;
    let p = z.f_sub(&lse)?.f_exp()?;
    // Every statistic contributes −p times its gradient (the entropy scaled by log p + H).
    let mut coef = grad.logp.f_unsqueeze(-1)?;
    if let Some(g) = &grad.topk_logp {
        coef = coef.f_add(&g.f_sum_dim_intlist(-1, true, Kind::Float)?)?;
    }
    let mut out = match (&grad.entropy, &stats.entropy) {
        (Some(g_ent), Some(h)) => {
            // −p ⊙ (coef + g_H (z − lse + H))
            let g_ent = g_ent.f_unsqueeze(-1)?;
            let shift = h
                .f_unsqueeze(-1)?
                .f_sub(&lse)?
                .f_mul(&g_ent)?
                .f_add(&coef)?;
            p.f_mul(&z.f_mul(&g_ent)?.f_add(&shift)?)?.f_neg()?
        }
        (Some(_), None) => {
            return Err(CoreError::Shape(
                "an entropy gradient needs the entropy statistic".into(),
            ))
        }
        _ => p.f_mul(&coef.f_neg()?)?,
    };
    out = out.f_scatter_add(-1, &idx, &grad.logp.f_unsqueeze(-1)?)?;
    if let (Some(g), Some(ids)) = (&grad.topk_logp, &stats.topk_ids) {
        out = out.f_scatter_add(-1, ids, g)?;
    }
    Ok(out)
}

/// Computes statistics of all positions of `src` in chunks of `chunk`, evaluates
/// `loss_of(stats)` with the statistics shaped `[shape..]` (e.g. `[B, T]`), and pushes the loss
/// gradient into `src` chunk by chunk. Returns the loss value. Peak memory is one chunk's logits
/// plus the statistics, whatever the number of positions.
pub fn backward_through_stats(
    src: &dyn ChunkedLogits,
    targets: &Tensor,
    shape: &[i64],
    needs: &StatsNeeds,
    chunk: i64,
    loss_of: &mut dyn FnMut(&TokenStats) -> Result<Tensor>,
) -> Result<f64> {
    let n = src.rows();
    let chunk = chunk.max(1);
    let spans: Vec<(i64, i64)> = (0..n)
        .step_by(chunk as usize)
        .map(|s| (s, chunk.min(n - s)))
        .collect();
    let mut parts = Vec::with_capacity(spans.len());
    for &(s, len) in &spans {
        let logits = src.logits(s, len)?;
        parts.push(fused_token_stats(
            &logits,
            &targets.f_narrow(0, s, len)?,
            needs,
        )?);
    }
    let flat = TokenStats::cat(&parts, 0);
    // The loss over leaf copies of the statistics: its graph is as small as they are.
    let leaf = |t: &Tensor, shape: &[i64]| -> Result<Tensor> {
        Ok(t.f_reshape(shape)?.f_detach()?.set_requires_grad(true))
    };
    let mut with_k = shape.to_vec();
    with_k.push(-1);
    let logp = leaf(&flat.logp, shape)?;
    let entropy = match (&flat.entropy, needs.entropy_grad) {
        (Some(h), true) => Some(leaf(h, shape)?),
        (Some(h), false) => Some(h.f_reshape(shape)?),
        (None, _) => None,
    };
    let topk_logp = flat
        .topk_logp
        .as_ref()
        .map(|t| leaf(t, &with_k))
        .transpose()?;
    let stats = TokenStats {
        logp: logp.shallow_clone(),
        entropy: entropy.as_ref().map(Tensor::shallow_clone),
        topk_logp: topk_logp.as_ref().map(Tensor::shallow_clone),
        topk_ids: flat
            .topk_ids
            .as_ref()
            .map(|t| t.f_reshape(&with_k))
            .transpose()?,
        is_top1: flat
            .is_top1
            .as_ref()
            .map(|t| t.f_reshape(shape))
            .transpose()?,
    };
    let loss = loss_of(&stats)?;
    let value = loss.f_double_value(&[])?;
    if !loss.requires_grad() {
        return Ok(value);
    }
    loss.f_backward()?;
    let grad_of = |t: &Tensor| -> Result<Option<Tensor>> {
        let g = t.grad();
        Ok(g.defined().then(|| g.f_reshape([n, -1])).transpose()?)
    };
    let zeros = || Tensor::f_zeros([n, 1], (Kind::Float, flat.logp.device()));
    let g_logp = match grad_of(&logp)? {
        Some(g) => g,
        None => zeros()?,
    };
    let g_ent = match (&entropy, needs.entropy_grad) {
        (Some(h), true) => grad_of(h)?,
        _ => None,
    };
    let g_topk = topk_logp.as_ref().map(grad_of).transpose()?.flatten();
    for (i, &(s, len)) in spans.iter().enumerate() {
        let grad = StatsGrad {
            logp: g_logp.f_narrow(0, s, len)?.f_squeeze_dim(-1)?,
            entropy: g_ent
                .as_ref()
                .map(|g| g.f_narrow(0, s, len)?.f_squeeze_dim(-1))
                .transpose()?,
            topk_logp: g_topk.as_ref().map(|g| g.f_narrow(0, s, len)).transpose()?,
        };
        let t = targets.f_narrow(0, s, len)?;
        src.backward(s, len, &mut |logits| {
            logits_grad(logits, &t, &parts[i], &grad)
        })?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token_stats_from_logits;
    use tch::Device;

    /// Logits held in memory, their gradient collected like autograd's `.grad`.
    struct Held {
        logits: Tensor,
        grad: Tensor,
    }

    impl ChunkedLogits for Held {
        fn rows(&self) -> i64 {
            self.logits.size()[0]
        }
        fn logits(&self, start: i64, len: i64) -> Result<Tensor> {
            Ok(self.logits.f_narrow(0, start, len)?)
        }
        fn backward(
            &self,
            start: i64,
            len: i64,
            grad_of: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
        ) -> Result<()> {
            let g = grad_of(&self.logits.f_narrow(0, start, len)?)?;
            let _ = self.grad.f_narrow(0, start, len)?.f_add_(&g)?;
            Ok(())
        }
    }

    fn loss(s: &TokenStats) -> Result<Tensor> {
        let per = &s.logp * (s.require_top1()? + 1.0)
            + s.require_topk_logp()?
                .f_sum_dim_intlist(-1, false, Kind::Float)?
                * 0.2
            + s.require_entropy()? * 0.4;
        let m = per.f_mean(Kind::Float)?;
        Ok(&m * &m)
    }

    #[test]
    fn fused_statistics_and_analytic_gradient_equal_autograd() {
        tch::manual_seed(1);
        let (b, t, v) = (3, 5, 40);
        let logits = Tensor::randn([b * t, v], (Kind::Float, Device::Cpu)) * 3.0;
        let targets = Tensor::randint(v, [b * t], (Kind::Int64, Device::Cpu));
        for (entropy_grad, topk) in [(true, 3), (false, 2), (false, 0)] {
            let needs = StatsNeeds {
                entropy: true,
                entropy_grad,
                topk,
                top1: true,
                reference: false,
            };
            let f = |s: &TokenStats| -> Result<Tensor> {
                if topk == 0 {
                    let m = (&s.logp + s.require_entropy()? * 0.4).f_mean(Kind::Float)?;
                    Ok(&m * &m)
                } else {
                    loss(s)
                }
            };
            let leaf = logits.copy().set_requires_grad(true);
            let s = token_stats_from_logits(&leaf, &targets, &needs).unwrap();
            let shaped = TokenStats {
                logp: s.logp.reshape([b, t]),
                entropy: s.entropy.map(|e| e.reshape([b, t])),
                topk_logp: s.topk_logp.map(|e| e.reshape([b, t, -1])),
                topk_ids: s.topk_ids.map(|e| e.reshape([b, t, -1])),
                is_top1: s.is_top1.map(|e| e.reshape([b, t])),
            };
            let want = f(&shaped).unwrap();
            want.backward();
            for chunk in [1, 4, 100] {
                let held = Held {
                    logits: logits.copy(),
                    grad: logits.zeros_like(),
                };
                let got =
                    backward_through_stats(&held, &targets, &[b, t], &needs, chunk, &mut |s| f(s))
                        .unwrap();
                let want_v = want.double_value(&[]);
                assert!(
                    (got - want_v).abs() < 1e-5 * want_v.abs().max(1.0),
                    "loss {got} vs {want_v}"
                );
                let diff = (&held.grad - leaf.grad()).abs().max().double_value(&[]);
                let scale = leaf.grad().abs().max().double_value(&[]);
                assert!(
                    diff < 1e-5 * scale.max(1e-3),
                    "entropy_grad {entropy_grad} topk {topk} chunk {chunk}: {diff} of {scale}"
                );
            }
        }
    }
}
