//! The rollout phase: `n` sampled responses per problem, decoded and scored by the verifier.

use crate::engine::ServedSample;
use crate::error::Result;
use crate::padding::encode_prompts;
use crate::session::Session;
use rlvr_core::{
    FinishReason, Generation, Outcome, Problem, RewardInput, SamplingConfig, SequenceBatch,
};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Scored responses as tensors, `B` rows.
pub struct Responses {
    /// Prompt + response ids and mask.
    pub seq: SequenceBatch,
    /// Response tokens `[B, T]` i64.
    pub tokens: Tensor,
    /// Response mask `[B, T]` f32.
    pub mask: Tensor,
    /// Scores `[B]` f32.
    pub scores: Tensor,
    /// Prompt index `[B]` i64 (the group of group-relative advantages).
    pub group: Tensor,
    /// 1.0 for responses that hit the length limit `[B]` f32.
    pub truncated: Tensor,
    /// Log-prob of each sampled token as the rollout engine computed it `[B, T]` f32 (the
    /// behaviour policy of the mismatch metrics and corrections).
    pub rollout_logp: Tensor,
    /// The weight version (steps trained) that generated each response `[B]` i64: its oldest
    /// token's.
    pub version: Tensor,
    /// The weight version of each response token `[B, T]` i64 (a row's versions differ only in
    /// partial rollouts, where the weights changed while it generated).
    pub token_version: Tensor,
    /// The generating forward passes, where the policy recorded them for the update
    /// (`train.rollout_activations_mib`).
    pub record: Option<rlvr_core::ForwardRecord>,
}

impl Responses {
    /// Number of responses.
    pub fn len(&self) -> i64 {
        self.tokens.size()[0]
    }

    /// Whether there are no responses.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows `idx` (an i64 index tensor), in that order.
    pub fn select(&self, idx: &Tensor) -> Responses {
        let rows = |x: &Tensor| x.index_select(0, idx);
        Responses {
            seq: SequenceBatch {
                input_ids: rows(&self.seq.input_ids),
                attention_mask: rows(&self.seq.attention_mask),
                prompt_len: self.seq.prompt_len,
            },
            tokens: rows(&self.tokens),
            mask: rows(&self.mask),
            scores: rows(&self.scores),
            group: rows(&self.group),
            truncated: rows(&self.truncated),
            rollout_logp: rows(&self.rollout_logp),
            version: rows(&self.version),
            token_version: rows(&self.token_version),
            // Rows out of the record's range cannot occur (the tensors above were selected
            // alike); the update would then run its own forward.
            record: self.record.as_ref().and_then(|r| r.select(idx).ok()),
        }
    }
}

/// Sampled and scored responses: row `i` answers problem `i / n`.
pub struct Rollout {
    /// The responses as tensors.
    pub responses: Responses,
    /// Decoded responses.
    pub texts: Vec<String>,
    /// Verifier outcomes.
    pub outcomes: Vec<Outcome>,
    /// Seconds spent generating.
    pub time_generate: f64,
    /// Seconds spent decoding and scoring.
    pub time_score: f64,
}

impl Rollout {
    /// Fraction of responses verified correct.
    pub fn accuracy(&self) -> f64 {
        let correct = self
            .outcomes
            .iter()
            .filter(|o| **o == Outcome::Correct)
            .count();
        correct as f64 / self.outcomes.len().max(1) as f64
    }

    /// Only the responses of prompt groups `groups` (indices into the rollout's problems, `n`
    /// responses each), renumbered 0.. in that order.
    pub fn keep_groups(self, groups: &[usize], n: usize) -> Rollout {
        let rows: Vec<usize> = groups.iter().flat_map(|&g| g * n..(g + 1) * n).collect();
        let device = self.responses.tokens.device();
        let idx: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let idx = Tensor::from_slice(&idx).to_device(device);
        let mut responses = self.responses.select(&idx);
        let renumbered: Vec<i64> = (0..groups.len() as i64)
            .flat_map(|g| std::iter::repeat_n(g, n))
            .collect();
        responses.group = Tensor::from_slice(&renumbered).to_device(device);
        let pick = |v: &[Outcome]| rows.iter().filter_map(|&r| v.get(r).copied()).collect();
        Rollout {
            responses,
            texts: rows
                .iter()
                .filter_map(|&r| self.texts.get(r).cloned())
                .collect(),
            outcomes: pick(&self.outcomes),
            time_generate: self.time_generate,
            time_score: self.time_score,
        }
    }

    /// The verifier score of each response, in row order.
    pub fn score_values(&self) -> Vec<f32> {
        Vec::<f32>::try_from(self.responses.scores.to_device(tch::Device::Cpu)).unwrap_or_default()
    }
}

/// The prompt ids of every `n`-th row of a left-padded batch, without padding.
fn unpadded_rows(ids: &Tensor, mask: &Tensor, n: usize) -> Result<Vec<Vec<i64>>> {
    let ids = Vec::<Vec<i64>>::try_from(ids.to_device(Device::Cpu))?;
    let mask = Vec::<Vec<i64>>::try_from(mask.to_device(Device::Cpu))?;
    Ok(ids
        .iter()
        .zip(&mask)
        .step_by(n.max(1))
        .map(|(row, m)| {
            row.iter()
                .zip(m)
                .filter(|(_, &k)| k > 0)
                .map(|(&t, _)| t)
                .collect()
        })
        .collect())
}

/// Served samples as a [`Generation`] (right-padded with `pad`), their weight versions and the
/// version of each token (`[B, T]`, the row's version on padding).
fn served_generation(
    samples: &[ServedSample],
    pad: i64,
    device: Device,
) -> Result<(Generation, Vec<i64>, Tensor)> {
    let b = samples.len();
    let t = samples.iter().map(|s| s.tokens.len()).max().unwrap_or(0);
    let mut ids = vec![pad; b * t];
    let mut mask = vec![0f32; b * t];
    let mut lp = vec![0f32; b * t];
    let mut versions = vec![0i64; b * t];
    for (r, s) in samples.iter().enumerate() {
        versions[r * t..(r + 1) * t].fill(s.version as i64);
        for (j, (&id, &l)) in s.tokens.iter().zip(&s.logprobs).enumerate() {
            ids[r * t + j] = id;
            mask[r * t + j] = 1.0;
            lp[r * t + j] = l as f32;
            if let Some(&v) = s.token_versions.get(j) {
                versions[r * t + j] = v as i64;
            }
        }
    }
    let shape = [b as i64, t as i64];
    let gen = Generation {
        tokens: Tensor::from_slice(&ids).reshape(shape).to_device(device),
        mask: Tensor::from_slice(&mask).reshape(shape).to_device(device),
        logp: Tensor::from_slice(&lp).reshape(shape).to_device(device),
        finish: samples.iter().map(|s| s.finish).collect(),
        record: None,
    };
    let token_version = Tensor::from_slice(&versions)
        .reshape(shape)
        .to_device(device);
    Ok((
        gen,
        samples.iter().map(|s| s.version as i64).collect(),
        token_version,
    ))
}

/// A step's prompts, rendered and encoded: `n` left-padded rows per problem.
pub struct EncodedPrompts {
    /// Prompt ids `[B, P]` i64.
    pub ids: Tensor,
    /// Prompt mask `[B, P]` i64.
    pub mask: Tensor,
    /// Problem index of each row.
    pub group: Vec<i64>,
}

impl EncodedPrompts {
    /// Each problem's prompt ids without padding (one row per problem).
    pub fn per_problem(&self, n: usize) -> Result<Vec<Vec<i64>>> {
        unpadded_rows(&self.ids, &self.mask, n)
    }
}

/// Renders and encodes `n` rows per problem with the session's tokenizer.
pub fn encode_step_prompts(
    session: &Session,
    problems: &[Problem],
    n: usize,
) -> Result<EncodedPrompts> {
    let codec = session.codec.as_ref();
    let mut prompts = Vec::new();
    let mut group = Vec::new();
    for (i, p) in problems.iter().enumerate() {
        let text = codec.render_prompt(p)?;
        for _ in 0..n {
            prompts.push(text.clone());
            group.push(i as i64);
        }
    }
    let (ids, mask) = encode_prompts(codec, &prompts, session.policy.device())?;
    Ok(EncodedPrompts { ids, mask, group })
}

/// Generated responses before decoding and scoring.
pub struct RawRollout {
    /// The responses.
    pub gen: Generation,
    /// The weight version of each response.
    pub versions: Vec<i64>,
    /// The weight version of each token `[B, T]`, when they may differ within a response.
    pub token_versions: Option<Tensor>,
    /// Seconds spent generating.
    pub time_generate: f64,
}

impl RawRollout {
    /// Responses generated elsewhere (a server, the generator thread), right-padded with
    /// `pad` on `device`.
    pub fn from_samples(
        samples: &[ServedSample],
        pad: i64,
        device: Device,
        time_generate: f64,
    ) -> Result<RawRollout> {
        let (gen, versions, token_versions) = served_generation(samples, pad, device)?;
        Ok(RawRollout {
            gen,
            versions,
            token_versions: Some(token_versions),
            time_generate,
        })
    }
}

/// The rows of a [`Generation`] as samples of weight version `version` (padding dropped).
pub fn generation_samples(gen: &Generation, version: u64) -> Result<Vec<ServedSample>> {
    let tokens = Vec::<Vec<i64>>::try_from(gen.tokens.to_device(Device::Cpu))?;
    let logp = Vec::<Vec<f32>>::try_from(gen.logp.to_device(Device::Cpu))?;
    let mask = Vec::<Vec<f32>>::try_from(gen.mask.to_device(Device::Cpu))?;
    Ok(tokens
        .into_iter()
        .zip(logp)
        .zip(mask)
        .zip(&gen.finish)
        .map(|(((t, l), m), &finish)| {
            let len = m.iter().filter(|&&x| x > 0.0).count();
            ServedSample {
                tokens: t[..len].to_vec(),
                logprobs: l[..len].iter().map(|&x| f64::from(x)).collect(),
                finish,
                version,
                token_versions: Vec::new(),
            }
        })
        .collect())
}

/// Samples `n` responses for each problem with the session's policy (or its
/// rollout servers) (prompts rendered by its tokenizer) and scores them with its verifier. With
/// `record_bytes` the policy keeps, within that memory, what the update needs of its forward
/// passes ([`rlvr_core::Policy::generate_recorded`]; generation in this process only).
pub fn rollout(
    session: &Session,
    problems: &[Problem],
    n: usize,
    sampling: &SamplingConfig,
    record_bytes: u64,
) -> Result<Rollout> {
    let prompts = encode_step_prompts(session, problems, n)?;
    let policy = session.policy.as_ref();
    let codec = session.codec.as_ref();
    let t0 = Instant::now();
    let stop = codec.stop_tokens();
    let (gen, versions, token_versions) = match &session.engine {
        None => {
            let gen = if record_bytes > 0 {
                policy.generate_recorded(
                    &prompts.ids,
                    &prompts.mask,
                    sampling,
                    &stop,
                    record_bytes,
                )?
            } else {
                policy.generate(&prompts.ids, &prompts.mask, sampling, &stop)?
            };
            let rows = gen.tokens.size()[0] as usize;
            (gen, vec![session.weight_version as i64; rows], None)
        }
        Some(engine) => {
            let per_problem = prompts.per_problem(n)?;
            let samples = engine.generate(&per_problem, n, sampling, &stop)?;
            let (gen, versions, tv) =
                served_generation(&samples, codec.pad_token(), policy.device())?;
            (gen, versions, Some(tv))
        }
    };
    let raw = RawRollout {
        gen,
        versions,
        token_versions,
        time_generate: t0.elapsed().as_secs_f64(),
    };
    score_rollout(session, problems, n, prompts, raw)
}

/// Decodes the responses of `raw` (answering `prompts`, `n` rows per problem) and scores them
/// with the session's verifier.
pub fn score_rollout(
    session: &Session,
    problems: &[Problem],
    n: usize,
    prompts: EncodedPrompts,
    raw: RawRollout,
) -> Result<Rollout> {
    let codec = session.codec.as_ref();
    let device = session.policy.device();
    let RawRollout {
        gen,
        versions,
        token_versions,
        time_generate,
    } = raw;
    let EncodedPrompts {
        ids,
        mask: pmask,
        group,
    } = prompts;
    let rows = gen.tokens.size()[0];
    if rows as usize != problems.len() * n
        || ids.size()[0] != rows
        || versions.len() != rows as usize
    {
        return Err(crate::TrainError::Run(format!(
            "{rows} generated responses for {} problems × {n} samples",
            problems.len()
        )));
    }
    let t1 = Instant::now();
    let mut texts = Vec::with_capacity(rows as usize);
    for r in 0..rows {
        let len = gen.mask.get(r).sum(Kind::Float).double_value(&[]) as i64;
        let toks: Vec<i64> =
            Vec::try_from(gen.tokens.get(r).narrow(0, 0, len).to_device(Device::Cpu))?;
        texts.push(codec.decode(&toks)?);
    }
    let items: Vec<RewardInput<'_>> = texts
        .iter()
        .enumerate()
        .map(|(r, text)| {
            let p = &problems[r / n];
            RewardInput {
                prompt: &p.prompt,
                response: text,
                ground_truth: &p.ground_truth,
                data_source: &p.data_source,
                id: &p.id,
                extra_info: p.extra_info.as_ref(),
            }
        })
        .collect();
    let verdicts = session.verifier.verify_batch(&items)?;
    let time_score = t1.elapsed().as_secs_f64();
    let scores: Vec<f32> = verdicts.iter().map(|v| v.score as f32).collect();
    let truncated: Vec<f32> = gen
        .finish
        .iter()
        .map(|f| f32::from(*f == FinishReason::Length))
        .collect();
    let token_version = match token_versions {
        Some(t) => t,
        None => Tensor::from_slice(&versions)
            .to_device(device)
            .unsqueeze(1)
            .expand_as(&gen.tokens)
            .contiguous(),
    };
    let seq = SequenceBatch {
        input_ids: Tensor::cat(&[&ids, &gen.tokens], 1),
        attention_mask: Tensor::cat(&[&pmask, &gen.mask.to_kind(Kind::Int64)], 1),
        prompt_len: ids.size()[1],
    };
    Ok(Rollout {
        responses: Responses {
            seq,
            tokens: gen.tokens,
            mask: gen.mask,
            scores: Tensor::from_slice(&scores).to_device(device),
            group: Tensor::from_slice(&group).to_device(device),
            truncated: Tensor::from_slice(&truncated).to_device(device),
            rollout_logp: gen.logp,
            token_version,
            version: Tensor::from_slice(&versions).to_device(device),
            record: gen.record,
        },
        texts,
        outcomes: verdicts.iter().map(|v| v.outcome).collect(),
        time_generate,
        time_score,
    })
}
