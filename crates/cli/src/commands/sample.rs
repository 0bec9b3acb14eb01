//! `rlvr sample`: the distribution of a trained policy's responses to one held-out problem —
//! the prompt as the policy sees it (chat template included), the reference answer, accuracy,
//! each distinct response with its score, and how many distinct correct responses ("modes") it
//! keeps.

use crate::args::DeviceArgs;
use crate::usage_bail;
use anyhow::{Context, Result};
use rlvr_core::Outcome;
use rlvr_train::checkpoint::{latest_checkpoint, load_pinned};
use rlvr_train::config::{read_document, set, RunConfig};
use rlvr_train::session::{Placement, Session};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Flags of `rlvr sample`.
#[derive(Debug, clap::Args)]
pub struct SampleArgs {
    /// Run folder (its config and latest checkpoint are used).
    #[arg(long)]
    pub run: PathBuf,
    /// Responses to sample for the first held-out problem.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Sampling seed.
    #[arg(long, default_value_t = 12345)]
    pub seed: u64,
    /// A mode counts when it holds at least this fraction of the samples (0 to 1).
    #[arg(long, default_value_t = 0.01)]
    pub min_share: f64,
    /// Responses generated together (memory is bounded by this, not by --n; the samples are the
    /// same for any value: each response has its own random stream).
    #[arg(long, default_value_t = 256)]
    pub batch_rows: usize,
    /// Device (default: the run's train.device).
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Runs `rlvr sample`.
pub fn exec(args: SampleArgs) -> Result<()> {
    if args.n == 0 {
        usage_bail!("--n must be >= 1");
    }
    if args.batch_rows == 0 {
        usage_bail!("--batch-rows must be >= 1");
    }
    if !(args.min_share > 0.0 && args.min_share <= 1.0) {
        usage_bail!(
            "--min-share must be a fraction in (0, 1], got {}",
            args.min_share
        );
    }
    let mut doc = read_document(&args.run.join("config.toml"))?;
    if let Some(device) = &args.device.device {
        set(&mut doc, "train.device", device.as_str())?;
    }
    let cfg = RunConfig::from_document(doc)?;
    let mut session = Session::open(&cfg, Placement::single())?;
    let problem = session
        .problems
        .test
        .first()
        .context("the task has no held-out problem")?
        .clone();
    // The prompt exactly as training and evaluation give it (through a chat model's template).
    let prompt = session.codec.render_prompt(&problem)?;
    let (step, ck) = latest_checkpoint(&args.run)?.context("the run has no complete checkpoint")?;
    load_pinned(&ck, session.policy.as_mut())?;
    let mut counts: BTreeMap<(bool, String), usize> = BTreeMap::new();
    let mut scores: BTreeMap<String, f32> = BTreeMap::new();
    let mut correct = 0usize;
    let mut start = 0;
    while start < args.n {
        let rows = args.batch_rows.min(args.n - start);
        let mut sampling = session.sampling_with_seed(args.seed);
        // Response r draws from stream r whichever batch it is in.
        sampling.first_stream = start as u64;
        let ro = session.rollout(std::slice::from_ref(&problem), rows, &sampling, 0)?;
        for ((t, o), score) in ro.texts.iter().zip(&ro.outcomes).zip(ro.score_values()) {
            *counts
                .entry((*o == Outcome::Correct, t.clone()))
                .or_default() += 1;
            scores.insert(t.clone(), score);
            correct += usize::from(*o == Outcome::Correct);
        }
        start += rows;
    }
    println!("prompt: {prompt:?}\nanswer: {:?}", problem.ground_truth);
    let modes = counts
        .iter()
        .filter(|((ok, _), c)| *ok && **c as f64 >= args.min_share * args.n as f64)
        .count();
    println!(
        "{} at step {step}: {} samples, accuracy {:.3}, correct modes (≥{:.0}%): {modes}",
        args.run.display(),
        args.n,
        correct as f64 / args.n as f64,
        args.min_share * 100.0
    );
    let mut rows: Vec<_> = counts.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    for ((ok, text), c) in rows.iter().take(12) {
        println!(
            "  {:>5}  score {:<5} {:<12} {}",
            c,
            scores.get(text).copied().unwrap_or_default(),
            format!("{text:?}"),
            if *ok { "correct" } else { "" }
        );
    }
    Ok(())
}
