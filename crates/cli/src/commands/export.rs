//! `rlvr export`: a run's checkpoint as a folder other tools load — a Hugging Face model folder,
//! or for a LoRA run its PEFT adapter folder, or with `--merge` the base with the adapters folded
//! in (PEFT's `merge_and_unload`) as a full Hugging Face folder.

use crate::usage_bail;
use anyhow::{Context, Result};
use rlvr_core::atomic::{ClaimedDir, StagedDir};
use rlvr_train::checkpoint::{checkpoint_at, latest_checkpoint, load_pinned};
use rlvr_train::config::{read_document, set, RunConfig};
use std::path::PathBuf;

/// Flags of `rlvr export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Run folder.
    pub run: PathBuf,
    /// Folder to write (created; it must not exist).
    #[arg(long)]
    pub out: PathBuf,
    /// Checkpoint step (default: the latest complete one).
    #[arg(long)]
    pub step: Option<u64>,
    /// Fold a LoRA run's adapters into the base weights and write a full Hugging Face folder
    /// (without it a LoRA run exports its PEFT adapter folder).
    #[arg(long)]
    pub merge: bool,
}

/// Runs `rlvr export`.
pub fn exec(args: ExportArgs) -> Result<()> {
    let mut doc = read_document(&args.run.join("config.toml"))
        .with_context(|| format!("{}: not a run folder", args.run.display()))?;
    let (step, ck) = match args.step {
        Some(s) => (s, checkpoint_at(&args.run, s)?),
        None => latest_checkpoint(&args.run)?
            .with_context(|| format!("{} has no complete checkpoint", args.run.display()))?,
    };
    // Exporting needs no accelerator.
    set(&mut doc, "train.device", "cpu")?;
    let cfg = RunConfig::from_document(doc)?;
    let Some(claimed) = ClaimedDir::claim(&args.out)? else {
        usage_bail!(
            "--out {} exists; give a new folder (nothing is overwritten)",
            args.out.display()
        );
    };
    let mut policy = cfg.model.build(tch::Device::Cpu)?;
    let adapters = policy.has_frozen_base();
    if args.merge && !adapters {
        eprintln!("--merge: the run trains every weight (no adapters); exporting the model");
    }
    load_pinned(&ck, policy.as_mut())?;
    if args.merge {
        policy.merge_adapters()?;
    }
    let staged = StagedDir::create(&args.out, "partial")?;
    policy.save(staged.path())?;
    staged.publish()?;
    claimed.keep();
    let what = match (adapters, args.merge) {
        (true, false) => "PEFT adapter folder (adapter_config.json, adapter_model.safetensors)",
        (true, true) => "Hugging Face model folder, LoRA adapters merged into the base",
        (false, _) => "Hugging Face model folder",
    };
    println!(
        "{}: {what}, step {step} of {}",
        args.out.display(),
        args.run.display()
    );
    Ok(())
}
