//! JSONL datasets: one JSON object per line with `prompt` (a string or a list of {role, content}),
//! the answer as `ground_truth`, `answer` or verl's nested `reward_model.ground_truth` (a string, a
//! number, or an object with `target`), and optional `data_source`, `solution` and `extra_info`
//! (verl's JSONL export reads as it is). `data.prompt_key` / `data.answer_key` name other columns.

use super::{collect, Columns, DataError, Dataset, Message, OnBadRow, Record};
use std::path::Path;

/// The value at a dotted path (`reward_model.ground_truth`).
fn at<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

/// The answer text of a value: a string, a number's literal text (`numeric` when it is the
/// top-level field, read without a trip through f64), or an object's `target`.
fn answer_text(v: &serde_json::Value, numeric: Option<String>) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(numeric.unwrap_or_else(|| n.to_string())),
        serde_json::Value::Object(o) => o.get("target").and_then(|t| answer_text(t, None)),
        _ => None,
    }
}

fn record(path: &Path, index: usize, line: &str, columns: &Columns) -> Result<Record, DataError> {
    let bad = |field: &str, message: String| DataError::Row {
        path: path.display().to_string(),
        unit: "line",
        row: index,
        field: field.into(),
        message,
    };
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| bad("<line>", format!("not JSON: {e}")))?;
    let prompt = match at(&v, &columns.prompt) {
        Some(serde_json::Value::String(s)) => vec![Message {
            role: "user".into(),
            content: s.clone(),
        }],
        Some(p @ serde_json::Value::Array(_)) => {
            serde_json::from_value(p.clone()).map_err(|e| bad("prompt", e.to_string()))?
        }
        _ => {
            return Err(bad(
                &columns.prompt,
                "missing, or neither a string nor a list of messages (data.prompt_key names \
                 another column)"
                    .into(),
            ))
        }
    };
    if prompt.is_empty() || prompt.iter().all(|m| m.content.trim().is_empty()) {
        return Err(bad(&columns.prompt, "empty".into()));
    }
    let (field, gt) = if columns.answer.is_empty() {
        ["ground_truth", "answer", "reward_model.ground_truth"]
            .into_iter()
            .find_map(|k| at(&v, k).map(|x| (k.to_string(), x)))
            .unwrap_or(("ground_truth".into(), &serde_json::Value::Null))
    } else {
        let x = at(&v, &columns.answer).unwrap_or(&serde_json::Value::Null);
        (columns.answer.clone(), x)
    };
    // A top-level number keeps its literal text (`123456789012345678901`, `0.10`).
    let numeric = if gt.is_number() && !field.contains('.') {
        literal_field(line, &field)
    } else {
        None
    };
    let ground_truth = answer_text(gt, numeric).ok_or_else(|| {
        bad(
            &field,
            "missing or not a string, number or {target} object (the answer is read from \
             `ground_truth`, `answer` or `reward_model.ground_truth`; data.answer_key names \
             another)"
                .into(),
        )
    })?;
    if ground_truth.trim().is_empty() {
        return Err(bad(&field, "empty".into()));
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
        extra_info: v.get("extra_info").filter(|x| !x.is_null()).cloned(),
    })
}

/// The literal JSON text of a line's top-level numeric field `field`.
fn literal_field(line: &str, field: &str) -> Option<String> {
    let raw: std::collections::HashMap<String, &serde_json::value::RawValue> =
        serde_json::from_str(line).ok()?;
    raw.get(field).map(|r| r.get().trim().to_string())
}

/// Reads every non-empty line (a leading byte-order mark is accepted); rows are numbered by
/// their 1-based line.
pub fn read(path: &Path, on_bad: OnBadRow, columns: &Columns) -> Result<Dataset, DataError> {
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
        .map(|(i, l)| record(path, i + 1, l, columns));
    collect(path, rows, on_bad)
}
