//! The subcommands of `rlvr`: one module each, holding its flags and a short `exec`.

pub mod compare;
pub mod config;
pub mod eval;
pub mod export;
pub mod list;
pub mod plan;
pub mod sample;
pub mod serve;
pub mod sft;
pub mod sweep;
pub mod train;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// `rlvr --version`: the package version and the commit the binary was built from
/// (`build/cli.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    ", commit ",
    env!("RLVR_GIT_COMMIT")
);

/// Reinforcement learning with verifiable rewards for language models.
#[derive(Debug, Parser)]
#[command(name = "rlvr", version = VERSION, about, long_about = None)]
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
    /// List everything registered: presets, advantage estimators, losses, gates, reward shapings, group filters, verifiers, tasks, models.
    List(list::ListArgs),
    /// Print the fully resolved run configuration as TOML, every section, each field with its meaning.
    Config(config::ConfigArgs),
    /// Train a policy with RL (defaults: SimKO on countdown from the shipped base checkpoint).
    Train(train::TrainArgs),
    /// Supervised warm start on a task's generated solutions.
    Sft(sft::SftArgs),
    /// Evaluate a run's checkpoint or a model: pass@K, mean@n, concentration diagnostics, plots.
    Eval(eval::EvalArgs),
    /// Compare evaluations of several runs side by side: tables and plots.
    Compare(compare::CompareArgs),
    /// Train a grid of runs from a sweep file, resumable, with a mean ± std summary report.
    Sweep(sweep::SweepArgs),
    /// Sample a trained run's policy on one problem: accuracy and distinct correct responses.
    Sample(sample::SampleArgs),
    /// Write a run's checkpoint as a Hugging Face folder, a PEFT adapter folder, or (--merge) a LoRA run's base with its adapters merged.
    Export(export::ExportArgs),
    /// Serve a model over HTTP for generation: SGLang's /generate and weight-update endpoints, OpenAI's /v1/completions (continuous batching).
    Serve(serve::ServeArgs),
    /// One rank's predicted memory by component (weights, gradients, moments, activations, logits, KV cache) for a model shape, lengths, ranks and sharding, and whether it fits.
    Plan(plan::PlanArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::List(args) => list::exec(args),
        Command::Config(args) => config::exec(args),
        Command::Train(args) => train::exec(args),
        Command::Sft(args) => sft::exec(args),
        Command::Eval(args) => eval::exec(args),
        Command::Compare(args) => compare::exec(args),
        Command::Sweep(args) => sweep::exec(args),
        Command::Sample(args) => sample::exec(args),
        Command::Export(args) => export::exec(args),
        Command::Serve(args) => serve::exec(args),
        Command::Plan(args) => plan::exec(args),
    }
}
