//! `rlvr sweep sweep.toml`: a resumable grid of runs with a mean ± std summary
//! (`rlvr_train::sweep`; file format in docs/evaluation.md).

use crate::output::Console;
use anyhow::Result;
use rlvr_train::sweep::{sweep, SweepOptions};
use std::path::PathBuf;

/// Flags of `rlvr sweep`.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// The sweep file: TOML with `[base]` (a run document), optional `[[variant]]` (name + set of
    /// dotted keys) and `[grid]` (dotted key = list of values); format in docs/evaluation.md.
    pub file: PathBuf,
    /// Folder holding runs; the sweep goes to <runs-dir>/sweeps/<name>.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Also write the summary to this markdown file, figures in a folder beside it named after
    /// the file's stem (e.g. docs/results.md with docs/results/*.png).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// List the runs and validate their configurations without training.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `rlvr sweep`.
pub fn exec(args: SweepArgs) -> Result<()> {
    let opts = SweepOptions {
        file: args.file,
        runs_dir: args.runs_dir,
        report: args.report,
        dry_run: args.dry_run,
    };
    sweep(&opts, &Console::stoppable()?)?;
    Ok(())
}
