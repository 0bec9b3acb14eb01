//! `rlvr compare A B ...`: evaluations of several runs side by side (`rlvr_train::compare`).

use anyhow::Result;
use std::path::PathBuf;

/// Flags of `rlvr compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Runs (their newest `rlvr eval`, else the end-of-training evaluation), evaluation folders
    /// or eval JSON files.
    #[arg(required = true, num_args = 1..)]
    pub inputs: Vec<PathBuf>,
    /// Labels, one per input (default: folder names).
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Output folder (default: comparisons/<a>-vs-<b>... beside the first input, e.g.
    /// runs/comparisons/a-vs-b for runs/a runs/b).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an existing output folder.
    #[arg(long)]
    pub overwrite: bool,
}

/// Runs `rlvr compare`.
pub fn exec(args: CompareArgs) -> Result<()> {
    let (table, out) = rlvr_train::compare::compare(
        &args.inputs,
        &args.labels,
        args.out.as_deref(),
        args.overwrite,
    )?;
    print!("{table}");
    println!("comparison saved in {}", out.display());
    Ok(())
}
