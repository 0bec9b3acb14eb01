//! Building a run document from command-line values: built-in defaults ← `--config` file ←
//! `--algo`/`--task`/`--data`/`--model`/`--steps`/`--seed`/`--device` ← `--set` ← algorithm
//! parameter flags.

use crate::args::{AlgoArgs, DataArgs, ModelArgs, TargetArgs};
use crate::commands::eval::EvalArgs;
use crate::{algo_args, usage_bail};
use anyhow::{Context, Result};
use rlvr_core::algo::merge;
use rlvr_core::registry::{self, ComponentKind};
use rlvr_core::AlgoConfig;
use rlvr_train::checkpoint::{checkpoint_at, latest_checkpoint};
use rlvr_train::config::{apply_sets, default_document, read_document, set};
use std::path::Path;
use std::path::PathBuf;

/// The values a run document is built from.
#[derive(Debug, Clone, Default)]
pub struct RunFlags {
    /// Algorithm choice, config file, overrides and parameter flags.
    pub algo: AlgoArgs,
    /// Model, task or dataset, device.
    pub target: TargetArgs,
    /// `train.steps`.
    pub steps: Option<String>,
    /// `train.seed`.
    pub seed: Option<String>,
}

/// The `[model]` table of `--model`: a folder is a Hugging Face checkpoint, `<shape>-shape` a
/// randomly initialised real model shape, anything else a registered model name.
pub fn model_table(model: &str) -> Result<toml::Table> {
    if Path::new(model).is_dir() {
        let path = hf_folder(Path::new(model))?;
        return Ok([
            ("type".to_string(), "hf".into()),
            ("path".to_string(), toml::Value::String(path)),
        ]
        .into_iter()
        .collect());
    }
    if let Some(shape) = model
        .strip_suffix("-shape")
        .filter(|s| rlvr_models::shapes::find(s).is_some())
    {
        return Ok([
            ("type".to_string(), "shape".into()),
            ("name".to_string(), toml::Value::String(shape.into())),
        ]
        .into_iter()
        .collect());
    }
    if let Some(dir) = hub_cache_entry(model)? {
        return Ok([
            ("type".to_string(), "hf".into()),
            ("path".to_string(), toml::Value::String(dir)),
        ]
        .into_iter()
        .collect());
    }
    registry::find(ComponentKind::Model, model).with_context(|| {
        format!(
            "--model is neither a folder, a registered model nor a model shape ({}-shape)",
            rlvr_models::shapes::names().replace(", ", "-shape, ")
        )
    })?;
    Ok([("type".to_string(), toml::Value::String(model.into()))]
        .into_iter()
        .collect())
}

/// The Hugging Face hub cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`), as huggingface_hub lays it out.
fn hub_cache() -> Option<PathBuf> {
    if let Some(c) = std::env::var_os("HF_HUB_CACHE") {
        return Some(PathBuf::from(c));
    }
    if let Some(h) = std::env::var_os("HF_HOME") {
        return Some(PathBuf::from(h).join("hub"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
}

/// The local snapshot of hub id `org/name` (`models--org--name/snapshots/<refs/main>`), when
/// `model` looks like a hub id; an id that is not in the cache is a usage error (nothing is
/// downloaded).
fn hub_cache_entry(model: &str) -> Result<Option<String>> {
    let parts: Vec<&str> = model.split('/').collect();
    let [org, name] = parts.as_slice() else {
        return Ok(None);
    };
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !s.starts_with('.')
    };
    if !plain(org) || !plain(name) {
        return Ok(None);
    }
    let Some(cache) = hub_cache() else {
        return Ok(None);
    };
    let repo = cache.join(format!("models--{org}--{name}"));
    let snapshots = repo.join("snapshots");
    let main = std::fs::read_to_string(repo.join("refs/main")).ok();
    let snapshot = match main.map(|r| snapshots.join(r.trim())) {
        Some(s) if s.is_dir() => Some(s),
        _ => {
            // No refs/main: a single snapshot is unambiguous.
            let all: Vec<PathBuf> = std::fs::read_dir(&snapshots)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            match all.as_slice() {
                [one] => Some(one.clone()),
                [] => None,
                _ => usage_bail!(
                    "--model {model}: {} holds {} snapshots and no refs/main; give the snapshot \
                     folder itself",
                    snapshots.display(),
                    all.len()
                ),
            }
        }
    };
    match snapshot {
        Some(s) if s.join("config.json").is_file() => Ok(Some(s.display().to_string())),
        _ => usage_bail!(
            "--model {model}: not a folder, and not in the Hugging Face cache ({}); rlvr does \
             not download models: fetch it first (`huggingface-cli download {model}`) or give \
             its folder",
            repo.display()
        ),
    }
}

/// The Hugging Face folder `--model DIR` names: DIR itself, or a run checkpoint's `model/` when
/// DIR is a checkpoint step folder; a run folder or a LoRA checkpoint is explained.
fn hf_folder(dir: &Path) -> Result<String> {
    let shown = dir.display();
    if dir.join("config.json").is_file() {
        return Ok(dir.display().to_string());
    }
    let inner = dir.join("model");
    if dir.join("state.json").is_file() && inner.is_dir() {
        if inner.join(rlvr_models::lora::ADAPTER_CONFIG).is_file() {
            usage_bail!(
                "--model {shown}: this checkpoint holds LoRA adapters only; give the base model \
                 and the adapters: --model BASE --adapter {}",
                inner.display()
            );
        }
        if !inner.join("tokenizer.json").is_file() {
            usage_bail!(
                "--model {shown}: a checkpoint of the built-in character-level model (no \
                 tokenizer.json; its alphabet is in the run's config.toml): evaluate it with \
                 `rlvr eval --run RUN --step N`, or start a run from it with --set \
                 model.init={}",
                inner.display()
            );
        }
        return Ok(inner.display().to_string());
    }
    if dir.join("config.toml").is_file() && dir.join("checkpoints").is_dir() {
        usage_bail!(
            "--model {shown} is a run folder; give one of its checkpoints, e.g. --model \
             {shown}/checkpoints/step-N (or evaluate the run with `rlvr eval --run {shown}`)"
        );
    }
    usage_bail!("--model {shown}: no config.json (not a Hugging Face model folder)")
}

/// Sets `model.adapter` from `--adapter` (a PEFT adapter folder over the model).
fn apply_adapter(doc: &mut toml::Table, model: &ModelArgs) -> Result<()> {
    if let Some(a) = &model.adapter {
        if !Path::new(a)
            .join(rlvr_models::lora::ADAPTER_CONFIG)
            .is_file()
        {
            usage_bail!(
                "--adapter {a}: not a PEFT adapter folder (no {})",
                rlvr_models::lora::ADAPTER_CONFIG
            );
        }
        set(doc, "model.adapter", a.as_str())?;
    }
    Ok(())
}

/// Replaces the document's task or data with `--task` / `--data`, if given.
pub fn apply_data(doc: &mut toml::Table, data: &DataArgs) -> Result<()> {
    if let Some(t) = &data.task {
        registry::find(ComponentKind::Task, t)?;
        doc.remove("data");
        let table: toml::Table = [("type".to_string(), toml::Value::String(t.clone()))]
            .into_iter()
            .collect();
        doc.insert("task".into(), toml::Value::Table(table));
    }
    if let Some(d) = &data.data {
        doc.remove("task");
        set(doc, "data.train", d.as_str())?;
    }
    Ok(())
}

/// Builds the run document (defaults ← file ← flags ← --set ← parameter flags).
pub fn build(flags: &RunFlags) -> Result<toml::Table> {
    let mut doc = default_document();
    if let Some(path) = &flags.algo.config {
        merge(&mut doc, &read_document(path)?);
    }
    if let Some(a) = &flags.algo.algo {
        registry::find(ComponentKind::Preset, a)?;
        let table: toml::Table = [("preset".to_string(), toml::Value::String(a.clone()))]
            .into_iter()
            .collect();
        doc.insert("algo".into(), toml::Value::Table(table));
    }
    apply_data(&mut doc, &flags.target.data)?;
    if let Some(m) = &flags.target.model.model {
        doc.insert("model".into(), toml::Value::Table(model_table(m)?));
    }
    apply_adapter(&mut doc, &flags.target.model)?;
    if let Some(s) = &flags.steps {
        set(&mut doc, "train.steps", rlvr_core::algo::parse_value(s))?;
    }
    if let Some(s) = &flags.seed {
        set(&mut doc, "train.seed", rlvr_core::algo::parse_value(s))?;
    }
    if let Some(d) = &flags.target.device.device {
        set(&mut doc, "train.device", d.as_str())?;
    }
    apply_sets(&mut doc, &flags.algo.sets)?;
    let algo_table = doc
        .get("algo")
        .and_then(|a| a.as_table())
        .cloned()
        .unwrap_or_default();
    let mut expanded = AlgoConfig::expand(&algo_table)?;
    algo_args::apply(&mut expanded, &flags.algo.params)?;
    doc.insert("algo".into(), toml::Value::Table(expanded));
    Ok(doc)
}

/// The run document `rlvr eval` evaluates and the checkpoint (step, folder) to load, if any.
pub fn eval_document(args: &EvalArgs) -> Result<(toml::Table, Option<(u64, PathBuf)>)> {
    let (mut doc, step) = match (&args.run, &args.target.model.model) {
        (Some(run), _) => {
            let doc = read_document(&run.join("config.toml"))
                .with_context(|| format!("--run {}: not a run folder", run.display()))?;
            let step = match args.step {
                Some(0) => None,
                Some(s) => Some((s, checkpoint_at(run, s)?)),
                None => Some(latest_checkpoint(run)?.with_context(|| {
                    format!(
                        "{} has no complete checkpoint; --step 0 evaluates the initial weights",
                        run.display()
                    )
                })?),
            };
            (doc, step)
        }
        (None, Some(model)) => {
            if args.target.data.task.is_none() && args.target.data.data.is_none() {
                usage_bail!("--model needs --task NAME (see `rlvr list task`) or --data FILE");
            }
            let mut doc = default_document();
            doc.insert("model".into(), toml::Value::Table(model_table(model)?));
            apply_adapter(&mut doc, &args.target.model)?;
            (doc, None)
        }
        (None, None) => usage_bail!("give --run RUN_FOLDER or --model MODEL"),
    };
    apply_data(&mut doc, &args.target.data)?;
    if let Some(d) = doc.get_mut("data").and_then(|d| d.as_table_mut()) {
        // A dataset given to eval is all held-out: read it as the test file.
        if args.target.data.data.is_some() {
            if let Some(train) = d.get("train").cloned() {
                d.insert("test".into(), train);
            }
        }
    }
    if let Some(d) = &args.target.device.device {
        set(&mut doc, "train.device", d.as_str())?;
    }
    apply_sets(&mut doc, &args.sets)?;
    // What this evaluation samples with, where it differs from the run's.
    if let Some(t) = args.temperature {
        set(&mut doc, "train.temperature", t)?;
    }
    if let Some(m) = args.max_new_tokens {
        set(&mut doc, "train.max_new_tokens", m)?;
    }
    Ok((doc, step))
}
