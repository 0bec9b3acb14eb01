//! # rlvr-eval
//!
//! Evaluation of RLVR policies (docs/design.md §8): the unbiased pass@K estimator, the SimKO paper's
//! probability-concentration diagnostics, JSON/markdown reports, mean ± std summaries and plots
//! (PNG and SVG, drawn with a bundled font so no system font is needed).
//!
//! This crate depends only on `rlvr-core`; sampling responses is the caller's business.

pub mod concentration;
pub mod figures;
pub mod nonfinite;
pub mod paired;
pub mod passk;
pub mod plot;
pub mod report;
pub mod summary;

pub use concentration::{Concentration, ConcentrationAccumulator, Histogram, RANKS};
pub use passk::{ks, pass_at_k};
pub use report::{EvalReport, ProblemResult, SourceReport};
pub use summary::MeanStd;
