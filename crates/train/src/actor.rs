//! The second phase of an RL step: the actor's update (verl's `update_policy`). It owns the PPO
//! epochs, the shuffled mini-batches (one optimizer step each) and the micro-batches (gradient
//! accumulation with the mini-batch's global token counts, so micro-batching never changes the
//! gradient), and reports every metric the loss emits.

use crate::config::TrainConfig;
use crate::distributed::{all_reduce_gradients, RowShare};
use crate::error::Result;
use crate::experience::{concentration_metrics, Experience, Mismatch};
use crate::metrics::{loss_metric_key, Metrics, Reduce};
use crate::optim::{optimizer_step, AdamW, StepOutcome};
use crate::param_shards::ParamShards;
use crate::sharding::gather_parameters;
use rlvr_core::{Algorithm, GlobalCounts, LossInput, Policy, ShardHooks};
use rlvr_dist::Collective;
use rlvr_eval::ConcentrationAccumulator;
use std::collections::BTreeMap;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Metrics every update reports, 0 when the loss does not emit them.
const STANDARD_LOSS_METRICS: [&str; 3] = ["loss/clipfrac", "loss/ppo_kl", "loss/kl_ref"];

/// The optimizer state and the algorithm that update the policy (which the run's
/// [`crate::session::Session`] holds).
pub struct Actor {
    /// AdamW moments and step count.
    pub opt: AdamW,
    /// The validated algorithm (estimator, loss, aggregation).
    pub algo: Algorithm,
    /// This rank's gradient (and, under `full`, parameter) slices when `train.sharding` is
    /// `gradients` or `full`.
    pub shards: Option<ParamShards>,
}

impl Actor {
    /// Updates `policy` on `exp`: `epochs` passes over `mini_batches` shuffled mini-batches of
    /// micro-batches of `micro_batch_size` responses, one optimizer step per mini-batch at
    /// learning rate `lr`. `step` (0-based) seeds the shuffling. Returns `actor/*`, `loss/*` and
    /// `time/update`.
    ///
    /// On a data-parallel rank (`world` of more than one, `exp` a part of the global batch) the
    /// shuffle is of the global batch, each rank works on its rows of each mini-batch, the
    /// mini-batch's token and sequence counts and its loss are summed over the ranks before the
    /// loss is normalised, and the gradients are summed before the (identical) optimizer step:
    /// every rank takes the step one process would take on the whole batch.
    pub fn update(
        &mut self,
        policy: &dyn Policy,
        exp: &Experience,
        tc: &TrainConfig,
        step: u64,
        lr: f64,
        world: &dyn Collective,
    ) -> Result<Metrics> {
        let t_up = Instant::now();
        let device = policy.device();
        let mut needs = self.algo.loss.needs();
        let b = exp.len();
        let RowShare { offset, total } = exp.rows;
        let mut tally = Tally::default();
        if exp.old_logp.is_none() {
            // No old-policy pass ran: the diagnostics it gave come from this update's pass, at
            // the same weights (one optimizer step per batch).
            let diag = ConcentrationAccumulator::needs(policy.vocab_size());
            needs.topk = needs.topk.max(diag.topk);
            needs.entropy = true;
            tally.diag = Some(OnPolicyDiag::default());
        }
        for epoch in 0..tc.epochs {
            tch::manual_seed(
                (tc.seed
                    .wrapping_mul(31)
                    .wrapping_add(step * 97 + epoch as u64)) as i64,
            );
            let perm = Vec::<i64>::try_from(Tensor::randperm(total, (Kind::Int64, Device::Cpu)))?;
            let per_mb = (total as usize).div_ceil(tc.mini_batches);
            for mb in 0..tc.mini_batches {
                let start = mb * per_mb;
                if start >= total as usize {
                    break;
                }
                let end = (start + per_mb).min(total as usize);
                // This rank's rows of the mini-batch, as local indices.
                let mine: Vec<i64> = perm[start..end]
                    .iter()
                    .filter(|&&g| g >= offset && g < offset + b)
                    .map(|&g| g - offset)
                    .collect();
                let idx = Tensor::from_slice(&mine).to_device(device);
                let local = if mine.is_empty() {
                    GlobalCounts {
                        tokens: 0.0,
                        sequences: 0.0,
                    }
                } else {
                    GlobalCounts::of_mask(&exp.responses.mask.index_select(0, &idx))?
                };
                let summed = world.sum(&[local.tokens, local.sequences])?;
                let counts = GlobalCounts {
                    tokens: summed[0],
                    sequences: summed[1],
                };
                if counts.tokens == 0.0 {
                    continue;
                }
                let (loss_total, outcome) = match &self.shards {
                    None => self.plain_mini_batch(
                        policy, exp, &idx, counts, &needs, tc, lr, world, &mut tally,
                    )?,
                    Some(shards) => {
                        let loss_total = self.sharded_micro_batches(
                            policy, shards, exp, &idx, counts, &needs, tc, world, &mut tally,
                        )?;
                        let t_step = Instant::now();
                        let outcome = shards.optimizer_step(
                            &mut self.opt,
                            world,
                            loss_total,
                            lr,
                            tc.grad_clip,
                        )?;
                        tally.time_all_reduce += t_step.elapsed().as_secs_f64();
                        (loss_total, outcome)
                    }
                };
                match outcome {
                    StepOutcome::Applied { grad_norm } => {
                        tally.loss += loss_total;
                        tally.grad_norm += grad_norm;
                        tally.updates += 1;
                    }
                    StepOutcome::Skipped { loss, grad_norm } => {
                        tally.skipped += 1;
                        tracing::warn!(
                            "step {}: non-finite loss ({loss}) or gradient norm ({grad_norm}); update skipped",
                            step + 1
                        );
                    }
                }
            }
        }
        Ok(tally.metrics(step, lr, world.is_single(), t_up))
    }

    /// One mini-batch of whole-parameter training: micro-batches accumulate gradients into the
    /// parameters' `.grad`, which are all-reduced before the optimizer step (and, under
    /// `optimizer` sharding, the updated slices all-gathered). Returns the summed loss and
    /// what the step did.
    #[allow(clippy::too_many_arguments)]
    fn plain_mini_batch(
        &mut self,
        policy: &dyn Policy,
        exp: &Experience,
        rows: &Tensor,
        counts: GlobalCounts,
        needs: &rlvr_core::StatsNeeds,
        tc: &TrainConfig,
        lr: f64,
        world: &dyn Collective,
        tally: &mut Tally,
    ) -> Result<(f64, StepOutcome)> {
        AdamW::zero_grad(policy.var_store());
        let len = rows.size()[0];
        let mut loss_total = 0.0;
        let mut micro = 0;
        while micro < len {
            let ml = (tc.micro_batch_size as i64).min(len - micro);
            let part = exp.select(&rows.narrow(0, micro, ml));
            let out = self.micro_step(policy, &part, counts, needs, None, 1.0)?;
            loss_total += out.loss;
            tally.add(out)?;
            micro += ml;
        }
        let t_ar = Instant::now();
        let loss_total = world.sum(&[loss_total])?[0];
        all_reduce_gradients(world, policy.var_store())?;
        tally.time_all_reduce += t_ar.elapsed().as_secs_f64();
        let outcome = optimizer_step(
            &mut self.opt,
            policy.var_store(),
            loss_total,
            lr,
            tc.grad_clip,
        )?;
        if let (StepOutcome::Applied { .. }, Some(spec)) = (outcome, self.opt.shard()) {
            let t_ag = Instant::now();
            gather_parameters(world, policy.var_store(), spec)?;
            tally.time_all_reduce += t_ag.elapsed().as_secs_f64();
        }
        if world.is_single() {
            AdamW::release_grads(policy.var_store())?;
        }
        Ok((loss_total, outcome))
    }

    /// The micro-batches of one mini-batch under `gradients` or `full` sharding: each one's
    /// gradients are reduce-scattered into the slices part by part. Every rank runs as many
    /// micro-batches as the rank with the most rows; a rank out of rows runs a zero-weighted
    /// one over its first row so that the collectives line up. Returns the loss summed over
    /// the ranks.
    #[allow(clippy::too_many_arguments)]
    fn sharded_micro_batches(
        &self,
        policy: &dyn Policy,
        shards: &ParamShards,
        exp: &Experience,
        rows: &Tensor,
        counts: GlobalCounts,
        needs: &rlvr_core::StatsNeeds,
        tc: &TrainConfig,
        world: &dyn Collective,
        tally: &mut Tally,
    ) -> Result<f64> {
        shards.release()?;
        shards.zero_grads();
        let len = rows.size()[0];
        let mbs = tc.micro_batch_size.max(1) as i64;
        let local = (len + mbs - 1) / mbs;
        let rounds = world
            .all_gather(&[local as f64])?
            .iter()
            .filter_map(|v| v.first().map(|&x| x as i64))
            .max()
            .unwrap_or(local);
        let hooks = shards.hooks(world);
        let mut loss_total = 0.0;
        for round in 0..rounds {
            let micro = round * mbs;
            if micro < len {
                let part = exp.select(&rows.narrow(0, micro, mbs.min(len - micro)));
                let out = self.micro_step(policy, &part, counts, needs, Some(&hooks), 1.0)?;
                loss_total += out.loss;
                tally.add(out)?;
            } else {
                let first = Tensor::from_slice(&[0i64]).to_device(rows.device());
                self.micro_step(
                    policy,
                    &exp.select(&first),
                    counts,
                    needs,
                    Some(&hooks),
                    0.0,
                )?;
            }
        }
        let t_ar = Instant::now();
        let loss_total = world.sum(&[loss_total])?[0];
        tally.time_all_reduce += t_ar.elapsed().as_secs_f64();
        Ok(loss_total)
    }

    /// Forward and backward of one micro-batch, its loss scaled by `weight` (0: a pass that
    /// only takes part in the sharded collectives); `hooks` run a sharded backward.
    fn micro_step(
        &self,
        policy: &dyn Policy,
        part: &Experience,
        counts: GlobalCounts,
        needs: &rlvr_core::StatsNeeds,
        hooks: Option<&dyn ShardHooks>,
        weight: f64,
    ) -> Result<MicroStep> {
        let r = &part.responses;
        let mut sums = Vec::new();
        let mut diag = None;
        let (loss, algo) = (&self.algo.loss, &self.algo);
        let mut loss_of = |stats: &rlvr_core::TokenStats| {
            // Without an old-policy pass, the old log-probs are this pass's, detached (exact:
            // the weights have not moved since the rollout), and so are the diagnostics.
            let own;
            let old_logp = match &part.old_logp {
                Some(old) => old,
                None => {
                    own = stats.logp.detach();
                    diag = Some(OnPolicyDiag::of(stats, &own, r)?);
                    &own
                }
            };
            let input = LossInput {
                stats,
                old_logp,
                ref_logp: part.ref_logp.as_ref(),
                advantages: &part.advantages,
                mask: &r.mask,
                scores: &r.scores,
                tokens: &r.tokens,
                truncated: Some(&r.truncated),
            };
            let mut out = loss.per_token_loss(&input)?;
            if let Some(w) = &part.is_weights {
                out.per_token = out.per_token.f_mul(w)?;
            }
            sums = out
                .metrics
                .iter()
                .map(|metric| {
                    let v = (&metric.values.detach().to_kind(Kind::Double) * &r.mask)
                        .sum(Kind::Double)
                        .double_value(&[]);
                    (loss_metric_key(metric.name), v)
                })
                .collect();
            let loss =
                algo.aggregation
                    .reduce(&out.per_token, &r.mask, counts, algo.loss_normalizer)?;
            if weight == 1.0 {
                Ok(loss)
            } else {
                Ok(loss.f_mul_scalar(weight)?)
            }
        };
        // No old-policy pass: the weights are the rollout's, whose record (if kept) is this
        // batch's forward.
        let record = match (hooks, &part.old_logp) {
            (None, None) => r.record.as_ref(),
            _ => None,
        };
        let value = match (hooks, record) {
            (Some(hooks), _) => policy.backward_loss_sharded(&r.seq, needs, hooks, &mut loss_of)?,
            (None, Some(record)) => {
                policy.backward_loss_recorded(&r.seq, record, needs, &mut loss_of)?
            }
            (None, None) => policy.backward_loss(&r.seq, needs, &mut loss_of)?,
        };
        let ntok = r.mask.sum(Kind::Double).double_value(&[]);
        Ok(MicroStep {
            loss: value,
            metric_sums: sums,
            tokens: ntok,
            diag,
            recorded: record.is_some(),
        })
    }
}

/// What the mini-batches of one update added up to.
#[derive(Default)]
struct Tally {
    /// Micro-batches run, and how many of them started from the rollout's record.
    micro_steps: usize,
    recorded: usize,
    /// Sum of the applied updates' losses.
    loss: f64,
    /// Sum of the applied updates' gradient norms.
    grad_norm: f64,
    /// Optimizer steps applied.
    updates: usize,
    /// Optimizer steps skipped (non-finite loss or gradient).
    skipped: usize,
    /// Token-sums of the loss's metrics, by key.
    metric_sums: BTreeMap<String, f64>,
    /// Valid tokens those sums are over.
    tokens: f64,
    /// Seconds in all-reduces.
    time_all_reduce: f64,
    /// The old-policy diagnostics, when this update's pass gives them (no old-policy pass).
    diag: Option<OnPolicyDiag>,
}

impl Tally {
    /// Adds one micro-batch's metric sums, tokens and diagnostics.
    fn add(&mut self, out: MicroStep) -> Result<()> {
        for (k, v) in out.metric_sums {
            *self.metric_sums.entry(k).or_insert(0.0) += v;
        }
        self.tokens += out.tokens;
        self.micro_steps += 1;
        self.recorded += usize::from(out.recorded);
        if let (Some(all), Some(part)) = (&mut self.diag, out.diag) {
            all.conc
                .add_sums(&part.conc.to_sums())
                .map_err(|e| crate::error::TrainError::Run(format!("{e:#}")))?;
            all.mismatch.add(part.mismatch);
        }
        Ok(())
    }

    /// `actor/*` (per applied update), the loss's metrics (per token), `time/update` and, on a
    /// data-parallel rank, `time/all_reduce`.
    fn metrics(mut self, step: u64, lr: f64, single: bool, started: Instant) -> Metrics {
        let mut m = Metrics::new(step + 1);
        let updates = self.updates;
        let per_update = |x: f64| if updates > 0 { x / updates as f64 } else { 0.0 };
        // Equal on every rank: the loss and gradient are all-reduced before the step.
        m.set("actor/loss", per_update(self.loss), Reduce::Same);
        m.set("actor/grad_norm", per_update(self.grad_norm), Reduce::Same);
        m.set("actor/lr", lr, Reduce::Same);
        m.set("actor/updates", updates as f64, Reduce::Same);
        m.set("actor/skipped_updates", self.skipped as f64, Reduce::Same);
        // The share of micro-batches whose policy was handed the rollout's record
        // (`train.rollout_activations_mib`).
        m.set(
            "actor/from_rollout_record",
            self.recorded as f64 / self.micro_steps.max(1) as f64,
            Reduce::ResponseMean,
        );
        for key in STANDARD_LOSS_METRICS {
            self.metric_sums.entry(key.to_string()).or_insert(0.0);
        }
        // The loss's metrics are per-token means, whatever their names.
        for (k, v) in self.metric_sums {
            let mean = if self.tokens > 0.0 {
                v / self.tokens
            } else {
                0.0
            };
            m.set(k, mean, Reduce::TokenMean);
        }
        if let Some(diag) = &self.diag {
            concentration_metrics(&mut m, &diag.conc.finish());
            diag.mismatch.set_metrics(&mut m);
        }
        m.set("time/update", started.elapsed().as_secs_f64(), Reduce::Max);
        if !single {
            m.set("time/all_reduce", self.time_all_reduce, Reduce::Max);
        }
        m
    }
}

/// What one micro-batch contributed.
struct MicroStep {
    /// Its share of the mini-batch loss.
    loss: f64,
    /// Token-sums of the loss's metrics, by key.
    metric_sums: Vec<(String, f64)>,
    /// Its number of valid tokens.
    tokens: f64,
    /// The old-policy diagnostics of its tokens, when no old-policy pass ran.
    diag: Option<OnPolicyDiag>,
    /// Whether it started from the rollout's recorded forward passes.
    recorded: bool,
}

/// What the old-policy pass reports besides the log-probs (concentration, rollout mismatch),
/// taken from the update's own statistics when that pass is left out.
#[derive(Default)]
struct OnPolicyDiag {
    conc: ConcentrationAccumulator,
    mismatch: Mismatch,
}

impl OnPolicyDiag {
    /// The diagnostics of one micro-batch's statistics; `old_logp` is their detached log-probs.
    fn of(
        stats: &rlvr_core::TokenStats,
        old_logp: &Tensor,
        r: &crate::rollout::Responses,
    ) -> rlvr_core::Result<OnPolicyDiag> {
        let mut conc = ConcentrationAccumulator::default();
        conc.add(stats, &r.mask)
            .map_err(|e| rlvr_core::CoreError::Shape(format!("{e:#}")))?;
        let mismatch =
            Mismatch::of(old_logp, r).map_err(|e| rlvr_core::CoreError::Shape(e.to_string()))?;
        Ok(OnPolicyDiag { conc, mismatch })
    }
}
