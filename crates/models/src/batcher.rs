//! Continuous batching, the decode loop of `rlvr serve` (docs/rollouts.md): requests join the
//! running batch between decode steps. A joining request's prompt is prefilled once and its cache
//! expanded to its `n` samples, then stacked under the running rows' caches, right-aligned (each
//! row's keys end at the same column; the key mask hides the columns left of a row's prompt, and
//! positions are per row, so where a row sits in the cache never changes what it computes).
//! Finished rows leave the batch as in [`crate::generate`]. Sample `i` of a request draws from
//! stream `first_stream + i` of its seed ([`RowStream`]): the samples equal the in-process
//! generation's with the same seed and streams, whatever else shares the batch.

use crate::error::{ModelError, Result};
use crate::sampling::{filtered_logprobs, sample_with_uniforms, RowStream};
use crate::transformer::{positions_from_mask, KvCache, Transformer};
use rlvr_core::{FinishReason, SamplingConfig};
use tch::{Device, Kind, Tensor};

/// One request: `n` samples of one prompt.
#[derive(Debug, Clone)]
pub struct BatchRequest {
    /// The caller's name for the request; finished samples carry it.
    pub ticket: u64,
    /// Prompt token ids (at least one).
    pub prompt: Vec<i64>,
    /// Samples of this prompt.
    pub n: usize,
    /// Temperature, top-p, top-k, `max_new_tokens`, the seed, and the stream of sample 0.
    pub sampling: SamplingConfig,
    /// A sample ends after generating one of these (kept as its last token).
    pub stop: Vec<i64>,
}

/// One finished sample.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedSample {
    /// The request's ticket.
    pub ticket: u64,
    /// Which of the request's `n` samples.
    pub index: usize,
    /// Generated token ids.
    pub tokens: Vec<i64>,
    /// Log-prob of each generated token under the sampling distribution.
    pub logprobs: Vec<f64>,
    /// Why it ended.
    pub finish: FinishReason,
}

struct Row {
    ticket: u64,
    index: usize,
    stream: RowStream,
    sampling: SamplingConfig,
    stop: std::sync::Arc<[i64]>,
    tokens: Vec<i64>,
    logprobs: Vec<f64>,
    done: bool,
    /// Position of the last token fed to the model.
    pos: i64,
    /// Cache column of the row's first prompt token.
    start: i64,
}

impl Row {
    fn finished(&self, finish: FinishReason) -> FinishedSample {
        FinishedSample {
            ticket: self.ticket,
            index: self.index,
            tokens: self.tokens.clone(),
            logprobs: self.logprobs.clone(),
            finish,
        }
    }
}

/// The running batch: its rows, their KV cache and key mask, and the logits of each row's next
/// token.
#[derive(Default)]
pub struct Batcher {
    rows: Vec<Row>,
    cache: KvCache,
    /// `[B, capacity]` i64, 1 where a cache column holds one of the row's keys.
    key_mask: Option<Tensor>,
    /// `[B, V]` logits of each row's next token.
    logits: Option<Tensor>,
}

impl Batcher {
    /// An empty batch.
    pub fn new() -> Batcher {
        Batcher::default()
    }

    /// Rows in the batch (finished ones not yet dropped included).
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// Rows still generating.
    pub fn live(&self) -> usize {
        self.rows.iter().filter(|r| !r.done).count()
    }

    /// Whether nothing is generating.
    pub fn is_idle(&self) -> bool {
        self.live() == 0
    }

    /// Prefills `requests` and adds their samples to the batch. Samples of zero tokens
    /// (`max_new_tokens` ≤ 0) finish at once and are returned.
    pub fn admit(
        &mut self,
        model: &Transformer,
        device: Device,
        requests: Vec<BatchRequest>,
    ) -> Result<Vec<FinishedSample>> {
        let _guard = tch::no_grad_guard();
        let mut finished = Vec::new();
        let mut joining = Vec::new();
        for r in requests {
            if r.prompt.is_empty() {
                return Err(ModelError::Config(format!(
                    "request {}: the prompt has no tokens",
                    r.ticket
                )));
            }
            if r.sampling.max_new_tokens <= 0 || r.n == 0 {
                finished.extend((0..r.n).map(|index| FinishedSample {
                    ticket: r.ticket,
                    index,
                    tokens: Vec::new(),
                    logprobs: Vec::new(),
                    finish: FinishReason::Length,
                }));
            } else {
                joining.push(r);
            }
        }
        if joining.is_empty() {
            return Ok(finished);
        }
        self.compact(device)?;
        let pn = joining.iter().map(|r| r.prompt.len()).max().unwrap_or(0) as i64;
        let mut ids = vec![0i64; joining.len() * pn as usize];
        let mut mask = vec![0i64; joining.len() * pn as usize];
        for (i, r) in joining.iter().enumerate() {
            let off = i * pn as usize + (pn as usize - r.prompt.len());
            ids[off..off + r.prompt.len()].copy_from_slice(&r.prompt);
            mask[off..off + r.prompt.len()].fill(1);
        }
        let shape = [joining.len() as i64, pn];
        let ids = Tensor::from_slice(&ids)
            .f_view(shape)?
            .f_to_device(device)?;
        let mask = Tensor::from_slice(&mask)
            .f_view(shape)?
            .f_to_device(device)?;
        let mut fresh = KvCache::with_capacity(pn);
        let hidden =
            model.forward_hidden(&ids, &positions_from_mask(&mask)?, &mask, Some(&mut fresh))?;
        let expand: Vec<i64> = joining
            .iter()
            .enumerate()
            .flat_map(|(i, r)| std::iter::repeat_n(i as i64, r.n))
            .collect();
        let expand = Tensor::from_slice(&expand).f_to_device(device)?;
        let new_logits = model
            .logits(&hidden.f_select(1, -1)?)?
            .f_index_select(0, &expand)?;
        fresh.select_rows(&expand)?;
        let new_mask = mask.f_index_select(0, &expand)?;

        // Stack the running rows' last `kept` columns and the new rows' prompts, right-aligned.
        let old_len = self.cache.len();
        let kept = self
            .rows
            .iter()
            .map(|r| old_len - r.start)
            .max()
            .unwrap_or(0);
        let len = kept.max(pn);
        let remaining = self
            .rows
            .iter()
            .map(|r| r.sampling.max_new_tokens - r.tokens.len() as i64)
            .chain(joining.iter().map(|r| r.sampling.max_new_tokens))
            .max()
            .unwrap_or(0);
        let capacity = len + remaining;
        let cache =
            KvCache::stack_right_aligned(&[(&self.cache, kept), (&fresh, pn)], len, capacity)?;
        let running = self.rows.len() as i64;
        let total = running + new_mask.size()[0];
        let key_mask = Tensor::f_zeros([total, capacity], (Kind::Int64, device))?;
        if let Some(old) = &self.key_mask {
            key_mask
                .f_narrow(0, 0, running)?
                .f_narrow(1, len - kept, kept)?
                .f_copy_(&old.f_narrow(1, old_len - kept, kept)?)?;
        }
        key_mask
            .f_narrow(0, running, total - running)?
            .f_narrow(1, len - pn, pn)?
            .f_copy_(&new_mask)?;
        for r in self.rows.iter_mut() {
            r.start += len - old_len;
        }
        for r in &joining {
            let stop: std::sync::Arc<[i64]> = r.stop.clone().into();
            for index in 0..r.n {
                self.rows.push(Row {
                    ticket: r.ticket,
                    index,
                    stream: RowStream::new(r.sampling.seed, r.sampling.first_stream + index as u64),
                    sampling: r.sampling.clone(),
                    stop: stop.clone(),
                    tokens: Vec::new(),
                    logprobs: Vec::new(),
                    done: false,
                    pos: r.prompt.len() as i64 - 1,
                    start: len - r.prompt.len() as i64,
                });
            }
        }
        self.logits = Some(match self.logits.take() {
            Some(old) => Tensor::f_cat(&[old, new_logits], 0)?,
            None => new_logits,
        });
        self.cache = cache;
        self.key_mask = Some(key_mask);
        Ok(finished)
    }

    /// One decode step: every live row samples its next token; rows that finish are returned,
    /// the others are fed their token and get their next logits.
    pub fn step(&mut self, model: &Transformer, device: Device) -> Result<Vec<FinishedSample>> {
        let _guard = tch::no_grad_guard();
        let Some(logits) = self.logits.take() else {
            return Ok(Vec::new());
        };
        let mut finished = Vec::new();
        let mut groups: Vec<(SamplingConfig, Vec<usize>)> = Vec::new();
        // Finished rows not yet dropped are sampled along (one pass over the logits) and
        // ignored; they draw nothing from their streams.
        for (i, r) in self.rows.iter().enumerate() {
            let same = |s: &SamplingConfig| {
                (s.temperature, s.top_p, s.top_k)
                    == (r.sampling.temperature, r.sampling.top_p, r.sampling.top_k)
            };
            match groups.iter_mut().find(|(s, _)| same(s)) {
                Some((_, rows)) => rows.push(i),
                None => groups.push((r.sampling.clone(), vec![i])),
            }
        }
        let all = self.rows.len();
        for (sampling, rows) in &groups {
            // Usually one group holds every row: no copy of the logits then.
            let lp = if rows.len() == all {
                filtered_logprobs(&logits, sampling)?
            } else {
                let idx: Vec<i64> = rows.iter().map(|&i| i as i64).collect();
                let idx = Tensor::from_slice(&idx).f_to_device(device)?;
                filtered_logprobs(&logits.f_index_select(0, &idx)?, sampling)?
            };
            let u: Vec<f64> = rows
                .iter()
                .map(|&i| match self.rows[i].done {
                    true => 0.5,
                    false => self.rows[i].stream.uniform(),
                })
                .collect();
            let (ids, chosen) = sample_with_uniforms(&lp, &u)?;
            for ((&i, id), lp) in rows.iter().zip(ids).zip(chosen) {
                let r = &mut self.rows[i];
                if r.done {
                    continue;
                }
                r.tokens.push(id);
                r.logprobs.push(lp);
                let finish = if r.stop.contains(&id) {
                    Some(FinishReason::Stop)
                } else if r.tokens.len() as i64 >= r.sampling.max_new_tokens {
                    Some(FinishReason::Length)
                } else {
                    None
                };
                if let Some(f) = finish {
                    r.done = true;
                    finished.push(r.finished(f));
                }
            }
        }
        if self.is_idle() {
            *self = Batcher::new();
            return Ok(finished);
        }
        // Finished rows leave the batch at once (only the rows that fill their places move).
        self.compact(device)?;
        self.forward_next(model, device)?;
        Ok(finished)
    }

    /// Feeds every row its last token and keeps the logits of the next.
    fn forward_next(&mut self, model: &Transformer, device: Device) -> Result<()> {
        let next: Vec<i64> = self
            .rows
            .iter()
            .map(|r| r.tokens.last().copied().unwrap_or(0))
            .collect();
        let pos: Vec<i64> = self
            .rows
            .iter_mut()
            .map(|r| {
                r.pos += 1;
                r.pos
            })
            .collect();
        let b = self.rows.len() as i64;
        let next = Tensor::from_slice(&next)
            .f_view([b, 1])?
            .f_to_device(device)?;
        let pos = Tensor::from_slice(&pos)
            .f_view([b, 1])?
            .f_to_device(device)?;
        let width = self.cache.len() + 1;
        let mut key_mask = match self.key_mask.take() {
            Some(m) => m,
            None => Tensor::f_zeros([b, width], (Kind::Int64, device))?,
        };
        if key_mask.size()[1] < width {
            let more = Tensor::f_zeros([b, width - key_mask.size()[1]], (Kind::Int64, device))?;
            key_mask = Tensor::f_cat(&[key_mask, more], 1)?;
        }
        let _ = key_mask.f_narrow(1, width - 1, 1)?.f_fill_(1)?;
        let hidden = model.forward_hidden(
            &next,
            &pos,
            &key_mask.f_narrow(1, 0, width)?,
            Some(&mut self.cache),
        )?;
        self.logits = Some(model.logits(&hidden.f_select(1, -1)?)?);
        self.key_mask = Some(key_mask);
        Ok(())
    }

    /// Drops finished rows from the batch (cache, key mask and logits); rows from the batch's end
    /// take their places ([`KvCache::compact`]).
    fn compact(&mut self, device: Device) -> Result<()> {
        if self.rows.iter().all(|r| !r.done) {
            return Ok(());
        }
        if self.rows.iter().all(|r| r.done) {
            *self = Batcher::new();
            return Ok(());
        }
        let alive: Vec<bool> = self.rows.iter().map(|r| !r.done).collect();
        let order = self.cache.compact(&alive)?;
        let idx = Tensor::from_slice(&order).f_to_device(device)?;
        if let Some(m) = &self.key_mask {
            self.key_mask = Some(m.f_index_select(0, &idx)?);
        }
        if let Some(l) = &self.logits {
            self.logits = Some(l.f_index_select(0, &idx)?);
        }
        let mut rows: Vec<Option<Row>> = std::mem::take(&mut self.rows)
            .into_iter()
            .map(Some)
            .collect();
        self.rows = order
            .iter()
            .filter_map(|&j| rows[j as usize].take())
            .collect();
        Ok(())
    }
}
