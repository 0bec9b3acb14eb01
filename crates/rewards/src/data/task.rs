//! A dataset as a [`Task`]: the last user message is the prompt, the verifier is routed by
//! `data_source`, and a fixed share of rows is held out as the test split unless a separate test
//! file is given.

use super::Record;
use crate::verifiers::for_data_source;
use rlvr_core::{Outcome, Problem, Split, Task, Verdict, Verifier};

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
            p
        };
        DatasetTask {
            train: train.iter().map(apply).collect(),
            test: test.iter().map(apply).collect(),
        }
    }
}

/// Routes each problem to the verifier of its `data_source` (the ground truth is prefixed with it).
struct Routed;

impl Verifier for Routed {
    fn verify(&self, response: &str, ground_truth: &str) -> Verdict {
        match ground_truth.split_once('\u{1f}') {
            Some((source, gt)) => for_data_source(source).verify(response, gt),
            None => Verdict::new(Outcome::GoldUnparseable, None),
        }
    }
}

impl Task for DatasetTask {
    fn problems(&self, split: Split) -> rlvr_core::Result<Vec<Problem>> {
        let ps = match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        };
        // The verifier needs the source: carry it in the ground truth, separated by U+001F.
        Ok(ps
            .iter()
            .map(|p| Problem {
                ground_truth: format!("{}\u{1f}{}", p.data_source, p.ground_truth),
                ..p.clone()
            })
            .collect())
    }

    fn verifier(&self) -> Box<dyn Verifier> {
        Box::new(Routed)
    }
}
