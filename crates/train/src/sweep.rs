//! `rlvr sweep sweep.toml`: a grid of runs over config keys (algorithm parameters, presets, seeds),
//! trained one after another in `runs/sweeps/<name>/<run>/`, resumable after a kill (finished runs
//! are skipped, an interrupted one continues from its latest checkpoint), summarised as mean ± std
//! over seeds in a markdown report with figures.
//!
//! ```toml
//! name = "alpha"                      # folder under <runs-dir>/sweeps (default: the file's stem)
//! config = "base.toml"                # optional run config, relative to this file
//! seed_keys = ["train.seed"]          # keys averaged over in the summary (default)
//! baseline = "grpo"                   # optional group: paired differences against it, by seed
//! description = "text for the report" # optional
//!
//! [base]                              # run document merged over the default and `config`
//! train.steps = 50
//!
//! [[variant]]                         # optional named variants, each a set of dotted keys
//! name = "simko"
//! set = { "algo.preset" = "simko" }
//!
//! [grid]                              # every combination of these values (× variants)
//! "algo.loss.alpha" = [0.0, 0.01, 0.05]
//! "train.seed" = [0, 1]
//! ```

use crate::checkpoint::latest_checkpoint;
use crate::config::{default_document, read_document, RunConfig};
use crate::config_bail;
use crate::error::{fs::write_atomic, IoResultExt, Result, ResultExt, TrainError};
use crate::run_dir::{validate_name, FolderLock};
use crate::trainer::{fit, Reporter};
use rlvr_core::algo::{merge, set_value};
use rlvr_eval::figures::{figure_markdown, write_figures, Group};
use rlvr_eval::paired::{paired_markdown, paired_rows, Keyed, PairedRow};
use rlvr_eval::report::compare_markdown;
use rlvr_eval::{EvalReport, MeanStd};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How to run a sweep.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// The sweep file: TOML with `[base]` (a run document), optional `[[variant]]` (name + set of
    /// dotted keys) and `[grid]` (dotted key = list of values); format in docs/evaluation.md.
    pub file: PathBuf,
    /// Folder holding runs; the sweep goes to <runs-dir>/sweeps/<name>.
    pub runs_dir: PathBuf,
    /// Also write the summary to this markdown file, figures in a folder beside it named after
    /// the file's stem (e.g. docs/results.md with docs/results/*.png).
    pub report: Option<PathBuf>,
    /// List the runs and validate their configurations without training.
    pub dry_run: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    name: Option<String>,
    config: Option<String>,
    #[serde(default)]
    base: toml::Table,
    #[serde(default)]
    variant: Vec<Variant>,
    #[serde(default)]
    grid: toml::Table,
    #[serde(default = "default_seed_keys")]
    seed_keys: Vec<String>,
    #[serde(default)]
    description: String,
    /// A group the others are compared with, run by run, pairing runs with equal seed keys.
    baseline: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Variant {
    name: String,
    #[serde(default)]
    set: toml::Table,
}

fn default_seed_keys() -> Vec<String> {
    vec!["train.seed".into()]
}

/// One run of the sweep.
struct PlannedRun {
    name: String,
    group: String,
    cfg: RunConfig,
}

/// A label usable in a folder name: letters, digits, `.`, `-`, `+`; anything else becomes `_`, and
/// a label of dots only (`..`) is replaced so it cannot name a parent folder.
fn value_label(v: &toml::Value) -> String {
    let s = match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().all(|c| c == '.') {
        return "_".repeat(s.len().max(1));
    }
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn short_key(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

/// Expands the sweep file into runs, validating every configuration.
fn plan(file: &Path, sweep: &SweepFile) -> Result<Vec<PlannedRun>> {
    let mut base = default_document();
    if let Some(c) = &sweep.config {
        let path = file.parent().unwrap_or(Path::new(".")).join(c);
        merge(&mut base, &read_document(&path)?);
    }
    merge(&mut base, &sweep.base);
    let mut axes: Vec<(String, Vec<toml::Value>)> = Vec::new();
    for (key, values) in &sweep.grid {
        let toml::Value::Array(values) = values else {
            config_bail!(
                "{}: grid key `{key}` must be an array of values",
                file.display()
            );
        };
        if values.is_empty() {
            config_bail!("{}: grid key `{key}` has no values", file.display());
        }
        axes.push((key.clone(), values.clone()));
    }
    let variants: Vec<Option<&Variant>> = if sweep.variant.is_empty() {
        vec![None]
    } else {
        sweep.variant.iter().map(Some).collect()
    };
    let combos: usize = axes.iter().map(|a| a.1.len()).product();
    let mut runs = Vec::new();
    for variant in variants {
        for mut i in 0..combos {
            let mut doc = base.clone();
            let mut name_parts: Vec<String> = Vec::new();
            let mut group_parts: Vec<String> = Vec::new();
            if let Some(v) = variant {
                for (k, val) in &v.set {
                    set_value(&mut doc, k, val.clone()).with_context(|| {
                        format!("{}: variant `{}`: key `{k}`", file.display(), v.name)
                    })?;
                }
                name_parts.push(value_label(&toml::Value::String(v.name.clone())));
                group_parts.push(v.name.clone());
            }
            for (key, values) in &axes {
                let val = &values[i % values.len()];
                i /= values.len();
                set_value(&mut doc, key, val.clone())
                    .with_context(|| format!("{}: grid key `{key}`", file.display()))?;
                let part = format!("{}={}", short_key(key), value_label(val));
                if !sweep.seed_keys.contains(key) {
                    group_parts.push(part.clone());
                }
                name_parts.push(part);
            }
            let name = if name_parts.is_empty() {
                "run".to_string()
            } else {
                name_parts.join("_")
            };
            let cfg = RunConfig::from_document(doc)
                .with_context(|| format!("{}: run `{name}`", file.display()))?;
            let group = if group_parts.is_empty() {
                "all".into()
            } else {
                group_parts.join(" ")
            };
            runs.push(PlannedRun { name, group, cfg });
        }
    }
    let mut seen = std::collections::HashSet::new();
    for r in &runs {
        if !seen.insert(r.name.clone()) {
            config_bail!(
                "{}: two runs are both named `{}`; give variants distinct names",
                file.display(),
                r.name
            );
        }
    }
    Ok(runs)
}

/// Whether a run folder holds a finished run: the final checkpoint and (when evaluation is on)
/// the end-of-training evaluation.
fn finished(dir: &Path, cfg: &RunConfig) -> Result<bool> {
    let done = latest_checkpoint(dir)?.is_some_and(|(s, _)| s >= cfg.train.steps);
    Ok(done && (cfg.train.eval_problems == 0 || dir.join("eval/after.json").exists()))
}

/// Runs a sweep: validates every run, trains those not finished (resuming an interrupted one),
/// and writes the summary. Progress lines go to `reporter`.
pub fn sweep(args: &SweepOptions, reporter: &dyn Reporter) -> Result<()> {
    let (sweep, name) = read_sweep(&args.file)?;
    let runs = plan(&args.file, &sweep)?;
    check_baseline(&args.file, &sweep, &runs)?;
    let dir = args.runs_dir.join("sweeps").join(&name);
    check_existing_runs(&args.file, &dir, &runs)?;
    reporter.message(&format!(
        "sweep {name}: {} runs in {}",
        runs.len(),
        dir.display()
    ));
    if args.dry_run {
        for r in &runs {
            reporter.message(&format!("  {}  (group: {})", r.name, r.group));
        }
        return Ok(());
    }
    std::fs::create_dir_all(&dir).at(&dir)?;
    let _lock = FolderLock::acquire(&dir, "sweep")?;
    let planned = train_runs(&dir, runs, reporter)?;
    write_summary(args, &sweep, &name, &dir, &planned, reporter)
}

/// Reads a sweep file and the sweep's name (its `name`, else the file's stem).
fn read_sweep(file: &Path) -> Result<(SweepFile, String)> {
    let text = std::fs::read_to_string(file)
        .at(file)
        .context("cannot read sweep file")?;
    let sweep: SweepFile = toml::from_str(&text).map_err(|e| {
        TrainError::Config(format!("{} is not a valid sweep file: {e}", file.display()))
    })?;
    let name = sweep.name.clone().unwrap_or_else(|| {
        file.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sweep".into())
    });
    validate_name("sweep name", &name)?;
    Ok((sweep, name))
}

/// Fails when the sweep's `baseline` is not one of its groups (naming them).
fn check_baseline(file: &Path, sweep: &SweepFile, runs: &[PlannedRun]) -> Result<()> {
    let Some(b) = &sweep.baseline else {
        return Ok(());
    };
    if runs.iter().any(|r| &r.group == b) {
        return Ok(());
    }
    let mut groups: Vec<&str> = Vec::new();
    for r in runs {
        if !groups.contains(&r.group.as_str()) {
            groups.push(&r.group);
        }
    }
    config_bail!(
        "{}: baseline `{b}` is not a group of this sweep; its groups are: {}",
        file.display(),
        groups.join(", ")
    );
}

/// Refuses to mix runs of a different configuration into this sweep, before training anything.
fn check_existing_runs(file: &Path, dir: &Path, runs: &[PlannedRun]) -> Result<()> {
    for r in runs {
        let run_dir = dir.join(&r.name);
        let path = run_dir.join("config.toml");
        if path.exists() {
            let existing = RunConfig::from_document(read_document(&path)?)?;
            if existing.document != r.cfg.document {
                config_bail!(
                    "{} was made from a different configuration than {} now gives for run `{}`; \
                     remove that folder or give the sweep another name",
                    run_dir.display(),
                    file.display(),
                    r.name
                );
            }
        }
    }
    Ok(())
}

/// Trains every run not finished yet (resuming an interrupted one); returns (run, group,
/// config) of all runs in order.
fn train_runs(
    dir: &Path,
    runs: Vec<PlannedRun>,
    reporter: &dyn Reporter,
) -> Result<Vec<(String, String, RunConfig)>> {
    let total = runs.len();
    let mut planned: Vec<(String, String, RunConfig)> = Vec::new();
    for (i, r) in runs.into_iter().enumerate() {
        let run_dir = dir.join(&r.name);
        let status = if run_dir.join("config.toml").exists() {
            if finished(&run_dir, &r.cfg)? {
                "done"
            } else {
                "resuming"
            }
        } else {
            "training"
        };
        reporter.message(&format!("[{}/{total}] {}: {status}", i + 1, r.name));
        if status != "done" {
            let cfg = RunConfig::from_document(r.cfg.document.clone())?;
            fit(cfg, &run_dir, status == "resuming", reporter)
                .with_context(|| format!("sweep run `{}`", r.name))?;
        }
        planned.push((r.name, r.group, r.cfg));
    }
    Ok(planned)
}

/// The summary's groups in order of first appearance, led by a base-model group from the first
/// group's before-training evaluations.
fn summary_groups(dir: &Path, planned: &[(String, String, RunConfig)]) -> Result<Vec<Group>> {
    let mut order: Vec<String> = Vec::new();
    let mut members: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (run, group, _) in planned {
        if !members.contains_key(group) {
            order.push(group.clone());
        }
        members.entry(group.clone()).or_default().push(run);
    }
    let mut groups = Vec::new();
    if let Some(first) = order.first() {
        let mut before = Vec::new();
        for run in &members[first] {
            if let Some(r) = EvalReport::read_if_exists(&dir.join(run).join("eval/before.json"))? {
                before.push(r);
            }
        }
        if !before.is_empty() {
            groups.push(Group {
                label: "base (before training)".into(),
                reports: before,
                metrics: Vec::new(),
            });
        }
    }
    for g in &order {
        let mut reports = Vec::new();
        let mut metrics = Vec::new();
        for run in &members[g] {
            if let Some(r) = EvalReport::read_if_exists(&dir.join(run).join("eval/after.json"))? {
                reports.push(r);
            }
            metrics.push(dir.join(run).join("metrics.jsonl"));
        }
        groups.push(Group {
            label: g.clone(),
            reports,
            metrics,
        });
    }
    Ok(groups)
}

/// The summary's JSON: each group's mean ± std of mean@n and pass@K, the runs, the paired
/// differences.
fn summary_json(
    name: &str,
    groups: &[Group],
    planned: &[(String, String, RunConfig)],
    paired: Option<&(String, Vec<PairedRow>)>,
) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "groups": groups.iter().map(|g| serde_json::json!({
            "label": g.label,
            "runs": g.reports.len(),
            "mean_at_n": MeanStd::of(&g.reports.iter().map(|r| r.mean_at_n).collect::<Vec<_>>()),
            "pass_at_k": g.reports.first().map(|r| r.pass_at_k.iter().map(|(k, _)| {
                let v: Vec<f64> = g.reports.iter().filter_map(|r| r.pass(*k)).collect();
                serde_json::json!({"k": k, "value": MeanStd::of(&v)})
            }).collect::<Vec<_>>()),
        })).collect::<Vec<_>>(),
        "runs": planned.iter().map(|(run, group, _)| serde_json::json!({"run": run, "group": group})).collect::<Vec<_>>(),
        "paired": paired.map(|(b, rows)| serde_json::json!({"baseline": b, "rows": rows})),
    })
}

/// Writes `summary.md`, `summary.json` and the figures of a trained sweep (and the `--report`
/// file, if asked for).
fn write_summary(
    args: &SweepOptions,
    sweep: &SweepFile,
    name: &str,
    dir: &Path,
    planned: &[(String, String, RunConfig)],
    reporter: &dyn Reporter,
) -> Result<()> {
    let groups = summary_groups(dir, planned)?;
    let table = compare_markdown(
        &groups
            .iter()
            .map(|g| (g.label.clone(), g.reports.iter().collect()))
            .collect::<Vec<_>>(),
    );
    let paired = match &sweep.baseline {
        Some(b) => Some(paired_against(b, dir, planned, &sweep.seed_keys)?),
        None => None,
    };
    let paired_md = paired
        .as_ref()
        .map(|(b, rows)| format!("\n## Paired differences\n\n{}", paired_markdown(b, rows)))
        .unwrap_or_default();
    let first_cfg = &planned[0].2;
    let setup = format!(
        "Each run: {} steps × {} prompts × {} samples, then {} held-out problems × {} samples \
         (temperature {}). Values are mean ± std over the runs of a group (sample std).\n",
        first_cfg.train.steps,
        first_cfg.train.prompts_per_step,
        first_cfg.train.samples_per_prompt,
        first_cfg.train.eval_problems,
        first_cfg.train.eval_samples,
        first_cfg.train.temperature,
    );
    let run_list: String = planned
        .iter()
        .map(|(run, group, _)| format!("| {run} | {group} |\n"))
        .collect();
    let command = match &args.report {
        Some(r) => format!(
            "rlvr sweep {} --report {}",
            args.file.display(),
            r.display()
        ),
        None => format!("rlvr sweep {}", args.file.display()),
    };
    let intro = if sweep.description.trim().is_empty() {
        String::new()
    } else {
        format!("{}\n\n", sweep.description.trim())
    };
    // The report's writer; runs resumed across builds were trained partly by earlier ones.
    let build = crate::build_info::describe();
    let render = |rel: &str, figures: &[(String, String)]| {
        format!(
            "# Sweep `{name}`\n\n{intro}Produced by `{command}` with {build}; runs in `{}`.\n\n{setup}\n## pass@K \
             and probability concentration\n\n{table}{paired_md}\n## Figures\n\n{}\n## Runs\n\n| run | group \
             |\n|---|---|\n{run_list}",
            dir.display(),
            figure_markdown(figures, rel),
        )
    };
    let json = summary_json(name, &groups, planned, paired.as_ref());
    let figures = write_figures(&dir.join("plots"), &groups)?;
    write_atomic(&dir.join("summary.md"), &render("plots/", &figures))?;
    write_atomic(
        &dir.join("summary.json"),
        &serde_json::to_string_pretty(&json)?,
    )?;
    reporter.message(&table);
    if !paired_md.is_empty() {
        reporter.message(paired_md.trim());
    }
    reporter.message(&format!("summary in {}", dir.join("summary.md").display()));
    if let Some(report) = &args.report {
        let Some(stem) = report.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            config_bail!("--report needs a file name");
        };
        let fig_dir = report.with_file_name(&stem);
        let figures = write_figures(&fig_dir, &groups)?;
        write_atomic(report, &render(&format!("{stem}/"), &figures))?;
        reporter.message(&format!("report in {}", report.display()));
    }
    Ok(())
}

/// The value at a dotted `key` of a run document, as text (the pairing key of a run).
fn value_at(doc: &toml::Table, key: &str) -> String {
    let mut parts = key.split('.').peekable();
    let mut table = doc;
    while let Some(part) = parts.next() {
        match table.get(part) {
            Some(toml::Value::Table(t)) if parts.peek().is_some() => table = t,
            Some(v) if parts.peek().is_none() => return v.to_string(),
            _ => return String::new(),
        }
    }
    String::new()
}

/// Every group's end-of-training evaluations against the `baseline` group's, runs paired by
/// their `seed_keys` values.
fn paired_against(
    baseline: &str,
    dir: &Path,
    planned: &[(String, String, RunConfig)],
    seed_keys: &[String],
) -> Result<(String, Vec<PairedRow>)> {
    let mut reports: Vec<(String, String, EvalReport)> = Vec::new();
    for (run, group, cfg) in planned {
        if let Some(r) = EvalReport::read_if_exists(&dir.join(run).join("eval/after.json"))? {
            let key: Vec<String> = seed_keys
                .iter()
                .map(|k| value_at(&cfg.document, k))
                .collect();
            reports.push((group.clone(), key.join(","), r));
        }
    }
    let keyed = |g: &str| -> Keyed<'_> {
        reports
            .iter()
            .filter(|(group, _, _)| group == g)
            .map(|(_, key, r)| (key.clone(), r))
            .collect()
    };
    let base = keyed(baseline);
    let ks: Vec<usize> = base
        .first()
        .map(|(_, r)| r.pass_at_k.iter().map(|(k, _)| *k).collect())
        .unwrap_or_default();
    let mut order: Vec<String> = Vec::new();
    for (_, group, _) in planned {
        if group != baseline && !order.contains(group) {
            order.push(group.clone());
        }
    }
    let groups: Vec<(String, Keyed<'_>)> = order.iter().map(|g| (g.clone(), keyed(g))).collect();
    Ok((baseline.to_string(), paired_rows(&base, &groups, &ks)))
}
