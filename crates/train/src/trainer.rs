//! The RL loop as named phases (verl's `fit`): each step is [`make_experience`] followed by the
//! actor's [`Actor::update`], each timed under its name; around the steps, [`fit`] writes the run
//! folder (resolved config, metrics log, atomic checkpoints, before/after evaluation, summary).

use crate::actor::Actor;
use crate::async_rollout::{load_buffer, RawBatch};
use crate::asynchronous::check_async;
use crate::checkpoint::{latest_checkpoint, load_checkpoint, write_checkpoint};
use crate::config::RunConfig;
use crate::config_bail;
use crate::distributed::{
    broadcast_parameters, check_parameters, define_gradients, group_share, join_from_env,
    reduce_metrics,
};
use crate::error::{fs::write_atomic, IoResultExt, Result, TrainError};
use crate::evaluation::EvalOptions;
use crate::experience::{make_experience, Experience, ExperienceInputs, Reference, Sample};
use crate::metrics::{Metrics, MetricsLog, Reduce};
use crate::optim::{first_nonfinite_parameter, lr_at, AdamW};
use crate::param_shards::ParamShards;
use crate::pipeline::Generated;
use crate::run_dir::{create_run_dir, FolderLock};
use crate::session::{Placement, Session};
use crate::sharding::Sharding;
use crate::summary::write_run_summary;
use rlvr_core::{Problem, SamplingConfig};
use rlvr_dist::Collective;
use rlvr_eval::EvalReport;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a caller of [`fit`] is told while it runs; every method has a silent default.
pub trait Reporter {
    /// A line of information ("resuming ... from step N").
    fn message(&self, _text: &str) {}
    /// A new run's folder `dir` was created (everything was built and validated first).
    fn created(&self, _dir: &Path) {}
    /// An evaluation finished (`label` is "before" or "after").
    fn evaluation(&self, _label: &str, _report: &EvalReport) {}
    /// Training starts at `step` of `total`.
    fn start(&self, _step: u64, _total: u64) {}
    /// A step finished with these metrics.
    fn step(&self, _metrics: &Metrics, _total: u64) {}
    /// Training finished (before the final evaluation).
    fn finish(&self) {}
    /// A signal asking the run to stop (checked after each step): the signal number. The run
    /// then checkpoints its last finished step and returns [`TrainError::Interrupted`].
    fn stop_requested(&self) -> Option<i32> {
        None
    }
}

/// A [`Reporter`] that says nothing.
pub struct Silent;
impl Reporter for Silent {}

/// Everything the loop needs, built from a [`RunConfig`].
pub struct Trainer {
    /// The run's settings.
    pub cfg: RunConfig,
    /// The policy, its tokenizer, the problems and the verifier.
    pub session: Session,
    /// The optimizer and the algorithm.
    pub actor: Actor,
    /// A frozen reference policy, when the loss needs one.
    pub reference: Option<Reference>,
    /// Steps completed.
    pub step: u64,
    /// Run folder.
    pub dir: PathBuf,
    /// A few responses of the last step, in text (written to `samples.jsonl`).
    pub last_samples: Vec<Sample>,
    /// The data-parallel group this trainer is a rank of ([`rlvr_dist::Single`] alone).
    pub world: Box<dyn Collective>,
    /// The asynchronous generator (`train.max_staleness > 0`), once started.
    pub pipeline: Option<crate::pipeline::Pipeline<crate::async_rollout::RolloutGenerator>>,
    /// The servers, when the generator thread uses them (the trainer writes their weights).
    pub(crate) generator_engine: Option<std::sync::Arc<crate::engine::ServerEngine>>,
    /// Batches a restored checkpoint had generated ahead, for the pipeline when it starts.
    pub(crate) resumed_buffer: Vec<Generated<RawBatch>>,
}

impl Trainer {
    /// Builds the session, algorithm and optimizer of `cfg` for the run folder `dir` (nothing
    /// is written), as a rank of the data-parallel job the torchrun variables describe (one
    /// process when they are not set).
    pub fn new(cfg: RunConfig, dir: &Path) -> Result<Trainer> {
        let (world, env) = join_from_env()?;
        Trainer::with_world(cfg, dir, world, env.local_rank)
    }

    /// [`Trainer::new`] as rank `world.rank()` of `world`; `local_rank` picks the GPU when the
    /// device is `cuda` (`cuda:LOCAL_RANK`).
    pub fn with_world(
        cfg: RunConfig,
        dir: &Path,
        world: Box<dyn Collective>,
        local_rank: usize,
    ) -> Result<Trainer> {
        check_ranks(world.world_size(), cfg.train.prompts_per_step)?;
        if matches!(cfg.train.sharding, Sharding::Gradients | Sharding::Full) {
            rlvr_core::memory::configure_sharded_memory();
        }
        let mut session = Session::open(&cfg, Placement { local_rank })?;
        if matches!(cfg.train.sharding, Sharding::Gradients | Sharding::Full) {
            // A packed copy of the weights during rollouts would undo what sharding saves.
            session.policy.set_packed_generation(false);
        }
        let algo = cfg.algo.build()?;
        check_async(&cfg, world.world_size(), algo.correction.is_some())?;
        if cfg.train.sharding == Sharding::Full && cfg.train.max_staleness > 0 {
            config_bail!(
                "train.sharding = \"full\" with train.max_staleness = {} is not built: the \
                 generator needs whole weights while the update holds only slices; use \
                 max_staleness = 0 or sharding = \"gradients\"",
                cfg.train.max_staleness
            );
        }
        if world.world_size() > 1 && algo.filter.is_some() {
            config_bail!(
                "algo.filter (dynamic sampling) chooses groups from every group's scores and is \
                 not supported with more than one rank yet (WORLD_SIZE={}); run it in one process",
                world.world_size()
            );
        }
        let vocab = session.policy.vocab_size();
        let topk = algo.loss.needs().topk as i64;
        if topk > vocab {
            config_bail!(
                "the loss needs the top {topk} candidates but the model's vocabulary has {vocab} \
                 tokens; lower algo.loss.topk"
            );
        }
        let reference = if algo.loss.needs().reference {
            Some(Reference::for_policy(
                session.policy.as_ref(),
                cfg.model.as_ref(),
            )?)
        } else {
            None
        };
        if cfg.rollout.engine == crate::engine::EngineKind::Server {
            let adapters = session.policy.has_frozen_base();
            let engine = crate::engine::ServerEngine::connect(&cfg.rollout, adapters)?;
            let invariant = serde_json::to_value(cfg.model.as_ref())
                .ok()
                .and_then(|v| v.get("batch_invariant").and_then(|b| b.as_bool()))
                == Some(true);
            engine.check_invariance(invariant);
            session.engine = Some(engine);
        }
        drop_long_prompts(&mut session)?;
        check_rollout_memory(&session, &cfg, world.world_size())?;
        let (opt, shards) = optimizer_for(&cfg, session.policy.as_ref(), world.as_ref())?;
        if !world.is_single() {
            define_gradients(session.policy.var_store());
        }
        Ok(Trainer {
            cfg,
            session,
            actor: Actor { opt, algo, shards },
            reference,
            step: 0,
            dir: dir.to_path_buf(),
            last_samples: Vec::new(),
            world,
            pipeline: None,
            generator_engine: None,
            resumed_buffer: Vec::new(),
        })
    }

    /// The prompts of the current step: a deterministic walk over the training problems.
    pub fn step_problems(&self) -> Vec<Problem> {
        self.problems_at(self.step)
    }

    /// The prompts of step `step` (0-based).
    pub fn problems_at(&self, step: u64) -> Vec<Problem> {
        let tc = &self.cfg.train;
        let n_train = self.session.problems.train.len();
        // A group filter (dynamic sampling) samples more prompts than train.
        let count = match &self.actor.algo.filter {
            Some(f) => (tc.prompts_per_step as f64 * f.oversample()).ceil() as usize,
            None => tc.prompts_per_step,
        };
        (0..count)
            .map(|i| self.session.problems.train[(step as usize * count + i) % n_train].clone())
            .collect()
    }

    /// Rollout sampling settings of the current step.
    pub fn step_sampling(&self) -> SamplingConfig {
        self.sampling_at(self.step)
    }

    /// Rollout sampling settings of step `step` (0-based).
    pub fn sampling_at(&self, step: u64) -> SamplingConfig {
        let seed = self.cfg.train.seed.wrapping_mul(1_000_003);
        self.session.sampling_with_seed(seed.wrapping_add(step))
    }

    /// The prompt groups of [`Trainer::step_problems`] this rank holds.
    pub fn local_groups(&self, count: usize) -> std::ops::Range<usize> {
        group_share(count, self.world.rank(), self.world.world_size())
    }

    /// Phase 1 of the current step: see [`make_experience`]. A data-parallel rank samples its
    /// share of the step's prompt groups, from the random streams those rows have in one
    /// process.
    pub fn make_experience(&self) -> Result<(Experience, Metrics)> {
        self.whole_model_for_compute()?;
        let all = self.step_problems();
        let share = self.local_groups(all.len());
        let problems = all[share.clone()].to_vec();
        let mut sampling = self.step_sampling();
        sampling.first_stream = (share.start * self.cfg.train.samples_per_prompt.max(1)) as u64;
        let inputs = self.experience_inputs(&problems, sampling, share.start);
        make_experience(&inputs, self.step)
    }

    /// What `make_experience` reads for `problems` (prompt groups from `first_group` of the
    /// step's global batch) sampled with `sampling`.
    pub(crate) fn experience_inputs<'a>(
        &'a self,
        problems: &'a [Problem],
        sampling: SamplingConfig,
        first_group: usize,
    ) -> ExperienceInputs<'a> {
        ExperienceInputs {
            session: &self.session,
            reference: self.reference.as_ref(),
            algo: &self.actor.algo,
            train: &self.cfg.train,
            problems,
            sampling,
            world: self.world.as_ref(),
            first_group,
        }
    }

    /// Makes the parameters whole, exactly, where `train.sharding = "full"` holds them in
    /// slices between updates (a collective: every rank calls it). The update releases them
    /// again.
    pub fn whole_model(&self) -> Result<()> {
        if let Some(shards) = &self.actor.shards {
            shards.whole(self.world.as_ref())?;
        }
        Ok(())
    }

    /// [`Trainer::whole_model`] for rollouts, statistics and evaluation: parameters that mixed
    /// precision reads through a bf16 cast are gathered as bf16 (the same results, half the
    /// memory).
    pub fn whole_model_for_compute(&self) -> Result<()> {
        if let Some(shards) = &self.actor.shards {
            shards.whole_for_compute(self.world.as_ref())?;
        }
        Ok(())
    }

    /// The learning rate of the current step.
    pub fn lr(&self) -> f64 {
        let tc = &self.cfg.train;
        lr_at(self.step, tc.steps, tc.lr, tc.warmup(), tc.schedule)
    }

    /// One RL step: `make_experience`, then the actor's `update`. Returns the step's metrics.
    pub fn train_step(&mut self) -> Result<Metrics> {
        let t0 = Instant::now();
        if self.pipeline.is_none() && self.cfg.train.max_staleness > 0 {
            self.start_pipeline()?;
        }
        let (mut exp, mut m) = if self.pipeline.is_some() {
            self.async_experience()?
        } else {
            let time_sync = self.sync_rollout_engine()?;
            let (exp, mut m) = self.make_experience()?;
            if let Some(t) = time_sync {
                m.set("time/sync", t, Reduce::Max);
            }
            (exp, m)
        };
        self.last_samples = std::mem::take(&mut exp.samples);
        let lr = self.lr();
        let policy = self.session.policy.as_ref();
        let update = self.actor.update(
            policy,
            &exp,
            &self.cfg.train,
            self.step,
            lr,
            self.world.as_ref(),
        )?;
        if let Some(name) = first_nonfinite_parameter(policy.var_store()) {
            return Err(TrainError::NonFinite(format!("parameter `{name}`")));
        }
        if let Some(shards) = &self.actor.shards {
            if shards.any_nonfinite(self.world.as_ref())? {
                return Err(TrainError::NonFinite(
                    "a parameter slice of some rank".into(),
                ));
            }
        }
        m.extend(update);
        m.set("time/step", t0.elapsed().as_secs_f64(), Reduce::Max);
        let tokens = exp.responses.mask.sum(tch::Kind::Double).double_value(&[]);
        let m = reduce_metrics(self.world.as_ref(), m, exp.len() as f64, tokens)?;
        self.step += 1;
        Ok(m)
    }

    /// Brings the rollout servers to the current weights (version = steps trained): rank 0
    /// writes and posts them, the other ranks wait. Returns the seconds it took (None with the
    /// native engine).
    pub fn sync_rollout_engine(&mut self) -> Result<Option<f64>> {
        self.session.weight_version = self.step;
        let Some(engine) = &self.session.engine else {
            return Ok(None);
        };
        if let Some(shards) = &self.actor.shards {
            shards.whole(self.world.as_ref())?;
        }
        let t0 = Instant::now();
        if self.world.is_main() {
            engine.sync(self.session.policy.as_ref(), self.step, &self.dir)?;
        }
        self.world.barrier()?;
        Ok(Some(t0.elapsed().as_secs_f64()))
    }

    /// Writes a checkpoint of the current step atomically; refuses (with
    /// [`TrainError::NonFinite`]) when a weight or an optimizer moment is not finite.
    /// With asynchronous rollouts the batches generated ahead (by older weights) are kept too,
    /// so a resumed run trains on exactly what this one would have. Every rank calls it (a
    /// sharded optimizer's slices are gathered); rank 0 writes.
    pub fn checkpoint(&mut self) -> Result<PathBuf> {
        // Under `full` with the parameters released, the tensor files are streamed to rank 0
        // one tensor at a time; where the policy cannot take them so (adapters), rank 0 alone
        // gathers the whole model to write it, and frees it after.
        let streamed = self
            .actor
            .shards
            .as_ref()
            .filter(|s| s.released())
            .and_then(|_| self.session.policy.tensor_files());
        if let (Some(shards), None) = (&self.actor.shards, &streamed) {
            shards.whole_on_main(self.world.as_ref())?;
        }
        let written = self.write_checkpoint(streamed);
        if let Some(shards) = &self.actor.shards {
            shards.release_main()?;
        }
        written
    }

    /// [`Trainer::checkpoint`] with the model whole (on rank 0), or its tensor files (`files`)
    /// to be streamed from the released shards.
    fn write_checkpoint(&mut self, files: Option<Vec<(String, Vec<String>)>>) -> Result<PathBuf> {
        if let Some(name) = first_nonfinite_parameter(self.session.policy.var_store()) {
            return Err(TrainError::NonFinite(format!("parameter `{name}`")));
        }
        let bad = self.actor.opt.first_nonfinite();
        let elsewhere = self.actor.opt.shard().is_some()
            && crate::sharding::any_rank(self.world.as_ref(), bad.is_some())?;
        if let Some(name) = bad {
            return Err(TrainError::NonFinite(format!("optimizer moment `{name}`")));
        }
        if elsewhere {
            return Err(TrainError::NonFinite(
                "an optimizer moment of another rank's slice".into(),
            ));
        }
        let checkpoints = self.dir.join("checkpoints");
        let spool = if self.world.is_main() {
            std::fs::create_dir_all(&checkpoints).at(&checkpoints)?;
            Some(checkpoints.join(format!(".optimizer-{}.spool", self.step)))
        } else {
            None
        };
        let model_files = match (&self.actor.shards, &files) {
            (Some(shards), Some(files)) => {
                let main = self.world.is_main();
                let vars = if main {
                    self.session.policy.var_store().variables()
                } else {
                    Default::default()
                };
                let frozen = |name: &str| vars.get(name).map(|t| t.shallow_clone());
                let dir = main.then_some(checkpoints.as_path());
                Some(shards.spool_model(self.world.as_ref(), files, &frozen, dir)?)
            }
            _ => None,
        };
        let spooled = self
            .actor
            .opt
            .spool_gathered(self.world.as_ref(), spool.as_deref())?;
        let buffer = self.held_batches()?;
        if !self.world.is_main() {
            return Ok(checkpoints.join(format!("step-{}", self.step)));
        }
        let k = self.cfg.train.max_staleness;
        let optimizer = match spooled {
            Some(s) => crate::checkpoint::OptimizerState::Spooled(s),
            None => crate::checkpoint::OptimizerState::Whole(&self.actor.opt),
        };
        let policy = self.session.policy.as_ref();
        let model = match model_files {
            Some(files) => crate::checkpoint::ModelState::Spooled(policy, files),
            None => crate::checkpoint::ModelState::Whole(policy),
        };
        write_checkpoint(
            &self.dir,
            self.step,
            self.cfg.train.seed,
            model,
            optimizer,
            buffer.as_deref().map(|b| (k, b)),
        )
    }

    /// Restores the latest complete checkpoint; returns its step.
    pub fn restore_latest(&mut self) -> Result<Option<u64>> {
        let Some((step, dir)) = latest_checkpoint(&self.dir)? else {
            return Ok(None);
        };
        self.whole_model()?;
        if let Err(e) = load_checkpoint(
            &dir,
            self.session.policy.as_mut(),
            Some(&mut self.actor.opt),
        ) {
            let previous = crate::checkpoint::complete_checkpoints(&self.dir)?
                .into_iter()
                .rev()
                .find(|(s, _)| *s < step);
            let hint = match previous {
                Some((s, p)) => format!(
                    "the previous complete checkpoint is step {s} ({}): remove {} to resume \
                     from it",
                    p.display(),
                    dir.display()
                ),
                None => "there is no earlier checkpoint".into(),
            };
            return Err(e.context(format!(
                "checkpoint step {step} ({}) cannot be loaded; {hint}",
                dir.display()
            )));
        }
        self.step = step;
        if self.cfg.train.max_staleness > 0 {
            self.resumed_buffer = load_buffer(&dir, step)?;
        }
        Ok(Some(step))
    }

    /// The held-out problems evaluated before and after training, and how.
    fn eval_setup(&self) -> (Vec<Problem>, EvalOptions) {
        let tc = &self.cfg.train;
        let opts = EvalOptions::new(
            tc.eval_samples,
            self.session.sampling_with_seed(tc.seed ^ 0xE7A1),
        );
        let problems = self
            .session
            .problems
            .test
            .iter()
            .skip(tc.eval_offset)
            .take(tc.eval_problems)
            .cloned()
            .collect();
        (problems, opts)
    }

    /// Validation during training: pass@K and mean@n of the held-out sample and of each further
    /// validation set, as `val/*` metrics of this step.
    fn validate(
        &mut self,
        held_out: &[Problem],
        opts: &EvalOptions,
        m: &mut Metrics,
    ) -> Result<()> {
        let mut sets: Vec<(String, Vec<Problem>)> = Vec::new();
        if !held_out.is_empty() {
            sets.push(("val".into(), held_out.to_vec()));
        }
        for (name, problems) in &self.session.problems.validation {
            let sample: Vec<Problem> = problems
                .iter()
                .take(self.cfg.train.eval_problems)
                .cloned()
                .collect();
            if !sample.is_empty() {
                sets.push((format!("val/{name}"), sample));
            }
        }
        for (prefix, problems) in &sets {
            let r = self.evaluate(problems, opts)?;
            // Logged after the cross-rank reduction: already the same on every rank.
            for (k, p) in &r.pass_at_k {
                m.set(format!("{prefix}/pass@{k}"), *p, Reduce::Same);
            }
            m.set(format!("{prefix}/mean@n"), r.mean_at_n, Reduce::Same);
        }
        Ok(())
    }

    /// Evaluates the current policy on `problems` (sharded over the data-parallel ranks); the
    /// rollout servers, when they generate, are brought to the current weights first.
    pub fn evaluate(&mut self, problems: &[Problem], opts: &EvalOptions) -> Result<EvalReport> {
        self.whole_model_for_compute()?;
        self.sync_rollout_engine()?;
        self.session.evaluate(self.world.as_ref(), problems, opts)
    }
}

/// The optimizer of `train.sharding`: AdamW over whole parameters, or over this rank's slices
/// (with the gradient and parameter shards under `gradients` and `full`).
fn optimizer_for(
    cfg: &RunConfig,
    policy: &dyn rlvr_core::Policy,
    world: &dyn Collective,
) -> Result<(AdamW, Option<ParamShards>)> {
    use crate::sharding::{ShardSpec, Sharding};
    let wd = cfg.train.weight_decay;
    let vs = policy.var_store();
    let spec = ShardSpec {
        rank: world.rank(),
        world: world.world_size(),
    };
    let level = cfg.train.sharding;
    if matches!(level, Sharding::Gradients | Sharding::Full) && !policy.supports_sharding() {
        config_bail!(
            "train.sharding = {:?} needs a decoder model (Hugging Face layout); this policy \
             supports \"none\" and \"optimizer\"",
            format!("{level:?}").to_lowercase()
        );
    }
    Ok(match level {
        Sharding::None => (AdamW::new(vs, wd), None),
        _ => {
            let shards = ParamShards::new(vs, spec, level, policy.compute_copies());
            if let Some((n, elements)) = shards.as_ref().map(|s| s.compute_copies()) {
                if n > 0 && world.is_main() {
                    tracing::info!(
                        "train.sharding = \"full\": {n} parameters ({elements} elements) \
                         gathered as bf16 compute copies (model.mixed_precision)"
                    );
                }
            }
            (AdamW::sharded(vs, wd, spec), shards)
        }
    })
}

/// Every rank needs at least one prompt group of each step.
pub fn check_ranks(ranks: usize, prompts_per_step: usize) -> Result<()> {
    if ranks > prompts_per_step {
        config_bail!(
            "{ranks} data-parallel ranks but train.prompts_per_step = {prompts_per_step}: each \
             rank trains whole prompt groups, so use at most {prompts_per_step} ranks or raise \
             train.prompts_per_step"
        );
    }
    Ok(())
}

/// Drops training and held-out problems whose prompts do not fit the prompt budget (with a
/// warning naming how many); fails when no training problem is left.
fn drop_long_prompts(session: &mut Session) -> Result<()> {
    let Some(budget) = session.prompt_budget() else {
        return Ok(());
    };
    let mut train = std::mem::take(&mut session.problems.train);
    let mut test = std::mem::take(&mut session.problems.test);
    for (split, list) in [("training", &mut train), ("held-out", &mut test)] {
        let dropped = session.fit_prompts(list)?;
        if dropped > 0 {
            tracing::warn!(
                "dropped {dropped} {split} problem(s) whose prompt is longer than {budget} tokens (train.max_prompt_length)"
            );
        }
    }
    session.problems.train = train;
    session.problems.test = test;
    if session.problems.train.is_empty() {
        config_bail!(
            "every training prompt is longer than {budget} tokens; raise train.max_prompt_length or shorten the prompts"
        );
    }
    Ok(())
}

/// Trains the run `cfg` in `dir` (continuing from its latest checkpoint when `resuming`), with
/// before/after evaluation; returns the end-of-training evaluation, if any. A new run's folder must
/// not exist; it is created (after everything was built, so a failure leaves nothing) and locked
/// for the run's life, as is a resumed one.
///
/// As a rank of a data-parallel job (the torchrun variables), rank 0 alone creates, locks and
/// writes the folder; the other ranks wait for it to exist and never write into it.
pub fn fit(
    cfg: RunConfig,
    dir: &Path,
    resuming: bool,
    reporter: &dyn Reporter,
) -> Result<Option<EvalReport>> {
    let (world, env) = join_from_env()?;
    let main = world.is_main();
    if resuming {
        let lock = main.then(|| FolderLock::acquire(dir, "run")).transpose()?;
        let trainer = Trainer::with_world(cfg, dir, world, env.local_rank)?;
        return run(trainer, lock, Start::Resume, reporter);
    }
    let trainer = Trainer::with_world(cfg, dir, world, env.local_rank)?;
    let lock = if main {
        let lock = create_run_dir(dir)?;
        write_atomic(
            &dir.join("config.toml"),
            &toml::to_string(&trainer.cfg.document)?,
        )?;
        crate::fingerprint::record(dir, &trainer.cfg)?;
        reporter.created(dir);
        Some(lock)
    } else {
        None
    };
    trainer.world.barrier()?;
    run(trainer, lock, Start::New, reporter)
}

/// Continues the run in `dir` from its latest complete checkpoint. `steps`, when given, extends
/// (or shortens, down to the last checkpoint) the run: the new total is written into
/// `config.toml` and the change appended to `history.jsonl`. Nothing else of a run can change:
/// data files that differ from those the run started with are refused unless
/// `allow_changed_data`, and then recorded in `history.jsonl`.
pub fn resume(
    dir: &Path,
    steps: Option<u64>,
    allow_changed_data: bool,
    reporter: &dyn Reporter,
) -> Result<Option<EvalReport>> {
    let config = dir.join("config.toml");
    if !config.is_file() {
        config_bail!(
            "--resume {}: not a run folder (no config.toml)",
            dir.display()
        );
    }
    let (world, env) = join_from_env()?;
    let main = world.is_main();
    let lock = main.then(|| FolderLock::acquire(dir, "run")).transpose()?;
    let mut doc = crate::config::read_document(&config)?;
    if !main {
        let cfg = resumed_config(dir, doc, &Silent)?;
        let mut trainer = Trainer::with_world(cfg, dir, world, env.local_rank)?;
        // Rank 0 may rewrite config.toml (--steps) once its checkpoint loaded.
        trainer.world.barrier()?;
        let doc = crate::config::read_document(&config)?;
        trainer.cfg.train.steps = RunConfig::from_document(doc)?.train.steps;
        return run(trainer, None, Start::Resume, reporter);
    }
    let old = RunConfig::from_document(doc.clone())?.train.steps;
    let change = steps.filter(|s| *s != old);
    if let Some(new) = change {
        let done = latest_checkpoint(dir)?.map_or(0, |(s, _)| s);
        if new < done.max(1) {
            config_bail!(
                "--steps {new}: the run already has a checkpoint at step {done}; give at least {done}"
            );
        }
        crate::config::set(&mut doc, "train.steps", new as i64)?;
    }
    let cfg = resumed_config(dir, doc, reporter)?;
    let data_changed = crate::fingerprint::check(dir, allow_changed_data)?;
    let mut trainer = Trainer::with_world(cfg, dir, world, env.local_rank)?;
    let restored = trainer.restore_latest()?;
    // Only a run that loaded its checkpoint changes its record.
    if !data_changed.is_empty() {
        append_history(
            dir,
            &serde_json::json!({ "event": "resume", "data_changed": data_changed }),
        )?;
        crate::fingerprint::record(dir, &trainer.cfg)?;
        reporter.message(&format!(
            "resuming on changed data (--allow-changed-data): {}",
            data_changed.join("; ")
        ));
    }
    if let Some(new) = change {
        write_atomic(&config, &toml::to_string(&trainer.cfg.document)?)?;
        append_history(
            dir,
            &serde_json::json!({ "event": "resume", "train.steps": [old, new] }),
        )?;
        reporter.message(&format!("{}: train.steps {old} -> {new}", dir.display()));
    }
    trainer.world.barrier()?;
    run(trainer, lock, Start::Restored(restored), reporter)
}

/// The configuration of a resumed run; when the files its model was built from are gone (a
/// deleted HF folder or initial checkpoint), the model is built from the latest checkpoint's
/// complete copy instead (the run's `config.toml` keeps naming the original).
fn resumed_config(dir: &Path, doc: toml::Table, reporter: &dyn Reporter) -> Result<RunConfig> {
    let mut cfg = RunConfig::from_document(doc)?;
    let Some(files) = cfg.model.files().filter(|f| !f.exists()) else {
        return Ok(cfg);
    };
    let Some((step, ck)) = latest_checkpoint(dir)? else {
        return Ok(cfg);
    };
    if let Some(model) = cfg.model.with_weights_from(&ck.join("model")) {
        cfg.model = model;
        reporter.message(&format!(
            "{} is gone; the model is built from checkpoint step {step}'s copy",
            files.display()
        ));
    }
    Ok(cfg)
}

/// Appends an event (with the time) to the run's `history.jsonl`.
pub(crate) fn append_history(dir: &Path, event: &serde_json::Value) -> Result<()> {
    use std::io::Write;
    let path = dir.join("history.jsonl");
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut line = serde_json::json!({ "unix_time": secs });
    if let (Some(obj), Some(ev)) = (line.as_object_mut(), event.as_object()) {
        obj.extend(ev.clone());
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .at(&path)?;
    writeln!(f, "{line}").at(&path)
}

/// "last good checkpoint: PATH", or that there is none.
fn last_good(dir: &Path) -> String {
    match latest_checkpoint(dir) {
        Ok(Some((_, path))) => format!("last good checkpoint: {}", path.display()),
        _ => "no checkpoint was written yet".into(),
    }
}

/// Deletes complete checkpoints older than the newest `keep_last`, except the final step's.
fn prune_checkpoints(dir: &Path, keep_last: usize, final_step: u64) -> Result<()> {
    let ck = dir.join("checkpoints");
    let mut steps: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(&ck).at(&ck)? {
        let path = entry.at(&ck)?.path();
        let step = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("step-"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(step) = step.filter(|_| path.join("state.json").exists()) {
            steps.push((step, path));
        }
    }
    steps.sort_by_key(|s| std::cmp::Reverse(s.0));
    for (step, path) in steps.into_iter().skip(keep_last.max(1)) {
        if step != final_step {
            std::fs::remove_dir_all(&path).at(&path)?;
        }
    }
    Ok(())
}

/// Appends the step's logged responses to `samples.jsonl`.
fn append_samples(path: &Path, samples: &[Sample]) -> Result<()> {
    use std::io::Write;
    if samples.is_empty() {
        return Ok(());
    }
    let mut text = String::new();
    for s in samples {
        text.push_str(&serde_json::to_string(s)?);
        text.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .at(path)?;
    f.write_all(text.as_bytes()).at(path)?;
    Ok(())
}

/// Forwards to the caller's reporter on rank 0 only (the other ranks of a data-parallel job run
/// silently), except stop requests, which every rank checks.
struct RankReporter<'a> {
    inner: &'a dyn Reporter,
    main: bool,
}

impl Reporter for RankReporter<'_> {
    fn message(&self, text: &str) {
        if self.main {
            self.inner.message(text);
        }
    }
    fn evaluation(&self, label: &str, report: &EvalReport) {
        if self.main {
            self.inner.evaluation(label, report);
        }
    }
    fn start(&self, step: u64, total: u64) {
        if self.main {
            self.inner.start(step, total);
        }
    }
    fn step(&self, metrics: &Metrics, total: u64) {
        if self.main {
            self.inner.step(metrics, total);
        }
    }
    fn finish(&self) {
        if self.main {
            self.inner.finish();
        }
    }
    fn stop_requested(&self) -> Option<i32> {
        self.inner.stop_requested()
    }
}

/// Steps between parameter checksums across data-parallel ranks (also checked at every
/// checkpoint).
const CHECKSUM_EVERY: u64 = 10;

/// How [`run`] begins.
enum Start {
    /// A new run from step 0.
    New,
    /// Restore the latest complete checkpoint first.
    Resume,
    /// The latest complete checkpoint (this step, if any) was restored already.
    Restored(Option<u64>),
}

/// The run loop of [`fit`] and [`resume`]. Rank 0 holds the folder's `lock` and alone writes
/// metrics, samples, evaluations, checkpoints and the summary; every rank trains and evaluates
/// its share.
fn run(
    mut t: Trainer,
    _lock: Option<FolderLock>,
    start: Start,
    reporter: &dyn Reporter,
) -> Result<Option<EvalReport>> {
    let dir = t.dir.clone();
    let dir = dir.as_path();
    let main = t.world.is_main();
    let reporter = &RankReporter {
        inner: reporter,
        main,
    };
    let restored = match start {
        Start::New => None,
        Start::Resume => Some(t.restore_latest()?),
        Start::Restored(step) => Some(step),
    };
    match restored {
        Some(Some(step)) => {
            reporter.message(&format!("resuming {} from step {step}", dir.display()))
        }
        Some(None) => reporter.message(&format!(
            "no complete checkpoint in {}; starting from step 0",
            dir.display()
        )),
        None => {}
    }
    broadcast_parameters(t.world.as_ref(), t.session.policy.var_store())?;
    let tc = t.cfg.train.clone();
    let mut threads = start_threads(tc.threads, t.world.world_size());
    let mut log = if main {
        Some(MetricsLog::open(dir, t.step, tc.tensorboard)?)
    } else {
        None
    };
    // Logged responses: like metrics.jsonl, lines after the restored step are dropped.
    let samples_path = dir.join("samples.jsonl");
    let eval_dir = dir.join("eval");
    if main {
        crate::metrics::truncate_metrics(&samples_path, t.step)?;
        std::fs::create_dir_all(&eval_dir).at(&eval_dir)?;
    }
    let (eval_problems, eval_opts) = t.eval_setup();
    let before = if !eval_problems.is_empty() && t.step == 0 {
        reporter.message(&format!(
            "evaluating {} held-out problems × {} samples before training …",
            eval_problems.len(),
            eval_opts.samples
        ));
        let r = t.evaluate(&eval_problems, &eval_opts)?;
        reporter.evaluation("before", &r);
        write_report(main, &eval_dir.join("before.json"), &r)?;
        Some(r)
    } else {
        None
    };
    reporter.start(t.step, tc.steps);
    let mut bad_in_row = 0;
    let mut no_signal = NoSignalWatch::default();
    while t.step < tc.steps {
        if let Some(n) = threads.adjust() {
            tracing::debug!("libtorch CPU threads: {n} (load changed)");
        }
        let mut m = checked_step(&mut t, &mut bad_in_row)?;
        no_signal.observe(&m, &t.cfg.train);
        if tc.eval_every > 0 && t.step.is_multiple_of(tc.eval_every) {
            t.validate(&eval_problems, &eval_opts, &mut m)?;
        }
        if let Some(log) = log.as_mut() {
            log.append(&m)?;
            append_samples(&samples_path, &t.last_samples)?;
        }
        reporter.step(&m, tc.steps);
        end_step(&mut t, reporter)?;
    }
    reporter.finish();
    let mut result = None;
    if !eval_problems.is_empty() {
        let after = t.evaluate(&eval_problems, &eval_opts)?;
        if let Some(b) = &before {
            reporter.evaluation("before", b);
        }
        reporter.evaluation("after ", &after);
        if let Some(note) = before
            .as_ref()
            .and_then(|b| rlvr_eval::report::passk_drop_note(b, &after))
        {
            reporter.message(&note);
        }
        write_report(main, &eval_dir.join("after.json"), &after)?;
        result = Some(after);
    }
    if let Some(log) = &log {
        write_run_summary(dir, &t.cfg, log.path())?;
        reporter.message(&format!(
            "run saved in {} (summary: {})",
            dir.display(),
            dir.join("summary.md").display()
        ));
    }
    Ok(result)
}

/// Refuses, before the run folder exists, a step whose rollout cannot fit this rank's memory even
/// with empty prompts: its responses (`prompts_per_step × samples_per_prompt` over the ranks)
/// times `max_new_tokens` of KV cache.
fn check_rollout_memory(session: &Session, cfg: &RunConfig, ranks: usize) -> Result<()> {
    let tc = &cfg.train;
    let rows = (tc.prompts_per_step.div_ceil(ranks.max(1)) * tc.samples_per_prompt) as i64;
    session
        .policy
        .check_generation_fits(rows, tc.max_new_tokens)
        .map_err(|e| {
            TrainError::Core(rlvr_core::CoreError::Resources(format!(
                "train.prompts_per_step × train.samples_per_prompt = {rows} responses per rank, \
                 each up to train.max_new_tokens = {}: {e}",
                tc.max_new_tokens
            )))
        })
}

/// Steps in a row without a learning signal before [`NoSignalWatch`] says so.
pub const NO_SIGNAL_STEPS: u32 = 5;

/// Notices steps whose advantages are all zero — every prompt's responses scored alike (all
/// wrong, all right, or a reward that is constant), so the update has nothing to learn from —
/// and warns once after [`NO_SIGNAL_STEPS`] of them in a row.
#[derive(Debug, Default)]
pub struct NoSignalWatch {
    in_row: u32,
    warned: bool,
}

impl NoSignalWatch {
    /// Looks at one step's metrics; returns whether it warned now.
    pub fn observe(&mut self, m: &Metrics, train: &crate::config::TrainConfig) -> bool {
        let flat = m.get("adv/abs_mean") == Some(0.0);
        self.in_row = if flat { self.in_row + 1 } else { 0 };
        if self.in_row < NO_SIGNAL_STEPS || self.warned {
            return false;
        }
        self.warned = true;
        tracing::warn!(
            "no learning signal for {NO_SIGNAL_STEPS} steps: every prompt's {} responses got the \
             same reward (mean reward {:.3}), so every advantage is 0 and the weights do not \
             move; check the reward (a program that always answers 0?), the data's ground \
             truths, or sample more responses per prompt (train.samples_per_prompt)",
            train.samples_per_prompt,
            m.get("reward/mean").unwrap_or(f64::NAN)
        );
        true
    }
}

/// Starts libtorch's CPU threads: `threads` (`train.threads`), or when 0 the cores left free,
/// shared among the local ranks of a data-parallel job.
fn start_threads(threads: usize, ranks: usize) -> rlvr_models::threads::CpuThreads {
    let threads = if ranks > 1 && threads == 0 {
        // Local ranks share the machine's cores.
        let local = std::env::var("LOCAL_WORLD_SIZE")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(ranks)
            .max(1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / local).max(1)
    } else {
        threads
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if threads > cores {
        tracing::warn!(
            "train.threads = {threads} but this machine has {cores} cores; using {cores} (more \
             threads than cores only slow libtorch down)"
        );
        cores
    } else {
        threads
    };
    let mut threads = rlvr_models::threads::CpuThreads::new(threads);
    let n = threads.start(std::time::Duration::from_millis(200));
    tracing::debug!("libtorch CPU threads: {n}");
    threads
}

/// Writes an evaluation report as JSON (rank 0 only: `main`).
fn write_report(main: bool, path: &Path, report: &EvalReport) -> Result<()> {
    if main {
        write_atomic(path, &serde_json::to_string_pretty(report)?)?;
    }
    Ok(())
}

/// One training step, with its failures said in the run's terms: non-finite weights stop the
/// run (naming the last good checkpoint), and so do `train.max_nonfinite` skipped updates in a
/// row (counted in `bad_in_row`).
fn checked_step(t: &mut Trainer, bad_in_row: &mut usize) -> Result<Metrics> {
    let m = match t.train_step() {
        Ok(m) => m,
        Err(TrainError::NonFinite(what)) => {
            return Err(TrainError::Run(format!(
                "step {}: {what} is not finite after the update (is the learning rate or \
                 weight decay too large?); stopping without checkpointing it; {}",
                t.step + 1,
                last_good(&t.dir)
            )))
        }
        Err(e) => return Err(e),
    };
    if m.value("actor/skipped_updates") > 0.0 {
        *bad_in_row += 1;
        if *bad_in_row >= t.cfg.train.max_nonfinite {
            return Err(TrainError::Run(format!(
                "{bad_in_row} steps in a row had non-finite losses or gradients; stopping; {}",
                last_good(&t.dir)
            )));
        }
    } else {
        *bad_in_row = 0;
    }
    Ok(m)
}

/// After a logged step: the ranks agree on a stop signal, compare parameter checksums, and rank
/// 0 writes a checkpoint when one is due or a stop was asked for (then every rank returns
/// [`TrainError::Interrupted`] once it is complete).
fn end_step(t: &mut Trainer, reporter: &dyn Reporter) -> Result<()> {
    let tc = &t.cfg.train.clone();
    let dir = &t.dir.clone();
    let stop = agreed_stop(t.world.as_ref(), reporter.stop_requested())?;
    let due = (tc.checkpoint_every > 0 && t.step.is_multiple_of(tc.checkpoint_every))
        || t.step == tc.steps;
    if due || t.step.is_multiple_of(CHECKSUM_EVERY) {
        // Under `full` sharding each element lives on one rank between updates: the check
        // compares the whole model each rank gathers (as the next rollout needs it anyway), so
        // a rank whose gather placed a piece wrongly, or whose slices drifted, is caught.
        if t.actor.shards.as_ref().map(|s| s.level()) == Some(Sharding::Full) {
            t.whole_model()?;
        }
        check_parameters(t.world.as_ref(), t.session.policy.var_store(), t.step)?;
    }
    if !(due || stop.is_some()) {
        return Ok(());
    }
    let checkpoint = t.checkpoint()?;
    if t.world.is_main() {
        prune_checkpoints(dir, tc.keep_last, tc.steps)?;
    }
    let Some(signal) = stop else {
        return Ok(());
    };
    // Every rank returns once rank 0's checkpoint is complete.
    t.world.barrier()?;
    reporter.finish();
    Err(TrainError::Interrupted {
        signal,
        step: t.step,
        checkpoint,
        run: dir.to_path_buf(),
    })
}

/// The stop signal of any rank (the largest signal number when several asked), so that all
/// ranks stop after the same step.
fn agreed_stop(world: &dyn Collective, local: Option<i32>) -> Result<Option<i32>> {
    if world.is_single() {
        return Ok(local);
    }
    let all = world.all_gather(&[f64::from(local.unwrap_or(0))])?;
    let sig = all.iter().flatten().fold(0.0f64, |a, &b| a.max(b)) as i32;
    Ok((sig > 0).then_some(sig))
}
