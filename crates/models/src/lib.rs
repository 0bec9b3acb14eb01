//! # rlvr-models
//!
//! Policies the trainer drives (docs/design.md §6): the Llama / Qwen2 / Qwen3 decoder
//! ([`transformer`]) configured from HF `config.json` ([`hf_config`]) and loaded from / saved to HF
//! checkpoint folders ([`checkpoint`]).

pub mod backward;
pub mod batcher;
pub mod checkpoint;
pub mod device;
pub mod error;
pub mod generate;
pub mod hf_config;
pub mod lora;
pub mod policy;
pub mod rollout_record;
pub mod sampling;
pub mod shapes;
pub mod stats_grad;
pub mod tabular;
pub mod threads;
pub mod token_stats;
pub mod tokenizer;
pub mod transformer;

pub use checkpoint::HfModel;
pub use policy::{HfPolicy, TinyModelConfig};
pub use tabular::TabularPolicy;

/// A symbol for binaries to reference so this crate's registrations are linked.
#[doc(hidden)]
pub fn link_anchor() {}
pub use error::{ModelError, Result};
pub use hf_config::HfConfig;
pub use transformer::{KvCache, Transformer};
