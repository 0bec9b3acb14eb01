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
        // A number keeps its literal text (`123456789012345678901`, `0.10`): no trip through f64.
        Some(serde_json::Value::Number(_)) => literal_ground_truth(line)
            .ok_or_else(|| bad("ground_truth", "cannot read the number's text".into()))?,
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

/// The literal JSON text of a line's numeric `ground_truth` (or `answer`).
fn literal_ground_truth(line: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        ground_truth: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow)]
        answer: Option<&'a serde_json::value::RawValue>,
    }
    let raw: Raw<'_> = serde_json::from_str(line).ok()?;
    raw.ground_truth
        .or(raw.answer)
        .map(|r| r.get().trim().to_string())
}

/// Reads every non-empty line (a leading byte-order mark is accepted); rows are numbered by
/// their 1-based line.
pub fn read(path: &Path, on_bad: OnBadRow) -> Result<Dataset, DataError> {
    let file_error = |message: String| DataError::File {
        path: path.display().to_string(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| file_error(e.to_string()))?;
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&bytes);
    let mut lines = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let text = std::str::from_utf8(line).map_err(|e| {
            file_error(format!(
                "line {}: not UTF-8 text (byte {} of the line); save the file as UTF-8",
                i + 1,
                e.valid_up_to() + 1
            ))
        })?;
        lines.push(text.strip_suffix('\r').unwrap_or(text));
    }
    if let Some(first) = lines.iter().find(|l| !l.trim().is_empty()) {
        if first.trim_start().starts_with('[') {
            return Err(file_error(
                "holds a JSON array; a .jsonl file has one JSON object per line (convert it \
                 with `jq -c '.[]' FILE`)"
                    .into(),
            ));
        }
    }
    let rows = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| record(path, i + 1, l));
    collect(path, rows, on_bad)
}
