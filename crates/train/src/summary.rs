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
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let md = format!(
        "# Run `{name}`\n\nAlgorithm `{}`, {} steps × {} prompts × {} samples; resolved settings in \
         `config.toml`, per-step metrics in `metrics.jsonl` (and TensorBoard events in \
         `tensorboard/`).\n\n{table}\n{}",
        cfg.algo.preset.as_deref().unwrap_or("custom"),
        cfg.train.steps,
        cfg.train.prompts_per_step,
        cfg.train.samples_per_prompt,
        figure_markdown(&figures, "plots/")
    );
    write_atomic(&dir.join("summary.md"), &md)
}
