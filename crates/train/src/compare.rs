//! Several evaluations side by side (`rlvr compare`): each input is a run (its newest `rlvr eval`,
//! else its end-of-training evaluation), an evaluation folder or an eval JSON file.

use crate::config_bail;
use crate::error::{fs::write_atomic, IoResultExt, Result};
use rlvr_core::atomic::StagedDir;
use rlvr_eval::figures::{figure_markdown, write_figures, Group};
use rlvr_eval::report::compare_markdown;
use rlvr_eval::EvalReport;
use std::path::{Path, PathBuf};

/// The last component of a path, for labels.
pub fn dir_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// The evaluation report of an input, its label and the run's metrics file.
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
                    evals.push((meta.modified().at(&p)?, p));
                }
            }
        }
        evals.sort();
        let path = match evals.pop() {
            Some((_, p)) => p,
            None => input.join("eval/after.json"),
        };
        if !path.exists() {
            config_bail!(
                "{} has no evaluation; run `rlvr eval --run {}` first",
                input.display(),
                input.display()
            );
        }
        return Ok((read(&path)?, dir_name(input), metrics));
    }
    config_bail!(
        "{}: not a run folder, an evaluation folder or an eval JSON file",
        input.display()
    )
}

/// What a comparison of single runs can and cannot say, printed under its table.
pub const SINGLE_RUN_NOTE: &str = "Each row is one run, one seed: differences of a few hundredths \
are within seed-to-seed noise (the default run under `--nproc 2` lands 0.014–0.02 from itself in \
pass@K, by summation order alone). To tell two configurations apart, train several seeds of each \
with `rlvr sweep` and a `baseline`: it reports paired differences with 95% intervals.";

/// Compares `inputs` (labelled by `labels`, or by folder names) into `out` (default
/// `comparisons/<a>-vs-<b>...` in the folder holding the first input): `comparison.md` and overlaid figures, written into a temporary
/// folder that replaces `out` — only with `overwrite` when `out` exists. Returns the markdown
/// table and the output folder.
pub fn compare(
    inputs: &[PathBuf],
    labels: &[String],
    out: Option<&Path>,
    overwrite: bool,
) -> Result<(String, PathBuf)> {
    if !labels.is_empty() && labels.len() != inputs.len() {
        config_bail!(
            "--labels has {} names for {} inputs",
            labels.len(),
            inputs.len()
        );
    }
    let mut groups = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let (report, label, metrics) = find_report(input)?;
        groups.push(Group {
            label: labels.get(i).cloned().unwrap_or(label),
            reports: vec![report],
            metrics: metrics.into_iter().collect(),
        });
    }
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| {
        let names: Vec<String> = groups
            .iter()
            .map(|g| g.label.replace(['/', '\\', ' ', '@'], "_"))
            .collect();
        let mut name = names.join("-vs-");
        name.truncate(120);
        // Next to what is compared (runs/a, runs/b → runs/comparisons/a-vs-b), not wherever
        // the command happens to run.
        let beside = inputs
            .first()
            .and_then(|p| p.parent())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        beside.join("comparisons").join(name)
    });
    if out.exists() && !overwrite {
        config_bail!(
            "{} already exists; pass --overwrite to replace it or --out to write elsewhere",
            out.display()
        );
    }
    let staged = StagedDir::create(&out, "partial")?;
    let tmp = staged.path();
    let plots = tmp.join("plots");
    std::fs::create_dir_all(&plots).at(&plots)?;
    let figures = write_figures(&plots, &groups)?;
    let table = format!(
        "{}\n{SINGLE_RUN_NOTE}\n",
        compare_markdown(
            &groups
                .iter()
                .map(|g| (g.label.clone(), g.reports.iter().collect()))
                .collect::<Vec<_>>(),
        )
    );
    let sources: Vec<String> = inputs
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
    write_atomic(&tmp.join("comparison.md"), &md)?;
    Ok((table, staged.publish()?))
}
