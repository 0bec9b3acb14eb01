//! # rlvr-train
//!
//! rlvr's trainer as a library (docs/design.md §2.1): the run configuration ([`config`]), the run
//! session every command opens from it ([`session::Session`]: policy, tokenizer, problems,
//! verifier, sampling), the RL step
//! in named phases — [`experience::make_experience`] (rollout → scores → advantages →
//! old/reference statistics → diagnostics) and the actor's [`actor::Actor::update`] (epochs,
//! mini-batches, micro-batches, one [`optim::optimizer_step`] per mini-batch) — the loop around
//! them ([`trainer::fit`]: run folder, checkpoints, resume, before/after evaluation), supervised
//! warm starts ([`sft`]), evaluation runs ([`evaluation`]), sweeps ([`sweep`]), and the metric log
//! (`metrics.jsonl` + TensorBoard, [`metrics`]), and asynchronous rollouts with bounded
//! staleness ([`pipeline`], [`async_rollout`], [`asynchronous`]).
//!
//! It prints nothing: callers observe a run through a [`trainer::Reporter`]. Errors are
//! [`TrainError`], which tells usage errors from run-time failures.

pub mod actor;
pub mod advantages;
pub mod async_rollout;
pub mod asynchronous;
pub mod buckets;
pub mod build_info;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod distributed;
pub mod engine;
pub mod error;
pub mod evaluation;
pub mod experience;
pub mod fingerprint;
pub mod metrics;
pub mod optim;
pub mod padding;
pub mod param_shards;
pub mod pipeline;
pub mod plan;
pub mod rollout;
pub mod run_dir;
pub mod session;
pub mod sft;
pub mod sharding;
pub mod spool;
pub mod summary;
pub mod sweep;
pub mod trainer;

pub use actor::Actor;
pub use config::{RunConfig, TrainConfig};
pub use error::{Result, TrainError};
pub use experience::{make_experience, Experience};
pub use metrics::{Metrics, MetricsLog, Reduce};
pub use session::{Placement, Session};
pub use trainer::{fit, resume, Reporter, Silent, Trainer};
