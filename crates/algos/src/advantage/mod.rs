//! Advantage estimators (docs/design.md §4), each registered by name.

pub mod grpo;
pub mod outcome;
pub mod passk;
pub mod pkpo;
pub mod reinforce_pp;
pub mod rloo;

use crate::util::{per_row, to_vec_f64};
use rlvr_core::{AdvantageInput, Result};
use tch::Tensor;

/// Applies a per-response rule to the scores and broadcasts the result over valid tokens.
pub(crate) fn per_response(
    input: &AdvantageInput<'_>,
    f: impl Fn(&[f64], &[Vec<usize>]) -> Result<Vec<f64>>,
) -> Result<Tensor> {
    let scores = to_vec_f64(input.scores)?;
    let groups = crate::util::groups(input.group)?;
    let adv = f(&scores, &groups)?;
    crate::util::broadcast_rows(&per_row(&adv, input.mask)?, input.mask)
}
