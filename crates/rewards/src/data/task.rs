//! A dataset as a [`Task`]: the last user message is the prompt, the verifier is chosen by
//! `data_source` ([`SourceRouter`]), and a fixed share of rows is held out as the test split unless a separate test
//! file is given.

use super::Record;
use crate::verifiers::SourceRouter;
use rlvr_core::{Problem, Split, Task, Verifier};

/// Train and test records.
pub struct DatasetTask {
    train: Vec<Problem>,
    test: Vec<Problem>,
}

fn problem(r: &Record) -> Problem {
    let prompt = r.user_prompt();
    Problem {
        id: format!("row-{}", r.row),
        prompt,
        ground_truth: r.ground_truth.clone(),
        data_source: r.data_source.clone(),
        messages: r.conversation(),
        extra_info: r.extra_info.clone(),
    }
}

impl DatasetTask {
    /// A task over `train` rows, testing on `test` rows.
    pub fn new(train: &[Record], test: &[Record]) -> DatasetTask {
        Self::with_template(train, test, "{prompt}")
    }

    /// A task whose prompts are `template` with `{prompt}` replaced by the row's user message
    /// (a plain-text prompt template; chat templates are applied by the model's tokenizer).
    pub fn with_template(train: &[Record], test: &[Record], template: &str) -> DatasetTask {
        let apply = |r: &Record| {
            let mut p = problem(r);
            p.prompt = template.replace("{prompt}", &p.prompt);
            // In a conversation the template applies to its last user message.
            if let Some(last) = p.messages.iter_mut().rev().find(|(role, _)| role == "user") {
                last.1 = template.replace("{prompt}", &last.1);
            }
            p
        };
        DatasetTask {
            train: train.iter().map(apply).collect(),
            test: test.iter().map(apply).collect(),
        }
    }
}

impl Task for DatasetTask {
    fn problems(&self, split: Split) -> rlvr_core::Result<Vec<Problem>> {
        Ok(match split {
            Split::Train => self.train.clone(),
            Split::Test => self.test.clone(),
        })
    }

    /// The built-in choice per `data_source` (a run's `[reward]` table can replace it).
    fn verifier(&self) -> Box<dyn Verifier> {
        Box::new(SourceRouter {
            sources: Default::default(),
            default: None,
        })
    }
}
