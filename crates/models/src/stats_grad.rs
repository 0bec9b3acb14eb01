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

use rlvr_core::{CoreError, Result, StatsNeeds, TokenStats};
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
    /// Asks `grad_of` for the loss gradient `[len, V]` of the logits of positions
    /// `start..start + len` (given the logits' values) and backpropagates it into their producer
    /// (gradients accumulate). `held` are those logits as [`ChunkedLogits::logits`] returned them,
    /// when they were kept; otherwise they are recomputed. The flag says whether the logits
    /// handed over may be overwritten (no other tensor reads them): the gradient then takes their
    /// storage instead of a second `[len, V]`.
    fn backward(
        &self,
        start: i64,
        len: i64,
        held: Option<Tensor>,
        grad_of: &mut dyn FnMut(Tensor, bool) -> Result<Tensor>,
    ) -> Result<()>;
}

/// Elements per row block of the element-wise passes: small enough (8 MiB of f32) to stay in
/// cache between the passes over one block, which is what makes separate ATen calls cheap.
const BLOCK_ELEMENTS: i64 = 1 << 21;

/// Row ranges `(start, len)` of `n` rows of `vocab` columns, one cache-sized block each.
fn row_blocks(n: i64, vocab: i64) -> Vec<(i64, i64)> {
    let rows = (BLOCK_ELEMENTS / vocab.max(1)).max(1);
    (0..n)
        .step_by(rows as usize)
        .map(|s| (s, rows.min(n - s)))
        .collect()
}

/// Column groups for [`fast_topk`]: the maximum of each group of `g` consecutive columns of `z`
/// `[N, V]` (one vectorised pass), when the vocabulary splits into at least `4k` such groups and
/// `k` is small; `None` otherwise. The row maximum is the maximum of these `V/g` values, so the
/// statistics need no second full pass for it.
pub struct GroupMaxima {
    /// Columns per group.
    pub group: i64,
    /// `[N, V/g]`.
    pub maxima: Tensor,
}

impl GroupMaxima {
    /// The group maxima of `z` for a top-`k` search, if the shortcut applies.
    pub fn of(z: &Tensor, k: i64) -> Result<Option<GroupMaxima>> {
        let (n, v) = (z.size()[0], z.size()[1]);
        let Some(g) = Self::group_size(v, k) else {
            return Ok(None);
        };
        let maxima = z.f_view([n, v / g, g])?.f_amax([-1].as_slice(), false)?;
        Ok(Some(GroupMaxima { group: g, maxima }))
    }

    /// The group size for a top-`k` search over `v` columns, if the shortcut applies.
    pub fn group_size(v: i64, k: i64) -> Option<i64> {
        [64, 32, 16]
            .into_iter()
            .find(|g| v % g == 0 && v / g >= 4 * k)
            .filter(|_| k > 0 && k <= 8)
    }

    /// The `k` largest values of `z` and their ids, descending: they lie in the `k` groups with
    /// the largest maxima, so the exact top-k is found among those `k·g` candidates.
    pub fn topk(&self, z: &Tensor, k: i64) -> Result<(Tensor, Tensor)> {
        let (n, g) = (z.size()[0], self.group);
        let (_, groups) = self.maxima.f_topk(k, -1, true, false)?;
        let offsets = Tensor::f_arange(g, (Kind::Int64, z.device()))?;
        let candidates = groups
            .f_mul_scalar(g)?
            .f_unsqueeze(-1)?
            .f_add(&offsets)?
            .f_view([n, k * g])?;
        let (vals, pos) = z
            .f_gather(-1, &candidates, false)?
            .f_topk(k, -1, true, true)?;
        Ok((vals, candidates.f_gather(-1, &pos, false)?))
    }
}

/// The `k` largest values of each row of `z` `[N, V]` and their ids, descending, through
/// [`GroupMaxima`] for small `k`. Equal to `topk` except, possibly, the order of tied values.
pub fn fast_topk(z: &Tensor, k: i64) -> Result<(Tensor, Tensor)> {
    match GroupMaxima::of(z, k)? {
        Some(groups) => groups.topk(z, k),
        None => Ok(z.f_topk(k, -1, true, true)?),
    }
}

/// Statistics of logits `[N, V]` and targets `[N]` without an autograd graph, in f32, one
/// cache-sized block of rows at a time: `lse = m + log Σ e^{z−m}`, `log p_t = z_t − lse`,
/// `H = lse − Σ p z`, top-K by [`fast_topk`]. On the CPU, lse, `Σ p z` and the top-K group maxima
/// come from one pass over each row ([`rlvr_kernels::softmax_stats`]); elsewhere from ATen
/// operations. Values equal [`rlvr_core::token_stats_from_logits`]'s up to rounding.
pub fn fused_token_stats(
    logits: &Tensor,
    targets: &Tensor,
    needs: &StatsNeeds,
) -> Result<TokenStats> {
    let _guard = tch::no_grad_guard();
    let vocab = logits.size().last().copied().unwrap_or(0);
    if needs.topk as i64 > vocab {
        return Err(CoreError::invalid(
            "topk",
            needs.topk,
            format!("must be <= vocabulary size {vocab}"),
        ));
    }
    let n = logits.size()[0];
    let parts = row_blocks(n, vocab)
        .into_iter()
        .map(|(s, len)| {
            block_stats(
                &logits.f_narrow(0, s, len)?,
                &targets.f_narrow(0, s, len)?,
                needs,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    if parts.is_empty() {
        return block_stats(logits, targets, needs);
    }
    Ok(TokenStats::cat(&parts, 0))
}

/// What the statistics need of the softmax of a block of rows: lse `[N, 1]`, the entropy `[N]`
/// when asked for, the top-K logits and ids `[N, K]` when `K > 0`.
struct RowSoftmax {
    lse: Tensor,
    entropy: Option<Tensor>,
    topk: Option<(Tensor, Tensor)>,
}

/// [`RowSoftmax`] in one pass over each row ([`rlvr_kernels::softmax_stats`], f32 CPU logits).
fn row_softmax_kernel(z: &Tensor, k: i64, want_entropy: bool) -> Result<RowSoftmax> {
    let row = rlvr_kernels::softmax_stats(z, k).map_err(|e| CoreError::Shape(e.to_string()))?;
    let entropy = want_entropy
        .then(|| row.lse.f_sub(&row.mean_logit))
        .transpose()?;
    Ok(RowSoftmax {
        lse: row.lse.f_unsqueeze(-1)?,
        entropy,
        topk: row.topk,
    })
}

/// [`RowSoftmax`] through ATen operations (any device): a pass over the block per step.
fn row_softmax_aten(z: &Tensor, k: i64, want_entropy: bool) -> Result<RowSoftmax> {
    let groups = if k > 0 { GroupMaxima::of(z, k)? } else { None };
    let topk = |groups: &Option<GroupMaxima>| -> Result<Option<(Tensor, Tensor)>> {
        Ok(match groups {
            Some(g) => Some(g.topk(z, k)?),
            None if k > 0 => Some(z.f_topk(k, -1, true, true)?),
            None => None,
        })
    };
    if !want_entropy {
        return Ok(RowSoftmax {
            lse: z.f_logsumexp([-1].as_slice(), true)?,
            entropy: None,
            topk: topk(&groups)?,
        });
    }
    let max = match &groups {
        Some(g) => g.maxima.f_amax([-1].as_slice(), true)?,
        None => z.f_amax([-1].as_slice(), true)?,
    };
    let mut e = z.f_sub(&max)?;
    let _ = e.f_exp_()?;
    let sum = e.f_sum_dim_intlist(-1, true, Kind::Float)?;
    let lse = max.f_add(&sum.f_log()?)?;
    let _ = e.f_mul_(z)?;
    let ez = e.f_sum_dim_intlist(-1, true, Kind::Float)?;
    let h = lse.f_sub(&ez.f_div(&sum)?)?.f_squeeze_dim(-1)?;
    Ok(RowSoftmax {
        lse,
        entropy: Some(h),
        topk: topk(&groups)?,
    })
}

/// [`fused_token_stats`] of one block of rows.
fn block_stats(logits: &Tensor, targets: &Tensor, needs: &StatsNeeds) -> Result<TokenStats> {
    let z = logits.f_to_kind(Kind::Float)?;
    let k = needs.topk as i64;
    let want_entropy = needs.entropy || needs.entropy_grad;
    let RowSoftmax { lse, entropy, topk } = if z.device() == tch::Device::Cpu {
        row_softmax_kernel(&z, k, want_entropy)?
    } else {
        row_softmax_aten(&z, k, want_entropy)?
    };
    let idx = targets.f_to_kind(Kind::Int64)?.f_unsqueeze(-1)?;
    let logp = z
        .f_gather(-1, &idx, false)?
        .f_sub(&lse)?
        .f_squeeze_dim(-1)?;
    let (topk_logp, topk_ids) = match topk {
        Some((vals, ids)) => (Some(vals.f_sub(&lse)?), Some(ids)),
        None => (None, None),
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
    let (n, vocab) = (logits.size()[0], logits.size()[1]);
    let out = Tensor::f_empty([n, vocab], (Kind::Float, logits.device()))?;
    grad_into(&out, logits, targets, stats, grad)?;
    Ok(out)
}

/// [`logits_grad`] written over the logits themselves (f32, contiguous; their values are gone
/// afterwards): no second `[N, V]` tensor, which is one chunk's logits less at the update's peak.
/// Returns the gradient (the same storage). For logits that another tensor may still read, use
/// [`logits_grad`].
pub fn logits_grad_in_place(
    logits: Tensor,
    targets: &Tensor,
    stats: &TokenStats,
    grad: &StatsGrad,
) -> Result<Tensor> {
    if logits.kind() != Kind::Float || !logits.is_contiguous() {
        return logits_grad(&logits, targets, stats, grad);
    }
    grad_into(&logits, &logits, targets, stats, grad)?;
    Ok(logits)
}

/// The gradient of `logits` into `out` (the same tensor, or another of its shape), row block by
/// row block: each block is read before it is written.
fn grad_into(
    out: &Tensor,
    logits: &Tensor,
    targets: &Tensor,
    stats: &TokenStats,
    grad: &StatsGrad,
) -> Result<()> {
    let _guard = tch::no_grad_guard();
    let (n, vocab) = (logits.size()[0], logits.size()[1]);
    if grad.entropy.is_some() && stats.entropy.is_none() {
        return Err(CoreError::Shape(
            "an entropy gradient needs the entropy statistic".into(),
        ));
    }
    for (s, len) in row_blocks(n, vocab) {
        let rows = |t: &Tensor| t.f_narrow(0, s, len);
        let block = StatsGrad {
            logp: rows(&grad.logp)?,
            entropy: grad.entropy.as_ref().map(rows).transpose()?,
            topk_logp: grad.topk_logp.as_ref().map(rows).transpose()?,
        };
        let mut p = rows(out)?;
        block_grad(
            &mut p,
            &rows(logits)?.f_to_kind(Kind::Float)?,
            &rows(targets)?,
            &rows(&stats.logp)?,
            stats.entropy.as_ref().map(rows).transpose()?.as_ref(),
            stats.topk_ids.as_ref().map(rows).transpose()?.as_ref(),
            &block,
        )?;
    }
    Ok(())
}

/// [`logits_grad`] of one block of rows, written into `p` (a view of the output, which may be
/// `z` itself: `z` is read only before `p` is first written).
fn block_grad(
    p: &mut Tensor,
    z: &Tensor,
    targets: &Tensor,
    logp: &Tensor,
    entropy: Option<&Tensor>,
    topk_ids: Option<&Tensor>,
    grad: &StatsGrad,
) -> Result<()> {
    let idx = targets.f_to_kind(Kind::Int64)?.f_unsqueeze(-1)?;
    // lse from the target's logit and log-prob: no second reduction over the vocabulary.
    let lse = z.f_gather(-1, &idx, false)?.f_sub(&logp.f_unsqueeze(-1)?)?;
    if p.data_ptr() != z.data_ptr() {
        p.f_copy_(z)?;
    }
    // p = log softmax(z), then softmax(z) times the coefficients.
    let _ = p.f_sub_(&lse)?;
    // Every statistic contributes −p times its gradient (the entropy scaled by log p + H).
    let mut coef = grad.logp.f_unsqueeze(-1)?;
    if let Some(g) = &grad.topk_logp {
        coef = coef.f_add(&g.f_sum_dim_intlist(-1, true, Kind::Float)?)?;
    }
    match (&grad.entropy, entropy) {
        (Some(g_ent), Some(h)) => {
            // −p ⊙ (coef + g_H (log p + H))
            let g_ent = g_ent.f_unsqueeze(-1)?;
            let shift = h.f_unsqueeze(-1)?.f_mul(&g_ent)?.f_add(&coef)?;
            let w = p.f_mul(&g_ent.f_neg()?)?.f_sub(&shift)?;
            let _ = p.f_exp_()?;
            let _ = p.f_mul_(&w)?;
        }
        _ => {
            let _ = p.f_exp_()?;
            let _ = p.f_mul_(&coef.f_neg()?)?;
        }
    }
    let _ = p.f_scatter_add_(-1, &idx, &grad.logp.f_unsqueeze(-1)?)?;
    if let (Some(g), Some(ids)) = (&grad.topk_logp, topk_ids) {
        let _ = p.f_scatter_add_(-1, ids, g)?;
    }
    Ok(())
}

/// `n` rows in the fewest chunks of at most `chunk` rows, of equal sizes (± 1).
fn even_spans(n: i64, chunk: i64) -> Vec<(i64, i64)> {
    let count = (n + chunk - 1) / chunk;
    (0..count)
        .map(|i| (i * n / count, (i + 1) * n / count - i * n / count))
        .collect()
}

/// Bytes of the f32 logits [`backward_through_stats`] keeps besides the last chunk's (which it
/// always reuses) for `n` rows over `vocab` columns in chunks of at most `chunk`, within
/// `keep_bytes`: whole chunks, the latest ones before the last (`i64::MAX`: all of them).
pub fn kept_logits_bytes(n: i64, chunk: i64, vocab: i64, keep_bytes: i64) -> i64 {
    let spans = even_spans(n, chunk.max(1));
    let mut kept = 0i64;
    for &(_, len) in spans.iter().rev().skip(1) {
        let bytes = len * vocab * 4;
        if kept.saturating_add(bytes) > keep_bytes {
            break;
        }
        kept += bytes;
    }
    kept
}

/// Computes statistics of all positions of `src` in chunks of at most `chunk`, evaluates
/// `loss_of(stats)` with the statistics shaped `[shape..]` (e.g. `[B, T]`), and pushes the loss
/// gradient into `src` chunk by chunk. Returns the loss value. The gradient pass runs the chunks
/// last to first and is handed the logits kept from the statistics pass instead of recomputing
/// them: always the last chunk's (still in memory), and the chunks before it while they fit in
/// `keep_bytes`. Peak memory is `keep_bytes` plus two chunks' logits plus the statistics, whatever
/// the number of positions.
pub fn backward_through_stats(
    src: &dyn ChunkedLogits,
    targets: &Tensor,
    shape: &[i64],
    needs: &StatsNeeds,
    chunk: i64,
    keep_bytes: i64,
    loss_of: &mut dyn FnMut(&TokenStats) -> Result<Tensor>,
) -> Result<f64> {
    let n = src.rows();
    let spans = even_spans(n, chunk.max(1));
    let mut parts = Vec::with_capacity(spans.len());
    // Logits of the latest chunks, oldest first, with their sizes in bytes.
    let mut kept: std::collections::VecDeque<(usize, Tensor, i64)> = Default::default();
    for (i, &(s, len)) in spans.iter().enumerate() {
        // Before the next chunk exists, the kept ones shrink to the budget (oldest leave first).
        while kept.iter().map(|k| k.2).sum::<i64>() > keep_bytes.max(0) {
            kept.pop_front();
        }
        let logits = src.logits(s, len)?;
        parts.push(fused_token_stats(
            &logits,
            &targets.f_narrow(0, s, len)?,
            needs,
        )?);
        let bytes = logits.numel() as i64 * logits.kind().elt_size_in_bytes() as i64;
        kept.push_back((i, logits, bytes));
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
    for (i, &(s, len)) in spans.iter().enumerate().rev() {
        let grad = StatsGrad {
            logp: g_logp.f_narrow(0, s, len)?.f_squeeze_dim(-1)?,
            entropy: g_ent
                .as_ref()
                .map(|g| g.f_narrow(0, s, len)?.f_squeeze_dim(-1))
                .transpose()?,
            topk_logp: g_topk.as_ref().map(|g| g.f_narrow(0, s, len)).transpose()?,
        };
        let t = targets.f_narrow(0, s, len)?;
        let held = match kept.back() {
            Some((j, _, _)) if *j == i => kept.pop_back().map(|k| k.1),
            _ => None,
        };
        src.backward(s, len, held, &mut |logits, overwrite| {
            if overwrite {
                logits_grad_in_place(logits, &t, &parts[i], &grad)
            } else {
                logits_grad(&logits, &t, &parts[i], &grad)
            }
        })?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Logits held in memory, their gradient collected like autograd's `.grad`; counts the
    /// chunks whose logits the gradient pass was handed rather than recomputing them.
    struct Held {
        logits: Tensor,
        grad: Tensor,
        handed: std::cell::Cell<usize>,
        /// Hand the gradient a copy of each chunk's logits to overwrite (as the LM head does).
        overwrite: bool,
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
            held: Option<Tensor>,
            grad_of: &mut dyn FnMut(Tensor, bool) -> Result<Tensor>,
        ) -> Result<()> {
            let logits = match held {
                Some(h) => {
                    assert_eq!(
                        h.size(),
                        [len, self.logits.size()[1]],
                        "kept logits of another chunk"
                    );
                    self.handed.set(self.handed.get() + 1);
                    h
                }
                None => self.logits.f_narrow(0, start, len)?,
            };
            let g = if self.overwrite {
                let own = logits.copy();
                let at = own.data_ptr();
                let g = grad_of(own, true)?;
                assert_eq!(g.data_ptr(), at, "the gradient took the logits' storage");
                g
            } else {
                grad_of(logits, false)?
            };
            let _ = self.grad.f_narrow(0, start, len)?.f_add_(&g)?;
            Ok(())
        }
    }

    /// [`rlvr_core::token_stats_from_logits`] in f64: the exact reference.
    fn stats_f64(logits: &Tensor, targets: &Tensor, needs: &StatsNeeds) -> TokenStats {
        let topk = needs.topk;
        let logp_all = logits.log_softmax(-1, Kind::Double);
        let logp = logp_all
            .gather(-1, &targets.unsqueeze(-1), false)
            .squeeze_dim(-1);
        let entropy = -(logp_all.exp() * &logp_all).sum_dim_intlist(-1, false, Kind::Double);
        let entropy = if needs.entropy_grad {
            entropy
        } else {
            entropy.detach()
        };
        let (topk_logp, topk_ids) = if topk > 0 {
            let (_, ids) = logits.detach().topk(topk as i64, -1, true, true);
            (Some(logp_all.gather(-1, &ids, false)), Some(ids))
        } else {
            (None, None)
        };
        let is_top1 = logits
            .detach()
            .argmax(-1, false)
            .eq_tensor(targets)
            .to_kind(Kind::Double);
        TokenStats {
            logp,
            entropy: Some(entropy),
            topk_logp,
            topk_ids,
            is_top1: Some(is_top1),
        }
    }

    fn loss(s: &TokenStats) -> Result<Tensor> {
        let per = &s.logp * (s.require_top1()? + 1.0)
            + s.require_topk_logp()?
                .f_sum_dim_intlist(-1, false, Kind::Float)?
                * 0.2
            + s.require_entropy()? * 0.4;
        let m = per.f_mean(per.kind())?;
        Ok(&m * &m)
    }

    #[test]
    fn fast_topk_equals_topk() {
        tch::manual_seed(2);
        for (n, v, k) in [
            (7, 512, 3),
            (5, 151936, 5),
            (4, 96, 1),
            (3, 30, 3),
            (6, 4096, 8),
        ] {
            let z = Tensor::randn([n, v], (Kind::Float, Device::Cpu));
            let (want_v, want_i) = z.topk(k, -1, true, true);
            let (got_v, got_i) = fast_topk(&z, k).unwrap();
            assert!(got_v.equal(&want_v), "{n}x{v} k={k}: values");
            assert!(got_i.equal(&want_i), "{n}x{v} k={k}: ids");
        }
        // The top elements crowded into one group are still all found.
        let z = Tensor::zeros([1, 1024], (Kind::Float, Device::Cpu));
        z.narrow(1, 64, 3)
            .copy_(&Tensor::from_slice(&[3.0f32, 2.0, 1.0]));
        let (_, ids) = fast_topk(&z, 3).unwrap();
        assert_eq!(
            Vec::<i64>::try_from(ids.reshape([-1])).unwrap(),
            vec![64, 65, 66]
        );
    }

    #[test]
    fn kernel_and_aten_softmax_statistics_agree() {
        tch::manual_seed(4);
        for (n, v, k, entropy) in [
            (6, 4096, 3, true),
            (5, 40, 2, true),
            (3, 1000, 0, false),
            (4, 300, 12, false),
        ] {
            let z = Tensor::randn([n, v], (Kind::Float, Device::Cpu)) * 5.0;
            let a = row_softmax_aten(&z, k, entropy).unwrap();
            let b = row_softmax_kernel(&z, k, entropy).unwrap();
            assert!(b.lse.allclose(&a.lse, 1e-5, 1e-5, false), "{n}x{v}: lse");
            assert_eq!(a.entropy.is_some(), entropy);
            assert_eq!(b.entropy.is_some(), entropy);
            if let (Some(a), Some(b)) = (&a.entropy, &b.entropy) {
                assert!(b.allclose(a, 1e-5, 1e-5, false), "{n}x{v}: entropy");
            }
            match (a.topk, b.topk) {
                (Some(a), Some(b)) => {
                    assert!(a.0.equal(&b.0), "{n}x{v}: top-k values");
                    assert!(a.1.equal(&b.1), "{n}x{v}: top-k ids");
                }
                (None, None) => assert_eq!(k, 0),
                _ => panic!("{n}x{v}: one path found a top-k, the other not"),
            }
        }
    }

    #[test]
    fn fused_statistics_and_analytic_gradient_equal_autograd() {
        tch::manual_seed(1);
        // v = 262144: 8 rows per cache block, so the 15 rows span two blocks.
        let (b, t) = (3, 5);
        for (v, entropy_grad, topk) in [
            (40, true, 3),
            (40, false, 2),
            (40, false, 0),
            (262_144, true, 3),
        ] {
            let logits = Tensor::randn([b * t, v], (Kind::Float, Device::Cpu)) * 3.0;
            let targets = Tensor::randint(v, [b * t], (Kind::Int64, Device::Cpu));
            let needs = StatsNeeds {
                entropy: true,
                entropy_grad,
                topk,
                top1: true,
                reference: false,
            };
            let f = |s: &TokenStats| -> Result<Tensor> {
                if topk == 0 {
                    let m = (&s.logp + s.require_entropy()? * 0.4).f_mean(s.logp.kind())?;
                    Ok(&m * &m)
                } else {
                    loss(s)
                }
            };
            // The reference: autograd over the statistics in f64 (the chunked path is f32).
            let leaf = logits.to_kind(Kind::Double).set_requires_grad(true);
            let s = stats_f64(&leaf, &targets, &needs);
            let shaped = TokenStats {
                logp: s.logp.reshape([b, t]),
                entropy: s.entropy.map(|e| e.reshape([b, t])),
                topk_logp: s.topk_logp.map(|e| e.reshape([b, t, -1])),
                topk_ids: s.topk_ids.map(|e| e.reshape([b, t, -1])),
                is_top1: s.is_top1.map(|e| e.reshape([b, t])),
            };
            let want = f(&shaped).unwrap();
            want.backward();
            // (chunk rows, logits kept besides the last chunk's in bytes, chunks handed over)
            let row = v * 4;
            let n = b * t;
            let cases = [
                (1, 0, 1),
                (4, 0, 1),
                (4, 4 * row, 2),
                (4, 8 * row, 3),
                (4, i64::MAX, ((n + 3) / 4) as usize),
                (100, 0, 1),
            ];
            for ((chunk, keep, handed), overwrite) in
                cases.into_iter().flat_map(|c| [(c, false), (c, true)])
            {
                let held = Held {
                    logits: logits.copy(),
                    grad: logits.zeros_like(),
                    handed: std::cell::Cell::new(0),
                    overwrite,
                };
                let got = backward_through_stats(
                    &held,
                    &targets,
                    &[b, t],
                    &needs,
                    chunk,
                    keep,
                    &mut |s| f(s),
                )
                .unwrap();
                assert_eq!(held.handed.get(), handed, "chunk {chunk} keep {keep}");
                let want_v = want.double_value(&[]);
                assert!(
                    (got - want_v).abs() < 1e-5 * want_v.abs().max(1.0),
                    "loss {got} vs {want_v}"
                );
                let diff = (&held.grad - leaf.grad()).abs().max().double_value(&[]);
                let scale = leaf.grad().abs().max().double_value(&[]);
                assert!(
                    diff < 1e-5 * scale.max(1e-3),
                    "v {v} entropy_grad {entropy_grad} topk {topk} chunk {chunk} overwrite {overwrite}: {diff} of {scale}"
                );
            }
        }
    }
}
