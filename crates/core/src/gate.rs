//! The token-gate contract: which response tokens a loss piece acts on.

use crate::describe::Describe;
use crate::error::Result;
use crate::stats::{StatsNeeds, TokenStats};
use tch::Tensor;

/// What a gate sees: the current token statistics and the batch layout.
#[derive(Debug)]
pub struct GateInput<'a> {
    /// Current-policy statistics (with whatever the gate declared in [`TokenGate::needs`]).
    pub stats: &'a TokenStats,
    /// 1 for valid response tokens, `[B, T]` f32.
    pub mask: &'a Tensor,
    /// Sampled token ids, `[B, T]` i64.
    pub tokens: &'a Tensor,
    /// 1.0 for responses cut at the length limit, `[B]` f32, when known.
    pub truncated: Option<&'a Tensor>,
}

/// Per-token weights in `[0, 1]`, `[B, T]` f32, computed without gradient. A gate never reads
/// padding: weights there are 0.
pub trait TokenGate: Send + Sync {
    /// Statistics the gate needs from the policy.
    fn needs(&self) -> StatsNeeds {
        StatsNeeds::default()
    }
    /// The gate weights `[B, T]`.
    fn weights(&self, input: &GateInput<'_>) -> Result<Tensor>;
}

/// Serialisable, tagged configuration of a token gate (`type = "entropy-quantile"`).
#[typetag::serde(tag = "type")]
pub trait GateConfig: Describe + Send + Sync {
    /// Validates and constructs the gate.
    fn build(&self) -> Result<Box<dyn TokenGate>>;
}
