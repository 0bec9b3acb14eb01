//! Rollout–trainer mismatch corrections ([`rlvr_core::RolloutCorrection`]): with ρ_t =
//! exp(old_logp_t − rollout_logp_t), the ratio of the trainer's old policy to the engine's
//! sampling policy at token t,
//! - `tis` (truncated importance sampling; Yao et al. 2025, verl `rollout_is` mode "truncate"):
//!   w_t = min(ρ_t, cap);
//! - `mis` (masked importance sampling; verl mode "mask"): w_t = 1[lower ≤ ρ ≤ upper], with ρ the
//!   token's ratio (`level = "token"`), the sequence's product exp(Σ_t log ρ_t)
//!   (`"sequence"`), or its geometric mean exp(mean_t log ρ_t) (`"geometric"`) — a sequence
//!   outside the bounds is masked whole.
//!
//! The weights multiply the per-token loss (before aggregation); padding gets 0.

use documented::DocumentedFields;
use rlvr_core::{CoreError, CorrectionConfig, RolloutCorrection};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Log-ratios log ρ = old − rollout on valid tokens (0 on padding), f32.
fn log_ratio(old: &Tensor, rollout: &Tensor, mask: &Tensor) -> rlvr_core::Result<Tensor> {
    let mask = mask.f_to_kind(Kind::Float)?;
    Ok(old
        .f_to_kind(Kind::Float)?
        .f_sub(&rollout.f_to_kind(Kind::Float)?)?
        .f_mul(&mask)?)
}

/// Truncated importance sampling.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct TisConfig {
    /// The cap C of w = min(ρ, C) (verl's `rollout_is_threshold`; Yao et al. use 2).
    pub cap: f64,
}

impl Default for TisConfig {
    fn default() -> Self {
        TisConfig { cap: 2.0 }
    }
}

rlvr_core::describe_fields!(TisConfig);
rlvr_core::register!(
    correction,
    "tis",
    "truncated importance sampling: weight min(ρ, cap), ρ = π_old/π_rollout per token (Yao et al. 2025)",
    TisConfig
);

#[typetag::serde(name = "tis")]
impl CorrectionConfig for TisConfig {
    fn build(&self) -> rlvr_core::Result<Box<dyn RolloutCorrection>> {
        if !(self.cap.is_finite() && self.cap >= 1.0) {
            return Err(CoreError::invalid(
                "correction.cap",
                self.cap,
                "must be a finite number ≥ 1",
            ));
        }
        Ok(Box::new(self.clone()))
    }
}

impl RolloutCorrection for TisConfig {
    fn weights(&self, old: &Tensor, rollout: &Tensor, mask: &Tensor) -> rlvr_core::Result<Tensor> {
        let mask = mask.f_to_kind(Kind::Float)?;
        Ok(log_ratio(old, rollout, &mask)?
            .f_exp()?
            .f_clamp_max(self.cap)?
            .f_mul(&mask)?
            .f_detach()?)
    }
}

/// Where masked importance sampling decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MisLevel {
    /// Each token by its own ratio.
    #[default]
    Token,
    /// Each response by the product of its tokens' ratios.
    Sequence,
    /// Each response by the geometric mean of its tokens' ratios.
    Geometric,
}

/// Masked importance sampling.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct MisConfig {
    /// token | sequence | geometric: what is masked, by which ratio.
    pub level: MisLevel,
    /// Lowest ratio kept (verl's `rollout_is_threshold_lower`, default 1/upper).
    pub lower: f64,
    /// Highest ratio kept (verl's `rollout_is_threshold`).
    pub upper: f64,
}

impl Default for MisConfig {
    fn default() -> Self {
        MisConfig {
            level: MisLevel::Token,
            lower: 0.5,
            upper: 2.0,
        }
    }
}

rlvr_core::describe_fields!(MisConfig);
rlvr_core::register!(
    correction,
    "mis",
    "masked importance sampling: drop tokens (or whole responses) whose π_old/π_rollout ratio leaves [lower, upper]",
    MisConfig
);

#[typetag::serde(name = "mis")]
impl CorrectionConfig for MisConfig {
    fn build(&self) -> rlvr_core::Result<Box<dyn RolloutCorrection>> {
        let ok = self.lower.is_finite()
            && self.upper.is_finite()
            && self.lower > 0.0
            && self.lower <= 1.0
            && self.upper >= 1.0;
        if !ok {
            return Err(CoreError::invalid(
                "correction",
                format!("lower = {}, upper = {}", self.lower, self.upper),
                "needs 0 < lower ≤ 1 ≤ upper",
            ));
        }
        Ok(Box::new(self.clone()))
    }
}

impl RolloutCorrection for MisConfig {
    fn weights(&self, old: &Tensor, rollout: &Tensor, mask: &Tensor) -> rlvr_core::Result<Tensor> {
        let mask = mask.f_to_kind(Kind::Float)?;
        let lr = log_ratio(old, rollout, &mask)?;
        let (lo, hi) = (self.lower.ln(), self.upper.ln());
        let inside = |x: &Tensor| -> rlvr_core::Result<Tensor> {
            Ok(x.f_ge(lo)?
                .f_logical_and(&x.f_le(hi)?)?
                .f_to_kind(Kind::Float)?)
        };
        let keep = match self.level {
            MisLevel::Token => inside(&lr)?,
            MisLevel::Sequence => inside(&lr.f_sum_dim_intlist(-1, true, Kind::Float)?)?,
            MisLevel::Geometric => {
                let n = mask
                    .f_sum_dim_intlist(-1, true, Kind::Float)?
                    .f_clamp_min(1.0)?;
                inside(&lr.f_sum_dim_intlist(-1, true, Kind::Float)?.f_div(&n)?)?
            }
        };
        Ok(keep.f_mul(&mask)?.f_detach()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rows: &[&[f64]]) -> Tensor {
        let flat: Vec<f32> = rows
            .iter()
            .flat_map(|r| r.iter().map(|&x| x as f32))
            .collect();
        Tensor::from_slice(&flat).view([rows.len() as i64, rows[0].len() as i64])
    }

    fn values(x: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(x.to_kind(Kind::Double).view([-1])).unwrap()
    }

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    // Ratios by hand: row 0 has log ρ = ln 0.25, 0, ln 3; row 1 ln 1.5, ln 0.8, (padding).
    fn inputs() -> (Tensor, Tensor, Tensor) {
        let old = t(&[
            &[0.25f64.ln(), -1.0, 3f64.ln() - 2.0],
            &[1.5f64.ln(), 0.8f64.ln(), 9.0],
        ]);
        let rollout = t(&[&[0.0, -1.0, -2.0], &[0.0, 0.0, 0.0]]);
        let mask = t(&[&[1.0, 1.0, 1.0], &[1.0, 1.0, 0.0]]);
        (old, rollout, mask)
    }

    #[test]
    fn tis_caps_the_ratio_and_zeroes_padding() {
        let (old, rollout, mask) = inputs();
        let w = TisConfig { cap: 2.0 }
            .weights(&old, &rollout, &mask)
            .unwrap();
        close(&values(&w), &[0.25, 1.0, 2.0, 1.5, 0.8, 0.0]);
        assert!(TisConfig { cap: 0.5 }.build().is_err());
    }

    #[test]
    fn mis_masks_tokens_sequences_and_geometric_means_outside_the_bounds() {
        let (old, rollout, mask) = inputs();
        let mis = |level| MisConfig {
            level,
            lower: 0.5,
            upper: 2.0,
        };
        let w = mis(MisLevel::Token).weights(&old, &rollout, &mask).unwrap();
        close(&values(&w), &[0.0, 1.0, 0.0, 1.0, 1.0, 0.0]);
        // Row 0: product 0.25·1·3 = 0.75 (kept); row 1: 1.5·0.8 = 1.2 (kept).
        let w = mis(MisLevel::Sequence)
            .weights(&old, &rollout, &mask)
            .unwrap();
        close(&values(&w), &[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
        // A tighter window: row 0's product 0.75 < 0.8 is masked whole; row 1's 1.2 is kept.
        let tight = MisConfig {
            level: MisLevel::Sequence,
            lower: 0.8,
            upper: 1.25,
        };
        let w = tight.weights(&old, &rollout, &mask).unwrap();
        close(&values(&w), &[0.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
        // Geometric means: row 0 0.75^(1/3) = 0.909, row 1 1.2^(1/2) = 1.095: both in
        // [0.95, 1.25]? row 0 is not.
        let geo = MisConfig {
            level: MisLevel::Geometric,
            lower: 0.95,
            upper: 1.25,
        };
        let w = geo.weights(&old, &rollout, &mask).unwrap();
        close(&values(&w), &[0.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
        assert!(MisConfig {
            lower: 1.5,
            ..Default::default()
        }
        .build()
        .is_err());
    }
}
