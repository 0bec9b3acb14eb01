//! `rlvr eval` (a run's checkpoint or a model folder on held-out problems: pass@K, mean@n,
//! concentration diagnostics, JSON + markdown + plots) and `rlvr compare` (several evaluations
//! side by side).

use crate::config_file;
use crate::evaluation::{evaluate, EvalOptions};
use crate::figures::{figure_markdown, write_atomic, write_figures, Group};
use crate::run_config::RunConfig;
use crate::train_cmd::{build_document, chat_tokenizer, TrainArgs};
use crate::trainer::{latest_checkpoint, load_problems};
use anyhow::{bail, Context, Result};
use rlvr_core::SamplingConfig;
use rlvr_eval::report::compare_markdown;
use rlvr_eval::EvalReport;
use std::path::{Path, PathBuf};

/// Flags of `rlvr eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Run folder: its config, held-out problems and latest checkpoint.
    #[arg(long, conflicts_with = "model")]
    pub run: Option<PathBuf>,
    /// Checkpoint step of --run (default: the latest; 0 = the initial weights of the config).
    #[arg(long, requires = "run")]
    pub step: Option<u64>,
    /// A Hugging Face model folder or a registered model name, instead of a run.
    #[arg(long)]
    pub model: Option<String>,
    /// Built-in task whose held-out problems are evaluated (default: the run's).
    #[arg(long)]
    pub task: Option<String>,
    /// Dataset file (.parquet in verl layout, or .jsonl) instead of a task; all its rows are
    /// held-out problems unless `--set data.test=...` names another file.
    #[arg(long, conflicts_with = "task")]
    pub data: Option<String>,
    /// Samples per problem (n); pass@K is reported for K = 1, 2, 4, ... ≤ n.
    #[arg(short, long, default_value_t = 16)]
    pub n: usize,
    /// Held-out problems evaluated (0 = all).
    #[arg(long, default_value_t = 100)]
    pub problems: usize,
    /// Sampling temperature (default: the run's train.temperature, else 1).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Maximum response length in tokens (default: the run's train.max_new_tokens).
    #[arg(long)]
    pub max_new_tokens: Option<i64>,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device: cpu | cuda | cuda:N (default: the run's).
    #[arg(long)]
    pub device: Option<String>,
    /// Responses generated together.
    #[arg(long, default_value_t = 256)]
    pub batch_rows: usize,
    /// Skip the concentration diagnostics (saves one forward pass over the responses).
    #[arg(long)]
    pub no_diagnostics: bool,
    /// Output folder (default: <run>/eval/step-N-nK, or evals/<model>-nK).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an existing output folder.
    #[arg(long)]
    pub overwrite: bool,
    /// Override KEY=VALUE of the run document (e.g. data.template=...); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

fn train_args_for(model: Option<String>, task: Option<String>, data: Option<String>) -> TrainArgs {
    TrainArgs {
        algo: None,
        config: None,
        sets: Vec::new(),
        task,
        data,
        model,
        steps: None,
        seed: None,
        device: None,
        name: None,
        runs_dir: PathBuf::from("runs"),
        resume: None,
        params: Vec::new(),
    }
}

/// Runs `rlvr eval`.
pub fn eval(args: EvalArgs) -> Result<()> {
    if args.n == 0 {
        bail!("--n must be >= 1");
    }
    if args.batch_rows == 0 {
        bail!("--batch-rows must be >= 1");
    }
    // The run document: the run's own, or the default with --model.
    let (mut doc, run_step) = match (&args.run, &args.model) {
        (Some(run), _) => {
            let doc = config_file::read(&run.join("config.toml"))
                .with_context(|| format!("--run {}: not a run folder", run.display()))?;
            let step = match args.step {
                Some(0) => None,
                Some(s) => {
                    let dir = run.join("checkpoints").join(format!("step-{s}"));
                    if !dir.join("state.json").exists() {
                        bail!("--step {s}: {} is not a complete checkpoint", dir.display());
                    }
                    Some((s, dir))
                }
                None => Some(latest_checkpoint(run)?.with_context(|| {
                    format!(
                        "{} has no complete checkpoint; --step 0 evaluates the initial weights",
                        run.display()
                    )
                })?),
            };
            (doc, step)
        }
        (None, Some(model)) => {
            if args.task.is_none() && args.data.is_none() {
                bail!("--model needs --task NAME (see `rlvr list task`) or --data FILE");
            }
            let doc = build_document(&train_args_for(Some(model.clone()), None, None))?;
            (doc, None)
        }
        (None, None) => bail!("give --run RUN_FOLDER or --model MODEL"),
    };
    if args.task.is_some() || args.data.is_some() {
        let over = build_document(&train_args_for(None, args.task.clone(), args.data.clone()))?;
        doc.remove("task");
        doc.remove("data");
        for key in ["task", "data"] {
            if let Some(v) = over.get(key) {
                doc.insert(key.into(), v.clone());
            }
        }
        if let Some(d) = doc.get_mut("data").and_then(|d| d.as_table_mut()) {
            // A dataset given to eval is all held-out: read it as the test file.
            if let Some(train) = d.get("train").cloned() {
                d.insert("test".into(), train);
            }
        }
    }
    if let Some(d) = &args.device {
        rlvr_core::algo::set_path(&mut doc, "train.device", d)?;
    }
    config_file::apply_sets(&mut doc, &args.sets)?;
    let cfg = RunConfig::from_document(doc)?;
    let tc = cfg.train.clone();
    let label = match (&args.run, &run_step) {
        (Some(run), Some((s, _))) => format!("{}@step-{s}", dir_name(run)),
        (Some(run), None) => format!("{}@step-0", dir_name(run)),
        (None, _) => args
            .model
            .as_deref()
            .map(|m| dir_name(Path::new(m)))
            .unwrap_or_default(),
    };
    let out = match (&args.out, &args.run) {
        (Some(o), _) => o.clone(),
        (None, Some(run)) => run.join("eval").join(format!(
            "step-{}-n{}",
            run_step.as_ref().map_or(0, |s| s.0),
            args.n
        )),
        (None, None) => PathBuf::from("evals").join(format!("{label}-n{}", args.n)),
    };
    if out.exists() && !args.overwrite {
        bail!(
            "{} already exists; pass --overwrite to replace it or --out to write elsewhere",
            out.display()
        );
    }
    // Everything is validated: build and load.
    let device = rlvr_models::device::parse_device(&tc.device)?;
    let (_, test, verifier) = load_problems(&cfg)?;
    let problems: Vec<_> = if args.problems == 0 {
        test
    } else {
        test.into_iter().take(args.problems).collect()
    };
    if problems.is_empty() {
        bail!("no held-out problems to evaluate");
    }
    let codec = cfg.model.codec()?;
    let chat = chat_tokenizer(&cfg)?;
    let mut policy = cfg.model.build(device)?;
    if let Some((_, dir)) = &run_step {
        rlvr_models::checkpoint::load_weights(policy.var_store_mut(), &dir.join("model"))
            .with_context(|| format!("loading {}", dir.display()))?;
    }
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::new(problems.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let opts = EvalOptions {
        diagnostics: !args.no_diagnostics,
        batch_rows: args.batch_rows,
        progress: bar.clone(),
        ..EvalOptions::new(
            args.n,
            SamplingConfig {
                temperature: args.temperature.unwrap_or(tc.temperature),
                top_p: tc.top_p,
                top_k: tc.top_k,
                max_new_tokens: args.max_new_tokens.unwrap_or(tc.max_new_tokens),
                seed: args.seed,
            },
        )
    };
    if opts.sampling.temperature < 0.0 {
        bail!("--temperature must be >= 0");
    }
    let report = evaluate(
        policy.as_ref(),
        codec.as_ref(),
        chat.as_ref(),
        verifier.as_ref(),
        &problems,
        &opts,
    )?;
    bar.finish_and_clear();
    // Write into a temporary folder, then swap it in.
    let tmp = out.with_extension("partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(tmp.join("plots"))
        .with_context(|| format!("creating {}", tmp.display()))?;
    std::fs::write(
        tmp.join("eval.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let metrics: Vec<PathBuf> = args
        .run
        .iter()
        .map(|r| r.join("metrics.jsonl"))
        .filter(|p| p.exists())
        .collect();
    let figures = write_figures(
        &tmp.join("plots"),
        &[Group {
            label: label.clone(),
            reports: vec![report.clone()],
            metrics,
        }],
    )?;
    let md = format!(
        "# Evaluation of {label}\n\n{} held-out problems × {} samples, temperature {}, max {} new \
         tokens, seed {}.\n\n{}\n{}",
        report.problems,
        report.samples,
        opts.sampling.temperature,
        opts.sampling.max_new_tokens,
        opts.sampling.seed,
        report.markdown(),
        figure_markdown(&figures, "plots/")
    );
    std::fs::write(tmp.join("eval.md"), &md)?;
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(&tmp, &out).with_context(|| format!("writing {}", out.display()))?;
    print!("{}", report.markdown());
    println!("evaluation saved in {}", out.display());
    Ok(())
}

fn dir_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

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
    /// Output folder (default: comparisons/<a>-vs-<b>...).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The evaluation report of an input of `rlvr compare`, its label and the run's metrics file.
pub fn find_report(input: &Path) -> Result<(EvalReport, String, Option<PathBuf>)> {
    let read = EvalReport::read;
    if input.is_file() {
        return Ok((
            read(input)?,
            dir_name(input.parent().unwrap_or(input)),
            None,
        ));
    }
    if input.join("eval.json").is_file() {
        // An `rlvr eval` folder; inside a run when its grandparent holds config.toml.
        let run = input.parent().and_then(|p| p.parent());
        let metrics = run.map(|r| r.join("metrics.jsonl")).filter(|m| m.exists());
        let label = match run {
            Some(r) if r.join("config.toml").exists() => {
                format!("{}@{}", dir_name(r), dir_name(input))
            }
            _ => dir_name(input),
        };
        return Ok((read(&input.join("eval.json"))?, label, metrics));
    }
    if input.join("config.toml").is_file() {
        let metrics = Some(input.join("metrics.jsonl")).filter(|m| m.exists());
        let mut evals: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        if let Ok(entries) = std::fs::read_dir(input.join("eval")) {
            for e in entries.flatten() {
                let p = e.path().join("eval.json");
                if let Ok(meta) = std::fs::metadata(&p) {
                    evals.push((meta.modified()?, p));
                }
            }
        }
        evals.sort();
        let path = match evals.pop() {
            Some((_, p)) => p,
            None => input.join("eval/after.json"),
        };
        if !path.exists() {
            bail!(
                "{} has no evaluation; run `rlvr eval --run {}` first",
                input.display(),
                input.display()
            );
        }
        return Ok((read(&path)?, dir_name(input), metrics));
    }
    bail!(
        "{}: not a run folder, an evaluation folder or an eval JSON file",
        input.display()
    )
}

/// Runs `rlvr compare`.
pub fn compare(args: CompareArgs) -> Result<()> {
    if !args.labels.is_empty() && args.labels.len() != args.inputs.len() {
        bail!(
            "--labels has {} names for {} inputs",
            args.labels.len(),
            args.inputs.len()
        );
    }
    let mut groups = Vec::new();
    for (i, input) in args.inputs.iter().enumerate() {
        let (report, label, metrics) = find_report(input)?;
        groups.push(Group {
            label: args.labels.get(i).cloned().unwrap_or(label),
            reports: vec![report],
            metrics: metrics.into_iter().collect(),
        });
    }
    let out = args.out.clone().unwrap_or_else(|| {
        let names: Vec<String> = groups
            .iter()
            .map(|g| g.label.replace(['/', '\\', ' ', '@'], "_"))
            .collect();
        let mut name = names.join("-vs-");
        name.truncate(120);
        PathBuf::from("comparisons").join(name)
    });
    std::fs::create_dir_all(out.join("plots"))
        .with_context(|| format!("creating {}", out.display()))?;
    let figures = write_figures(&out.join("plots"), &groups)?;
    let table = compare_markdown(
        &groups
            .iter()
            .map(|g| (g.label.clone(), g.reports.iter().collect()))
            .collect::<Vec<_>>(),
    );
    let sources: Vec<String> = args
        .inputs
        .iter()
        .zip(&groups)
        .map(|(p, g)| format!("- {}: `{}`\n", g.label, p.display()))
        .collect();
    let md = format!(
        "# Comparison\n\n{}\n{}\n{}",
        sources.concat(),
        table,
        figure_markdown(&figures, "plots/")
    );
    write_atomic(&out.join("comparison.md"), &md)?;
    print!("{table}");
    println!("comparison saved in {}", out.display());
    Ok(())
}
