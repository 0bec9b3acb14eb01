//! `rlvr train`: builds a run from flags and files, or continues one, and trains it with
//! progress, checkpoints and before/after evaluation (`rlvr_train::fit`).

use crate::args::{AlgoArgs, TargetArgs};
use crate::document::{self, RunFlags};
use crate::output::Console;
use crate::usage_bail;
use anyhow::Result;
use rlvr_train::config::RunConfig;
use rlvr_train::run_dir::{existing_run_error, unique_name, validate_name};
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
    /// Run name: one folder name under --runs-dir (default: preset, UTC date and time, and a
    /// random suffix, e.g. simko-20261128-101500-0a3f).
    #[arg(long)]
    pub name: Option<String>,
    /// Folder holding runs.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Continue the run in this folder from its latest complete checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// With --resume: continue although the run's data files changed since it started (the
    /// change is recorded in history.jsonl).
    #[arg(long, requires = "resume")]
    pub allow_changed_data: bool,
    /// With --resume: generate with these rollout servers from now on (comma-separated URLs;
    /// a run with rollout.engine = "server" whose servers were replaced; recorded in
    /// history.jsonl).
    #[arg(long, requires = "resume", value_delimiter = ',')]
    pub rollout_urls: Vec<String>,
    /// Data-parallel ranks to start on this machine (each with the torchrun variables; see
    /// docs/distributed.md). Under torchrun or another launcher, leave it out.
    #[arg(long)]
    pub nproc: Option<usize>,
    /// Algorithm, config file, overrides and parameter flags (last: they take the rest).
    #[command(flatten)]
    pub algo: AlgoArgs,
}

impl TrainArgs {
    /// The values of the run document.
    pub fn run_flags(&self) -> RunFlags {
        RunFlags {
            algo: self.algo.clone(),
            target: self.target.clone(),
            steps: self.steps.map(|s| s.to_string()),
            seed: self.seed.map(|s| s.to_string()),
        }
    }

    /// The flags given that would change a run (all but `--steps` and `--runs-dir`).
    fn run_changing_flags(&self) -> Vec<&'static str> {
        let a = &self.algo;
        let t = &self.target;
        [
            ("--algo", a.algo.is_some()),
            ("--config", a.config.is_some()),
            ("--set", !a.sets.is_empty()),
            ("algorithm parameters", !a.params.is_empty()),
            ("--model", t.model.model.is_some()),
            ("--task", t.data.task.is_some()),
            ("--data", t.data.data.is_some()),
            ("--device", t.device.device.is_some()),
            ("--seed", self.seed.is_some()),
            ("--name", self.name.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect()
    }
}

/// Runs `rlvr train`.
pub fn exec(args: TrainArgs) -> Result<()> {
    let launch = match args.nproc {
        Some(0) => usage_bail!("--nproc 0: give at least 1 rank"),
        Some(n) if n > 1 => {
            if std::env::var_os("WORLD_SIZE").is_some() {
                usage_bail!(
                    "--nproc {n}: WORLD_SIZE is already set (a launcher such as torchrun started \
                     this process); leave --nproc out"
                );
            }
            Some(n)
        }
        _ => None,
    };
    let env = rlvr_dist::WorldEnv::from_env().map_err(|e| crate::usage_error(e.to_string()))?;
    let rank = env.rank;
    if let Some(dir) = &args.resume {
        let changing = args.run_changing_flags();
        if !changing.is_empty() {
            usage_bail!(
                "--resume continues {} exactly as configured; these flags would change it: {} \
                 (only --steps may be given, to extend the run; start a new run to change it)",
                dir.display(),
                changing.join(", ")
            );
        }
        if !args.rollout_urls.is_empty() && rank == 0 {
            rlvr_train::engine::repoint_run(dir, &args.rollout_urls)?;
        }
        if let Some(n) = launch {
            return launch_ranks(n, None);
        }
        rlvr_train::resume(
            dir,
            args.steps,
            args.allow_changed_data,
            &Console::stoppable()?,
        )?;
        return Ok(());
    }
    let cfg = RunConfig::from_document(document::build(&args.run_flags())?)?;
    let name = match &args.name {
        Some(name) => {
            validate_name("--name", name)?;
            name.clone()
        }
        None => unique_name(cfg.algo.preset.as_deref().unwrap_or("custom")),
    };
    let dir = args.runs_dir.join(name);
    if dir.exists() && rank == 0 {
        return Err(existing_run_error(&dir).into());
    }
    if let Some(n) = launch {
        rlvr_train::trainer::check_ranks(n, cfg.train.prompts_per_step)?;
        // Every rank must train the same run folder.
        let name = match &args.name {
            Some(_) => None,
            None => dir.file_name().map(|n| n.to_os_string()),
        };
        return launch_ranks(n, name);
    }
    let ranks = match env.world_size {
        1 => String::new(),
        n => format!(", data-parallel over {n} ranks"),
    };
    let banner = format!("{}{ranks}", opening_line(&args, &cfg, &dir));
    let console = Console::stoppable()?.with_banner(banner);
    rlvr_train::fit(cfg, &dir, false, &console)?;
    Ok(())
}

/// The first line of a run: what trains on what, and where it is saved; an algorithm that was
/// not chosen is said to be the default.
fn opening_line(args: &TrainArgs, cfg: &RunConfig, dir: &std::path::Path) -> String {
    let preset = cfg.algo.preset.as_deref().unwrap_or("custom");
    let algo = if args.algo.algo.is_none() && args.algo.config.is_none() {
        format!("{preset} (the default; choose another with --algo, see `rlvr list preset`)")
    } else {
        preset.to_string()
    };
    let on = match &cfg.data {
        Some(d) => format!("data {}", d.train),
        None => format!("task {}", cfg.task.typetag_name()),
    };
    let model = cfg.model.source();
    format!(
        "training {algo} on {on} with model {model}: {} steps × {} prompts × {} samples, \
         responses up to {} tokens, saved in {}",
        cfg.train.steps,
        cfg.train.prompts_per_step,
        cfg.train.samples_per_prompt,
        cfg.train.max_new_tokens,
        dir.display()
    )
}

/// Starts `n` local ranks of this program with the same arguments (less `--nproc`, plus `--name`
/// when the parent chose the run's name) and waits for them; a failed rank ends the job with its
/// exit code.
fn launch_ranks(n: usize, name: Option<std::ffi::OsString>) -> Result<()> {
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    let mut given = std::env::args_os().skip(1);
    while let Some(a) = given.next() {
        if a == "--nproc" {
            given.next();
        } else if !a.to_string_lossy().starts_with("--nproc=") {
            args.push(a);
        }
    }
    if let Some(name) = name {
        args.push("--name".into());
        args.push(name);
    }
    let program = std::env::current_exe()?;
    let outcome =
        rlvr_dist::launch::run_local(&program, &args, n, std::time::Duration::from_secs(30))?;
    let code = u8::try_from(outcome.code).unwrap_or(crate::EXIT_FAILURE);
    match (outcome.failure, outcome.interrupted) {
        (None, _) => Ok(()),
        // Asked to stop: rank 0 said where it stopped and how to continue; nothing failed.
        (Some(_), Some(sig)) if outcome.code == 128 + sig => {
            Err(anyhow::Error::new(crate::ExitWith(code, String::new())))
        }
        (Some(what), _) => Err(anyhow::Error::new(crate::ExitWith(
            code,
            format!("{what}; the job stopped"),
        ))),
    }
}
