//! The subcommands of `rlvr`.

use crate::{algo_args, config_file};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use rlvr_core::algo::doc_for_tagged;
use rlvr_core::registry::{self, Kind};
use rlvr_core::{AlgoConfig, Describe};
use std::path::PathBuf;

/// Reinforcement learning with verifiable rewards for language models.
#[derive(Debug, Parser)]
#[command(name = "rlvr", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v, -vv, -vvv); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List everything registered: presets, advantage estimators, losses, gates, verifiers, tasks, models.
    List {
        /// Only this kind (preset, advantage, loss, gate, verifier, task, model).
        kind: Option<String>,
    },
    /// Print the fully resolved algorithm configuration as TOML, each field with its meaning.
    Config(AlgoArgs),
    /// Train a policy with RL (defaults: SimKO on countdown from the shipped base checkpoint).
    Train(crate::train_cmd::TrainArgs),
    /// Supervised warm start on a task's generated solutions.
    Sft(crate::train_cmd::SftArgs),
    /// Evaluate a run's checkpoint or a model: pass@K, mean@n, concentration diagnostics, plots.
    Eval(crate::eval_cmd::EvalArgs),
    /// Compare evaluations of several runs side by side: tables and plots.
    Compare(crate::eval_cmd::CompareArgs),
    /// Train a grid of runs from a sweep file, resumable, with a mean ± std summary report.
    Sweep(crate::sweep::SweepArgs),
    /// Sample a trained run's policy on one problem: accuracy and distinct correct responses.
    Sample(crate::train_cmd::SampleArgs),
}

/// How an algorithm is chosen: a preset, a config file, overrides, and parameter flags.
#[derive(Debug, clap::Args)]
pub struct AlgoArgs {
    /// Algorithm preset (see `rlvr list preset`); overrides `[algo] preset` of --config.
    #[arg(long)]
    pub algo: Option<String>,
    /// TOML configuration file with an `[algo]` table.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override KEY=VALUE (dotted from the document root, e.g. algo.loss.topk=5); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Algorithm parameters derived from the config fields, e.g. --topk 3 --tau 0.1
    /// (`rlvr config --algo NAME` lists them).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PARAMS"
    )]
    pub params: Vec<String>,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::List { kind } => list(kind.as_deref()),
        Command::Train(args) => crate::train_cmd::train(args),
        Command::Sft(args) => crate::train_cmd::sft(args),
        Command::Sample(args) => crate::train_cmd::sample(args),
        Command::Eval(args) => crate::eval_cmd::eval(args),
        Command::Sweep(args) => crate::sweep::sweep(args),
        Command::Compare(args) => crate::eval_cmd::compare(args),
        Command::Config(args) => {
            let (config, _) = resolve_algo(&args)?;
            print!("{}", render_algo(&config)?);
            Ok(())
        }
    }
}

fn list(kind: Option<&str>) -> Result<()> {
    let kinds: Vec<Kind> = match kind {
        None => Kind::ALL.to_vec(),
        Some(k) => {
            let found = Kind::ALL.iter().find(|x| x.label() == k).copied();
            let valid: Vec<&str> = Kind::ALL.iter().map(|x| x.label()).collect();
            vec![found.with_context(|| {
                format!("unknown kind `{k}`; valid kinds: {}", valid.join(", "))
            })?]
        }
    };
    for kind in kinds {
        let regs: Vec<_> = registry::all()
            .into_iter()
            .filter(|r| r.kind() == kind)
            .collect();
        println!("{}:", kind.plural());
        if regs.is_empty() {
            println!("  (none registered)");
        }
        let width = regs.iter().map(|r| r.name.len()).max().unwrap_or(0);
        for r in regs {
            println!("  {:width$}  {}", r.name, r.summary);
        }
    }
    Ok(())
}

/// Builds the `[algo]` table from --config, --algo, --set and parameter flags, resolves presets,
/// and validates it (building every piece) before anything else happens.
pub fn resolve_algo(args: &AlgoArgs) -> Result<(AlgoConfig, toml::Table)> {
    let mut doc = match &args.config {
        Some(path) => config_file::read(path)?,
        None => toml::Table::new(),
    };
    if let Some(name) = &args.algo {
        registry::find(Kind::Preset, name)?;
        let algo = doc
            .entry("algo")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let algo = algo
            .as_table_mut()
            .context("`algo` in the config must be a table")?;
        algo.insert("preset".into(), toml::Value::String(name.clone()));
    }
    config_file::apply_sets(&mut doc, &args.sets)?;
    let algo = match doc.get("algo") {
        Some(toml::Value::Table(t)) => t.clone(),
        Some(_) => anyhow::bail!("`algo` in the config must be a table"),
        None => anyhow::bail!(
            "no algorithm given: pass --algo NAME or a --config file with an [algo] table; presets: {}",
            registry::names(Kind::Preset).join(", ")
        ),
    };
    let mut expanded = AlgoConfig::expand(&algo)?;
    algo_args::apply(&mut expanded, &args.params)?;
    let config = AlgoConfig::from_table(&expanded)?;
    config.build().context("invalid algorithm configuration")?;
    doc.insert("algo".into(), toml::Value::Table(config.to_table()?));
    Ok((config, doc))
}

/// The `[algo]` table as commented TOML.
pub fn render_algo(config: &AlgoConfig) -> Result<String> {
    let table = config.to_table()?;
    let docs = |path: &[String], t: &toml::Table, field: &str| -> Option<&'static str> {
        if path.len() == 1 {
            return config.field_doc(field);
        }
        t.get("type")
            .and_then(|v| v.as_str())
            .and_then(|tag| doc_for_tagged(tag, field))
    };
    Ok(rlvr_core::toml_doc::render("algo", &table, &docs))
}
