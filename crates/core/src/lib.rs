//! # rlvr-core
//!
//! The contracts of rlvr (docs/design.md §1–§5): the traits that algorithms, models and rewards
//! implement ([`PolicyLoss`], [`AdvantageEstimator`], [`TokenGate`], [`Policy`], [`Verifier`],
//! [`Task`]), the tensors they exchange ([`TokenStats`], [`LossInput`], ...), the canonical
//! token-statistics constructor, link-time registries, tagged configuration and errors.
//!
//! Of the workspace it depends only on rlvr-kernels (the C++ shim below everything).

pub mod advantage;
pub mod algo;
pub mod atomic;
pub mod batch;
pub mod calendar;
pub mod correction;
pub mod describe;
pub mod error;
pub mod gate;
pub mod loss;
pub mod memory;
pub mod policy;
pub mod progress;
pub mod registry;
pub mod reward;
pub mod shard;
pub mod stats;
pub mod task;
pub mod testing;
pub mod toml_doc;

pub use advantage::{AdvantageConfig, AdvantageEstimator, AdvantageInput};
pub use algo::{AlgoConfig, Algorithm};
pub use batch::{FilterConfig, GroupFilter, RewardShaping, ShapingConfig};
pub use correction::{CorrectionConfig, RolloutCorrection};
pub use describe::Describe;
pub use error::{CoreError, Result};
pub use gate::{GateConfig, GateInput, TokenGate};
pub use loss::{
    Aggregation, GlobalCounts, LossConfig, LossInput, LossOutput, PolicyLoss, TokenMetric,
};
pub use policy::{
    FinishReason, ForwardRecord, Generation, ModelConfig, Policy, SamplingConfig, SequenceBatch,
    TextCodec,
};
pub use registry::{ComponentKind, Registration};
pub use reward::{Outcome, RewardInput, Verdict, Verifier, VerifierConfig};
pub use shard::{NoHooks, ParamPart, ShardHooks};
pub use stats::{token_stats_from_logits, StatsNeeds, TokenStats};
pub use task::{Problem, Split, Task, TaskConfig};

#[doc(hidden)]
pub use documented;
#[doc(hidden)]
pub use inventory;
