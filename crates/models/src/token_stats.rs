//! Token statistics of response tokens from hidden states, in chunks over tokens: each chunk goes
//! through the LM head and core's [`token_stats_from_logits`], so without gradients peak memory is
//! bounded by chunk × vocabulary instead of tokens × vocabulary (with gradients, autograd keeps
//! each chunk's log-softmax for the backward pass; micro-batching bounds that).

use crate::error::Result;
use crate::transformer::{positions_from_mask, Transformer};
use rlvr_core::{token_stats_from_logits, SequenceBatch, StatsNeeds, TokenStats};
use tch::Tensor;

/// Default number of tokens per chunk.
pub const DEFAULT_CHUNK: i64 = 1024;

/// Statistics `[B, L − P]` of the response tokens of `batch`, `chunk` tokens at a time.
pub fn response_stats(
    model: &Transformer,
    batch: &SequenceBatch,
    needs: &StatsNeeds,
    chunk: i64,
) -> Result<TokenStats> {
    let size = batch.input_ids.size();
    let (b, l) = (size[0], size[1]);
    let p = batch.prompt_len;
    if p < 1 || p >= l {
        return Err(rlvr_core::CoreError::Shape(format!(
            "prompt_len {p} must be in [1, {l}) for sequences of length {l}"
        ))
        .into());
    }
    let positions = positions_from_mask(&batch.attention_mask)?;
    let hidden = model.forward_hidden(&batch.input_ids, &positions, &batch.attention_mask, None)?;
    let t = l - p;
    let h = hidden.f_narrow(1, p - 1, t)?.f_reshape([b * t, -1])?;
    let targets = batch.input_ids.f_narrow(1, p, t)?.f_reshape([b * t])?;
    chunked_stats(model, &h, &targets, needs, chunk)?.reshape_rows(b, t)
}

/// Statistics of flat hidden states `[N, H]` and targets `[N]`, `chunk` rows at a time.
pub fn chunked_stats(
    model: &Transformer,
    hidden: &Tensor,
    targets: &Tensor,
    needs: &StatsNeeds,
    chunk: i64,
) -> Result<TokenStats> {
    let n = hidden.size()[0];
    let chunk = chunk.max(1);
    let mut parts = Vec::new();
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let logits = model.logits(&hidden.f_narrow(0, start, len)?)?;
        parts.push(token_stats_from_logits(
            &logits,
            &targets.f_narrow(0, start, len)?,
            needs,
        )?);
        start += len;
    }
    Ok(TokenStats::cat(&parts, 0))
}

/// Reshapes flat `[N, ...]` statistics to `[B, T, ...]`.
trait ReshapeRows {
    fn reshape_rows(self, b: i64, t: i64) -> Result<TokenStats>;
}

impl ReshapeRows for TokenStats {
    fn reshape_rows(self, b: i64, t: i64) -> Result<TokenStats> {
        let two = |x: Tensor| x.f_reshape([b, t]);
        let three = |x: Tensor| x.f_reshape([b, t, -1]);
        Ok(TokenStats {
            logp: two(self.logp)?,
            entropy: self.entropy.map(two).transpose()?,
            topk_logp: self.topk_logp.map(three).transpose()?,
            topk_ids: self.topk_ids.map(three).transpose()?,
            is_top1: self.is_top1.map(two).transpose()?,
        })
    }
}
