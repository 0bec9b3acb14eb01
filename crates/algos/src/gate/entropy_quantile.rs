//! Entropy-quantile gate: w = 1[H > q_τ], q_τ the τ-quantile (linear interpolation, as
//! `torch.quantile`) of the current entropy over the valid tokens of each response (SimKO, arXiv
//! 2510.14807, official `row_quantile_masked`) or of the whole batch (the "80/20" forking-token
//! method, Wang et al. 2025, arXiv 2506.01939). τ = 0.8 keeps about the top 20% entropy tokens.

use crate::util::{check, to_vec_f64};
use documented::DocumentedFields;
use rlvr_core::{GateConfig, GateInput, Result, StatsNeeds, TokenGate};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Over which tokens the quantile is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateScope {
    /// Each response's own valid tokens (SimKO).
    Response,
    /// All valid tokens of the (micro-)batch (forking tokens).
    Batch,
}

/// Configuration of the `entropy-quantile` gate.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct EntropyQuantileConfig {
    /// Quantile τ in [0, 1]: tokens above the τ-quantile of entropy pass (1 passes none, 0 all but the minimum).
    pub tau: f64,
    /// Quantile scope: response (per response, SimKO) | batch (whole batch, forking tokens).
    pub scope: GateScope,
    /// Strict comparison H > q (official SimKO); false uses H >= q.
    pub strict: bool,
}

impl Default for EntropyQuantileConfig {
    fn default() -> Self {
        EntropyQuantileConfig {
            tau: 0.8,
            scope: GateScope::Response,
            strict: true,
        }
    }
}

rlvr_core::describe_fields!(EntropyQuantileConfig);
rlvr_core::register!(
    gate,
    "entropy-quantile",
    "tokens whose entropy exceeds the τ-quantile, per response or per batch (SimKO; Wang et al. 2025)",
    EntropyQuantileConfig
);

#[typetag::serde(name = "entropy-quantile")]
impl GateConfig for EntropyQuantileConfig {
    fn build(&self) -> Result<Box<dyn TokenGate>> {
        check(
            (0.0..=1.0).contains(&self.tau),
            "gate.tau",
            self.tau,
            "must be in [0, 1]",
        )?;
        Ok(Box::new(self.clone()))
    }
}

/// The τ-quantile of `xs` with linear interpolation (`torch.quantile`'s default).
pub fn quantile(xs: &mut [f64], tau: f64) -> f64 {
    if xs.is_empty() {
        return f64::INFINITY;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let pos = tau * (xs.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    xs[lo] + (pos - lo as f64) * (xs[hi] - xs[lo])
}

impl TokenGate for EntropyQuantileConfig {
    fn needs(&self) -> StatsNeeds {
        StatsNeeds {
            entropy: true,
            ..Default::default()
        }
    }

    fn weights(&self, input: &GateInput<'_>) -> Result<Tensor> {
        let entropy = input.stats.require_entropy()?.detach();
        let size = entropy.size();
        let (b, t) = (size[0] as usize, size[1] as usize);
        let h = to_vec_f64(&entropy)?;
        let m = to_vec_f64(input.mask)?;
        let (h, m) = (&h, &m);
        let row = move |r: usize| -> Vec<f64> {
            (0..t)
                .filter(|&j| m[r * t + j] > 0.0)
                .map(|j| h[r * t + j])
                .collect()
        };
        let thresholds: Vec<f64> = match self.scope {
            GateScope::Response => (0..b)
                .map(|r| {
                    let mut xs = row(r);
                    if xs.is_empty() {
                        // As the official code: a response without valid tokens uses its whole row.
                        xs = h[r * t..(r + 1) * t].to_vec();
                    }
                    quantile(&mut xs, self.tau)
                })
                .collect(),
            GateScope::Batch => {
                let mut xs: Vec<f64> = (0..b).flat_map(row).collect();
                vec![quantile(&mut xs, self.tau); b]
            }
        };
        // Compare in the entropy's own precision, as torch does.
        let q = Tensor::from_slice(&thresholds)
            .f_to_kind(entropy.kind())?
            .f_to_device(entropy.device())?
            .f_unsqueeze(-1)?;
        let pass = if self.strict {
            entropy.f_gt_tensor(&q)?
        } else {
            entropy.f_ge_tensor(&q)?
        };
        Ok(pass.f_to_kind(Kind::Float)?.f_mul(input.mask)?)
    }
}
