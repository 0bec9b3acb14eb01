//! The first phase of an RL step, `make_experience` (verl's `generate_sequences` →
//! `compute_reward` → `compute_advantage` → `compute_log_prob`): rollout, scores, advantages,
//! old-policy and reference statistics, and the step's diagnostics. The result, an [`Experience`],
//! is everything the actor's update reads.

use crate::distributed::{global_advantages, RowShare};
use crate::error::Result;
use crate::evaluation::diagnostic_needs;
use crate::metrics::Metrics;
use crate::rollout::{rollout, Responses, Rollout};
use rlvr_core::{
    AdvantageEstimator, AdvantageInput, GroupFilter, Policy, Problem, RewardShaping,
    SamplingConfig, StatsNeeds, TextCodec, Verifier,
};
use rlvr_dist::Collective;
use rlvr_models::tokenizer::HfTokenizer;
use std::time::Instant;
use tch::{Kind, Tensor};

/// One step's rollout batch with everything the update needs; all tensors have `B` rows.
pub struct Experience {
    /// The scored responses.
    pub responses: Responses,
    /// Per-token advantages `[B, T]` f32 (0 on padding).
    pub advantages: Tensor,
    /// Log-prob of the sampled tokens under the rollout (old) policy `[B, T]` f32.
    pub old_logp: Tensor,
    /// Log-prob under the reference policy, when the loss needs one.
    pub ref_logp: Option<Tensor>,
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
            old_logp: rows(&self.old_logp),
            ref_logp: self.ref_logp.as_ref().map(rows),
            samples: Vec::new(),
            rows: RowShare::whole(idx.size()[0]),
        }
    }
}

/// What `make_experience` reads: the models, the data of this step and the algorithm's pieces.
pub struct ExperienceInputs<'a> {
    /// The policy being trained (sampled from, and its old statistics taken).
    pub policy: &'a dyn Policy,
    /// The frozen reference policy, when the loss needs one.
    pub reference: Option<&'a dyn Policy>,
    /// Tokenizer.
    pub codec: &'a dyn TextCodec,
    /// Responses kept in text for `samples.jsonl` (one per prompt, the first prompts).
    pub log_samples: usize,
    /// Chat template of chat models.
    pub chat: Option<&'a HfTokenizer>,
    /// Scores responses.
    pub verifier: &'a dyn Verifier,
    /// The advantage estimator.
    pub advantage: &'a dyn AdvantageEstimator,
    /// Statistics the loss needs (the old pass computes at least these).
    pub loss_needs: StatsNeeds,
    /// This step's prompts (more than `train_prompts` when a group filter oversamples).
    pub problems: &'a [Problem],
    /// Prompt groups that train (`train.prompts_per_step`).
    pub train_prompts: usize,
    /// Reward shaping applied to the scores before advantages, if any.
    pub shaping: Option<&'a dyn RewardShaping>,
    /// Filter of prompt groups (dynamic sampling), if any.
    pub filter: Option<&'a dyn GroupFilter>,
    /// Responses per prompt.
    pub samples_per_prompt: usize,
    /// Sampling settings with this step's seed (and, on a data-parallel rank, the random stream
    /// of its first response).
    pub sampling: SamplingConfig,
    /// The data-parallel group; advantages are computed over its global batch.
    pub world: &'a dyn Collective,
    /// Global index of the first prompt group of `problems` (0 in one process).
    pub first_group: usize,
}

/// Token-level scores: each response's score on its last valid token (verl's
/// `token_level_scores`).
pub fn token_level_scores(scores: &Tensor, mask: &Tensor) -> Tensor {
    let lengths = mask.sum_dim_intlist(-1, false, Kind::Int64);
    let last = (&lengths - 1).clamp_min(0).unsqueeze(1);
    mask.zeros_like().scatter(1, &last, &scores.unsqueeze(1)) * mask
}

/// Rollout → scores → advantages → old/reference statistics → diagnostics. Returns the
/// experience and the step's metrics so far (`reward/*`, `rollout/*`, `conc/*`, `adv/*`,
/// `time/*`).
pub fn make_experience(inputs: &ExperienceInputs<'_>, step: u64) -> Result<(Experience, Metrics)> {
    let t_start = Instant::now();
    let mut ro: Rollout = rollout(
        inputs.policy,
        inputs.codec,
        inputs.chat,
        inputs.verifier,
        inputs.problems,
        inputs.samples_per_prompt,
        &inputs.sampling,
    )?;
    let n = inputs.samples_per_prompt.max(1);
    // Dynamic sampling: keep the first `train_prompts` groups whose scores differ.
    let mut problems: Vec<&Problem> = inputs.problems.iter().collect();
    let mut kept_groups = None;
    if let Some(filter) = inputs.filter {
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
        kept_groups = Some(varied.len() as f64 / groups.max(1) as f64);
        let mut chosen: Vec<usize> = varied.into_iter().take(inputs.train_prompts).collect();
        if chosen.is_empty() {
            // Nothing varies: train on the first groups (their advantages are zero).
            chosen = (0..groups.min(inputs.train_prompts)).collect();
        }
        ro = ro.keep_groups(&chosen, n);
        problems = chosen.iter().map(|&g| &inputs.problems[g]).collect();
    }
    // Reward shaping of the scores that train (accuracy stays the verifier's).
    let mut shaping_delta = None;
    if let Some(shaping) = inputs.shaping {
        let raw: Vec<f64> = ro.score_values().into_iter().map(f64::from).collect();
        let lengths: Vec<i64> = Vec::try_from(
            ro.responses
                .mask
                .sum_dim_intlist(-1, false, Kind::Int64)
                .to_device(tch::Device::Cpu),
        )?;
        let shaped = shaping.shape(&raw, &lengths, inputs.sampling.max_new_tokens)?;
        shaping_delta = Some(
            shaped.iter().zip(&raw).map(|(s, r)| s - r).sum::<f64>() / raw.len().max(1) as f64,
        );
        let shaped: Vec<f32> = shaped.iter().map(|x| *x as f32).collect();
        ro.responses.scores = Tensor::from_slice(&shaped).to_device(ro.responses.scores.device());
    }
    let r = &ro.responses;
    let t_adv = Instant::now();
    let (advantages, rows) = if !inputs.world.is_single() {
        global_advantages(
            inputs.world,
            inputs.advantage,
            &r.scores,
            &r.mask,
            &r.group,
            inputs.first_group,
        )?
    } else {
        let tls = token_level_scores(&r.scores, &r.mask);
        let advantages = inputs.advantage.compute(&AdvantageInput {
            scores: &r.scores,
            token_level_scores: &tls,
            mask: &r.mask,
            group: &r.group,
        })?;
        (advantages, RowShare::whole(r.len()))
    };
    let time_advantage = t_adv.elapsed().as_secs_f64();
    // Old statistics (and diagnostics) without gradient.
    let t_old = Instant::now();
    let diag = diagnostic_needs(inputs.policy);
    let needs = StatsNeeds {
        topk: inputs.loss_needs.topk.max(diag.topk),
        top1: true,
        ..diag
    };
    let old = {
        let _g = tch::no_grad_guard();
        inputs.policy.token_stats(&r.seq, &needs)?
    };
    let old_logp = old.logp.detach();
    let ref_logp = match inputs.reference {
        Some(reference) => {
            let _g = tch::no_grad_guard();
            Some(reference.token_stats(&r.seq, &StatsNeeds::default())?.logp)
        }
        None => None,
    };
    let mut conc = rlvr_eval::ConcentrationAccumulator::default();
    conc.add(&old, &r.mask)?;
    let conc = conc.finish();
    let time_old = t_old.elapsed().as_secs_f64();

    let b = r.len();
    let tokens = r.mask.sum(Kind::Double).double_value(&[]);
    let rank = |v: &[f64], i: usize| v.get(i).copied().unwrap_or(f64::NAN);
    let mut m = Metrics::new(step + 1);
    m.set("reward/mean", r.scores.mean(Kind::Double).double_value(&[]));
    m.set("reward/accuracy", ro.accuracy());
    for i in 0..5 {
        m.set(format!("conc/lambda_{}", i + 1), rank(&conc.lambda, i));
    }
    m.set("conc/top1_prob", rank(&conc.rank_prob, 0));
    m.set("conc/rank2_prob", rank(&conc.rank_prob, 1));
    m.set("conc/rank3_prob", rank(&conc.rank_prob, 2));
    m.set("conc/entropy", conc.entropy_mean);
    m.set("conc/sampled_logp", conc.sampled_logp);
    m.set("rollout/response_len", tokens / b as f64);
    m.set(
        "rollout/truncated_frac",
        r.truncated.mean(Kind::Double).double_value(&[]),
    );
    m.set("rollout/tokens_per_s", tokens / ro.time_generate.max(1e-9));
    let valid = tokens.max(1.0);
    m.set(
        "adv/mean",
        (&advantages * &r.mask).sum(Kind::Double).double_value(&[]) / valid,
    );
    m.set(
        "adv/abs_mean",
        (advantages.abs() * &r.mask)
            .sum(Kind::Double)
            .double_value(&[])
            / valid,
    );
    if let Some(k) = kept_groups {
        m.set("rollout/kept_groups", k);
    }
    if let Some(d) = shaping_delta {
        m.set("reward/shaping", d);
    }
    m.set("time/rollout", ro.time_generate);
    m.set("time/score", ro.time_score);
    m.set("time/advantage", time_advantage);
    m.set("time/old_stats", time_old);
    m.set("time/make_experience", t_start.elapsed().as_secs_f64());
    let scores = ro.score_values();
    let samples = problems
        .iter()
        .take(inputs.log_samples)
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
        .collect();
    let exp = Experience {
        responses: ro.responses,
        advantages,
        old_logp,
        ref_logp,
        samples,
        rows,
    };
    Ok((exp, m))
}
