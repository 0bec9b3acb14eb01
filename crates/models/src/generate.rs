//! Batched generation with an external KV cache: prefill the left-padded prompts, then decode one
//! token per step at per-row positions, stopping rows at stop tokens or `max_new_tokens`.

use crate::error::Result;
use crate::sampling::{filtered_logprobs, Sampler};
use crate::transformer::{positions_from_mask, KvCache, Transformer};
use rlvr_core::{FinishReason, Generation, SamplingConfig};
use tch::{Kind, Tensor};

/// Samples one response per row of the left-padded `prompt_ids` `[B, P]` (mask `[B, P]`).
/// Responses are right-padded with `pad`; a stop token is kept as the response's last token.
pub fn generate(
    model: &Transformer,
    prompt_ids: &Tensor,
    prompt_mask: &Tensor,
    cfg: &SamplingConfig,
    stop_tokens: &[i64],
    pad: i64,
) -> Result<Generation> {
    let _guard = tch::no_grad_guard();
    let b = prompt_ids.size()[0];
    let device = prompt_ids.device();
    let mut sampler = Sampler::new(cfg.seed);
    let mut cache = KvCache::new();
    let mut positions = positions_from_mask(prompt_mask)?;
    let mut key_mask = prompt_mask.f_to_kind(Kind::Int64)?;
    let hidden = model.forward_hidden(prompt_ids, &positions, &key_mask, Some(&mut cache))?;
    let mut logits = model.logits(&hidden.f_select(1, -1)?)?;
    let mut tokens: Vec<Vec<i64>> = vec![Vec::new(); b as usize];
    let mut logps: Vec<Vec<f64>> = vec![Vec::new(); b as usize];
    let mut finish = vec![FinishReason::Length; b as usize];
    let mut done = vec![false; b as usize];
    for _ in 0..cfg.max_new_tokens {
        let lp = filtered_logprobs(&logits, cfg)?;
        let (ids, chosen) = sampler.sample(&lp)?;
        for r in 0..b as usize {
            if done[r] {
                continue;
            }
            tokens[r].push(ids[r]);
            logps[r].push(chosen[r]);
            if stop_tokens.contains(&ids[r]) {
                done[r] = true;
                finish[r] = FinishReason::Stop;
            }
        }
        if done.iter().all(|d| *d) {
            break;
        }
        let next = Tensor::from_slice(&ids)
            .f_to_device(device)?
            .f_unsqueeze(1)?;
        positions = positions.f_select(1, -1)?.f_unsqueeze(1)?.f_add_scalar(1)?;
        key_mask = Tensor::f_cat(&[&key_mask, &next.f_ones_like()?], 1)?;
        let hidden = model.forward_hidden(&next, &positions, &key_mask, Some(&mut cache))?;
        logits = model.logits(&hidden.f_select(1, -1)?)?;
    }
    let t = tokens.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = vec![pad; b as usize * t];
    let mut mask = vec![0f32; b as usize * t];
    let mut lp = vec![0f32; b as usize * t];
    for r in 0..b as usize {
        for (j, (&id, &l)) in tokens[r].iter().zip(&logps[r]).enumerate() {
            ids[r * t + j] = id;
            mask[r * t + j] = 1.0;
            lp[r * t + j] = l as f32;
        }
    }
    let shape = [b, t as i64];
    Ok(Generation {
        tokens: Tensor::from_slice(&ids)
            .f_reshape(shape)?
            .f_to_device(device)?,
        mask: Tensor::from_slice(&mask)
            .f_reshape(shape)?
            .f_to_device(device)?,
        logp: Tensor::from_slice(&lp)
            .f_reshape(shape)?
            .f_to_device(device)?,
        finish,
    })
}
