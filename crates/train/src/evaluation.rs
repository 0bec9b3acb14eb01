//! Evaluating a policy on held-out problems: n samples per problem, verified, aggregated into an
//! [`EvalReport`] (pass@K per data source, mean@n) with the concentration diagnostics of the
//! sampled responses (rlvr-eval).

use crate::distributed::group_share;
use crate::error::Result;
use crate::rollout::rollout;
use crate::session::Session;
use rlvr_core::{Outcome, Problem, SamplingConfig, SequenceBatch};
use rlvr_dist::Collective;
use rlvr_eval::{ConcentrationAccumulator, EvalReport, ProblemResult};

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
    /// Called with the number of problems finished after each batch (e.g. to move a progress bar).
    pub progress: Option<std::sync::Arc<dyn Fn(u64) + Send + Sync>>,
}

impl EvalOptions {
    /// Options with diagnostics, 256 rows per batch and no progress display.
    pub fn new(samples: usize, sampling: SamplingConfig) -> EvalOptions {
        EvalOptions {
            samples,
            sampling,
            diagnostics: true,
            batch_rows: 256,
            progress: None,
        }
    }
}

/// Samples `opts.samples` responses per problem with the session's policy, verifies them and
/// reports pass@K, mean@n and (with `opts.diagnostics`) the probability-concentration statistics
/// over response tokens. The batches of problems are dealt to the ranks of `world` (contiguous
/// blocks); each batch keeps the seed it has in one process, the per-problem counts and the
/// diagnostics' sums are gathered, and every rank returns the report one process would.
pub fn evaluate(
    world: &dyn Collective,
    session: &Session,
    problems: &[Problem],
    opts: &EvalOptions,
) -> Result<EvalReport> {
    let n = opts.samples.max(1);
    let per_chunk = (opts.batch_rows / n).max(1);
    let chunks: Vec<&[Problem]> = problems.chunks(per_chunk).collect();
    let share = group_share(chunks.len(), world.rank(), world.world_size());
    let mut correct_counts: Vec<f64> = Vec::new();
    let mut acc = ConcentrationAccumulator::default();
    let policy = session.policy.as_ref();
    let needs = ConcentrationAccumulator::needs(policy.vocab_size());
    for chunk_i in share {
        let chunk = chunks[chunk_i];
        let sampling = SamplingConfig {
            seed: opts.sampling.seed.wrapping_add(chunk_i as u64 * 7919),
            ..opts.sampling.clone()
        };
        let ro = rollout(session, chunk, n, &sampling, 0)?;
        let r = &ro.responses;
        for i in 0..chunk.len() {
            let correct = ro.outcomes[i * n..(i + 1) * n]
                .iter()
                .filter(|o| **o == Outcome::Correct)
                .count();
            correct_counts.push(correct as f64);
        }
        if opts.diagnostics {
            let _g = tch::no_grad_guard();
            let rows = r.len();
            let step = 64i64;
            let mut start = 0;
            while start < rows {
                let len = step.min(rows - start);
                let seq = SequenceBatch {
                    input_ids: r.seq.input_ids.narrow(0, start, len),
                    attention_mask: r.seq.attention_mask.narrow(0, start, len),
                    prompt_len: r.seq.prompt_len,
                };
                let stats = policy.token_stats(&seq, &needs)?;
                acc.add(&stats, &r.mask.narrow(0, start, len))?;
                start += len;
            }
        }
        if let Some(progress) = &opts.progress {
            progress(chunk.len() as u64);
        }
    }
    if !world.is_single() {
        correct_counts = world.all_gather(&correct_counts)?.concat();
        if opts.diagnostics {
            let sums = world.all_gather(&acc.to_sums())?;
            acc = ConcentrationAccumulator::default();
            for s in &sums {
                acc.add_sums(s)?;
            }
        }
    }
    let results = problems
        .iter()
        .zip(&correct_counts)
        .map(|(p, &c)| ProblemResult {
            id: p.id.clone(),
            data_source: p.data_source.clone(),
            correct: c as usize,
        })
        .collect();
    let concentration = opts.diagnostics.then(|| acc.finish());
    if let Some(c) = &concentration {
        // Finite weights can still overflow the forward pass; then every sample is noise.
        if c.tokens > 0 && !(c.entropy_mean.is_finite() && c.sampled_logp.is_finite()) {
            return Err(crate::TrainError::Run(format!(
                "the policy's logits are not finite (NaN or infinite) on the {} sampled response \
                 tokens, so its pass@K would be meaningless: the weights overflow the forward \
                 pass; check the model or checkpoint",
                c.tokens
            )));
        }
    }
    Ok(EvalReport::from_results(n, results, concentration))
}

/// Writes an evaluation folder — `eval.json`, `eval.md` and `plots/` (with the training curves of
/// `metrics` files, if any) — into a temporary folder that then replaces `out`.
pub fn write_evaluation(
    out: &std::path::Path,
    label: &str,
    problems_from: &str,
    report: &EvalReport,
    sampling: &SamplingConfig,
    metrics: Vec<std::path::PathBuf>,
) -> Result<()> {
    use crate::error::IoResultExt;
    use rlvr_eval::figures::{figure_markdown, write_figures, Group};
    let staged = rlvr_core::atomic::StagedDir::create(out, "partial")?;
    let tmp = staged.path();
    let plots = tmp.join("plots");
    std::fs::create_dir_all(&plots).at(&plots)?;
    let json = tmp.join("eval.json");
    // The report, with what was evaluated and how (readers of reports ignore the extra keys).
    let mut value = serde_json::to_value(report)?;
    if let Some(map) = value.as_object_mut() {
        map.insert("label".into(), label.into());
        map.insert("problems_from".into(), problems_from.into());
        map.insert(
            "sampling".into(),
            serde_json::json!({
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "top_k": sampling.top_k,
                "max_new_tokens": sampling.max_new_tokens,
                "seed": sampling.seed,
            }),
        );
    }
    std::fs::write(&json, serde_json::to_string_pretty(&value)?).at(&json)?;
    let figures = write_figures(
        &plots,
        &[Group {
            label: label.to_string(),
            reports: vec![report.clone()],
            metrics,
        }],
    )?;
    let md = format!(
        "# Evaluation of {label}\n\n{} held-out problems of {problems_from} × {} samples, \
         temperature {}, max {} new tokens, seed {}.\n\n{}\n{}",
        report.problems,
        report.samples,
        sampling.temperature,
        sampling.max_new_tokens,
        sampling.seed,
        report.markdown(),
        figure_markdown(&figures, "plots/")
    );
    let md_path = tmp.join("eval.md");
    std::fs::write(&md_path, &md).at(&md_path)?;
    staged.publish()?;
    Ok(())
}
