//! Token gates (docs/design.md §4): which response tokens a loss piece acts on.

pub mod entropy_quantile;
pub mod simple;
