//! The training loop of DESIGN.md §2: rollout (n samples per prompt), scoring, advantages, old
//! (and reference) statistics, PPO epochs over mini-batches with micro-batching, AdamW with
//! grad-norm clipping and an LR schedule, metrics, checkpoints and resume.

use crate::optim::{lr_at, AdamW};
use crate::run_config::RunConfig;
use anyhow::{bail, Context, Result};
use rlvr_core::{
    AdvantageInput, Algorithm, GlobalCounts, LossInput, Outcome, Policy, Problem, SamplingConfig,
    SequenceBatch, Split, StatsNeeds, Task, TextCodec, Verifier,
};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Everything the loop needs, built from a [`RunConfig`].
pub struct Trainer {
    /// The run's settings.
    pub cfg: RunConfig,
    /// The policy being trained.
    pub policy: Box<dyn Policy>,
    /// A frozen reference policy, when the loss needs one.
    pub reference: Option<Box<dyn Policy>>,
    /// The tokenizer.
    pub codec: Box<dyn TextCodec>,
    /// The validated algorithm.
    pub algo: Algorithm,
    /// Training and held-out problems.
    pub train_problems: Vec<Problem>,
    /// Held-out problems.
    pub test_problems: Vec<Problem>,
    /// Scores responses.
    pub verifier: Box<dyn Verifier>,
    /// Optimizer state.
    pub opt: AdamW,
    /// Steps completed.
    pub step: u64,
    /// Run folder.
    pub dir: PathBuf,
}

/// Sampled responses of one step, with everything the update needs.
pub struct Rollout {
    /// Prompt + response ids and mask.
    pub seq: SequenceBatch,
    /// Response tokens `[B, T]`.
    pub tokens: Tensor,
    /// Response mask `[B, T]` f32.
    pub mask: Tensor,
    /// Scores `[B]`.
    pub scores: Tensor,
    /// Prompt index `[B]`.
    pub group: Tensor,
    /// Responses that hit the length limit `[B]`.
    pub truncated: Tensor,
    /// Decoded responses.
    pub texts: Vec<String>,
    /// Verifier outcomes.
    pub outcomes: Vec<Outcome>,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct StepMetrics {
    /// Step number (1-based).
    pub step: u64,
    /// Mean verifier score.
    pub reward_mean: f64,
    /// Fraction of responses verified correct.
    pub accuracy: f64,
    /// Mean token entropy of the rollout policy over response tokens.
    pub entropy: f64,
    /// Mean probability of the most likely token (top-1 mass) over response tokens.
    pub top1_prob: f64,
    /// Mean log-probability of the sampled tokens.
    pub sampled_logp: f64,
    /// Λ(1): mean log-probability of the most likely candidate over response tokens (SimKO).
    pub lambda_1: f64,
    /// Λ(2): mean log-probability of the rank-2 candidate.
    pub lambda_2: f64,
    /// Λ(3): mean log-probability of the rank-3 candidate.
    pub lambda_3: f64,
    /// Λ(4): mean log-probability of the rank-4 candidate.
    pub lambda_4: f64,
    /// Λ(5): mean log-probability of the rank-5 candidate.
    pub lambda_5: f64,
    /// Mean probability of the rank-2 candidate (rank 1 is `top1_prob`).
    pub rank2_prob: f64,
    /// Mean probability of the rank-3 candidate.
    pub rank3_prob: f64,
    /// Fraction of tokens whose ratio was clipped.
    pub clipfrac: f64,
    /// Approximate KL(old‖new) over response tokens.
    pub ppo_kl: f64,
    /// KL to the reference policy (0 without a KL term).
    pub kl_ref: f64,
    /// Mean aggregated loss over mini-batches.
    pub loss: f64,
    /// Gradient norm before clipping (mean over mini-batches).
    pub grad_norm: f64,
    /// Learning rate.
    pub lr: f64,
    /// Mean response length in tokens.
    pub response_len: f64,
    /// Mini-batch updates skipped for non-finite loss or gradient.
    pub skipped_updates: usize,
    /// Seconds generating.
    pub time_rollout: f64,
    /// Seconds scoring.
    pub time_score: f64,
    /// Seconds updating.
    pub time_update: f64,
    /// Generated tokens per second of rollout.
    pub tokens_per_s: f64,
}

/// Left-pads encoded prompts to a common width.
pub fn encode_prompts(
    codec: &dyn TextCodec,
    prompts: &[String],
    device: Device,
) -> Result<(Tensor, Tensor)> {
    let encoded: Vec<Vec<i64>> = prompts
        .iter()
        .map(|p| codec.encode(p))
        .collect::<rlvr_core::Result<_>>()?;
    let width = encoded.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let pad = codec.pad_token();
    let mut ids = Vec::with_capacity(encoded.len() * width);
    let mut mask = Vec::with_capacity(encoded.len() * width);
    for e in &encoded {
        let fill = width - e.len();
        ids.extend(std::iter::repeat_n(pad, fill).chain(e.iter().copied()));
        mask.extend(std::iter::repeat_n(0i64, fill).chain(std::iter::repeat_n(1i64, e.len())));
    }
    let shape = [encoded.len() as i64, width as i64];
    Ok((
        Tensor::from_slice(&ids).reshape(shape).to_device(device),
        Tensor::from_slice(&mask).reshape(shape).to_device(device),
    ))
}

/// The prompt text a policy sees (through the chat template for chat models).
pub fn prompt_text(
    problem: &Problem,
    chat: Option<&rlvr_models::tokenizer::HfTokenizer>,
) -> Result<String> {
    match chat {
        Some(tok) => Ok(tok.apply_chat_template(
            &[rlvr_models::tokenizer::Message {
                role: "user".into(),
                content: problem.prompt.clone(),
            }],
            true,
        )?),
        None => Ok(problem.prompt.clone()),
    }
}

/// Samples `n` responses for each problem and scores them.
#[allow(clippy::too_many_arguments)]
pub fn rollout(
    policy: &dyn Policy,
    codec: &dyn TextCodec,
    chat: Option<&rlvr_models::tokenizer::HfTokenizer>,
    verifier: &dyn Verifier,
    problems: &[Problem],
    n: usize,
    sampling: &SamplingConfig,
) -> Result<(Rollout, f64, f64)> {
    let device = policy.device();
    let mut prompts = Vec::new();
    let mut group = Vec::new();
    for (i, p) in problems.iter().enumerate() {
        let text = prompt_text(p, chat)?;
        for _ in 0..n {
            prompts.push(text.clone());
            group.push(i as i64);
        }
    }
    let (ids, pmask) = encode_prompts(codec, &prompts, device)?;
    let t0 = Instant::now();
    let gen = policy.generate(&ids, &pmask, sampling, &codec.stop_tokens())?;
    let t_roll = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let rows = gen.tokens.size()[0];
    let mut texts = Vec::with_capacity(rows as usize);
    let mut pairs = Vec::with_capacity(rows as usize);
    for r in 0..rows {
        let len = gen.mask.get(r).sum(Kind::Float).double_value(&[]) as i64;
        let toks: Vec<i64> =
            Vec::try_from(gen.tokens.get(r).narrow(0, 0, len).to_device(Device::Cpu))?;
        let text = codec.decode(&toks)?;
        pairs.push((
            text.clone(),
            problems[(r as usize) / n].ground_truth.clone(),
        ));
        texts.push(text);
    }
    let verdicts = rlvr_rewards::verifiers::score_batch(verifier, &pairs);
    let t_score = t1.elapsed().as_secs_f64();
    let scores: Vec<f32> = verdicts.iter().map(|v| v.score as f32).collect();
    let truncated: Vec<f32> = gen
        .finish
        .iter()
        .map(|f| f32::from(*f == rlvr_core::FinishReason::Length))
        .collect();
    let seq = SequenceBatch {
        input_ids: Tensor::cat(&[&ids, &gen.tokens], 1),
        attention_mask: Tensor::cat(&[&pmask, &gen.mask.to_kind(Kind::Int64)], 1),
        prompt_len: ids.size()[1],
    };
    let ro = Rollout {
        seq,
        tokens: gen.tokens,
        mask: gen.mask,
        scores: Tensor::from_slice(&scores).to_device(device),
        group: Tensor::from_slice(&group).to_device(device),
        truncated: Tensor::from_slice(&truncated).to_device(device),
        texts,
        outcomes: verdicts.iter().map(|v| v.outcome).collect(),
    };
    Ok((ro, t_roll, t_score))
}

fn rows(x: &Tensor, idx: &Tensor) -> Tensor {
    x.index_select(0, idx)
}

impl Trainer {
    /// One RL step: rollout, scoring, advantages, PPO epochs. Returns the step's metrics.
    pub fn train_step(
        &mut self,
        chat: Option<&rlvr_models::tokenizer::HfTokenizer>,
    ) -> Result<StepMetrics> {
        let tc = self.cfg.train.clone();
        let step = self.step;
        // Data order: a deterministic walk over the training problems.
        let n_train = self.train_problems.len();
        let problems: Vec<Problem> = (0..tc.prompts_per_step)
            .map(|i| {
                self.train_problems[(step as usize * tc.prompts_per_step + i) % n_train].clone()
            })
            .collect();
        let sampling = SamplingConfig {
            temperature: tc.temperature,
            top_p: tc.top_p,
            top_k: tc.top_k,
            max_new_tokens: tc.max_new_tokens,
            seed: tc.seed.wrapping_mul(1_000_003).wrapping_add(step),
        };
        let (ro, t_roll, t_score) = rollout(
            self.policy.as_ref(),
            self.codec.as_ref(),
            chat,
            self.verifier.as_ref(),
            &problems,
            tc.samples_per_prompt,
            &sampling,
        )?;
        let t_up = Instant::now();
        let device = self.policy.device();
        let b = ro.tokens.size()[0];
        // Token-level scores: the score on the last valid token.
        let lengths = ro.mask.sum_dim_intlist(-1, false, Kind::Int64);
        let last = (&lengths - 1).clamp_min(0).unsqueeze(1);
        let tls = ro
            .mask
            .zeros_like()
            .scatter(1, &last, &ro.scores.unsqueeze(1))
            * &ro.mask;
        let adv = self.algo.advantage.compute(&AdvantageInput {
            scores: &ro.scores,
            token_level_scores: &tls,
            mask: &ro.mask,
            group: &ro.group,
        })?;
        // Old statistics (and diagnostics) without gradient.
        let needs = self.algo.loss.needs();
        let diag = StatsNeeds {
            topk: needs
                .topk
                .max(crate::evaluation::diagnostic_needs(self.policy.as_ref()).topk),
            top1: true,
            ..crate::evaluation::diagnostic_needs(self.policy.as_ref())
        };
        let old = {
            let _g = tch::no_grad_guard();
            self.policy.token_stats(&ro.seq, &diag)?
        };
        let old_logp = old.logp.detach();
        let ref_logp = match &self.reference {
            Some(r) => {
                let _g = tch::no_grad_guard();
                Some(r.token_stats(&ro.seq, &StatsNeeds::default())?.logp)
            }
            None => None,
        };
        let mut conc = rlvr_eval::ConcentrationAccumulator::default();
        conc.add(&old, &ro.mask)?;
        let conc = conc.finish();
        let rank = |v: &[f64], i: usize| v.get(i).copied().unwrap_or(f64::NAN);
        let mut m = StepMetrics {
            lambda_1: rank(&conc.lambda, 0),
            lambda_2: rank(&conc.lambda, 1),
            lambda_3: rank(&conc.lambda, 2),
            lambda_4: rank(&conc.lambda, 3),
            lambda_5: rank(&conc.lambda, 4),
            rank2_prob: rank(&conc.rank_prob, 1),
            rank3_prob: rank(&conc.rank_prob, 2),
            step: step + 1,
            reward_mean: ro.scores.mean(Kind::Double).double_value(&[]),
            accuracy: ro
                .outcomes
                .iter()
                .filter(|o| **o == Outcome::Correct)
                .count() as f64
                / b as f64,
            entropy: conc.entropy_mean,
            top1_prob: rank(&conc.rank_prob, 0),
            sampled_logp: conc.sampled_logp,
            response_len: ro.mask.sum(Kind::Double).double_value(&[]) / b as f64,
            lr: lr_at(step, tc.steps, tc.lr, tc.warmup_steps, tc.schedule),
            time_rollout: t_roll,
            time_score: t_score,
            tokens_per_s: ro.mask.sum(Kind::Double).double_value(&[]) / t_roll.max(1e-9),
            ..Default::default()
        };
        // PPO epochs over shuffled mini-batches, micro-batched.
        let mut updates = 0usize;
        let (mut clip_sum, mut kl_sum, mut klref_sum, mut tok_sum) = (0.0, 0.0, 0.0, 0.0);
        for epoch in 0..tc.epochs {
            tch::manual_seed(
                (tc.seed
                    .wrapping_mul(31)
                    .wrapping_add(step * 97 + epoch as u64)) as i64,
            );
            let perm = Tensor::randperm(b, (Kind::Int64, device));
            let per_mb = (b as usize).div_ceil(tc.mini_batches);
            for mb in 0..tc.mini_batches {
                let start = (mb * per_mb) as i64;
                if start >= b {
                    break;
                }
                let len = (per_mb as i64).min(b - start);
                let idx = perm.narrow(0, start, len);
                let mb_mask = rows(&ro.mask, &idx);
                let counts = GlobalCounts::of_mask(&mb_mask)?;
                if counts.tokens == 0.0 {
                    continue;
                }
                AdamW::zero_grad(self.policy.var_store());
                let mut loss_total = 0.0;
                let mut micro = 0;
                while micro < len {
                    let ml = (tc.micro_batch_size as i64).min(len - micro);
                    let mi = idx.narrow(0, micro, ml);
                    let seq = SequenceBatch {
                        input_ids: rows(&ro.seq.input_ids, &mi),
                        attention_mask: rows(&ro.seq.attention_mask, &mi),
                        prompt_len: ro.seq.prompt_len,
                    };
                    let stats = self.policy.token_stats(&seq, &needs)?;
                    let (o_lp, a, mk, sc, tk, tr) = (
                        rows(&old_logp, &mi),
                        rows(&adv, &mi),
                        rows(&ro.mask, &mi),
                        rows(&ro.scores, &mi),
                        rows(&ro.tokens, &mi),
                        rows(&ro.truncated, &mi),
                    );
                    let r_lp = ref_logp.as_ref().map(|r| rows(r, &mi));
                    let input = LossInput {
                        stats: &stats,
                        old_logp: &o_lp,
                        ref_logp: r_lp.as_ref(),
                        advantages: &a,
                        mask: &mk,
                        scores: &sc,
                        tokens: &tk,
                        truncated: Some(&tr),
                    };
                    let out = self.algo.loss.per_token_loss(&input)?;
                    let mut loss = self.algo.aggregation.reduce(
                        &out.per_token,
                        &mk,
                        counts,
                        self.algo.loss_normalizer,
                    )?;
                    if tc.inject_nan_at_step == step + 1 {
                        loss *= f64::NAN;
                    }
                    loss_total += loss.double_value(&[]);
                    loss.backward();
                    let ntok = mk.sum(Kind::Double).double_value(&[]);
                    for metric in &out.metrics {
                        let v = (&metric.values.to_kind(Kind::Double) * &mk)
                            .sum(Kind::Double)
                            .double_value(&[]);
                        match metric.name {
                            "clipfrac" => clip_sum += v,
                            "ppo_kl" => kl_sum += v,
                            "kl_ref" => klref_sum += v,
                            _ => {}
                        }
                    }
                    tok_sum += ntok;
                    micro += ml;
                }
                let norm = AdamW::grad_norm(self.policy.var_store());
                if !loss_total.is_finite() || !norm.is_finite() {
                    AdamW::zero_grad(self.policy.var_store());
                    m.skipped_updates += 1;
                    tracing::warn!("step {}: non-finite loss ({loss_total}) or gradient norm ({norm}); update skipped", step + 1);
                    continue;
                }
                let scale = if tc.grad_clip > 0.0 && norm > tc.grad_clip {
                    tc.grad_clip / norm
                } else {
                    1.0
                };
                self.opt.step(self.policy.var_store(), m.lr, scale);
                m.loss += loss_total;
                m.grad_norm += norm;
                updates += 1;
            }
        }
        if updates > 0 {
            m.loss /= updates as f64;
            m.grad_norm /= updates as f64;
        }
        if tok_sum > 0.0 {
            m.clipfrac = clip_sum / tok_sum;
            m.ppo_kl = kl_sum / tok_sum;
            m.kl_ref = klref_sum / tok_sum;
        }
        m.time_update = t_up.elapsed().as_secs_f64();
        self.step += 1;
        Ok(m)
    }

    /// Writes a checkpoint atomically: `checkpoints/step-N.tmp` renamed to `step-N` when complete.
    pub fn checkpoint(&self) -> Result<PathBuf> {
        let dir = self.dir.join("checkpoints");
        let final_dir = dir.join(format!("step-{}", self.step));
        let tmp = dir.join(format!("step-{}.tmp", self.step));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        self.policy.save(&tmp.join("model"))?;
        self.opt.save(&tmp.join("optimizer.safetensors"))?;
        let state = serde_json::json!({ "step": self.step, "seed": self.cfg.train.seed });
        std::fs::write(
            tmp.join("state.json"),
            serde_json::to_string_pretty(&state)?,
        )?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir)?;
        }
        std::fs::rename(&tmp, &final_dir)
            .with_context(|| format!("finalising checkpoint {}", final_dir.display()))?;
        Ok(final_dir)
    }

    /// Restores the latest complete checkpoint (one with `state.json`); returns its step.
    pub fn restore_latest(&mut self) -> Result<Option<u64>> {
        let Some((step, dir)) = latest_checkpoint(&self.dir)? else {
            return Ok(None);
        };
        rlvr_models::checkpoint::load_weights(self.policy.var_store_mut(), &dir.join("model"))
            .with_context(|| format!("loading model of {}", dir.display()))?;
        self.opt.load(&dir.join("optimizer.safetensors"))?;
        self.step = step;
        Ok(Some(step))
    }
}

/// The highest complete checkpoint of a run folder.
pub fn latest_checkpoint(run: &Path) -> Result<Option<(u64, PathBuf)>> {
    let dir = run.join("checkpoints");
    if !dir.exists() {
        return Ok(None);
    }
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(step) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if path.join("state.json").exists() && best.as_ref().is_none_or(|(b, _)| step > *b) {
            best = Some((step, path));
        }
    }
    Ok(best)
}

/// Appends one JSON line.
pub fn append_jsonl(path: &Path, value: &impl Serialize) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(f, "{}", serde_json::to_string(value)?)?;
    Ok(())
}

/// Drops metric lines after `step` (a resumed run rewrites them).
pub fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path)?;
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s <= step)
        })
        .collect();
    let tmp = path.with_extension("jsonl.tmp");
    std::fs::write(
        &tmp,
        kept.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )?;
    std::fs::rename(tmp, path)?;
    Ok(())
}

/// Training problems, held-out problems and the verifier.
pub type LoadedProblems = (Vec<Problem>, Vec<Problem>, Box<dyn Verifier>);

/// Loads the task's problems (or the dataset's) and its verifier.
pub fn load_problems(cfg: &RunConfig) -> Result<LoadedProblems> {
    let task: Box<dyn Task> = match (&cfg.task, &cfg.data) {
        (Some(t), _) => t.build()?,
        (None, Some(d)) => {
            use rlvr_rewards::data::{read, OnBadRow};
            let train = read(Path::new(&d.train), OnBadRow::Fail)?;
            let (train_rows, test_rows) = if d.test.is_empty() {
                let hold = d.holdout.min(train.records.len() / 2);
                let cut = train.records.len() - hold;
                (train.records[..cut].to_vec(), train.records[cut..].to_vec())
            } else {
                (
                    train.records,
                    read(Path::new(&d.test), OnBadRow::Fail)?.records,
                )
            };
            if !d.template.contains("{prompt}") {
                bail!(
                    "data.template must contain {{prompt}}, got {:?}",
                    d.template
                );
            }
            Box::new(rlvr_rewards::data::task::DatasetTask::with_template(
                &train_rows,
                &test_rows,
                &d.template,
            ))
        }
        (None, None) => bail!("no task or data"),
    };
    let train = task.problems(Split::Train)?;
    if train.is_empty() {
        bail!("the task has no training problems");
    }
    Ok((train, task.problems(Split::Test)?, task.verifier()))
}
