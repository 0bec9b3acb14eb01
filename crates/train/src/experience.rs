//! The first phase of an RL step, `make_experience` (verl's `generate_sequences` →
//! `compute_reward` → `compute_advantage` → `compute_log_prob`): rollout, scores, advantages,
//! old-policy and reference statistics, and the step's diagnostics. The result, an [`Experience`],
//! is everything the actor's update reads.

use crate::advantages::compute_advantages;
use crate::config::TrainConfig;
use crate::distributed::RowShare;
use crate::error::Result;
use crate::metrics::{Metrics, Reduce};
use crate::rollout::{Responses, Rollout};
use crate::session::Session;
use rlvr_core::{
    Algorithm, Policy, Problem, SamplingConfig, SequenceBatch, StatsNeeds, TokenStats,
};
use rlvr_dist::Collective;
use rlvr_eval::{Concentration, ConcentrationAccumulator};
use std::time::Instant;
use tch::{Kind, Tensor};

/// One step's rollout batch with everything the update needs; all tensors have `B` rows.
pub struct Experience {
    /// The scored responses.
    pub responses: Responses,
    /// Per-token advantages `[B, T]` f32 (0 on padding).
    pub advantages: Tensor,
    /// Log-prob of the sampled tokens under the rollout (old) policy `[B, T]` f32; `None` when
    /// the old-policy pass was left out ([`TrainConfig::skips_old_pass`]): the update's own
    /// log-probs, detached, are then the old ones.
    pub old_logp: Option<Tensor>,
    /// Log-prob under the reference policy, when the loss needs one.
    pub ref_logp: Option<Tensor>,
    /// Per-token weights of the algorithm's rollout correction (`[algo.correction]`), which
    /// multiply the per-token loss; `None` without one.
    pub is_weights: Option<Tensor>,
    /// A few of the step's responses in text, for `samples.jsonl` (the first response of each
    /// of the first prompts; not carried by [`Experience::select`]).
    pub samples: Vec<Sample>,
    /// Where these responses sit in the step's global batch (data-parallel ranks hold a part).
    pub rows: RowShare,
}

/// One logged response (a line of `samples.jsonl`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    /// The step it was sampled at (1-based, like `metrics.jsonl`).
    pub step: u64,
    /// The problem's prompt (before any chat template).
    pub prompt: String,
    /// The response.
    pub response: String,
    /// The reference answer.
    pub ground_truth: String,
    /// The problem's origin.
    pub data_source: String,
    /// The verifier's score.
    pub score: f64,
    /// The verifier's outcome.
    pub outcome: rlvr_core::Outcome,
}

impl Experience {
    /// Number of responses.
    pub fn len(&self) -> i64 {
        self.responses.len()
    }

    /// Whether there are no responses.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows `idx` (an i64 index tensor) of every tensor, in that order.
    pub fn select(&self, idx: &Tensor) -> Experience {
        let rows = |x: &Tensor| x.index_select(0, idx);
        Experience {
            responses: self.responses.select(idx),
            advantages: rows(&self.advantages),
            old_logp: self.old_logp.as_ref().map(rows),
            ref_logp: self.ref_logp.as_ref().map(rows),
            is_weights: self.is_weights.as_ref().map(rows),
            samples: Vec::new(),
            rows: RowShare::whole(idx.size()[0]),
        }
    }
}

/// What `make_experience` reads: the session (policy, tokenizer, verifier), the algorithm, and
/// this step's problems and sampling.
pub struct ExperienceInputs<'a> {
    /// The run's session: the policy being trained (sampled from, and its old statistics taken),
    /// its tokenizer and the verifier.
    pub session: &'a Session,
    /// The frozen reference policy, when the loss needs one.
    pub reference: Option<&'a Reference>,
    /// The algorithm: advantage estimator, loss (what statistics it needs), batch pieces.
    pub algo: &'a Algorithm,
    /// The loop's settings: prompt groups that train, responses per prompt, responses logged.
    pub train: &'a TrainConfig,
    /// This step's prompts (more than `train.prompts_per_step` when a group filter oversamples).
    pub problems: &'a [Problem],
    /// Sampling settings with this step's seed (and, on a data-parallel rank, the random stream
    /// of its first response).
    pub sampling: SamplingConfig,
    /// The data-parallel group; advantages are computed over its global batch.
    pub world: &'a dyn Collective,
    /// Global index of the first prompt group of `problems` (0 in one process).
    pub first_group: usize,
}

/// Rollout → scores → advantages → old/reference statistics → diagnostics. Returns the
/// experience and the step's metrics so far (`reward/*`, `rollout/*`, `conc/*`, `adv/*`,
/// `time/*`).
pub fn make_experience(inputs: &ExperienceInputs<'_>, step: u64) -> Result<(Experience, Metrics)> {
    let t_start = Instant::now();
    // The update can start from the rollout's forward passes only at the weights that ran
    // them (one on-policy step per batch), without sharded gradients (whose backward gathers
    // and reduces part by part).
    let sharded = inputs.train.sharding as u8 >= crate::sharding::Sharding::Gradients as u8;
    let record_bytes = if skips_old_pass(inputs) && !sharded {
        inputs.train.rollout_activations_mib.saturating_mul(1 << 20)
    } else {
        0
    };
    let ro = inputs.session.rollout(
        inputs.problems,
        inputs.train.samples_per_prompt,
        &inputs.sampling,
        record_bytes,
    )?;
    experience_from(inputs, ro, step, t_start)
}

/// Whether this step's update is the only optimizer step on its batch, at the weights that
/// generated it, so that the old-policy pass is left out ([`TrainConfig::skips_old_pass`]; a
/// batch-invariant policy keeps the pass: its log-probs are the exact ones samplers match).
fn skips_old_pass(inputs: &ExperienceInputs<'_>) -> bool {
    inputs
        .train
        .skips_old_pass(inputs.algo.correction.is_some())
        && !inputs.algo.loss.needs_old_pass()
        && !inputs.session.policy.batch_invariant()
}

/// [`make_experience`] of a rollout generated already (by the asynchronous generator);
/// `t_start` is when the phase began.
pub fn experience_from(
    inputs: &ExperienceInputs<'_>,
    ro: crate::rollout::Rollout,
    step: u64,
    t_start: Instant,
) -> Result<(Experience, Metrics)> {
    let n = inputs.train.samples_per_prompt.max(1);
    let (mut ro, problems, kept_groups) = filter_groups(inputs, ro, n);
    let shaping_delta = shape_scores(inputs, &mut ro)?;
    let t_adv = Instant::now();
    let (advantages, rows) = compute_advantages(
        inputs.world,
        inputs.algo.advantage.as_ref(),
        &ro.responses,
        inputs.first_group,
    )?;
    let time_advantage = t_adv.elapsed().as_secs_f64();
    let t_old = Instant::now();
    let skip = skips_old_pass(inputs);
    let (old, ref_logp) = old_statistics(inputs, &ro.responses, skip)?;
    let time_old = t_old.elapsed().as_secs_f64();

    let mut m = step_metrics(step, &ro, &advantages);
    if let Some(old) = &old {
        let mut conc = ConcentrationAccumulator::default();
        conc.add(old, &ro.responses.mask)?;
        concentration_metrics(&mut m, &conc.finish());
        Mismatch::of(&old.logp, &ro.responses)?.set_metrics(&mut m);
    }
    let versions = Vec::<i64>::try_from(ro.responses.version.to_device(tch::Device::Cpu))?;
    if let Some(oldest) = versions.iter().min() {
        m.set("rollout/weight_version", *oldest as f64, Reduce::Max);
    }
    let is_weights = match (&inputs.algo.correction, &old) {
        (Some(c), Some(old)) => {
            let r = &ro.responses;
            let w = c.weights(&old.logp.detach(), &r.rollout_logp, &r.mask)?;
            correction_metrics(&mut m, &w, &old.logp, r)?;
            Some(w)
        }
        _ => None,
    };
    if let Some(k) = kept_groups {
        m.set("rollout/kept_groups", k, Reduce::ResponseMean);
    }
    if let Some(d) = shaping_delta {
        m.set("reward/shaping", d, Reduce::ResponseMean);
    }
    m.set("time/rollout", ro.time_generate, Reduce::Max);
    m.set("time/score", ro.time_score, Reduce::Max);
    m.set("time/advantage", time_advantage, Reduce::Max);
    m.set("time/old_stats", time_old, Reduce::Max);
    m.set(
        "time/make_experience",
        t_start.elapsed().as_secs_f64(),
        Reduce::Max,
    );
    let samples = logged_samples(&ro, &problems, inputs.train.log_samples, n, step);
    let old_logp = match inputs.train.proximal {
        crate::config::Proximal::Current => old.map(|o| o.logp.detach()),
        crate::config::Proximal::Behaviour => Some(ro.responses.rollout_logp.detach()),
    };
    let exp = Experience {
        responses: ro.responses,
        advantages,
        old_logp,
        ref_logp,
        is_weights,
        samples,
        rows,
    };
    Ok((exp, m))
}

/// How far the rollout engine's log-probs of the sampled tokens are from the trainer's old
/// policy (verl's rollout-probs diff, with ρ = π_old/π_rollout), summed over response tokens so
/// that micro-batches add up: `rollout/logp_diff_mean` (mean |Δ|), `rollout/logp_diff_max`, and
/// `rollout/kl_k3` = mean of ρ − 1 − log ρ, the k3 estimate of KL(π_rollout ‖ π_old) from the
/// engine's samples.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Mismatch {
    diff_sum: f64,
    diff_max: f64,
    k3_sum: f64,
    tokens: f64,
}

impl Mismatch {
    /// The sums of `old_logp` against the responses' rollout log-probs.
    pub(crate) fn of(old_logp: &Tensor, r: &Responses) -> Result<Mismatch> {
        let mask = r.mask.to_kind(Kind::Double);
        let log_ratio = (old_logp.detach().to_kind(Kind::Double)
            - r.rollout_logp.to_kind(Kind::Double))
            * &mask;
        let diff = log_ratio.abs();
        let k3 = (log_ratio.exp() - 1.0 - &log_ratio) * &mask;
        Ok(Mismatch {
            diff_sum: diff.sum(Kind::Double).double_value(&[]),
            diff_max: diff.max().double_value(&[]),
            k3_sum: k3.sum(Kind::Double).double_value(&[]),
            tokens: mask.sum(Kind::Double).double_value(&[]),
        })
    }

    /// Adds another part's sums.
    pub(crate) fn add(&mut self, o: Mismatch) {
        self.diff_sum += o.diff_sum;
        self.diff_max = self.diff_max.max(o.diff_max);
        self.k3_sum += o.k3_sum;
        self.tokens += o.tokens;
    }

    /// Sets the three metrics.
    pub(crate) fn set_metrics(&self, m: &mut Metrics) {
        let tokens = self.tokens.max(1.0);
        m.set(
            "rollout/logp_diff_mean",
            self.diff_sum / tokens,
            Reduce::TokenMean,
        );
        m.set("rollout/logp_diff_max", self.diff_max, Reduce::Max);
        m.set("rollout/kl_k3", self.k3_sum / tokens, Reduce::TokenMean);
    }
}

/// The correction's effect: `rollout/is_weight_mean` over valid tokens and
/// `rollout/is_clip_frac`, the share of valid tokens whose weight is not their ratio ρ (capped
/// or masked).
fn correction_metrics(m: &mut Metrics, w: &Tensor, old_logp: &Tensor, r: &Responses) -> Result<()> {
    let mask = r.mask.to_kind(Kind::Double);
    let tokens = mask.sum(Kind::Double).double_value(&[]).max(1.0);
    let w = w.to_kind(Kind::Double);
    let ratio =
        (old_logp.detach().to_kind(Kind::Double) - r.rollout_logp.to_kind(Kind::Double)).exp();
    let changed = (&w - ratio).abs().gt(1e-6).to_kind(Kind::Double) * &mask;
    m.set(
        "rollout/is_weight_mean",
        (&w * &mask).sum(Kind::Double).double_value(&[]) / tokens,
        Reduce::TokenMean,
    );
    m.set(
        "rollout/is_clip_frac",
        changed.sum(Kind::Double).double_value(&[]) / tokens,
        Reduce::TokenMean,
    );
    Ok(())
}

/// Dynamic sampling (the algorithm's group filter, if any): keeps the first
/// `train.prompts_per_step` groups whose scores the filter accepts. Returns the kept rollout,
/// its problems and the share of groups accepted (`None` without a filter).
fn filter_groups<'a>(
    inputs: &ExperienceInputs<'a>,
    ro: Rollout,
    n: usize,
) -> (Rollout, Vec<&'a Problem>, Option<f64>) {
    let all: Vec<&Problem> = inputs.problems.iter().collect();
    let Some(filter) = inputs.algo.filter.as_deref() else {
        return (ro, all, None);
    };
    let scores = ro.score_values();
    let groups = inputs.problems.len();
    let varied: Vec<usize> = (0..groups)
        .filter(|g| {
            let group: Vec<f64> = scores
                .get(g * n..(g + 1) * n)
                .unwrap_or(&[])
                .iter()
                .map(|x| f64::from(*x))
                .collect();
            filter.keep(&group)
        })
        .collect();
    let kept = varied.len() as f64 / groups.max(1) as f64;
    let train_prompts = inputs.train.prompts_per_step;
    let mut chosen: Vec<usize> = varied.into_iter().take(train_prompts).collect();
    if chosen.is_empty() {
        // Nothing varies: train on the first groups (their advantages are zero).
        chosen = (0..groups.min(train_prompts)).collect();
    }
    let problems = chosen.iter().map(|&g| &inputs.problems[g]).collect();
    (ro.keep_groups(&chosen, n), problems, Some(kept))
}

/// Reward shaping of the scores that train (accuracy stays the verifier's); returns the mean
/// change of the scores (`None` without shaping).
fn shape_scores(inputs: &ExperienceInputs<'_>, ro: &mut Rollout) -> Result<Option<f64>> {
    let Some(shaping) = inputs.algo.shaping.as_deref() else {
        return Ok(None);
    };
    let raw: Vec<f64> = ro.score_values().into_iter().map(f64::from).collect();
    let lengths: Vec<i64> = Vec::try_from(
        ro.responses
            .mask
            .sum_dim_intlist(-1, false, Kind::Int64)
            .to_device(tch::Device::Cpu),
    )?;
    let shaped = shaping.shape(&raw, &lengths, inputs.sampling.max_new_tokens)?;
    let delta = shaped.iter().zip(&raw).map(|(s, r)| s - r).sum::<f64>() / raw.len().max(1) as f64;
    let shaped: Vec<f32> = shaped.iter().map(|x| *x as f32).collect();
    ro.responses.scores = Tensor::from_slice(&shaped).to_device(ro.responses.scores.device());
    Ok(Some(delta))
}

/// The old policy's statistics of the responses, without gradient (unless `skip`: the update's
/// own pass gives them): what the loss needs plus the top-5 and entropy of the diagnostics; and
/// the reference policy's log-probs when the loss needs them.
fn old_statistics(
    inputs: &ExperienceInputs<'_>,
    r: &Responses,
    skip: bool,
) -> Result<(Option<TokenStats>, Option<Tensor>)> {
    let policy = inputs.session.policy.as_ref();
    let diag = ConcentrationAccumulator::needs(policy.vocab_size());
    let needs = StatsNeeds {
        topk: inputs.algo.loss.needs().topk.max(diag.topk),
        top1: true,
        ..diag
    };
    let _g = tch::no_grad_guard();
    let old = if skip {
        None
    } else {
        Some(policy.token_stats(&r.seq, &needs)?)
    };
    let ref_logp = match inputs.reference {
        Some(reference) => Some(reference.token_stats(policy, &r.seq)?.logp),
        None => None,
    };
    Ok((old, ref_logp))
}

/// The old policy's probability concentration over the step's response tokens (`conc/*`).
pub(crate) fn concentration_metrics(m: &mut Metrics, conc: &Concentration) {
    let rank = |v: &[f64], i: usize| v.get(i).copied().unwrap_or(f64::NAN);
    let per_token = Reduce::TokenMean;
    for i in 0..5 {
        m.set(
            format!("conc/lambda_{}", i + 1),
            rank(&conc.lambda, i),
            per_token,
        );
    }
    m.set("conc/top1_prob", rank(&conc.rank_prob, 0), per_token);
    m.set("conc/rank2_prob", rank(&conc.rank_prob, 1), per_token);
    m.set("conc/rank3_prob", rank(&conc.rank_prob, 2), per_token);
    m.set("conc/entropy", conc.entropy_mean, per_token);
    m.set("conc/sampled_logp", conc.sampled_logp, per_token);
}

/// The step's reward, rollout and advantage metrics.
fn step_metrics(step: u64, ro: &Rollout, advantages: &Tensor) -> Metrics {
    let r = &ro.responses;
    let b = r.len();
    let tokens = r.mask.sum(Kind::Double).double_value(&[]);
    let mut m = Metrics::new(step + 1);
    let per_response = Reduce::ResponseMean;
    let per_token = Reduce::TokenMean;
    m.set(
        "reward/mean",
        r.scores.mean(Kind::Double).double_value(&[]),
        per_response,
    );
    m.set("reward/accuracy", ro.accuracy(), per_response);
    m.set("rollout/response_len", tokens / b as f64, per_response);
    m.set(
        "rollout/truncated_frac",
        r.truncated.mean(Kind::Double).double_value(&[]),
        per_response,
    );
    m.set(
        "rollout/tokens_per_s",
        tokens / ro.time_generate.max(1e-9),
        Reduce::Sum,
    );
    let valid = tokens.max(1.0);
    m.set(
        "adv/mean",
        (advantages * &r.mask).sum(Kind::Double).double_value(&[]) / valid,
        per_token,
    );
    m.set(
        "adv/abs_mean",
        (advantages.abs() * &r.mask)
            .sum(Kind::Double)
            .double_value(&[])
            / valid,
        per_token,
    );
    m
}

/// The first response of each of the first `count` prompts, in text, for `samples.jsonl`.
fn logged_samples(
    ro: &Rollout,
    problems: &[&Problem],
    count: usize,
    n: usize,
    step: u64,
) -> Vec<Sample> {
    let scores = ro.score_values();
    problems
        .iter()
        .take(count)
        .enumerate()
        .filter_map(|(i, p)| {
            let row = i * n;
            Some(Sample {
                step: step + 1,
                prompt: p.prompt.clone(),
                response: ro.texts.get(row)?.clone(),
                ground_truth: p.ground_truth.clone(),
                data_source: p.data_source.clone(),
                score: f64::from(*scores.get(row)?),
                outcome: *ro.outcomes.get(row)?,
            })
        })
        .collect()
}

/// The frozen reference policy of a KL term.
pub enum Reference {
    /// A second copy of the initial weights.
    Copy(Box<dyn Policy>),
    /// The trained policy's own frozen base, its adapters switched off (LoRA).
    FrozenBase,
}

impl Reference {
    /// The reference for `policy`, built from `model`: its frozen base when it has one, else a
    /// fresh copy of the model on the policy's device.
    pub fn for_policy(
        policy: &dyn Policy,
        model: &dyn rlvr_core::ModelConfig,
    ) -> Result<Reference> {
        if policy.has_frozen_base() {
            return Ok(Reference::FrozenBase);
        }
        Ok(Reference::Copy(model.build(policy.device())?))
    }

    /// The reference's statistics of `seq` (`policy` is the trained policy).
    pub fn token_stats(&self, policy: &dyn Policy, seq: &SequenceBatch) -> Result<TokenStats> {
        let needs = StatsNeeds::default();
        Ok(match self {
            Reference::Copy(p) => p.token_stats(seq, &needs)?,
            Reference::FrozenBase => policy.base_token_stats(seq, &needs)?,
        })
    }
}
