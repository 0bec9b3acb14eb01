//! The figures and markdown of `rlvr eval`, `rlvr compare` and `rlvr sweep`, drawn from groups of
//! evaluation reports (a group = one configuration, possibly several seeds) and the groups' training
//! metrics (`metrics.jsonl`).

use crate::plot::{line_panels, moving_average, pass_at_k_curves, rank_bars, Panel, Series};
use crate::{EvalReport, MeanStd};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One configuration: its evaluation reports and the metrics files of its runs.
pub struct Group {
    /// Legend and table label.
    pub label: String,
    /// One report per run (seed).
    pub reports: Vec<EvalReport>,
    /// `metrics.jsonl` of each run that has one.
    pub metrics: Vec<PathBuf>,
}

/// The training-curve panels: metrics.jsonl key and panel title.
const TRAINING_PANELS: [(&str, &str); 12] = [
    ("reward/mean", "reward"),
    ("conc/entropy", "token entropy"),
    ("rollout/response_len", "response length (tokens)"),
    ("conc/lambda_1", "Λ(1) = mean log p of rank 1"),
    ("conc/lambda_2", "Λ(2)"),
    ("conc/lambda_3", "Λ(3)"),
    ("conc/sampled_logp", "sampled-token log p"),
    ("actor/loss", "loss"),
    ("loss/kl_ref", "KL to the reference"),
    ("loss/clipfrac", "clip fraction"),
    ("actor/grad_norm", "gradient norm (before clipping)"),
    ("loss/ppo_kl", "approximate KL to the rollout policy"),
];

/// Keys of `metrics.jsonl` files written before metrics were namespaced, and their names now, so
/// older runs still plot and compare.
pub const LEGACY_METRIC_KEYS: [(&str, &str); 24] = [
    ("reward_mean", "reward/mean"),
    ("accuracy", "reward/accuracy"),
    ("entropy", "conc/entropy"),
    ("top1_prob", "conc/top1_prob"),
    ("sampled_logp", "conc/sampled_logp"),
    ("lambda_1", "conc/lambda_1"),
    ("lambda_2", "conc/lambda_2"),
    ("lambda_3", "conc/lambda_3"),
    ("lambda_4", "conc/lambda_4"),
    ("lambda_5", "conc/lambda_5"),
    ("rank2_prob", "conc/rank2_prob"),
    ("rank3_prob", "conc/rank3_prob"),
    ("clipfrac", "loss/clipfrac"),
    ("ppo_kl", "loss/ppo_kl"),
    ("kl_ref", "loss/kl_ref"),
    ("loss", "actor/loss"),
    ("grad_norm", "actor/grad_norm"),
    ("lr", "actor/lr"),
    ("response_len", "rollout/response_len"),
    ("skipped_updates", "actor/skipped_updates"),
    ("time_rollout", "time/rollout"),
    ("time_score", "time/score"),
    ("time_update", "time/update"),
    ("tokens_per_s", "rollout/tokens_per_s"),
];

/// The current name of a metrics key (older runs used un-namespaced names).
pub fn current_metric_key(key: &str) -> &str {
    LEGACY_METRIC_KEYS
        .iter()
        .find(|(old, _)| *old == key)
        .map_or(key, |(_, new)| new)
}

/// Reads the numeric columns of a metrics.jsonl file: key → (step, value).
pub fn read_metrics(path: &Path) -> Result<BTreeMap<String, Vec<(f64, f64)>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut cols: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}: line {}: not JSON", path.display(), i + 1))?;
        let Some(step) = v.get("step").and_then(|s| s.as_f64()) else {
            continue;
        };
        if let Some(obj) = v.as_object() {
            for (k, x) in obj {
                let y = x.as_f64().unwrap_or(f64::NAN);
                cols.entry(current_metric_key(k).to_string())
                    .or_default()
                    .push((step, y));
            }
        }
    }
    Ok(cols)
}

/// Mean over runs of a metric per step (steps present in every run).
fn mean_curve(runs: &[BTreeMap<String, Vec<(f64, f64)>>], key: &str) -> Vec<(f64, f64)> {
    let mut by_step: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for r in runs {
        for (s, y) in r.get(key).map(|v| v.as_slice()).unwrap_or(&[]) {
            by_step.entry(*s as i64).or_default().push(*y);
        }
    }
    by_step
        .into_iter()
        .filter(|(_, v)| v.len() == runs.len())
        .map(|(s, v)| (s as f64, v.iter().sum::<f64>() / v.len() as f64))
        .collect()
}

fn stats(values: &[f64]) -> (f64, f64) {
    MeanStd::of(values).map_or((f64::NAN, 0.0), |m| (m.mean, m.std))
}

/// One series per group with concentration diagnostics, its points computed from the group's
/// diagnostics by `points`.
fn conc_series(
    groups: &[(usize, &Group, Vec<&crate::Concentration>)],
    points: impl Fn(&[&crate::Concentration]) -> Vec<(f64, f64, f64)>,
) -> Vec<Series> {
    groups
        .iter()
        .map(|(color, g, cs)| Series {
            label: g.label.clone(),
            points: points(cs),
            color: *color,
        })
        .collect()
}

/// Draws the figures of `groups` into `dir` (PNG and SVG); returns (caption, PNG file name).
pub fn write_figures(dir: &Path, groups: &[Group]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let seeds = |g: &Group| {
        if g.reports.len() > 1 {
            format!(" ({} runs)", g.reports.len())
        } else {
            String::new()
        }
    };
    // pass@K curves.
    let curves: Vec<Series> = groups
        .iter()
        .enumerate()
        .filter(|(_, g)| !g.reports.is_empty())
        .map(|(color, g)| {
            let mut ks: Vec<usize> = g
                .reports
                .iter()
                .flat_map(|r| r.pass_at_k.iter().map(|(k, _)| *k))
                .collect();
            ks.sort_unstable();
            ks.dedup();
            Series {
                label: format!("{}{}", g.label, seeds(g)),
                color,
                points: ks
                    .into_iter()
                    .map(|k| {
                        let v: Vec<f64> = g.reports.iter().filter_map(|r| r.pass(k)).collect();
                        let (m, s) = stats(&v);
                        (k as f64, m, s)
                    })
                    .collect(),
            }
        })
        .collect();
    if !curves.is_empty() {
        let title = if groups.iter().any(|g| g.reports.len() > 1) {
            "pass@K (mean ± std over runs)"
        } else {
            "pass@K"
        };
        pass_at_k_curves(&dir.join("passk"), title, &curves)?;
        out.push(("pass@K".into(), "passk.png".into()));
    }
    // Rank-n probability bars and the entropy histogram.
    let with_conc: Vec<(usize, &Group, Vec<&crate::Concentration>)> = groups
        .iter()
        .enumerate()
        .map(|(color, g)| {
            (
                color,
                g,
                g.reports
                    .iter()
                    .filter_map(|r| r.concentration.as_ref())
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, _, c)| !c.is_empty())
        .collect();
    if !with_conc.is_empty() {
        let bars = conc_series(&with_conc, |cs| {
            let ranks = cs.iter().map(|c| c.rank_prob.len()).min().unwrap_or(0);
            (0..ranks)
                .map(|i| {
                    let (m, s) = stats(&cs.iter().map(|c| c.rank_prob[i]).collect::<Vec<_>>());
                    (i as f64 + 1.0, m, s)
                })
                .collect()
        });
        rank_bars(
            &dir.join("rank_probs"),
            "Average probability of the rank-n candidate over response tokens",
            "mean probability",
            &bars,
        )?;
        out.push((
            "rank-n candidate probabilities".into(),
            "rank_probs.png".into(),
        ));
        let series = conc_series(&with_conc, |cs| {
            let edges = &cs[0].entropy_hist.edges;
            let dens: Vec<Vec<f64>> = cs.iter().map(|c| c.entropy_hist.density()).collect();
            (0..edges.len().saturating_sub(1))
                .map(|b| {
                    let v: Vec<f64> = dens.iter().filter_map(|d| d.get(b).copied()).collect();
                    let (m, _) = stats(&v);
                    ((edges[b] + edges[b + 1]) / 2.0, m, 0.0)
                })
                .collect()
        });
        // Drop the empty bins above the highest entropy any run reached.
        let used = series
            .iter()
            .filter_map(|s| s.points.iter().rposition(|p| p.1 > 0.0))
            .max()
            .map_or(usize::MAX, |last| last + 2);
        let series: Vec<Series> = series
            .into_iter()
            .map(|mut s| {
                s.points.truncate(used);
                s
            })
            .collect();
        line_panels(
            &dir.join("entropy_hist"),
            "Token entropy of sampled responses",
            &[Panel {
                title: String::new(),
                y_desc: "fraction of response tokens".into(),
                x_desc: "entropy (nats)".into(),
                series,
            }],
            1,
        )?;
        out.push(("token-entropy histogram".into(), "entropy_hist.png".into()));
    }
    // Training curves.
    let mut loaded = Vec::new();
    for (color, g) in groups.iter().enumerate() {
        let runs: Vec<_> = g
            .metrics
            .iter()
            .filter(|p| p.exists())
            .map(|p| read_metrics(p))
            .collect::<Result<_>>()?;
        if !runs.is_empty() {
            loaded.push((color, g, runs));
        }
    }
    if !loaded.is_empty() {
        // One run: no legend (its label would be the group's, e.g. "after training").
        let single = loaded.len() == 1 && loaded[0].2.len() == 1;
        let panels: Vec<Panel> = TRAINING_PANELS
            .iter()
            .map(|(key, title)| Panel {
                title: title.to_string(),
                y_desc: String::new(),
                x_desc: "step".into(),
                series: loaded
                    .iter()
                    .map(|(color, g, runs)| {
                        let curve = mean_curve(runs, key);
                        let window = (curve.len() / 30).max(1);
                        let ys: Vec<f64> = curve.iter().map(|p| p.1).collect();
                        let smooth = moving_average(&ys, window);
                        Series {
                            label: if single {
                                String::new()
                            } else {
                                g.label.clone()
                            },
                            color: *color,
                            points: curve
                                .iter()
                                .zip(smooth)
                                .map(|(p, y)| (p.0, y, 0.0))
                                .collect(),
                        }
                    })
                    .collect(),
            })
            .collect();
        let title = if loaded.iter().any(|(_, _, runs)| runs.len() > 1) {
            "Training curves (mean over runs, moving average over ~1/30 of the steps)"
        } else {
            "Training curves (moving average over ~1/30 of the steps)"
        };
        line_panels(&dir.join("training"), title, &panels, 3)?;
        out.push(("training curves".into(), "training.png".into()));
    }
    Ok(out)
}

/// Markdown image lines for figures stored in `rel` (relative to the markdown file).
pub fn figure_markdown(figures: &[(String, String)], rel: &str) -> String {
    figures
        .iter()
        .map(|(caption, file)| format!("![{caption}]({rel}{file})\n"))
        .collect::<Vec<_>>()
        .join("\n")
}
