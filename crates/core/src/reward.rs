//! The verifier contract: does a response's final answer match the ground truth?

use crate::describe::Describe;
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// How a verification ended. Timeouts and unparseable gold answers are distinct from "wrong".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The extracted answer equals the ground truth.
    Correct,
    /// An answer was found and differs from the ground truth.
    Incorrect,
    /// No answer could be extracted from the response.
    NoAnswer,
    /// The ground truth itself could not be parsed.
    GoldUnparseable,
    /// The comparison exceeded its work budget.
    TimedOut,
}

/// The result of one verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// What happened.
    pub outcome: Outcome,
    /// Reward: 1.0 for correct, 0.0 otherwise (verifiers may give partial credit).
    pub score: f64,
    /// The answer extracted from the response, if any.
    pub extracted: Option<String>,
}

impl Verdict {
    /// A verdict with score 1 for `Correct` and 0 otherwise.
    pub fn new(outcome: Outcome, extracted: Option<String>) -> Verdict {
        let score = if outcome == Outcome::Correct {
            1.0
        } else {
            0.0
        };
        Verdict {
            outcome,
            score,
            extracted,
        }
    }
}

/// One response to score, with what a reward program may want to see (verl's
/// `compute_score(data_source, solution_str, ground_truth, extra_info)`, plus the prompt).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RewardInput<'a> {
    /// The problem's prompt (before any chat template).
    pub prompt: &'a str,
    /// The sampled response.
    pub response: &'a str,
    /// The reference answer.
    pub ground_truth: &'a str,
    /// The problem's origin.
    pub data_source: &'a str,
    /// The problem's identifier (`row-12` for dataset rows).
    pub id: &'a str,
    /// The row's `extra_info`, when the data has one.
    pub extra_info: Option<&'a serde_json::Value>,
}

/// Scores a response against a ground truth. Never panics, bounded in time on any input.
pub trait Verifier: Send + Sync {
    /// Verifies one response.
    fn verify(&self, response: &str, ground_truth: &str) -> Verdict;

    /// Verifies a batch, in order. Reward programs and services answer a whole batch per request
    /// and fail with [`crate::CoreError::Reward`] instead of scoring zero; the default verifies
    /// item by item.
    fn verify_batch(&self, items: &[RewardInput<'_>]) -> Result<Vec<Verdict>> {
        Ok(items
            .iter()
            .map(|i| self.verify(i.response, i.ground_truth))
            .collect())
    }
}

/// Serialisable, tagged configuration of a verifier (`type = "math"`).
#[typetag::serde(tag = "type")]
pub trait VerifierConfig: Describe + Send + Sync {
    /// Validates and constructs the verifier.
    fn build(&self) -> Result<Box<dyn Verifier>>;
}
