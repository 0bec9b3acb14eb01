//! The `dataset` task: a run's `[data]` table (or `[task] type = "dataset"`) — dataset files as a
//! registered [`Task`], so every run has a task and one code path loads its problems.

use super::task::DatasetTask;
use super::{read_columns, Columns, DataError, OnBadRow};
use documented::DocumentedFields;
use rlvr_core::{CoreError, Problem, Split, Task, TaskConfig};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Dataset files instead of a built-in task.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct DatasetConfig {
    /// Training file (.parquet in verl layout, or .jsonl).
    pub train: String,
    /// Held-out file; "" holds out the last rows of the training file.
    pub test: String,
    /// Rows held out when `test` is "".
    pub holdout: usize,
    /// Plain-text prompt template; `{prompt}` is replaced by the row's user message.
    pub template: String,
    /// More files validated every `train.eval_every` steps (all their rows are held out), each
    /// reported as `val/<file stem>/pass@K` metrics.
    pub eval_data: Vec<String>,
    /// The prompt column (verl's `data.prompt_key`): a string or a list of {role, content}.
    pub prompt_key: String,
    /// The answer column as a dotted path (e.g. "solution", "reward_model.ground_truth"); "" =
    /// `ground_truth`, `answer`, then `reward_model.ground_truth`.
    pub answer_key: String,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        DatasetConfig {
            train: String::new(),
            test: String::new(),
            holdout: 100,
            template: "{prompt}".into(),
            eval_data: Vec::new(),
            prompt_key: "prompt".into(),
            answer_key: String::new(),
        }
    }
}

rlvr_core::describe_fields!(DatasetConfig);
rlvr_core::register!(
    task,
    "dataset",
    "dataset files (verl parquet or JSONL) as a task; what a run's [data] table configures",
    DatasetConfig
);

impl From<DataError> for CoreError {
    fn from(e: DataError) -> CoreError {
        CoreError::Input(e.to_string())
    }
}

/// A dataset's train and test problems, and its further validation sets.
struct FileTask {
    rows: DatasetTask,
    validation: Vec<(String, Vec<Problem>)>,
}

impl Task for FileTask {
    fn problems(&self, split: Split) -> rlvr_core::Result<Vec<Problem>> {
        self.rows.problems(split)
    }

    fn verifier(&self) -> Box<dyn rlvr_core::Verifier> {
        self.rows.verifier()
    }

    fn validation_sets(&self) -> rlvr_core::Result<Vec<(String, Vec<Problem>)>> {
        Ok(self.validation.clone())
    }
}

/// A template has `{prompt}` and no other `{name}` placeholder.
fn check_template(template: &str) -> rlvr_core::Result<()> {
    if !template.contains("{prompt}") {
        return Err(CoreError::Input(format!(
            "data.template must contain {{prompt}}, got {template:?}"
        )));
    }
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find('}') else { break };
        let name = &rest[..close];
        let placeholder = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.chars().all(|c| c.is_ascii_digit());
        if placeholder && name != "prompt" {
            return Err(CoreError::Input(format!(
                "data.template has the placeholder {{{name}}}, which nothing fills; the only \
                 placeholder is {{prompt}} (the row's user message)"
            )));
        }
    }
    Ok(())
}

/// Whether two paths name the same file.
fn same_file(a: &str, b: &str) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

impl DatasetConfig {
    /// The columns `prompt_key` and `answer_key` name.
    fn columns(&self) -> Columns {
        Columns {
            prompt: self.prompt_key.clone(),
            answer: self.answer_key.clone(),
        }
    }

    /// The validation sets of `eval_data`: each file's stem and all its rows as problems.
    fn validation_sets(&self) -> rlvr_core::Result<Vec<(String, Vec<Problem>)>> {
        let mut sets: Vec<(String, Vec<Problem>)> = Vec::new();
        for file in &self.eval_data {
            let path = Path::new(file);
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| file.clone());
            if sets.iter().any(|(n, _)| *n == name) {
                return Err(CoreError::Input(format!(
                    "data.eval_data names two files called `{name}`; rename one"
                )));
            }
            let records = read_columns(path, OnBadRow::Fail, &self.columns())?.records;
            let set =
                DatasetTask::with_template(&[], &records, &self.template).problems(Split::Test)?;
            sets.push((name, set));
        }
        Ok(sets)
    }
}

#[typetag::serde(name = "dataset")]
impl TaskConfig for DatasetConfig {
    /// Reads the files: the training file's last `holdout` rows (at most half) are the test split
    /// unless `test` names a file.
    fn build(&self) -> rlvr_core::Result<Box<dyn Task>> {
        check_template(&self.template)?;
        let train = read_columns(Path::new(&self.train), OnBadRow::Fail, &self.columns())?;
        let (train_rows, test_rows) = if self.test.is_empty() {
            let rows = train.records.len();
            let hold = self.holdout.min(rows / 2);
            if hold < self.holdout {
                tracing::warn!(
                    "data.holdout = {} but {} has {rows} row(s): holding out {hold} (at most \
                     half){}",
                    self.holdout,
                    self.train,
                    if hold == 0 {
                        "; there are no held-out problems, so nothing is evaluated"
                    } else {
                        ""
                    }
                );
            }
            let cut = rows - hold;
            (train.records[..cut].to_vec(), train.records[cut..].to_vec())
        } else {
            if same_file(&self.test, &self.train) {
                tracing::warn!(
                    "data.test is the training file {}: evaluations measure problems the policy \
                     trains on",
                    self.train
                );
            }
            (
                train.records,
                read_columns(Path::new(&self.test), OnBadRow::Fail, &self.columns())?.records,
            )
        };
        Ok(Box::new(FileTask {
            rows: DatasetTask::with_template(&train_rows, &test_rows, &self.template),
            validation: self.validation_sets()?,
        }))
    }
}
