//! Per-step metrics as an open, namespaced map (`reward/mean`, `actor/grad_norm`,
//! `loss/gate_frac`, `conc/lambda_3`, `time/rollout`, ...; every key is listed in
//! docs/metrics.md), and the run's metric log: `metrics.jsonl` plus TensorBoard event files that
//! always mirror it.

use crate::error::{IoResultExt, Result, TrainError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How a metric combines over the ranks of a data-parallel job (rank 0 logs the combination);
/// declared where the metric is set, so a new metric never falls into another's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    /// The slowest rank's (phase times).
    Max,
    /// The total (throughput).
    Sum,
    /// Already equal on every rank (the global loss, gradient norm, learning rate).
    Same,
    /// Mean weighted by each rank's valid response tokens (per-token means).
    TokenMean,
    /// Mean weighted by each rank's responses (per-response means).
    ResponseMean,
}

/// The metrics of one step: namespaced keys to values, each with its cross-rank [`Reduce`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// Step number (1-based).
    pub step: u64,
    /// Every other value, by key.
    #[serde(flatten)]
    pub values: BTreeMap<String, f64>,
    /// How each value combines over ranks, by key.
    #[serde(skip)]
    reductions: BTreeMap<String, Reduce>,
}

impl Metrics {
    /// Empty metrics of `step`.
    pub fn new(step: u64) -> Metrics {
        Metrics {
            step,
            values: BTreeMap::new(),
            reductions: BTreeMap::new(),
        }
    }

    /// Sets `key` to `value`, combined over data-parallel ranks by `reduce`.
    pub fn set(&mut self, key: impl Into<String>, value: f64, reduce: Reduce) {
        let key = key.into();
        self.reductions.insert(key.clone(), reduce);
        self.values.insert(key, value);
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.get(key).copied()
    }

    /// The value of `key`, or NaN.
    pub fn value(&self, key: &str) -> f64 {
        self.get(key).unwrap_or(f64::NAN)
    }

    /// How `key` combines over ranks (per response when it was set without one).
    pub fn reduction(&self, key: &str) -> Reduce {
        self.reductions
            .get(key)
            .copied()
            .unwrap_or(Reduce::ResponseMean)
    }

    /// Copies every value of `other` into this map (its step is ignored).
    pub fn extend(&mut self, other: Metrics) {
        self.values.extend(other.values);
        self.reductions.extend(other.reductions);
    }
}

/// The key under which a loss's per-token metric is logged: a name with a `/` as it is, any other
/// under `loss/`.
pub fn loss_metric_key(name: &str) -> String {
    if name.contains('/') {
        name.to_string()
    } else {
        format!("loss/{name}")
    }
}

/// Folder of a run's TensorBoard event files.
pub const TENSORBOARD_DIR: &str = "tensorboard";

/// The run's metric log: `metrics.jsonl` (one JSON object per step) and TensorBoard scalars.
pub struct MetricsLog {
    jsonl: PathBuf,
    events: Option<tboard::EventWriter<std::fs::File>>,
}

impl MetricsLog {
    /// Opens the log of the run in `dir` continuing after `step`: later lines of `metrics.jsonl`
    /// (from an interrupted run) are dropped, and the TensorBoard events are rewritten from the
    /// kept lines so they never hold a step twice. `tensorboard = false` writes no events.
    pub fn open(dir: &Path, step: u64, tensorboard: bool) -> Result<MetricsLog> {
        let jsonl = dir.join("metrics.jsonl");
        truncate_metrics(&jsonl, step)?;
        let events = if tensorboard {
            let tb = dir.join(TENSORBOARD_DIR);
            if tb.exists() {
                for entry in std::fs::read_dir(&tb).at(&tb)? {
                    let path = entry.at(&tb)?.path();
                    let ours = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("events.out.tfevents."));
                    if ours {
                        std::fs::remove_file(&path).at(&path)?;
                    }
                }
            }
            let mut writer = tboard::EventWriter::create(&tb).map_err(tb_error(&tb))?;
            if jsonl.exists() {
                let text = std::fs::read_to_string(&jsonl).at(&jsonl)?;
                for line in text.lines() {
                    let v: serde_json::Value = serde_json::from_str(line)?;
                    write_event_line(&mut writer, &v).map_err(tb_error(&tb))?;
                }
            }
            writer.flush().map_err(tb_error(&tb))?;
            Some(writer)
        } else {
            None
        };
        Ok(MetricsLog { jsonl, events })
    }

    /// Appends one step to `metrics.jsonl` and the event file.
    pub fn append(&mut self, m: &Metrics) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.jsonl)
            .at(&self.jsonl)?;
        writeln!(f, "{}", serde_json::to_string(m)?).at(&self.jsonl)?;
        if let Some(w) = &mut self.events {
            let path = self.jsonl.clone();
            for (k, v) in &m.values {
                w.write_scalar(m.step as i64, k, *v as f32)
                    .map_err(tb_error(&path))?;
            }
            w.flush().map_err(tb_error(&path))?;
        }
        Ok(())
    }

    /// Path of `metrics.jsonl`.
    pub fn path(&self) -> &Path {
        &self.jsonl
    }
}

fn tb_error(path: &Path) -> impl Fn(tboard::Error) -> TrainError + '_ {
    move |e| TrainError::TensorBoard(format!("{}: {e}", path.display()))
}

fn write_event_line(
    w: &mut tboard::EventWriter<std::fs::File>,
    v: &serde_json::Value,
) -> tboard::Result<()> {
    let Some(step) = v.get("step").and_then(|s| s.as_i64()) else {
        return Ok(());
    };
    if let Some(obj) = v.as_object() {
        for (k, x) in obj {
            if k != "step" {
                w.write_scalar(step, k, x.as_f64().unwrap_or(f64::NAN) as f32)?;
            }
        }
    }
    Ok(())
}

/// Drops metric lines after `step` (a resumed run rewrites them), through a temporary file.
pub fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).at(path)?;
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    Ok(rlvr_core::atomic::write_file(path, kept)?)
}

/// Reads the scalars of every TensorBoard event file in `dir`: (tag, step, value) in file order.
pub fn read_tensorboard_scalars(dir: &Path) -> Result<Vec<(String, i64, f32)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .at(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("events.out.tfevents."))
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let file = std::fs::File::open(&path).at(&path)?;
        for event in tboard::SummaryReader::new(std::io::BufReader::new(file)) {
            let event = event.map_err(tb_error(&path))?;
            if let Some(tboard::tensorboard::event::What::Summary(s)) = event.what {
                for v in s.value {
                    if let Some(tboard::tensorboard::summary::value::Value::SimpleValue(x)) =
                        v.value
                    {
                        out.push((v.tag, event.step, x));
                    }
                }
            }
        }
    }
    Ok(out)
}
