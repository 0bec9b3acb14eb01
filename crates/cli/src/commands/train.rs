//! `rlvr train`: builds a run from flags and files, or continues one, and trains it with
//! progress, checkpoints and before/after evaluation (`rlvr_train::fit`).

use crate::args::{AlgoArgs, TargetArgs};
use crate::document::{self, RunFlags};
use crate::output::Console;
use crate::usage_bail;
use anyhow::{Context, Result};
use rlvr_train::config::{read_document, RunConfig};
use std::path::PathBuf;

/// Flags of `rlvr train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Model, task or dataset, device.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Number of RL steps.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run name (folder under --runs-dir); default derived from algorithm and time.
    #[arg(long)]
    pub name: Option<String>,
    /// Folder holding runs.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Continue the run in this folder from its latest complete checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Algorithm, config file, overrides and parameter flags (last: they take the rest).
    #[command(flatten)]
    pub algo: AlgoArgs,
}

impl TrainArgs {
    /// The values of the run document.
    pub fn run_flags(&self) -> Result<RunFlags> {
        let mut flags = RunFlags {
            algo: self.algo.clone(),
            target: self.target.clone(),
            steps: self.steps.map(|s| s.to_string()),
            seed: self.seed.map(|s| s.to_string()),
        };
        document::take_ordinary_flags(&mut flags)?;
        Ok(flags)
    }
}

/// Runs `rlvr train`.
pub fn exec(args: TrainArgs) -> Result<()> {
    if let Some(dir) = &args.resume {
        let doc = read_document(&dir.join("config.toml"))
            .with_context(|| format!("--resume {}: not a run folder", dir.display()))?;
        let cfg = RunConfig::from_document(doc)?;
        rlvr_train::fit(cfg, dir, true, &Console::default())?;
        return Ok(());
    }
    let cfg = RunConfig::from_document(document::build(&args.run_flags()?)?)?;
    let name = args.name.clone().unwrap_or_else(|| {
        let preset = cfg.algo.preset.clone().unwrap_or_else(|| "custom".into());
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        format!("{preset}-{secs}")
    });
    let dir = args.runs_dir.join(name);
    if dir.join("config.toml").exists() {
        usage_bail!(
            "run folder {} already exists; continue it with --resume {} or choose another --name",
            dir.display(),
            dir.display()
        );
    }
    rlvr_train::fit(cfg, &dir, false, &Console::default())?;
    Ok(())
}
