//! Evaluating a policy on held-out problems: n samples per problem, verified, aggregated into an
//! [`EvalReport`] (pass@K per data source, mean@n) with the concentration diagnostics of the
//! sampled responses (rlvr-eval).

use crate::trainer::rollout;
use anyhow::Result;
use rlvr_core::{
    Outcome, Policy, Problem, SamplingConfig, SequenceBatch, StatsNeeds, TextCodec, Verifier,
};
use rlvr_eval::{ConcentrationAccumulator, EvalReport, ProblemResult, RANKS};
use rlvr_models::tokenizer::HfTokenizer;

/// How to evaluate.
#[derive(Clone)]
pub struct EvalOptions {
    /// Samples per problem (n).
    pub samples: usize,
    /// Sampling settings; the seed is varied per batch of problems.
    pub sampling: SamplingConfig,
    /// Compute the concentration diagnostics (one extra forward pass over the responses).
    pub diagnostics: bool,
    /// Responses generated together (problems per batch = max(1, rows / samples)).
    pub batch_rows: usize,
    /// Advanced by the number of problems done.
    pub progress: indicatif::ProgressBar,
}

impl EvalOptions {
    /// Options with diagnostics, 256 rows per batch and no progress display.
    pub fn new(samples: usize, sampling: SamplingConfig) -> EvalOptions {
        EvalOptions {
            samples,
            sampling,
            diagnostics: true,
            batch_rows: 256,
            progress: indicatif::ProgressBar::hidden(),
        }
    }
}

/// The statistics the diagnostics need: entropy and the top-5 log-probs (fewer for a smaller
/// vocabulary).
pub fn diagnostic_needs(policy: &dyn Policy) -> StatsNeeds {
    StatsNeeds {
        entropy: true,
        entropy_grad: false,
        topk: RANKS.min(policy.vocab_size().max(1) as usize),
        top1: false,
        reference: false,
    }
}

/// Samples `opts.samples` responses per problem, verifies them and reports pass@K, mean@n and
/// (with `opts.diagnostics`) the probability-concentration statistics over response tokens.
pub fn evaluate(
    policy: &dyn Policy,
    codec: &dyn TextCodec,
    chat: Option<&HfTokenizer>,
    verifier: &dyn Verifier,
    problems: &[Problem],
    opts: &EvalOptions,
) -> Result<EvalReport> {
    let n = opts.samples.max(1);
    let per_chunk = (opts.batch_rows / n).max(1);
    let mut results = Vec::with_capacity(problems.len());
    let mut acc = ConcentrationAccumulator::default();
    let needs = diagnostic_needs(policy);
    for (chunk_i, chunk) in problems.chunks(per_chunk).enumerate() {
        let sampling = SamplingConfig {
            seed: opts.sampling.seed.wrapping_add(chunk_i as u64 * 7919),
            ..opts.sampling.clone()
        };
        let (ro, _, _) = rollout(policy, codec, chat, verifier, chunk, n, &sampling)?;
        for (i, p) in chunk.iter().enumerate() {
            let correct = ro.outcomes[i * n..(i + 1) * n]
                .iter()
                .filter(|o| **o == Outcome::Correct)
                .count();
            results.push(ProblemResult {
                id: p.id.clone(),
                data_source: p.data_source.clone(),
                correct,
            });
        }
        if opts.diagnostics {
            let _g = tch::no_grad_guard();
            let rows = ro.tokens.size()[0];
            let step = 64i64;
            let mut start = 0;
            while start < rows {
                let len = step.min(rows - start);
                let seq = SequenceBatch {
                    input_ids: ro.seq.input_ids.narrow(0, start, len),
                    attention_mask: ro.seq.attention_mask.narrow(0, start, len),
                    prompt_len: ro.seq.prompt_len,
                };
                let stats = policy.token_stats(&seq, &needs)?;
                acc.add(&stats, &ro.mask.narrow(0, start, len))?;
                start += len;
            }
        }
        opts.progress.inc(chunk.len() as u64);
    }
    let concentration = opts.diagnostics.then(|| acc.finish());
    Ok(EvalReport::from_results(n, results, concentration))
}
