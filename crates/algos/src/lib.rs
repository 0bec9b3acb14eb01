//! # rlvr-algos
//!
//! The algorithm library on the core contracts: advantage estimators ([`advantage`]), policy
//! losses and the pieces they are assembled from ([`loss`]), token gates ([`gate`]), DAPO's batch
//! pieces ([`batch`]: overlong shaping, dynamic sampling) and named presets ([`presets`]). Each is registered by name; each cites the paper or code it follows.
//!
//! SimKO (arXiv 2510.14807) is [`loss::simko`]: the PPO clipped surrogate
//! ([`loss::surrogate`]) with a top-K mixture ([`loss::topk_mixture`]), a top-1 penalty
//! ([`loss::top1_penalty`]) and an entropy-quantile gate ([`gate::entropy_quantile`]).

pub mod advantage;
pub mod batch;
pub mod correction;
pub mod gate;
pub mod loss;
pub mod presets;
pub mod util;
