//! The configuration of a training run: `[algo]`, `[model]`, `[task]` or `[data]` (with
//! `[reward]`), `[train]`, resolved from built-in defaults, a TOML file, `--set` overrides and
//! flags, and validated before
//! any work. The resolved document is written to `runs/<name>/config.toml`.

use crate::config_bail;
use crate::error::{Result, ResultExt, TrainError};
use crate::optim::Schedule;
use documented::DocumentedFields;
use rlvr_core::{AlgoConfig, ModelConfig, TaskConfig, VerifierConfig};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The loop's settings.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Number of RL steps (one rollout batch each).
    pub steps: u64,
    /// Prompts per step.
    pub prompts_per_step: usize,
    /// Responses sampled per prompt (the group size).
    pub samples_per_prompt: usize,
    /// Passes (PPO epochs) over each rollout batch.
    pub epochs: usize,
    /// Mini-batches per epoch (one optimizer step each).
    pub mini_batches: usize,
    /// Responses per forward/backward pass (micro-batching never changes the gradient).
    pub micro_batch_size: usize,
    /// Peak learning rate of AdamW.
    pub lr: f64,
    /// Linear warmup steps.
    pub warmup_steps: u64,
    /// Warmup as a fraction of `steps` (TRL's `warmup_ratio`), when `warmup_steps` is 0.
    pub warmup_ratio: f64,
    /// Learning-rate schedule after warmup: constant | cosine (to 10% of the peak) | linear (to
    /// 0 at the last step, TRL's default).
    pub schedule: Schedule,
    /// Decoupled weight decay of AdamW.
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 = none).
    pub grad_clip: f64,
    /// Maximum response length in tokens.
    pub max_new_tokens: i64,
    /// Longest prompt in tokens; longer prompts are dropped (and counted) before training.
    /// 0 = the model's context (`max_position_embeddings`) minus `max_new_tokens`.
    pub max_prompt_length: i64,
    /// Sampling temperature of rollouts.
    pub temperature: f64,
    /// Nucleus mass kept when sampling (1 = all).
    pub top_p: f64,
    /// Most likely tokens kept when sampling (0 = all).
    pub top_k: i64,
    /// Seed of sampling, shuffling and data order.
    pub seed: u64,
    /// Held-out problems evaluated before and after training (0 = skip).
    pub eval_problems: usize,
    /// Held-out problems skipped before those evaluated (e.g. 100: evaluate problems 100.. and
    /// keep the first 100 as a validation split that settings were chosen on).
    pub eval_offset: usize,
    /// Samples per held-out problem (pass@k for k = 1, 2, 4, ... up to this).
    pub eval_samples: usize,
    /// Steps between checkpoints (0 = only at the end).
    pub checkpoint_every: u64,
    /// Checkpoints kept: the newest `keep_last` plus the final one; older ones are deleted.
    pub keep_last: usize,
    /// Consecutive non-finite updates (skipped) that abort the run.
    pub max_nonfinite: usize,
    /// Device: cpu | cuda | cuda:N.
    pub device: String,
    /// Write TensorBoard event files to `<run>/tensorboard/` next to `metrics.jsonl`.
    pub tensorboard: bool,
    /// Steps between validations on the held-out sample (`eval_problems` × `eval_samples`),
    /// written as `val/*` metrics of that step; 0 = only before and after training.
    pub eval_every: u64,
    /// Responses written to `<run>/samples.jsonl` per step (one per prompt: prompt, response,
    /// ground truth, score); 0 = none.
    pub log_samples: usize,
    /// CPU threads of libtorch: 0 = automatic (the cores other processes leave free, checked
    /// at the start and between steps; `OMP_NUM_THREADS` pins it).
    pub threads: usize,
    /// Asynchronous rollouts (docs/async.md): the batch of step `s` is generated, while earlier
    /// steps update, by the weights of step `s − max_staleness`; 0 = synchronous.
    pub max_staleness: u64,
    /// How data-parallel ranks divide the model state: none | optimizer (each rank holds the
    /// AdamW moments of 1/N of every parameter, ZeRO-1) | gradients (and the gradients, ZeRO-2)
    /// | full (and the parameters, ZeRO-3; docs/distributed.md).
    pub sharding: crate::sharding::Sharding,
    /// The policy the update's ratio is taken against: current (the weights before this
    /// update, recomputed: decoupled PPO with `[algo.correction]` weighting the behaviour
    /// policy) | behaviour (the log-probs the samples were drawn with).
    pub proximal: Proximal,
    /// The old-policy pass before each update: auto (left out when each batch makes exactly
    /// one on-policy optimizer step — epochs = 1, mini_batches = 1, proximal = current,
    /// max_staleness = 0, no [algo.correction], no model.batch_invariant, a loss that does not
    /// ask for it (KL-Cov) — because the old
    /// policy is then the update's own weights: its log-probs are the update's, detached, and
    /// the diagnostics come from the update's pass; TRL with num_iterations = 1) | always.
    pub old_logp_pass: OldLogpPass,
    /// Memory (MiB) for the rollout's own forward passes, kept so that the update starts from
    /// them instead of running the decoder forward again (docs/performance.md): each layer's
    /// input, q/k/v, attention output, gate and up projections of every position, ~54 KB per
    /// token at the Qwen2.5-0.5B shape. Used when the old-policy pass is left out (one
    /// on-policy step per batch, `old_logp_pass`), the rollout runs in this process on a CPU in
    /// f32 without adapters, and the whole batch's record fits; 0 = never (the default).
    pub rollout_activations_mib: u64,
}

/// Whether the old policy's log-probs get a pass of their own before the update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OldLogpPass {
    /// Only where they can differ from the update's own (more than one step per batch, stale
    /// samples, a correction that weights by them).
    #[default]
    Auto,
    /// Before every update.
    Always,
}

impl TrainConfig {
    /// Whether the old-policy pass is left out (`old_logp_pass = auto` and each batch makes
    /// exactly one on-policy optimizer step, with no `correction` that weights by the old
    /// log-probs): the update's own log-probs, detached, are then the old ones exactly.
    pub fn skips_old_pass(&self, correction: bool) -> bool {
        self.old_logp_pass == OldLogpPass::Auto
            && self.epochs == 1
            && self.mini_batches == 1
            && self.proximal == Proximal::Current
            && self.max_staleness == 0
            && !correction
    }
}

/// What `old_logp` (the denominator of the update's ratio) is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Proximal {
    /// The trainer's weights before the update, recomputed (decoupled PPO's proximal policy,
    /// Hilton et al. 2022; AReaL).
    #[default]
    Current,
    /// The engine's log-probs of the sampled tokens (the behaviour policy; classic PPO on
    /// stale samples).
    Behaviour,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 150,
            prompts_per_step: 16,
            samples_per_prompt: 8,
            epochs: 1,
            mini_batches: 1,
            micro_batch_size: 64,
            lr: 2e-4,
            warmup_steps: 0,
            warmup_ratio: 0.0,
            schedule: Schedule::Constant,
            weight_decay: 0.0,
            grad_clip: 1.0,
            max_new_tokens: 12,
            max_prompt_length: 0,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            eval_problems: 100,
            eval_offset: 0,
            eval_samples: 16,
            checkpoint_every: 20,
            keep_last: 3,
            max_nonfinite: 3,
            device: "cpu".into(),
            tensorboard: true,
            log_samples: 4,
            threads: 0,
            eval_every: 0,
            max_staleness: 0,
            sharding: crate::sharding::Sharding::None,
            proximal: Proximal::Current,
            old_logp_pass: OldLogpPass::Auto,
            rollout_activations_mib: 0,
        }
    }
}

impl TrainConfig {
    /// The rollout sampling these settings describe, with `seed`.
    pub fn sampling(&self, seed: u64) -> rlvr_core::SamplingConfig {
        rlvr_core::SamplingConfig {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            max_new_tokens: self.max_new_tokens,
            seed,
            first_stream: 0,
        }
    }

    /// Defaults of a dataset run (`--data`) where they differ from the built-in task's: room for
    /// real reasoning (1024 response tokens) and a bounded validation every 50 steps instead of
    /// 100 × 16 generations before and after. Keys given by the user win.
    pub fn dataset_defaults() -> toml::Table {
        let mut t = toml::Table::new();
        for (k, v) in [
            ("max_new_tokens", 1024),
            ("eval_problems", 32),
            ("eval_samples", 4),
            ("eval_every", 50),
        ] {
            t.insert(k.into(), toml::Value::Integer(v));
        }
        t
    }

    /// Warmup steps: `warmup_steps`, or `warmup_ratio` of `steps` rounded up.
    pub fn warmup(&self) -> u64 {
        if self.warmup_steps > 0 {
            self.warmup_steps
        } else {
            (self.warmup_ratio * self.steps as f64).ceil() as u64
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let checks = [
            (self.steps >= 1, "train.steps must be >= 1"),
            (
                self.prompts_per_step >= 1,
                "train.prompts_per_step must be >= 1",
            ),
            (
                self.samples_per_prompt >= 1,
                "train.samples_per_prompt must be >= 1",
            ),
            (self.epochs >= 1, "train.epochs must be >= 1"),
            (self.mini_batches >= 1, "train.mini_batches must be >= 1"),
            (
                self.mini_batches <= self.prompts_per_step * self.samples_per_prompt,
                "train.mini_batches must be <= responses per step",
            ),
            (
                self.micro_batch_size >= 1,
                "train.micro_batch_size must be >= 1",
            ),
            (
                self.lr > 0.0 && self.lr.is_finite(),
                "train.lr must be a finite number > 0",
            ),
            (self.grad_clip >= 0.0, "train.grad_clip must be >= 0"),
            (
                self.max_new_tokens >= 1,
                "train.max_new_tokens must be >= 1",
            ),
            (self.temperature >= 0.0, "train.temperature must be >= 0"),
            (
                self.top_p > 0.0 && self.top_p <= 1.0,
                "train.top_p must be in (0, 1]",
            ),
            (self.max_nonfinite >= 1, "train.max_nonfinite must be >= 1"),
            (self.keep_last >= 1, "train.keep_last must be >= 1"),
            (
                self.max_prompt_length >= 0,
                "train.max_prompt_length must be >= 0 (0 = from the model's context)",
            ),
            (
                self.weight_decay.is_finite() && self.weight_decay >= 0.0,
                "train.weight_decay must be a finite number >= 0",
            ),
            (
                self.grad_clip.is_finite(),
                "train.grad_clip must be a finite number >= 0",
            ),
            (
                self.temperature.is_finite(),
                "train.temperature must be a finite number >= 0",
            ),
            (
                (0.0..1.0).contains(&self.warmup_ratio),
                "train.warmup_ratio must be in [0, 1)",
            ),
            (
                self.warmup_ratio == 0.0 || self.warmup_steps == 0,
                "give train.warmup_steps or train.warmup_ratio, not both",
            ),
        ];
        for (ok, msg) in checks {
            if !ok {
                config_bail!("{msg}");
            }
        }
        Ok(())
    }
}

/// Dataset files instead of a built-in task: the `[data]` table, the registered `dataset` task.
pub use rlvr_rewards::data::config::DatasetConfig as DataConfig;

/// The `[reward]` table: which verifier scores each `data_source` of a dataset run.
///
/// ```toml
/// [reward]
/// default = "math"                      # sources not listed below; absent = built-in choice
/// [reward.sources]
/// "openai/gsm8k" = "gsm8k"
/// my_task = { type = "command", cmd = ["python3", "my_reward.py"], timeout_s = 30 }
/// ```
pub struct RewardSpec {
    /// The verifier of sources not listed; `None` = `gsm8k` for GSM8K sources, `math` otherwise.
    pub default: Option<Box<dyn VerifierConfig>>,
    /// Verifiers by exact `data_source`.
    pub sources: std::collections::BTreeMap<String, Box<dyn VerifierConfig>>,
}

impl RewardSpec {
    /// Parses `[reward]`; every verifier is a registered name or a `{ type = ..., ... }` table.
    fn parse(t: &toml::Table) -> Result<RewardSpec> {
        let valid = ["default", "sources"];
        if let Some(k) = t.keys().find(|k| !valid.contains(&k.as_str())) {
            config_bail!(
                "unknown key `reward.{k}`; valid keys: {} (verifiers per data_source go in \
                 [reward.sources])",
                valid.join(", ")
            );
        }
        let verifier = |path: &str, v: &toml::Value| -> Result<Box<dyn VerifierConfig>> {
            let table = match v {
                toml::Value::String(name) => {
                    let mut t = toml::Table::new();
                    t.insert("type".into(), toml::Value::String(name.clone()));
                    t
                }
                toml::Value::Table(t) => t.clone(),
                other => config_bail!(
                    "`{path}` must be a verifier name (see `rlvr list verifier`) or a table \
                     with `type`, got {other}"
                ),
            };
            tagged::<dyn VerifierConfig>(path, &table)
        };
        let default = t
            .get("default")
            .map(|v| verifier("reward.default", v))
            .transpose()?;
        let mut sources = std::collections::BTreeMap::new();
        match t.get("sources") {
            None => {}
            Some(toml::Value::Table(st)) => {
                for (source, v) in st {
                    sources.insert(
                        source.clone(),
                        verifier(&format!("reward.sources.{source}"), v)?,
                    );
                }
            }
            Some(_) => config_bail!("`reward.sources` must be a table: data_source = verifier"),
        }
        Ok(RewardSpec { default, sources })
    }

    /// Builds the router of a run (starts reward programs).
    pub fn build(&self) -> Result<Box<dyn rlvr_core::Verifier>> {
        let mut sources = std::collections::BTreeMap::new();
        for (source, v) in &self.sources {
            sources.insert(
                source.clone(),
                v.build()
                    .with_context(|| format!("reward.sources.{source}"))?,
            );
        }
        let default = match &self.default {
            Some(v) => Some(v.build().context("reward.default")?),
            None => None,
        };
        Ok(Box::new(rlvr_rewards::verifiers::SourceRouter {
            sources,
            default,
        }))
    }
}

/// A fully resolved run.
pub struct RunConfig {
    /// The algorithm.
    pub algo: AlgoConfig,
    /// The model.
    pub model: Box<dyn ModelConfig>,
    /// The task: a built-in one, or the dataset files of `data`.
    pub task: Box<dyn TaskConfig>,
    /// Dataset files (`[data]`, or `[task] type = "dataset"`), when the task is a dataset.
    pub data: Option<DataConfig>,
    /// Verifiers per `data_source` (dataset runs).
    pub reward: Option<RewardSpec>,
    /// Loop settings.
    pub train: TrainConfig,
    /// Where rollouts are generated (`[rollout]`).
    pub rollout: crate::engine::RolloutConfig,
    /// The resolved document (written as config.toml).
    pub document: toml::Table,
}

/// The built-in default run: SimKO on countdown with the shipped SFT base checkpoint.
pub fn default_document() -> toml::Table {
    let text = format!(
        r#"
[algo]
preset = "simko"

[model]
type = "tiny"
init = "{base}"

[task]
type = "countdown"
"#,
        base = base_checkpoint().display()
    );
    text.parse().unwrap_or_default()
}

/// The shipped base checkpoint (an SFT warm start of the `tiny` model on countdown).
pub fn base_checkpoint() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets/countdown-base")
}

fn table<'a>(doc: &'a toml::Table, key: &str) -> Result<Option<&'a toml::Table>> {
    match doc.get(key) {
        None => Ok(None),
        Some(toml::Value::Table(t)) => Ok(Some(t)),
        Some(_) => config_bail!("`{key}` in the config must be a table"),
    }
}

/// Parses a tagged table through the registries, naming the section in errors; a key that names
/// no field of the chosen type is an error listing the valid ones (typetag ignores unknown keys).
fn tagged<T: ?Sized>(section: &str, t: &toml::Table) -> Result<Box<T>>
where
    Box<T>: serde::de::DeserializeOwned + serde::Serialize,
{
    let value = toml::Value::Table(t.clone());
    let parsed: Box<T> = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // Inside a tagged trait object the path is lost (`.`): find the key by leaving each out.
        let path = if path.trim_matches(['.', '?']).is_empty() {
            bad_key::<T>(t, &message).unwrap_or_default()
        } else {
            path
        };
        let at = if path.is_empty() {
            section.to_string()
        } else {
            format!("{section}.{path}")
        };
        TrainError::Config(format!("config error at `{at}`: {message}"))
    })?;
    if let Ok(toml::Value::Table(back)) = toml::Value::try_from(&parsed) {
        rlvr_core::algo::check_known_fields(section, t, &back)?;
    }
    Ok(parsed)
}

/// The key of `t` whose value makes the tagged table fail with `message`: the one whose removal
/// makes that error go away.
fn bad_key<T: ?Sized>(t: &toml::Table, message: &str) -> Option<String>
where
    Box<T>: serde::de::DeserializeOwned,
{
    t.keys().filter(|k| *k != "type").find_map(|k| {
        let mut without = t.clone();
        without.remove(k);
        match toml::Value::Table(without).try_into::<Box<T>>() {
            Err(e) if e.to_string().contains(message) => None,
            _ => Some(k.clone()),
        }
    })
}

/// Names of settings in TRL / transformers / verl / PEFT that rlvr calls otherwise: the foreign
/// name, rlvr's key, and whose name it is.
const FOREIGN_NAMES: [(&str, &str, &str); 24] = [
    ("learning_rate", "train.lr", "TRL's / transformers'"),
    ("lr_scheduler_type", "train.schedule", "TRL's"),
    ("max_grad_norm", "train.grad_clip", "TRL's"),
    ("num_generations", "train.samples_per_prompt", "TRL's"),
    ("max_completion_length", "train.max_new_tokens", "TRL's"),
    ("max_response_length", "train.max_new_tokens", "verl's"),
    ("response_length", "train.max_new_tokens", "verl's"),
    ("max_steps", "train.steps", "TRL's"),
    ("total_training_steps", "train.steps", "verl's"),
    ("warmup_steps_ratio", "train.warmup_ratio", "verl's"),
    ("lr_warmup_steps_ratio", "train.warmup_ratio", "verl's"),
    ("beta", "algo.loss.kl_coef", "TRL's"),
    ("kl_loss_coef", "algo.loss.kl_coef", "verl's"),
    ("entropy_coeff", "algo.loss.entropy_coef", "verl's"),
    ("clip_ratio_low", "algo.loss.clip_low", "verl's"),
    ("clip_ratio_high", "algo.loss.clip_high", "verl's"),
    ("epsilon", "algo.loss.clip_low", "TRL's"),
    ("epsilon_high", "algo.loss.clip_high", "TRL's"),
    ("loss_agg_mode", "algo.aggregation", "verl's"),
    ("gradient_checkpointing", "model.checkpointing", "TRL's"),
    (
        "enable_gradient_checkpointing",
        "model.checkpointing",
        "verl's",
    ),
    ("lora_rank", "model.lora.rank", "verl's"),
    ("lora_alpha", "model.lora.alpha", "verl's / PEFT's"),
    ("target_modules", "model.lora.targets", "PEFT's"),
];

/// "… is `train.lr` here" when `name` (a key's last part, or a flag with `-` for `_`) is another
/// library's name of an rlvr setting.
pub fn foreign_name_hint(name: &str) -> Option<String> {
    let name = name.trim_start_matches('-').replace('-', "_");
    let leaf = name.rsplit('.').next().unwrap_or(&name);
    FOREIGN_NAMES
        .iter()
        .find(|(foreign, _, _)| *foreign == leaf)
        .map(|(foreign, ours, whose)| {
            format!("{whose} `{foreign}` is `{ours}` here: --set {ours}=VALUE")
        })
}

/// Adds [`foreign_name_hint`] to an "unknown field `X`" error.
fn with_foreign_name_hint(e: TrainError) -> TrainError {
    let text = e.to_string();
    let hint = text
        .split("unknown field `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .and_then(foreign_name_hint);
    match hint {
        Some(h) => TrainError::Config(format!("{text}; {h}")),
        None => e,
    }
}

impl RunConfig {
    /// Resolves and validates a run document (after `--set` and flags were applied).
    pub fn from_document(doc: toml::Table) -> Result<RunConfig> {
        RunConfig::resolve(doc).map_err(with_foreign_name_hint)
    }

    fn resolve(mut doc: toml::Table) -> Result<RunConfig> {
        let valid = [
            "algo", "model", "task", "data", "reward", "train", "rollout",
        ];
        if let Some(k) = doc.keys().find(|k| !valid.contains(&k.as_str())) {
            config_bail!(
                "unknown config section `[{k}]`; valid sections: {}",
                valid.join(", ")
            );
        }
        // No setting anywhere may be NaN or infinite (each range is checked where it is parsed).
        if let Some((path, value)) = rlvr_core::algo::leaves(&doc)
            .into_iter()
            .find(|(_, v)| v.as_float().is_some_and(|x| !x.is_finite()))
        {
            config_bail!("`{path}` = {value} is not a finite number");
        }
        dataset_task_as_data(&mut doc)?;
        let algo_table = table(&doc, "algo")?.cloned().unwrap_or_default();
        let algo = AlgoConfig::resolve(&algo_table)?;
        algo.build().context("invalid algorithm configuration")?;
        let model_table = match table(&doc, "model")? {
            Some(t) => t.clone(),
            None => config_bail!("no [model] section: give --model or a [model] table"),
        };
        let model: Box<dyn ModelConfig> = tagged("model", &model_table)?;
        let data = match table(&doc, "data")? {
            Some(t) => Some(
                toml::Value::Table(t.clone())
                    .try_into::<DataConfig>()
                    .map_err(|e| TrainError::Config(format!("config error in [data]: {e}")))?,
            ),
            None => None,
        };
        let task: Box<dyn TaskConfig> = match (table(&doc, "task")?, &data) {
            (_, Some(d)) => Box::new(d.clone()),
            (Some(t), None) => tagged::<dyn TaskConfig>("task", t)?,
            (None, None) => {
                config_bail!("no task: give --task NAME (see `rlvr list task`) or --data FILE")
            }
        };
        let reward = match (table(&doc, "reward")?, &data) {
            (None, _) => None,
            (Some(t), Some(_)) => Some(RewardSpec::parse(t)?),
            (Some(_), None) => config_bail!(
                "[reward] chooses verifiers by data_source for dataset runs (--data); a built-in \
                 task scores with its own verifier"
            ),
        };
        let mut train_table = table(&doc, "train")?.cloned().unwrap_or_default();
        if data.is_some() {
            for (k, v) in TrainConfig::dataset_defaults() {
                train_table.entry(k).or_insert(v);
            }
        }
        let train: TrainConfig = toml::Value::Table(train_table)
            .try_into()
            .map_err(|e| TrainError::Config(format!("config error in [train]: {e}")))?;
        train.validate()?;
        let rollout: crate::engine::RolloutConfig =
            toml::Value::Table(table(&doc, "rollout")?.cloned().unwrap_or_default())
                .try_into()
                .map_err(|e| TrainError::Config(format!("config error in [rollout]: {e}")))?;
        rollout.validate()?;
        doc.insert("algo".into(), toml::Value::Table(algo.to_table()?));
        doc.insert("train".into(), toml::Value::try_from(&train)?);
        Ok(RunConfig {
            algo,
            model,
            task,
            data,
            reward,
            train,
            rollout,
            document: doc,
        })
    }
}

/// `[task] type = "dataset"` is the `[data]` table written another way: its fields move there,
/// so dataset runs have one form (and their defaults and `[reward]`).
fn dataset_task_as_data(doc: &mut toml::Table) -> Result<()> {
    let is_dataset = table(doc, "task")?
        .and_then(|t| t.get("type"))
        .and_then(|t| t.as_str())
        == Some("dataset");
    if !is_dataset {
        return Ok(());
    }
    if doc.contains_key("data") {
        config_bail!(
            "give the dataset files once: in [data], or in [task] with type = \"dataset\""
        );
    }
    if let Some(toml::Value::Table(mut t)) = doc.remove("task") {
        t.remove("type");
        doc.insert("data".into(), toml::Value::Table(t));
    }
    Ok(())
}

/// Reads a TOML configuration file into a table, naming the file in any error.
pub fn read_document(path: &Path) -> Result<toml::Table> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        TrainError::Config(format!("cannot read config file {}: {e}", path.display()))
    })?;
    text.parse::<toml::Table>()
        .map_err(|e| TrainError::Config(format!("{} is not valid TOML: {e}", path.display())))
}

/// Applies `key=value` overrides (dotted keys from the document root, e.g. `algo.loss.topk=5`).
pub fn apply_sets(table: &mut toml::Table, sets: &[String]) -> Result<()> {
    for set in sets {
        let Some((key, value)) = set.split_once('=') else {
            config_bail!("--set `{set}`: expected KEY=VALUE, e.g. algo.loss.topk=5");
        };
        rlvr_core::algo::set_path(table, key.trim(), value.trim())?;
    }
    Ok(())
}

/// Sets a dotted key of a document to a value.
pub fn set(doc: &mut toml::Table, path: &str, value: impl Into<toml::Value>) -> Result<()> {
    Ok(rlvr_core::algo::set_value(doc, path, value.into())?)
}
