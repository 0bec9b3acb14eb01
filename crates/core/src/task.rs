//! The task contract: a source of prompts with ground truths and the verifier that scores them.

use crate::describe::Describe;
use crate::error::Result;
use crate::reward::Verifier;
use serde::{Deserialize, Serialize};

/// Which part of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    /// Problems to train on.
    Train,
    /// Held-out problems.
    Test,
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// Stable identifier within the task.
    pub id: String,
    /// The prompt text given to the policy (before any chat template).
    pub prompt: String,
    /// The reference answer the verifier compares against.
    pub ground_truth: String,
    /// Origin, used to route to a verifier and to report per-source metrics.
    pub data_source: String,
    /// The whole conversation when the data has more than one user message (a system prompt,
    /// earlier turns), as (role, content); empty = one user message, `prompt`. Chat models see
    /// all of it through their chat template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<(String, String)>,
    /// The row's `extra_info` (verl's per-row data for the reward: test cases, an index, …), given
    /// to reward programs in their items' `extra`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_info: Option<serde_json::Value>,
}

/// A set of problems with their verifier.
pub trait Task: Send + Sync {
    /// The problems of a split, in a deterministic order.
    fn problems(&self, split: Split) -> Result<Vec<Problem>>;
    /// The verifier for this task's responses.
    fn verifier(&self) -> Box<dyn Verifier>;
    /// A correct supervised solution for warm starts, drawn with `seed`, if the task can make one.
    fn solution(&self, _problem: &Problem, _seed: u64) -> Option<String> {
        None
    }
    /// Further held-out sets validated during training (a dataset's `eval_data` files), each
    /// with its name; none by default.
    fn validation_sets(&self) -> Result<Vec<(String, Vec<Problem>)>> {
        Ok(Vec::new())
    }
}

/// Serialisable, tagged configuration of a task (`type = "toy-tree"`).
#[typetag::serde(tag = "type")]
pub trait TaskConfig: Describe + Send + Sync {
    /// Validates and constructs the task.
    fn build(&self) -> Result<Box<dyn Task>>;
}
