//! `rlvr train` and `rlvr sft`: building a run from flags and files, running it with progress,
//! checkpoints and before/after evaluation.

use crate::evaluation::{evaluate, EvalOptions};
use crate::optim::{lr_at, AdamW};
use crate::run_config::{default_document, RunConfig};
use crate::trainer::{append_jsonl, load_problems, truncate_metrics, Trainer};
use crate::{algo_args, config_file};
use anyhow::{bail, Context, Result};
use rlvr_core::algo::merge;
use rlvr_core::registry::{self, Kind};
use rlvr_core::{
    AlgoConfig, ModelConfig, SamplingConfig, SequenceBatch, Split, StatsNeeds, TaskConfig,
};
use rlvr_eval::EvalReport;
use std::path::{Path, PathBuf};
use tch::{Kind as TKind, Tensor};

/// Flags of `rlvr train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Algorithm preset (see `rlvr list preset`).
    #[arg(long)]
    pub algo: Option<String>,
    /// TOML run configuration ([algo], [model], [task] or [data], [train]).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override KEY=VALUE (dotted from the document root, e.g. train.lr=1e-4); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Built-in task (see `rlvr list task`).
    #[arg(long)]
    pub task: Option<String>,
    /// Dataset file (.parquet in verl layout, or .jsonl) instead of a task.
    #[arg(long)]
    pub data: Option<String>,
    /// Model: a Hugging Face folder, or a registered model name (see `rlvr list model`).
    #[arg(long)]
    pub model: Option<String>,
    /// Number of RL steps.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Device: cpu | cuda | cuda:N.
    #[arg(long)]
    pub device: Option<String>,
    /// Run name (folder under --runs-dir); default derived from algorithm, task and time.
    #[arg(long)]
    pub name: Option<String>,
    /// Folder holding runs.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Continue the run in this folder from its latest complete checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Algorithm parameters as flags, e.g. --topk 3 --tau 0.1 (`rlvr config --algo NAME` lists them).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PARAMS"
    )]
    pub params: Vec<String>,
}

/// Removes `--name VALUE` / `--name=VALUE` from `params`, returning the value.
fn take_flag(params: &mut Vec<String>, name: &str) -> Result<Option<String>> {
    let long = format!("--{name}");
    let eq = format!("--{name}=");
    if let Some(i) = params.iter().position(|p| *p == long) {
        if i + 1 >= params.len() {
            bail!("flag {long} needs a value");
        }
        let v = params.remove(i + 1);
        params.remove(i);
        return Ok(Some(v));
    }
    if let Some(i) = params.iter().position(|p| p.starts_with(&eq)) {
        return Ok(Some(params.remove(i)[eq.len()..].to_string()));
    }
    Ok(None)
}

fn set(doc: &mut toml::Table, path: &str, value: toml::Value) -> Result<()> {
    Ok(rlvr_core::algo::set_value(doc, path, value)?)
}

/// Builds the run document from the flags (defaults ← file ← flags ← --set ← parameter flags).
pub fn build_document(args: &TrainArgs) -> Result<toml::Table> {
    let mut params = args.params.clone();
    let mut flag = |name: &str, given: &Option<String>| -> Result<Option<String>> {
        Ok(given.clone().or(take_flag(&mut params, name)?))
    };
    let algo = flag("algo", &args.algo)?;
    let task = flag("task", &args.task)?;
    let data = flag("data", &args.data)?;
    let model = flag("model", &args.model)?;
    let steps = flag("steps", &args.steps.map(|s| s.to_string()))?;
    let seed = flag("seed", &args.seed.map(|s| s.to_string()))?;
    let device = flag("device", &args.device)?;
    let mut doc = default_document();
    if let Some(path) = &args.config {
        merge(&mut doc, &config_file::read(path)?);
    }
    if let Some(a) = algo {
        registry::find(Kind::Preset, &a)?;
        doc.insert(
            "algo".into(),
            toml::Value::Table(
                [("preset".to_string(), toml::Value::String(a))]
                    .into_iter()
                    .collect(),
            ),
        );
    }
    if let Some(t) = task {
        registry::find(Kind::Task, &t)?;
        doc.remove("data");
        doc.insert(
            "task".into(),
            toml::Value::Table(
                [("type".to_string(), toml::Value::String(t))]
                    .into_iter()
                    .collect(),
            ),
        );
    }
    if let Some(d) = data {
        doc.remove("task");
        set(&mut doc, "data.train", toml::Value::String(d))?;
    }
    if let Some(m) = model {
        let table: toml::Table = if Path::new(&m).is_dir() {
            [
                ("type".to_string(), "hf".into()),
                ("path".to_string(), toml::Value::String(m)),
            ]
            .into_iter()
            .collect()
        } else {
            registry::find(Kind::Model, &m)
                .context("--model is neither a folder nor a registered model")?;
            [("type".to_string(), toml::Value::String(m))]
                .into_iter()
                .collect()
        };
        doc.insert("model".into(), toml::Value::Table(table));
    }
    if let Some(s) = steps {
        set(&mut doc, "train.steps", rlvr_core::algo::parse_value(&s))?;
    }
    if let Some(s) = seed {
        set(&mut doc, "train.seed", rlvr_core::algo::parse_value(&s))?;
    }
    if let Some(d) = device {
        set(&mut doc, "train.device", toml::Value::String(d))?;
    }
    config_file::apply_sets(&mut doc, &args.sets)?;
    let algo_table = doc
        .get("algo")
        .and_then(|a| a.as_table())
        .cloned()
        .unwrap_or_default();
    let mut expanded = AlgoConfig::expand(&algo_table)?;
    algo_args::apply(&mut expanded, &params)?;
    doc.insert("algo".into(), toml::Value::Table(expanded));
    Ok(doc)
}

fn print_eval(label: &str, r: &EvalReport) {
    let cells: Vec<String> = r
        .pass_at_k
        .iter()
        .map(|(k, p)| format!("pass@{k} {:.3}", p))
        .collect();
    println!(
        "{label}: {} held-out problems × {} samples: {} (mean@{} {:.3})",
        r.problems,
        r.samples,
        cells.join(", "),
        r.samples,
        r.mean_at_n
    );
}

/// Runs `rlvr train`.
pub fn train(args: TrainArgs) -> Result<()> {
    let (doc, dir, resuming) = match &args.resume {
        Some(dir) => {
            let path = dir.join("config.toml");
            let doc = config_file::read(&path)
                .with_context(|| format!("--resume {}: not a run folder", dir.display()))?;
            (doc, dir.clone(), true)
        }
        None => {
            let doc = build_document(&args)?;
            (doc, PathBuf::new(), false)
        }
    };
    let cfg = RunConfig::from_document(doc)?;
    let dir = if resuming {
        dir
    } else {
        let name = args.name.clone().unwrap_or_else(|| {
            let preset = cfg.algo.preset.clone().unwrap_or_else(|| "custom".into());
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            format!("{preset}-{secs}")
        });
        let dir = args.runs_dir.join(name);
        if dir.join("config.toml").exists() {
            bail!("run folder {} already exists; continue it with --resume {} or choose another --name", dir.display(), dir.display());
        }
        dir
    };
    run_training(cfg, &dir, resuming)?;
    Ok(())
}

/// Trains the run `cfg` in `dir` (continuing from its latest checkpoint when `resuming`), with
/// before/after evaluation; returns the end-of-training evaluation, if any.
pub fn run_training(cfg: RunConfig, dir: &Path, resuming: bool) -> Result<Option<EvalReport>> {
    let dir = dir.to_path_buf();
    let device = rlvr_models::device::parse_device(&cfg.train.device)?;
    let (train_problems, test_problems, verifier) = load_problems(&cfg)?;
    let codec = cfg.model.codec()?;
    let chat = chat_tokenizer(&cfg)?;
    let policy = cfg.model.build(device)?;
    let algo = cfg.algo.build()?;
    let reference = if algo.loss.needs().reference {
        Some(cfg.model.build(device)?)
    } else {
        None
    };
    let opt = AdamW::new(policy.var_store(), cfg.train.weight_decay);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if !resuming {
        std::fs::write(dir.join("config.toml"), toml::to_string(&cfg.document)?)?;
    }
    let mut t = Trainer {
        cfg,
        policy,
        reference,
        codec,
        algo,
        train_problems,
        test_problems,
        verifier,
        opt,
        step: 0,
        dir: dir.clone(),
    };
    if resuming {
        match t.restore_latest()? {
            Some(step) => println!("resuming {} from step {step}", dir.display()),
            None => println!(
                "no complete checkpoint in {}; starting from step 0",
                dir.display()
            ),
        }
    }
    let metrics_path = dir.join("metrics.jsonl");
    truncate_metrics(&metrics_path, t.step)?;
    let tc = t.cfg.train.clone();
    let eval_opts = EvalOptions::new(
        tc.eval_samples,
        SamplingConfig {
            temperature: tc.temperature.max(0.0),
            top_p: tc.top_p,
            top_k: tc.top_k,
            max_new_tokens: tc.max_new_tokens,
            seed: tc.seed ^ 0xE7A1,
        },
    );
    let eval_problems: Vec<_> = t
        .test_problems
        .iter()
        .take(tc.eval_problems)
        .cloned()
        .collect();
    std::fs::create_dir_all(dir.join("eval"))?;
    let before = if !eval_problems.is_empty() && t.step == 0 {
        let r = evaluate(
            t.policy.as_ref(),
            t.codec.as_ref(),
            chat.as_ref(),
            t.verifier.as_ref(),
            &eval_problems,
            &eval_opts,
        )?;
        print_eval("before", &r);
        crate::figures::write_atomic(
            &dir.join("eval/before.json"),
            &serde_json::to_string_pretty(&r)?,
        )?;
        Some(r)
    } else {
        None
    };
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::new(tc.steps).with_position(t.step)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut bad_in_row = 0;
    while t.step < tc.steps {
        let m = t.train_step(chat.as_ref())?;
        if m.skipped_updates > 0 {
            bad_in_row += 1;
            if bad_in_row >= tc.max_nonfinite {
                bail!("{bad_in_row} steps in a row had non-finite losses or gradients; stopping (last good checkpoint kept in {})", dir.join("checkpoints").display());
            }
        } else {
            bad_in_row = 0;
        }
        append_jsonl(&metrics_path, &m)?;
        let line = format!(
            "step {}/{}: reward {:.3} entropy {:.3} clipfrac {:.3} grad {:.3}",
            m.step, tc.steps, m.reward_mean, m.entropy, m.clipfrac, m.grad_norm
        );
        if bar.is_hidden() {
            println!("{line}");
        } else {
            bar.set_position(t.step);
            bar.set_message(line);
        }
        if (tc.checkpoint_every > 0 && t.step.is_multiple_of(tc.checkpoint_every))
            || t.step == tc.steps
        {
            t.checkpoint()?;
        }
    }
    bar.finish_and_clear();
    let mut result = None;
    if !eval_problems.is_empty() {
        let after = evaluate(
            t.policy.as_ref(),
            t.codec.as_ref(),
            chat.as_ref(),
            t.verifier.as_ref(),
            &eval_problems,
            &eval_opts,
        )?;
        if let Some(b) = &before {
            print_eval("before", b);
        }
        print_eval("after ", &after);
        crate::figures::write_atomic(
            &dir.join("eval/after.json"),
            &serde_json::to_string_pretty(&after)?,
        )?;
        result = Some(after);
    }
    write_run_summary(&dir, &t.cfg, &metrics_path)?;
    println!(
        "run saved in {} (summary: {})",
        dir.display(),
        dir.join("summary.md").display()
    );
    Ok(result)
}

/// `summary.md` and `plots/` of a run: pass@K and concentration before vs after training, and the
/// training curves.
fn write_run_summary(dir: &Path, cfg: &RunConfig, metrics: &Path) -> Result<()> {
    use crate::figures::{figure_markdown, write_atomic, write_figures, Group};
    let read = |name: &str| EvalReport::read_if_exists(&dir.join("eval").join(name));
    let groups = vec![
        Group {
            label: "before training".into(),
            reports: read("before.json")?.into_iter().collect(),
            metrics: Vec::new(),
        },
        Group {
            label: "after training".into(),
            reports: read("after.json")?.into_iter().collect(),
            metrics: vec![metrics.to_path_buf()],
        },
    ];
    let figures = write_figures(&dir.join("plots"), &groups)?;
    let table = rlvr_eval::report::compare_markdown(
        &groups
            .iter()
            .filter(|g| !g.reports.is_empty())
            .map(|g| (g.label.clone(), g.reports.iter().collect()))
            .collect::<Vec<_>>(),
    );
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let md = format!(
        "# Run `{name}`\n\nAlgorithm `{}`, {} steps × {} prompts × {} samples; resolved settings in \
         `config.toml`, per-step metrics in `metrics.jsonl`.\n\n{table}\n{}",
        cfg.algo.preset.as_deref().unwrap_or("custom"),
        cfg.train.steps,
        cfg.train.prompts_per_step,
        cfg.train.samples_per_prompt,
        figure_markdown(&figures, "plots/")
    );
    write_atomic(&dir.join("summary.md"), &md)
}

pub(crate) fn chat_tokenizer(
    cfg: &RunConfig,
) -> Result<Option<rlvr_models::tokenizer::HfTokenizer>> {
    if !cfg.model.chat() {
        return Ok(None);
    }
    let path = cfg
        .document
        .get("model")
        .and_then(|m| m.get("path"))
        .and_then(|p| p.as_str())
        .context("hf model without path")?;
    Ok(Some(rlvr_models::tokenizer::HfTokenizer::from_dir(
        Path::new(path),
    )?))
}

/// Flags of `rlvr sft`.
#[derive(Debug, clap::Args)]
pub struct SftArgs {
    /// Task whose solution generator provides the targets.
    #[arg(long, default_value = "countdown")]
    pub task: String,
    /// Model (registered name, e.g. tiny).
    #[arg(long, default_value = "tiny")]
    pub model: String,
    /// Override KEY=VALUE of [model], [task] (e.g. model.hidden_size=96).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Optimizer steps.
    #[arg(long, default_value_t = 1500)]
    pub steps: u64,
    /// Problems per step.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder (HF layout).
    #[arg(long)]
    pub out: PathBuf,
    /// Dataset with worked solutions (verl parquet or JSONL with `solution`) instead of a task's
    /// generator; use with `--model` pointing at a HF folder.
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// Runs `rlvr sft`: maximum likelihood on the task's generated solutions.
pub fn sft(args: SftArgs) -> Result<()> {
    let mut doc = toml::Table::new();
    if Path::new(&args.model).is_dir() {
        set(&mut doc, "model.type", toml::Value::String("hf".into()))?;
        set(
            &mut doc,
            "model.path",
            toml::Value::String(args.model.clone()),
        )?;
    } else {
        set(
            &mut doc,
            "model.type",
            toml::Value::String(args.model.clone()),
        )?;
    }
    set(
        &mut doc,
        "task.type",
        toml::Value::String(args.task.clone()),
    )?;
    config_file::apply_sets(&mut doc, &args.sets)?;
    let model: Box<dyn ModelConfig> =
        toml::Value::Table(doc["model"].as_table().cloned().unwrap_or_default())
            .try_into()
            .context("[model]")?;
    let task_cfg: Box<dyn TaskConfig> =
        toml::Value::Table(doc["task"].as_table().cloned().unwrap_or_default())
            .try_into()
            .context("[task]")?;
    let task = task_cfg.build()?;
    let codec = model.codec()?;
    // (prompt, target) examples: the dataset's worked solutions, or the task's generator.
    let dataset: Option<Vec<(String, String)>> = match &args.data {
        None => None,
        Some(path) => {
            let ds = rlvr_rewards::data::read(path, rlvr_rewards::data::OnBadRow::Fail)?;
            let chat = if model.chat() {
                Some(rlvr_models::tokenizer::HfTokenizer::from_dir(Path::new(
                    &args.model,
                ))?)
            } else {
                None
            };
            let mut pairs = Vec::new();
            for r in &ds.records {
                let Some(sol) = &r.solution else { continue };
                let problem = rlvr_core::Problem {
                    id: String::new(),
                    prompt: r.user_prompt(),
                    ground_truth: String::new(),
                    data_source: String::new(),
                };
                pairs.push((
                    crate::trainer::prompt_text(&problem, chat.as_ref())?,
                    sol.clone(),
                ));
            }
            if pairs.is_empty() {
                bail!(
                    "{}: no rows with a `solution` to learn from",
                    path.display()
                );
            }
            Some(pairs)
        }
    };
    tch::manual_seed(args.seed as i64);
    let policy = model.build(tch::Device::Cpu)?;
    let mut opt = AdamW::new(policy.var_store(), 0.0);
    let train = task.problems(Split::Train)?;
    let stop = codec.stop_tokens();
    let example = |step: u64, i: usize| -> Result<(String, String)> {
        match &dataset {
            Some(pairs) => Ok(pairs[(step as usize * args.batch + i) % pairs.len()].clone()),
            None => {
                let idx =
                    ((step as usize * args.batch + i) * 7919 + args.seed as usize) % train.len();
                let p = &train[idx];
                let sol = task
                    .solution(p, args.seed.wrapping_add(step * 1000 + i as u64))
                    .context("task has no solution generator")?;
                Ok((p.prompt.clone(), sol))
            }
        }
    };
    for step in 0..args.steps {
        let mut prompts = Vec::new();
        let mut targets = Vec::new();
        for i in 0..args.batch {
            let (prompt, sol) = example(step, i)?;
            prompts.push(prompt);
            let mut t = codec.encode(&sol)?;
            t.extend(stop.first());
            targets.push(t);
        }
        let (ids, pmask) =
            crate::trainer::encode_prompts(codec.as_ref(), &prompts, tch::Device::Cpu)?;
        let width = targets.iter().map(Vec::len).max().unwrap_or(1);
        let pad = codec.pad_token();
        let mut r = Vec::new();
        let mut rm = Vec::new();
        for t in &targets {
            r.extend(
                t.iter()
                    .copied()
                    .chain(std::iter::repeat_n(pad, width - t.len())),
            );
            rm.extend(
                std::iter::repeat_n(1i64, t.len()).chain(std::iter::repeat_n(0, width - t.len())),
            );
        }
        let shape = [targets.len() as i64, width as i64];
        let (r, rm) = (
            Tensor::from_slice(&r).reshape(shape),
            Tensor::from_slice(&rm).reshape(shape),
        );
        let seq = SequenceBatch {
            input_ids: Tensor::cat(&[&ids, &r], 1),
            attention_mask: Tensor::cat(&[&pmask, &rm], 1),
            prompt_len: ids.size()[1],
        };
        AdamW::zero_grad(policy.var_store());
        let stats = policy.token_stats(&seq, &StatsNeeds::default())?;
        let mask = rm.to_kind(TKind::Float);
        let loss = -(stats.logp * &mask).sum(TKind::Float) / mask.sum(TKind::Float);
        loss.backward();
        let lr = lr_at(
            step,
            args.steps,
            args.lr,
            args.steps / 20,
            crate::optim::Schedule::Cosine,
        );
        let norm = AdamW::grad_norm(policy.var_store());
        opt.step(
            policy.var_store(),
            lr,
            if norm > 1.0 { 1.0 / norm } else { 1.0 },
        );
        if step % 100 == 0 || step + 1 == args.steps {
            println!(
                "sft step {}/{}: loss {:.4}",
                step + 1,
                args.steps,
                loss.double_value(&[])
            );
        }
    }
    policy.save(&args.out)?;
    if dataset.is_some() {
        println!("saved {}", args.out.display());
        return Ok(());
    }
    let test: Vec<_> = task.problems(Split::Test)?.into_iter().take(100).collect();
    let greedy = SamplingConfig {
        temperature: 0.0,
        max_new_tokens: 16,
        ..Default::default()
    };
    let r = evaluate(
        policy.as_ref(),
        codec.as_ref(),
        None,
        task.verifier().as_ref(),
        &test,
        &EvalOptions {
            diagnostics: false,
            ..EvalOptions::new(1, greedy)
        },
    )?;
    println!(
        "saved {}; greedy accuracy on {} held-out problems: {:.3}",
        args.out.display(),
        r.problems,
        r.mean_at_n
    );
    Ok(())
}

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

/// Runs `rlvr sample`: the distribution of a trained policy's responses to one problem —
/// accuracy and how many distinct correct responses ("modes") it keeps.
pub fn sample(args: SampleArgs) -> Result<()> {
    let doc = config_file::read(&args.run.join("config.toml"))?;
    let cfg = RunConfig::from_document(doc)?;
    let (_, test, verifier) = load_problems(&cfg)?;
    let problem = test
        .first()
        .context("the task has no held-out problem")?
        .clone();
    let codec = cfg.model.codec()?;
    let mut policy = cfg.model.build(tch::Device::Cpu)?;
    let (step, ck) = crate::trainer::latest_checkpoint(&args.run)?
        .context("the run has no complete checkpoint")?;
    rlvr_models::checkpoint::load_weights(policy.var_store_mut(), &ck.join("model"))?;
    let tc = &cfg.train;
    let sampling = SamplingConfig {
        temperature: tc.temperature,
        top_p: tc.top_p,
        top_k: tc.top_k,
        max_new_tokens: tc.max_new_tokens,
        seed: args.seed,
    };
    let (ro, _, _) = crate::trainer::rollout(
        policy.as_ref(),
        codec.as_ref(),
        None,
        verifier.as_ref(),
        &[problem],
        args.n,
        &sampling,
    )?;
    let mut counts: std::collections::BTreeMap<(bool, String), usize> = Default::default();
    for (t, o) in ro.texts.iter().zip(&ro.outcomes) {
        *counts
            .entry((*o == rlvr_core::Outcome::Correct, t.clone()))
            .or_default() += 1;
    }
    let accuracy = ro
        .outcomes
        .iter()
        .filter(|o| **o == rlvr_core::Outcome::Correct)
        .count() as f64
        / args.n as f64;
    let modes = counts
        .iter()
        .filter(|((ok, _), c)| *ok && **c as f64 >= args.min_share * args.n as f64)
        .count();
    println!(
        "{} at step {step}: {} samples, accuracy {accuracy:.3}, correct modes (≥{:.0}%): {modes}",
        args.run.display(),
        args.n,
        args.min_share * 100.0
    );
    let mut rows: Vec<_> = counts.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    for ((ok, text), c) in rows.iter().take(12) {
        println!(
            "  {:>5}  {:<12} {}",
            c,
            format!("{text:?}"),
            if *ok { "correct" } else { "" }
        );
    }
    Ok(())
}
