//! `summary.md` and `plots/` of a run: pass@K and concentration before vs after training, and the
//! training curves.

use crate::config::RunConfig;
use crate::error::{fs::write_atomic, Result};
use rlvr_eval::figures::{figure_markdown, write_figures, Group};
use rlvr_eval::EvalReport;
use std::path::Path;

/// Writes `summary.md` and `plots/` into the run folder `dir`.
pub fn write_run_summary(dir: &Path, cfg: &RunConfig, metrics: &Path) -> Result<()> {
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
    let drop = match (&groups[0].reports[..], &groups[1].reports[..]) {
        ([before], [after]) => rlvr_eval::report::passk_drop_note(before, after)
            .map(|n| format!("**Note:** {n}.\n\n"))
            .unwrap_or_default(),
        _ => String::new(),
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let md = format!(
        "# Run `{name}`\n\nAlgorithm `{}`, {} steps × {} prompts × {} samples; resolved settings in \
         `config.toml`, per-step metrics in `metrics.jsonl` (and TensorBoard events in \
         `tensorboard/`). Written by {}.\n\n{table}\n{drop}{}{}",
        cfg.algo.preset.as_deref().unwrap_or("custom"),
        cfg.train.steps,
        cfg.train.prompts_per_step,
        cfg.train.samples_per_prompt,
        crate::build_info::describe(),
        validation_table(metrics)?,
        figure_markdown(&figures, "plots/")
    );
    write_atomic(&dir.join("summary.md"), &md)
}

/// The `val/*` metrics of the steps that were validated (`train.eval_every`), as a markdown
/// table; "" when there are none.
fn validation_table(metrics: &Path) -> Result<String> {
    use crate::error::IoResultExt;
    if !metrics.exists() {
        return Ok(String::new());
    }
    let text = std::fs::read_to_string(metrics).at(metrics)?;
    let mut rows: Vec<(u64, Vec<(String, f64)>)> = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(obj) = v.as_object() else { continue };
        let vals: Vec<(String, f64)> = obj
            .iter()
            .filter(|(k, _)| k.starts_with("val/"))
            .filter_map(|(k, x)| Some((k["val/".len()..].to_string(), x.as_f64()?)))
            .collect();
        if let (false, Some(step)) = (vals.is_empty(), v["step"].as_u64()) {
            rows.push((step, vals));
        }
    }
    let Some((_, first)) = rows.first() else {
        return Ok(String::new());
    };
    let keys: Vec<String> = first.iter().map(|(k, _)| k.clone()).collect();
    let mut md = format!(
        "## Validation during training\n\n| step | {} |\n|---|{}\n",
        keys.join(" | "),
        "---|".repeat(keys.len())
    );
    for (step, vals) in &rows {
        let cells: Vec<String> = keys
            .iter()
            .map(|k| {
                vals.iter()
                    .find(|(x, _)| x == k)
                    .map_or("—".into(), |(_, v)| format!("{v:.3}"))
            })
            .collect();
        md.push_str(&format!("| {step} | {} |\n", cells.join(" | ")));
    }
    md.push('\n');
    Ok(md)
}
