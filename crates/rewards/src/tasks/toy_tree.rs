//! The toy tree of SimKO (arXiv 2510.14807, Fig. 5): actions A–D, depth 3; the rewarding
//! sequences are ACD, ACB, BDC, BDA, CAB and DBA. One prompt; the answer is the three letters.

use documented::DocumentedFields;
use rlvr_core::{Outcome, Problem, Split, Task, TaskConfig, Verdict, Verifier};
use serde::{Deserialize, Serialize};

/// The rewarding sequences.
pub const REWARDING: [&str; 6] = ["ACD", "ACB", "BDC", "BDA", "CAB", "DBA"];

/// Configuration of the `toy-tree` task.
#[derive(Debug, Clone, Default, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct ToyTreeConfig {}

rlvr_core::describe_fields!(ToyTreeConfig);
rlvr_core::register!(
    task,
    "toy-tree",
    "SimKO's toy tree: actions A-D, depth 3, six rewarding sequences (Fig. 5)",
    ToyTreeConfig
);

/// The task.
#[derive(Debug, Clone, Default)]
pub struct ToyTree;

/// Scores a response: correct when it is one of the rewarding sequences.
#[derive(Debug, Clone, Default)]
pub struct ToyTreeVerifier;

impl Verifier for ToyTreeVerifier {
    fn verify(&self, response: &str, ground_truth: &str) -> Verdict {
        let r = response.trim();
        if r.is_empty() {
            return Verdict::new(Outcome::NoAnswer, None);
        }
        let ok = ground_truth.split(',').any(|g| g.trim() == r);
        Verdict::new(
            if ok {
                Outcome::Correct
            } else {
                Outcome::Incorrect
            },
            Some(r.to_string()),
        )
    }
}

impl Task for ToyTree {
    fn problems(&self, _split: Split) -> rlvr_core::Result<Vec<Problem>> {
        Ok(vec![Problem {
            id: "tree".into(),
            prompt: String::new(),
            ground_truth: REWARDING.join(","),
            data_source: "toy-tree".into(),
            messages: Vec::new(),
            extra_info: None,
        }])
    }

    fn verifier(&self) -> Box<dyn Verifier> {
        Box::new(ToyTreeVerifier)
    }

    fn solution(&self, _problem: &Problem, seed: u64) -> Option<String> {
        Some(REWARDING[(seed % REWARDING.len() as u64) as usize].to_string())
    }
}

#[typetag::serde(name = "toy-tree")]
impl TaskConfig for ToyTreeConfig {
    fn build(&self) -> rlvr_core::Result<Box<dyn Task>> {
        Ok(Box::new(ToyTree))
    }
}

/// Configuration of the `toy-tree` verifier.
#[derive(Debug, Clone, Default, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct ToyTreeVerifierConfig {}

rlvr_core::describe_fields!(ToyTreeVerifierConfig);
rlvr_core::register!(
    verifier,
    "toy-tree",
    "toy tree: the response is one of the comma-separated rewarding sequences",
    ToyTreeVerifierConfig
);

#[typetag::serde(name = "toy-tree")]
impl rlvr_core::VerifierConfig for ToyTreeVerifierConfig {
    fn build(&self) -> rlvr_core::Result<Box<dyn Verifier>> {
        Ok(Box::new(ToyTreeVerifier))
    }
}
