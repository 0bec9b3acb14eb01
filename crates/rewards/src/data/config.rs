//! The `dataset` task: a run's `[data]` table (or `[task] type = "dataset"`) — dataset files as a
//! registered [`Task`], so every run has a task and one code path loads its problems.

use super::task::DatasetTask;
use super::{read, DataError, OnBadRow};
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
}

impl Default for DatasetConfig {
    fn default() -> Self {
        DatasetConfig {
            train: String::new(),
            test: String::new(),
            holdout: 100,
            template: "{prompt}".into(),
            eval_data: Vec::new(),
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

impl DatasetConfig {
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
            let records = read(path, OnBadRow::Fail)?.records;
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
        if !self.template.contains("{prompt}") {
            return Err(CoreError::Input(format!(
                "data.template must contain {{prompt}}, got {:?}",
                self.template
            )));
        }
        let train = read(Path::new(&self.train), OnBadRow::Fail)?;
        let (train_rows, test_rows) = if self.test.is_empty() {
            let hold = self.holdout.min(train.records.len() / 2);
            let cut = train.records.len() - hold;
            (train.records[..cut].to_vec(), train.records[cut..].to_vec())
        } else {
            (
                train.records,
                read(Path::new(&self.test), OnBadRow::Fail)?.records,
            )
        };
        Ok(Box::new(FileTask {
            rows: DatasetTask::with_template(&train_rows, &test_rows, &self.template),
            validation: self.validation_sets()?,
        }))
    }
}
