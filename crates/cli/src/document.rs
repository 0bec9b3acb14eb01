//! Building a run document from command-line values: built-in defaults ← `--config` file ←
//! `--algo`/`--task`/`--data`/`--model`/`--steps`/`--seed`/`--device` ← `--set` ← algorithm
//! parameter flags.

use crate::args::{AlgoArgs, DataArgs, TargetArgs};
use crate::commands::eval::EvalArgs;
use crate::model_arg::{apply_adapter, model_table};
use crate::{algo_args, usage_bail};
use anyhow::{Context, Result};
use rlvr_core::algo::merge;
use rlvr_core::registry::{self, ComponentKind};
use rlvr_core::AlgoConfig;
use rlvr_train::checkpoint::{checkpoint_at, latest_checkpoint};
use rlvr_train::config::{apply_sets, default_document, read_document, set};
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
