//! Batched generation with a preallocated KV cache (docs/performance.md): each distinct prompt is
//! prefilled once and its cache expanded to the rows that share it; then one token per step is
//! decoded at per-row positions. Rows stop at stop tokens or `max_new_tokens`, and finished rows
//! leave the batch at the step they finish (rows from the batch's end take their places in the
//! cache, [`KvCache::compact`]), so decode cost follows the live rows. Each row samples from its
//! own seeded stream, so compaction never changes a sample.

use crate::error::Result;
use crate::rollout_record::RolloutRecord;
use crate::sampling::{filtered_logprobs, Sampler};
use crate::transformer::{positions_from_mask, KvCache, Transformer};
use rlvr_core::{FinishReason, Generation, SamplingConfig};
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// Distinct prompts of `[B, P]` ids and mask: the first row of each distinct prompt, and for
/// every row the position of its prompt in that list.
fn distinct_prompts(ids: &Tensor, mask: &Tensor) -> Result<(Vec<i64>, Vec<i64>)> {
    let (b, p) = (ids.size()[0], ids.size()[1]);
    let ids = Vec::<i64>::try_from(&ids.f_to_device(Device::Cpu)?.f_reshape([-1])?)?;
    let mask = Vec::<i64>::try_from(
        &mask
            .f_to_device(Device::Cpu)?
            .f_to_kind(Kind::Int64)?
            .f_reshape([-1])?,
    )?;
    let mut first: HashMap<Vec<i64>, i64> = HashMap::new();
    let (mut unique, mut expand) = (Vec::new(), Vec::with_capacity(b as usize));
    for r in 0..b as usize {
        let row = r * p as usize..(r + 1) * p as usize;
        let key: Vec<i64> = ids[row.clone()]
            .iter()
            .zip(&mask[row])
            .map(|(&id, &m)| if m > 0 { id } else { -1 })
            .collect();
        let next = unique.len() as i64;
        let slot = *first.entry(key).or_insert(next);
        if slot == next {
            unique.push(r as i64);
        }
        expand.push(slot);
    }
    Ok((unique, expand))
}

/// Bytes a rollout of `rows` responses of up to `positions` positions holds at least: its KV
/// cache, the f32 logits and log-probabilities of one decode step, and the weights packed for
/// generation ([`Transformer::pack_for_generation`]).
pub fn rollout_bytes(model: &Transformer, rows: i64, positions: i64) -> u128 {
    let cfg = model.config();
    let elt = model.compute_kind().elt_size_in_bytes() as u128;
    let packed = model.generation_pack_bytes();
    let rows = rows.max(0) as u128;
    let cache = rows
        * cfg.num_layers as u128
        * 2
        * cfg.num_kv_heads as u128
        * positions.max(0) as u128
        * cfg.head_dim as u128
        * elt;
    cache + rows * cfg.vocab_size as u128 * 4 * 2 + packed
}

/// Refuses, before anything is allocated, a CPU rollout whose KV cache alone would not fit the
/// memory available: the kernel would otherwise kill the process part-way through the
/// allocation (what a too-large `--set train.max_new_tokens=8192` did).
pub fn check_rollout_fits(
    model: &Transformer,
    rows: i64,
    positions: i64,
    device: Device,
) -> Result<()> {
    if device != Device::Cpu {
        return Ok(());
    }
    let Some(available) = crate::checkpoint::available_memory() else {
        return Ok(());
    };
    let cache = rollout_bytes(model, rows, positions);
    if cache > available as u128 {
        let gib = |b: u128| b as f64 / (1u64 << 30) as f64;
        return Err(crate::error::ModelError::TooLarge(format!(
            "generating {rows} responses together, each up to {positions} positions (prompt + \
             new tokens), needs {:.1} GiB (KV cache, logits and packed weights) but {:.1} GiB of memory is \
             available; \
             lower the responses generated together (train.prompts_per_step × \
             train.samples_per_prompt in training, --batch-rows in `rlvr sample`) or \
             train.max_new_tokens",
            gib(cache),
            gib(available as u128)
        )));
    }
    Ok(())
}

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
    sample(model, prompt_ids, prompt_mask, cfg, stop_tokens, pad, None)
}

/// [`generate`], also recording the forward passes for the update
/// ([`crate::rollout_record`]) when the model can ([`Transformer::records_generation`]) and the
/// record takes at most `budget_bytes`; the samples are the same either way.
pub fn generate_recording(
    model: &Transformer,
    prompt_ids: &Tensor,
    prompt_mask: &Tensor,
    cfg: &SamplingConfig,
    stop_tokens: &[i64],
    pad: i64,
    budget_bytes: u64,
) -> Result<(Generation, Option<RolloutRecord>)> {
    let (b, p) = (prompt_ids.size()[0], prompt_ids.size()[1]);
    let device = prompt_ids.device();
    let positions = p + cfg.max_new_tokens.max(0);
    if !model.records_generation(device)
        || RolloutRecord::bytes(model, b, positions) > budget_bytes as u128
    {
        let gen = generate(model, prompt_ids, prompt_mask, cfg, stop_tokens, pad)?;
        return Ok((gen, None));
    }
    let mut record = RolloutRecord::new(model, b, positions, p, device)?;
    let gen = sample(
        model,
        prompt_ids,
        prompt_mask,
        cfg,
        stop_tokens,
        pad,
        Some(&mut record),
    )?;
    Ok((gen, Some(record)))
}

/// The forward pass of [`generate`] over `ids` at `positions` after the cache, recording each
/// layer (and the final residual) into `record`'s rows: for row `r` the pass's row `rows[r]`
/// (`rows` `None`: row `r` itself) at the cache's column.
fn forward_hidden(
    model: &Transformer,
    (ids, positions, key_mask): (&Tensor, &Tensor, &Tensor),
    cache: &mut KvCache,
    record: Option<&mut RolloutRecord>,
    (rows, expand): (&Tensor, Option<&Tensor>),
) -> Result<Tensor> {
    let Some(record) = record else {
        return model.forward_hidden(ids, positions, key_mask, Some(cache));
    };
    let column = cache.len();
    let spread = |t: Tensor| -> Result<Tensor> {
        Ok(match expand {
            Some(e) => t.f_index_select(0, e)?,
            None => t,
        })
    };
    let (hidden, last) =
        model.forward_hidden_recording(ids, positions, key_mask, cache, &mut |i, acts| {
            let acts = crate::transformer::LayerActivations {
                x: spread(acts.x)?,
                q: spread(acts.q)?,
                k: spread(acts.k)?,
                v: spread(acts.v)?,
                out: spread(acts.out)?,
                lse: spread(acts.lse)?,
                mid: spread(acts.mid)?,
                gate: spread(acts.gate)?,
                up: spread(acts.up)?,
            };
            record.write_layer(i, acts, column, rows)
        })?;
    record.write_last(&spread(last)?, column, rows)?;
    Ok(hidden)
}

fn sample(
    model: &Transformer,
    prompt_ids: &Tensor,
    prompt_mask: &Tensor,
    cfg: &SamplingConfig,
    stop_tokens: &[i64],
    pad: i64,
    mut record: Option<&mut RolloutRecord>,
) -> Result<Generation> {
    let _guard = tch::no_grad_guard();
    let (b, p) = (prompt_ids.size()[0], prompt_ids.size()[1]);
    let device = prompt_ids.device();
    let max_new = cfg.max_new_tokens.max(0);
    check_rollout_fits(model, b, p + max_new, device)?;
    let _pack = model.pack_for_generation(b)?;
    let mut sampler = Sampler::from_stream(cfg.seed, cfg.first_stream);
    let mut cache = KvCache::with_capacity(p + max_new);

    // Prefill each distinct prompt once, then give every row its prompt's cache and logits.
    let (unique, expand) = distinct_prompts(prompt_ids, prompt_mask)?;
    let unique = Tensor::from_slice(&unique).f_to_device(device)?;
    let expand = Tensor::from_slice(&expand).f_to_device(device)?;
    let umask = prompt_mask
        .f_index_select(0, &unique)?
        .f_to_kind(Kind::Int64)?;
    let upos = positions_from_mask(&umask)?;
    let all_rows = Tensor::f_arange(b, (Kind::Int64, device))?;
    let hidden = forward_hidden(
        model,
        (&prompt_ids.f_index_select(0, &unique)?, &upos, &umask),
        &mut cache,
        record.as_deref_mut(),
        (&all_rows, Some(&expand)),
    )?;
    let mut logits = model
        .logits(&hidden.f_select(1, -1)?)?
        .f_index_select(0, &expand)?;
    cache.select_rows(&expand)?;
    let mut last_pos = upos.f_select(1, -1)?.f_index_select(0, &expand)?;
    let mut key_mask = Tensor::f_zeros([b, p + max_new], (Kind::Int64, device))?;
    key_mask
        .f_narrow(1, 0, p)?
        .f_copy_(&umask.f_index_select(0, &expand)?)?;

    let mut tokens: Vec<Vec<i64>> = vec![Vec::new(); b as usize];
    let mut logps: Vec<Vec<f64>> = vec![Vec::new(); b as usize];
    let mut finish = vec![FinishReason::Length; b as usize];
    let mut done = vec![false; b as usize];
    // Original row of each row of the current batch.
    let mut live: Vec<usize> = (0..b as usize).collect();
    for step in 0..max_new {
        let lp = filtered_logprobs(&logits, cfg)?;
        let (ids, chosen) = sampler.sample_rows(&lp, &live)?;
        for (j, &r) in live.iter().enumerate() {
            if done[r] {
                continue;
            }
            tokens[r].push(ids[j]);
            logps[r].push(chosen[j]);
            if stop_tokens.contains(&ids[j]) {
                done[r] = true;
                finish[r] = FinishReason::Stop;
            }
        }
        let running: Vec<usize> = (0..live.len()).filter(|&j| !done[live[j]]).collect();
        if running.is_empty() || step + 1 == max_new {
            break;
        }
        let mut next: Vec<i64> = ids;
        if running.len() < live.len() {
            // Finished rows leave the batch at once; rows from its end take their places.
            let alive: Vec<bool> = live.iter().map(|&r| !done[r]).collect();
            let order = cache.compact(&alive)?;
            let index = Tensor::from_slice(&order).f_to_device(device)?;
            key_mask = key_mask.f_index_select(0, &index)?;
            last_pos = last_pos.f_index_select(0, &index)?;
            next = order.iter().map(|&j| next[j as usize]).collect();
            live = order.iter().map(|&j| live[j as usize]).collect();
        }
        let next = Tensor::from_slice(&next)
            .f_to_device(device)?
            .f_unsqueeze(1)?;
        last_pos = last_pos.f_add_scalar(1)?;
        let width = cache.len() + 1;
        let _ = key_mask.f_narrow(1, width - 1, 1)?.f_fill_(1)?;
        let live_rows = Tensor::from_slice(&live.iter().map(|&r| r as i64).collect::<Vec<_>>())
            .f_to_device(device)?;
        let hidden = forward_hidden(
            model,
            (
                &next,
                &last_pos.f_unsqueeze(1)?,
                &key_mask.f_narrow(1, 0, width)?,
            ),
            &mut cache,
            record.as_deref_mut(),
            (&live_rows, None),
        )?;
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
        record: None,
    })
}
