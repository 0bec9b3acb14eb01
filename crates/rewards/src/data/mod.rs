//! Datasets: verl-format parquet and JSONL readers, prompt templates, and `data_source` routing.

pub mod config;
pub mod jsonl;
pub mod parquet;
pub mod task;

use serde::{Deserialize, Serialize};

/// One dataset row in rlvr's terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Row index in the file (0-based).
    pub row: usize,
    /// Origin (`data_source`), used to route to a verifier and for per-source metrics.
    pub data_source: String,
    /// Chat messages of the prompt (verl's `prompt` column).
    pub prompt: Vec<Message>,
    /// The reference answer (`reward_model.ground_truth`, or its `target` field).
    pub ground_truth: String,
    /// A worked solution, when the file has one (MATH's `ground_truth.solution`).
    pub solution: Option<String>,
    /// verl's `extra_info` column (any JSON), passed to reward programs.
    #[serde(default)]
    pub extra_info: Option<serde_json::Value>,
}

/// Which columns hold the prompt and the answer (verl's `data.prompt_key`; rlvr's `answer_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    /// The prompt column (default `prompt`).
    pub prompt: String,
    /// The answer as a dotted path (`reward_model.ground_truth`, `answer`); "" = the default
    /// lookup: `ground_truth`, `answer`, then `reward_model.ground_truth`.
    pub answer: String,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            prompt: "prompt".into(),
            answer: String::new(),
        }
    }
}

impl Record {
    /// The prompt text: the last user message (or the last message).
    pub fn user_prompt(&self) -> String {
        self.prompt
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .or(self.prompt.last())
            .map(|m| m.content.clone())
            .unwrap_or_default()
    }

    /// The whole conversation as (role, content) when it is more than one user message (a
    /// system prompt, several turns); empty otherwise.
    pub fn conversation(&self) -> Vec<(String, String)> {
        if self.prompt.len() <= 1 {
            return Vec::new();
        }
        self.prompt
            .iter()
            .map(|m| (m.role.clone(), m.content.clone()))
            .collect()
    }
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// "system", "user" or "assistant".
    pub role: String,
    /// The text.
    pub content: String,
}

/// What to do with a malformed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OnBadRow {
    /// Stop with an error naming the row and field.
    #[default]
    Fail,
    /// Skip it and count it.
    Skip,
}

/// Rows read plus the number skipped.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// Good rows.
    pub records: Vec<Record>,
    /// Malformed rows skipped (with `OnBadRow::Skip`).
    pub skipped: usize,
}

/// Errors reading datasets.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file problem.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What happened.
        message: String,
    },
    /// A malformed row.
    #[error("{path}: {unit} {row}: field `{field}`: {message}")]
    Row {
        /// The file.
        path: String,
        /// "line" (JSONL: `row` is the 1-based line number) or "row" (parquet: the 0-based row
        /// index, as pandas shows it).
        unit: &'static str,
        /// Where in the file.
        row: usize,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads a dataset file by extension: `.parquet` (verl) or `.jsonl`, with the default columns.
pub fn read(path: &std::path::Path, on_bad: OnBadRow) -> Result<Dataset, DataError> {
    read_columns(path, on_bad, &Columns::default())
}

/// [`read`] with the prompt and answer in the given columns.
pub fn read_columns(
    path: &std::path::Path,
    on_bad: OnBadRow,
    columns: &Columns,
) -> Result<Dataset, DataError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("parquet") => parquet::read(path, on_bad, columns),
        Some("jsonl") | Some("json") => jsonl::read(path, on_bad, columns),
        _ => Err(DataError::File {
            path: path.display().to_string(),
            message: "unknown dataset format; valid: .parquet (verl), .jsonl".into(),
        }),
    }
}

/// Collects rows, applying the bad-row policy.
pub(crate) fn collect(
    path: &std::path::Path,
    rows: impl Iterator<Item = Result<Record, DataError>>,
    on_bad: OnBadRow,
) -> Result<Dataset, DataError> {
    let mut ds = Dataset::default();
    let mut ticker = rlvr_core::progress::Ticker::new(format!("reading {}", path.display()), None);
    for (i, r) in rows.enumerate() {
        ticker.tick(i);
        match (r, on_bad) {
            (Ok(rec), _) => ds.records.push(rec),
            (Err(e @ DataError::Row { .. }), OnBadRow::Skip) => {
                tracing::warn!("skipping malformed row of {}: {e}", path.display());
                ds.skipped += 1;
            }
            (Err(e), _) => return Err(e),
        }
    }
    ticker.finish(ds.records.len() + ds.skipped);
    Ok(ds)
}
