//! `rlvr eval`: a run's checkpoint or a model on held-out problems — pass@K, mean@n,
//! concentration diagnostics — written as JSON, markdown and plots.

use crate::args::TargetArgs;
use crate::document::eval_document;
use crate::output::progress_bar;
use crate::usage_bail;
use anyhow::Result;
use rlvr_core::atomic::ClaimedDir;
use rlvr_train::checkpoint::load_pinned;
use rlvr_train::compare::dir_name;
use rlvr_train::config::RunConfig;
use rlvr_train::distributed::Single;
use rlvr_train::evaluation::{write_evaluation, EvalOptions};
use rlvr_train::session::{Placement, Session};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Flags of `rlvr eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Run folder: its config, held-out problems and latest checkpoint.
    #[arg(long, conflicts_with = "model")]
    pub run: Option<PathBuf>,
    /// Checkpoint step of --run (default: the latest; 0 = the initial weights of the config).
    #[arg(long, requires = "run")]
    pub step: Option<u64>,
    /// A model instead of a run; held-out problems from a task (default: the run's) or a dataset
    /// file, all of whose rows are held out unless `--set data.test=...` names another file; the
    /// device (default: the run's).
    #[command(flatten)]
    pub target: TargetArgs,
    /// Samples per problem (n); pass@K is reported for K = 1, 2, 4, ... ≤ n.
    #[arg(short, long, default_value_t = 16)]
    pub n: usize,
    /// Held-out problems evaluated (0 = all).
    #[arg(long, default_value_t = 100)]
    pub problems: usize,
    /// Held-out problems skipped first (default: the run's train.eval_offset, else 0).
    #[arg(long)]
    pub offset: Option<usize>,
    /// Sampling temperature (default: the run's train.temperature, else 1).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Maximum response length in tokens (default: the run's train.max_new_tokens).
    #[arg(long)]
    pub max_new_tokens: Option<i64>,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Responses generated together.
    #[arg(long, default_value_t = 256)]
    pub batch_rows: usize,
    /// Skip the concentration diagnostics (saves one forward pass over the responses).
    #[arg(long)]
    pub no_diagnostics: bool,
    /// Output folder (default: <run>/eval/step-N-<dataset>-nK-seedS, or
    /// evals/<model>-<dataset>-nK-seedS).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an existing output folder.
    #[arg(long)]
    pub overwrite: bool,
    /// Override KEY=VALUE of the run document (e.g. data.template=...); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

/// Runs `rlvr eval`.
pub fn exec(args: EvalArgs) -> Result<()> {
    if args.n == 0 {
        usage_bail!("--n must be >= 1");
    }
    if args.batch_rows == 0 {
        usage_bail!("--batch-rows must be >= 1");
    }
    if args
        .temperature
        .is_some_and(|t| !(t >= 0.0 && t.is_finite()))
    {
        usage_bail!("--temperature must be a finite number >= 0");
    }
    if args.max_new_tokens.is_some_and(|m| m < 1) {
        usage_bail!("--max-new-tokens must be >= 1");
    }
    let (doc, run_step) = eval_document(&args)?;
    let cfg = RunConfig::from_document(doc)?;
    let label = match (&args.run, &run_step) {
        (Some(run), Some((s, _))) => format!("{}@step-{s}", dir_name(run)),
        (Some(run), None) => format!("{}@step-0", dir_name(run)),
        (None, _) => args
            .target
            .model
            .model
            .as_deref()
            .map(|m| dir_name(Path::new(m)))
            .unwrap_or_default(),
    };
    let (problems_from, dataset) = problems_source(&cfg);
    let out = match (&args.out, &args.run) {
        (Some(o), _) => o.clone(),
        (None, Some(run)) => run.join("eval").join(format!(
            "step-{}-{dataset}-n{}-seed{}",
            run_step.as_ref().map_or(0, |s| s.0),
            args.n,
            args.seed
        )),
        (None, None) => {
            PathBuf::from("evals").join(format!("{label}-{dataset}-n{}-seed{}", args.n, args.seed))
        }
    };
    // Claimed before any work: of two evaluations racing for one folder, one gets it.
    let claim = match args.overwrite {
        true => None,
        false => match ClaimedDir::claim(&out)? {
            Some(claim) => Some(claim),
            None => usage_bail!(
                "{} already exists; pass --overwrite to replace it or --out to write elsewhere",
                out.display()
            ),
        },
    };
    // Everything is validated: build and load.
    let mut session = Session::open(&cfg, Placement::single())?;
    let take = if args.problems == 0 {
        usize::MAX
    } else {
        args.problems
    };
    let offset = args.offset.unwrap_or(cfg.train.eval_offset);
    let mut problems: Vec<_> = session
        .problems
        .test
        .iter()
        .skip(offset)
        .take(take)
        .cloned()
        .collect();
    if problems.is_empty() {
        usage_bail!("no held-out problems to evaluate");
    }
    if let Some((_, dir)) = &run_step {
        load_pinned(dir, session.policy.as_mut())?;
    }
    let dropped = session.fit_prompts(&mut problems)?;
    if let Some(budget) = session.prompt_budget() {
        if dropped > 0 {
            eprintln!("dropped {dropped} problem(s) whose prompt is longer than {budget} tokens");
        }
        if problems.is_empty() {
            usage_bail!("every held-out prompt is longer than {budget} tokens");
        }
    }
    let bar = progress_bar(problems.len() as u64);
    let inc = bar.clone();
    let opts = EvalOptions {
        diagnostics: !args.no_diagnostics,
        batch_rows: args.batch_rows,
        progress: Some(Arc::new(move |n| inc.inc(n))),
        ..EvalOptions::new(args.n, session.sampling_with_seed(args.seed))
    };
    let report = session.evaluate(&Single, &problems, &opts)?;
    bar.finish_and_clear();
    let metrics: Vec<PathBuf> = args
        .run
        .iter()
        .map(|r| r.join("metrics.jsonl"))
        .filter(|p| p.exists())
        .collect();
    write_evaluation(
        &out,
        &label,
        &problems_from,
        &report,
        &opts.sampling,
        metrics,
    )?;
    if let Some(claim) = claim {
        claim.keep();
    }
    print!("{}", report.markdown());
    println!("evaluation saved in {}", out.display());
    Ok(())
}

/// Where the evaluated problems come from (the held-out file, or the training file whose last
/// rows are held out, or the task), and a short name of it for folder names (`amc23_test`,
/// `countdown`).
fn problems_source(cfg: &RunConfig) -> (String, String) {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    if let Some(d) = &cfg.data {
        let file = if d.test.is_empty() { &d.train } else { &d.test };
        let stem = Path::new(file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "data".into());
        let from = if d.test.is_empty() {
            format!("{file} (its last {} rows)", d.holdout)
        } else {
            file.clone()
        };
        return (from, clean(&stem));
    }
    let task = cfg.task.typetag_name();
    (format!("task {task}"), clean(task))
}
