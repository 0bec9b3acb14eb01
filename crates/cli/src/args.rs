//! Argument groups shared by several subcommands, declared once and flattened into each.

use std::path::PathBuf;

/// How an algorithm is chosen: a preset, a config file, overrides, and parameter flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AlgoArgs {
    /// Algorithm preset (see `rlvr list preset`); overrides `[algo] preset` of --config.
    #[arg(long)]
    pub algo: Option<String>,
    /// TOML configuration file ([algo], and for runs [model], [task] or [data], [train]).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override KEY=VALUE (dotted from the document root, e.g. algo.loss.topk=5 or
    /// train.lr=1e-4); repeatable.
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

/// The model of a run.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ModelArgs {
    /// Model: a Hugging Face folder, or a registered model name (see `rlvr list model`).
    #[arg(long)]
    pub model: Option<String>,
    /// A PEFT LoRA adapter folder over the model (model.adapter): train or evaluate from it.
    #[arg(long)]
    pub adapter: Option<String>,
}

/// The problems of a run: a built-in task or a dataset file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DataArgs {
    /// Built-in task (see `rlvr list task`).
    #[arg(long)]
    pub task: Option<String>,
    /// Dataset file (.parquet in verl layout, or .jsonl) instead of a task.
    #[arg(long, conflicts_with = "task")]
    pub data: Option<String>,
}

/// Where the model runs.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DeviceArgs {
    /// Device: cpu | cuda | cuda:N.
    #[arg(long)]
    pub device: Option<String>,
}

/// The model, problems and device of a run or an evaluation.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TargetArgs {
    /// Model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Task or dataset.
    #[command(flatten)]
    pub data: DataArgs,
    /// Device.
    #[command(flatten)]
    pub device: DeviceArgs,
}
