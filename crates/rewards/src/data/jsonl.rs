//! JSONL datasets: one JSON object per line with `prompt` (a string or a list of {role, content}),
//! `ground_truth` (or `answer`) and optional `data_source` and `solution`.

use super::{collect, DataError, Dataset, Message, OnBadRow, Record};
use std::path::Path;

fn record(path: &Path, index: usize, line: &str) -> Result<Record, DataError> {
    let bad = |field: &str, message: String| DataError::Row {
        path: path.display().to_string(),
        unit: "line",
        row: index,
        field: field.into(),
        message,
    };
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| bad("<line>", format!("not JSON: {e}")))?;
    let prompt = match v.get("prompt") {
        Some(serde_json::Value::String(s)) => vec![Message {
            role: "user".into(),
            content: s.clone(),
        }],
        Some(p @ serde_json::Value::Array(_)) => {
            serde_json::from_value(p.clone()).map_err(|e| bad("prompt", e.to_string()))?
        }
        _ => {
            return Err(bad(
                "prompt",
                "missing, or neither a string nor a list of messages".into(),
            ))
        }
    };
    if prompt.is_empty() || prompt.iter().all(|m| m.content.trim().is_empty()) {
        return Err(bad("prompt", "empty".into()));
    }
    let gt = v.get("ground_truth").or_else(|| v.get("answer"));
    let ground_truth = match gt {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => {
            return Err(bad(
                "ground_truth",
                "missing or not a string/number (also accepted as `answer`)".into(),
            ))
        }
    };
    if ground_truth.trim().is_empty() {
        return Err(bad("ground_truth", "empty".into()));
    }
    Ok(Record {
        row: index,
        data_source: v
            .get("data_source")
            .and_then(|d| d.as_str())
            .unwrap_or("jsonl")
            .to_string(),
        prompt,
        ground_truth,
        solution: v
            .get("solution")
            .and_then(|s| s.as_str())
            .map(str::to_string),
    })
}

/// Reads every non-empty line (a leading byte-order mark is accepted); rows are numbered by
/// their 1-based line.
pub fn read(path: &Path, on_bad: OnBadRow) -> Result<Dataset, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let rows = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| record(path, i + 1, l));
    collect(path, rows, on_bad)
}
