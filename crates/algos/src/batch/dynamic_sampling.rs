//! DAPO's dynamic sampling (arXiv 2503.14476, §3.2; verl's `algorithm.filter_groups`): a group
//! whose responses all got the same score has zero advantages under group normalisation and
//! teaches nothing, so it is dropped and the batch is refilled from extra prompts. rlvr samples
//! `oversample` × the step's prompts in one rollout and keeps the first `prompts_per_step` groups
//! whose scores differ (fewer when not enough do; `rollout/kept_groups` reports it).

use documented::DocumentedFields;
use rlvr_core::{CoreError, FilterConfig, GroupFilter};
use serde::{Deserialize, Serialize};

/// Configuration of dynamic sampling.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct DynamicSamplingConfig {
    /// Prompts sampled per step, as a multiple of `train.prompts_per_step` (the refill bound;
    /// DAPO keeps generating until the batch is full, up to verl's `max_num_gen_batches`).
    pub oversample: f64,
}

impl Default for DynamicSamplingConfig {
    fn default() -> Self {
        DynamicSamplingConfig { oversample: 2.0 }
    }
}

rlvr_core::describe_fields!(DynamicSamplingConfig);
rlvr_core::register!(
    filter,
    "dynamic-sampling",
    "DAPO's dynamic sampling: drop groups whose scores are all equal, refill from extra prompts",
    DynamicSamplingConfig
);

#[typetag::serde(name = "dynamic-sampling")]
impl FilterConfig for DynamicSamplingConfig {
    fn build(&self) -> rlvr_core::Result<Box<dyn GroupFilter>> {
        if !(self.oversample.is_finite() && (1.0..=16.0).contains(&self.oversample)) {
            return Err(CoreError::invalid(
                "filter.oversample",
                self.oversample,
                "must be in [1, 16]",
            ));
        }
        Ok(Box::new(self.clone()))
    }
}

impl GroupFilter for DynamicSamplingConfig {
    fn oversample(&self) -> f64 {
        self.oversample
    }

    fn keep(&self, group_scores: &[f64]) -> bool {
        group_scores
            .first()
            .is_some_and(|first| group_scores.iter().any(|s| s != first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_groups_whose_scores_differ() {
        let f = DynamicSamplingConfig::default();
        assert!(f.keep(&[1.0, 0.0, 1.0]));
        assert!(!f.keep(&[1.0, 1.0, 1.0]));
        assert!(!f.keep(&[0.0, 0.0]));
        assert!(!f.keep(&[]));
        assert!(DynamicSamplingConfig { oversample: 0.5 }.build().is_err());
    }
}
