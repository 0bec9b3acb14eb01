//! DAPO's soft overlong punishment (arXiv 2503.14476, eq. 13; verl's `reward_model.overlong_buffer`):
//! with L_max the response limit and L_cache the buffer, a response of |y| tokens gets
//!
//! ```text
//! R_length(y) = 0                                  if |y| ≤ L_max − L_cache
//!             = ((L_max − L_cache) − |y|) / L_cache  if L_max − L_cache < |y| ≤ L_max
//!             = −1                                 if |y| > L_max
//! ```
//!
//! times `penalty_factor`, added to its verifier score.

use documented::DocumentedFields;
use rlvr_core::{CoreError, RewardShaping, ShapingConfig};
use serde::{Deserialize, Serialize};

/// Configuration of the overlong penalty.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct OverlongConfig {
    /// L_cache: tokens before the length limit over which the penalty grows from 0 to 1;
    /// 0 = a fifth of the limit (DAPO: 4096 of 20480).
    pub buffer: i64,
    /// L_max in tokens; 0 = the run's `train.max_new_tokens`.
    pub max_len: i64,
    /// Scale of the penalty (verl's `penalty_factor`).
    pub penalty_factor: f64,
}

impl Default for OverlongConfig {
    fn default() -> Self {
        OverlongConfig {
            buffer: 0,
            max_len: 0,
            penalty_factor: 1.0,
        }
    }
}

rlvr_core::describe_fields!(OverlongConfig);
rlvr_core::register!(
    shaping,
    "overlong",
    "DAPO's soft overlong punishment: a penalty growing to 1 over the last `buffer` tokens",
    OverlongConfig
);

#[typetag::serde(name = "overlong")]
impl ShapingConfig for OverlongConfig {
    fn build(&self) -> rlvr_core::Result<Box<dyn RewardShaping>> {
        if self.buffer < 0 {
            return Err(CoreError::invalid(
                "shaping.buffer",
                self.buffer,
                "must be >= 0 (0 = a fifth of the limit)",
            ));
        }
        if self.max_len < 0 {
            return Err(CoreError::invalid(
                "shaping.max_len",
                self.max_len,
                "must be >= 0 (0 = train.max_new_tokens)",
            ));
        }
        if !(self.penalty_factor.is_finite() && self.penalty_factor >= 0.0) {
            return Err(CoreError::invalid(
                "shaping.penalty_factor",
                self.penalty_factor,
                "must be a finite number >= 0",
            ));
        }
        Ok(Box::new(self.clone()))
    }
}

impl OverlongConfig {
    /// R_length of a response of `len` tokens under limit `max_len` (eq. 13, before the factor).
    pub fn penalty(&self, len: i64, max_len: i64) -> f64 {
        let buffer = if self.buffer > 0 {
            self.buffer
        } else {
            (max_len / 5).max(1)
        };
        let start = max_len - buffer;
        if len <= start {
            0.0
        } else if len <= max_len {
            (start - len) as f64 / buffer as f64
        } else {
            -1.0
        }
    }
}

impl RewardShaping for OverlongConfig {
    fn shape(
        &self,
        scores: &[f64],
        lengths: &[i64],
        max_new_tokens: i64,
    ) -> rlvr_core::Result<Vec<f64>> {
        if scores.len() != lengths.len() {
            return Err(CoreError::Shape(format!(
                "overlong: {} scores but {} lengths",
                scores.len(),
                lengths.len()
            )));
        }
        let max_len = if self.max_len > 0 {
            self.max_len
        } else {
            max_new_tokens
        };
        Ok(scores
            .iter()
            .zip(lengths)
            .map(|(s, &l)| s + self.penalty_factor * self.penalty(l, max_len))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_eq_13() {
        let c = OverlongConfig {
            buffer: 4,
            max_len: 20,
            penalty_factor: 1.0,
        };
        // L_max − L_cache = 16.
        assert_eq!(c.penalty(10, 20), 0.0);
        assert_eq!(c.penalty(16, 20), 0.0);
        assert_eq!(c.penalty(17, 20), -0.25);
        assert_eq!(c.penalty(20, 20), -1.0);
        assert_eq!(c.penalty(21, 20), -1.0);
        let shaped = OverlongConfig {
            penalty_factor: 0.5,
            ..c
        }
        .shape(&[1.0, 0.0, 1.0], &[3, 18, 20], 99)
        .unwrap();
        assert_eq!(shaped, vec![1.0, -0.25, 0.5]);
        // max_len = 0 takes the run's limit; buffer = 0 a fifth of it (here 2 of 10).
        let run = OverlongConfig::default();
        assert_eq!(
            run.shape(&[1.0, 1.0, 1.0], &[8, 9, 10], 10).unwrap(),
            vec![1.0, 0.5, 0.0]
        );
    }
}
