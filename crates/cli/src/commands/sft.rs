//! `rlvr sft`: supervised warm start on a task's generated solutions or a dataset's worked
//! solutions (`rlvr_train::sft`).

use crate::args::DeviceArgs;
use crate::output::Console;
use anyhow::Result;
use rlvr_train::sft::{sft, SftSpec};
use std::path::PathBuf;

/// Flags of `rlvr sft`.
#[derive(Debug, clap::Args)]
pub struct SftArgs {
    /// Task whose solution generator provides the targets.
    #[arg(long, default_value = "countdown")]
    pub task: String,
    /// Model (registered name, e.g. tiny, or a HF folder).
    #[arg(long, default_value = "tiny")]
    pub model: String,
    /// Override KEY=VALUE of [model], [task] (e.g. model.hidden_size=96).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Device (default: cpu).
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Optimizer steps.
    #[arg(long, default_value_t = 1500)]
    pub steps: u64,
    /// Problems per step.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder (HF layout).
    #[arg(long)]
    pub out: PathBuf,
    /// Dataset with worked solutions (verl parquet or JSONL with `solution`) instead of a task's
    /// generator; use with `--model` pointing at a HF folder.
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// Runs `rlvr sft`.
pub fn exec(args: SftArgs) -> Result<()> {
    let spec = SftSpec {
        model: args.model,
        task: args.task,
        sets: args.sets,
        device: args.device.device,
        steps: args.steps,
        batch: args.batch,
        lr: args.lr,
        seed: args.seed,
        out: args.out,
        data: args.data,
    };
    let result = sft(&spec, &Console::default())?;
    match result.greedy_accuracy {
        Some((acc, problems)) => println!(
            "saved {}; greedy accuracy on {problems} held-out problems: {acc:.3}",
            spec.out.display()
        ),
        None => println!("saved {}", spec.out.display()),
    }
    Ok(())
}
