//! `rlvr sample`: the distribution of a trained policy's responses to one held-out problem —
//! the prompt as the policy sees it (chat template included), the reference answer, accuracy,
//! each distinct response with its score, and how many distinct correct responses ("modes") it
//! keeps.

use anyhow::{Context, Result};
use rlvr_core::{Outcome, SamplingConfig};
use rlvr_train::checkpoint::{latest_checkpoint, load_checkpoint};
use rlvr_train::config::{read_document, RunConfig};
use rlvr_train::data::{chat_tokenizer, load_problems, prompt_text};
use rlvr_train::rollout::rollout;
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
    /// A mode counts when it holds at least this fraction of the samples.
    #[arg(long, default_value_t = 0.01)]
    pub min_share: f64,
}

/// Runs `rlvr sample`.
pub fn exec(args: SampleArgs) -> Result<()> {
    let cfg = RunConfig::from_document(read_document(&args.run.join("config.toml"))?)?;
    let problems = load_problems(&cfg)?;
    let problem = problems
        .test
        .first()
        .context("the task has no held-out problem")?
        .clone();
    let codec = cfg.model.codec()?;
    // The prompt exactly as training and evaluation give it (through a chat model's template).
    let chat = chat_tokenizer(&cfg)?;
    let prompt = prompt_text(&problem, chat.as_ref())?;
    let mut policy = cfg.model.build(tch::Device::Cpu)?;
    let (step, ck) = latest_checkpoint(&args.run)?.context("the run has no complete checkpoint")?;
    load_checkpoint(&ck, policy.as_mut(), None)?;
    let tc = &cfg.train;
    let sampling = SamplingConfig {
        temperature: tc.temperature,
        top_p: tc.top_p,
        top_k: tc.top_k,
        max_new_tokens: tc.max_new_tokens,
        seed: args.seed,
        first_stream: 0,
    };
    let ro = rollout(
        policy.as_ref(),
        codec.as_ref(),
        chat.as_ref(),
        problems.verifier.as_ref(),
        std::slice::from_ref(&problem),
        args.n,
        &sampling,
    )?;
    let mut counts: BTreeMap<(bool, String), usize> = BTreeMap::new();
    let mut scores: BTreeMap<String, f32> = BTreeMap::new();
    for ((t, o), score) in ro.texts.iter().zip(&ro.outcomes).zip(ro.score_values()) {
        *counts
            .entry((*o == Outcome::Correct, t.clone()))
            .or_default() += 1;
        scores.insert(t.clone(), score);
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
        ro.accuracy(),
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
