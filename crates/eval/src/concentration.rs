//! Probability-concentration diagnostics of SimKO (arXiv 2510.14807, §3 and Fig. 1/3): over the
//! response tokens of sampled responses, Λ(n) = mean log-probability of the rank-n candidate
//! (n = 1..5), the average probability of the rank-n candidate (the paper's bar chart), the mean
//! log-probability of the sampled token and a histogram of token entropies.
//!
//! RL with verifiable rewards tends to raise Λ(1) and lower Λ(n ≥ 2) — probability concentrates on
//! the top-1 candidate; SimKO is designed to counter that.

use anyhow::{bail, Result};
use rlvr_core::TokenStats;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Number of ranked candidates reported.
pub const RANKS: usize = 5;

/// Fixed entropy bins (nats) so that histograms of different runs compare: `BINS` bins of
/// `BIN_WIDTH`, the last one open-ended.
const BINS: usize = 30;
const BIN_WIDTH: f64 = 0.2;

/// A histogram with explicit bin edges (`edges.len() == counts.len() + 1`; the last bin also
/// holds everything above its upper edge).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Bin edges, ascending.
    pub edges: Vec<f64>,
    /// Counts per bin.
    pub counts: Vec<u64>,
}

impl Histogram {
    /// Fraction of the total in each bin (zeros when empty).
    pub fn density(&self) -> Vec<f64> {
        let total: u64 = self.counts.iter().sum();
        self.counts
            .iter()
            .map(|&c| {
                if total == 0 {
                    0.0
                } else {
                    c as f64 / total as f64
                }
            })
            .collect()
    }
}

/// The diagnostics of one set of responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Concentration {
    /// Response tokens the statistics are over.
    pub tokens: u64,
    /// Λ(n) for n = 1..: mean log-probability of the rank-n candidate.
    #[serde(with = "crate::nonfinite::vec")]
    pub lambda: Vec<f64>,
    /// Mean probability of the rank-n candidate.
    #[serde(with = "crate::nonfinite::vec")]
    pub rank_prob: Vec<f64>,
    /// Mean log-probability of the sampled token.
    #[serde(with = "crate::nonfinite::value")]
    pub sampled_logp: f64,
    /// Mean token entropy (nats).
    #[serde(with = "crate::nonfinite::value")]
    pub entropy_mean: f64,
    /// Token-entropy histogram (nats).
    pub entropy_hist: Histogram,
}

/// Accumulates [`Concentration`] over batches of token statistics.
#[derive(Debug, Clone)]
pub struct ConcentrationAccumulator {
    tokens: u64,
    logp_sum: Vec<f64>,
    prob_sum: Vec<f64>,
    sampled_sum: f64,
    entropy_sum: f64,
    counts: Vec<u64>,
}

impl Default for ConcentrationAccumulator {
    fn default() -> Self {
        ConcentrationAccumulator {
            tokens: 0,
            logp_sum: Vec::new(),
            prob_sum: Vec::new(),
            sampled_sum: 0.0,
            entropy_sum: 0.0,
            counts: vec![0; BINS],
        }
    }
}

fn masked_sum(x: &Tensor, mask: &Tensor) -> f64 {
    (x.to_kind(Kind::Double) * mask.to_kind(Kind::Double))
        .sum(Kind::Double)
        .double_value(&[])
}

impl ConcentrationAccumulator {
    /// The token statistics [`ConcentrationAccumulator::add`] needs from a policy with a
    /// vocabulary of `vocab_size` tokens: the entropy and the top-[`RANKS`] log-probs (fewer for a
    /// smaller vocabulary).
    pub fn needs(vocab_size: i64) -> rlvr_core::StatsNeeds {
        rlvr_core::StatsNeeds {
            entropy: true,
            entropy_grad: false,
            topk: RANKS.min(vocab_size.max(1) as usize),
            top1: false,
            reference: false,
        }
    }

    /// Adds the tokens where `mask` (`[B, T]`) is 1. `stats` must hold the top-k log-probs (any
    /// k ≥ 1; ranks beyond it are not reported) and the entropy.
    pub fn add(&mut self, stats: &TokenStats, mask: &Tensor) -> Result<()> {
        let (Some(topk), Some(entropy)) = (&stats.topk_logp, &stats.entropy) else {
            bail!("concentration diagnostics need the top-k log-probs and the entropy");
        };
        if topk.dim() != 3 || topk.size()[..2] != mask.size()[..] {
            bail!(
                "top-k log-probs {:?} do not match the mask {:?}",
                topk.size(),
                mask.size()
            );
        }
        let ranks = (topk.size()[2] as usize).min(RANKS);
        if self.logp_sum.is_empty() {
            self.logp_sum = vec![0.0; ranks];
            self.prob_sum = vec![0.0; ranks];
        } else if self.logp_sum.len() != ranks {
            bail!(
                "batches with different numbers of ranks ({} and {ranks})",
                self.logp_sum.len()
            );
        }
        let mask = mask.to_kind(Kind::Float).to_device(tch::Device::Cpu);
        let topk = topk.detach().to_device(tch::Device::Cpu);
        for r in 0..ranks {
            let lp = topk.select(-1, r as i64);
            self.logp_sum[r] += masked_sum(&lp, &mask);
            self.prob_sum[r] += masked_sum(&lp.exp(), &mask);
        }
        self.sampled_sum += masked_sum(&stats.logp.detach().to_device(tch::Device::Cpu), &mask);
        let entropy = entropy.detach().to_device(tch::Device::Cpu);
        self.entropy_sum += masked_sum(&entropy, &mask);
        let selected = entropy.masked_select(&mask.gt(0.5));
        let values: Vec<f32> = Vec::try_from(selected.to_kind(Kind::Float))?;
        for v in values {
            let bin = if v.is_finite() && v > 0.0 {
                ((v as f64 / BIN_WIDTH) as usize).min(BINS - 1)
            } else {
                0
            };
            self.counts[bin] += 1;
        }
        self.tokens += mask.sum(Kind::Double).double_value(&[]).round() as u64;
        Ok(())
    }

    /// The running sums as numbers (for sending to other data-parallel ranks): tokens, sampled
    /// and entropy sums, ranks, the per-rank log-prob and prob sums, the histogram counts.
    pub fn to_sums(&self) -> Vec<f64> {
        let mut v = vec![
            self.tokens as f64,
            self.sampled_sum,
            self.entropy_sum,
            self.logp_sum.len() as f64,
        ];
        v.extend(&self.logp_sum);
        v.extend(&self.prob_sum);
        v.extend(self.counts.iter().map(|&c| c as f64));
        v
    }

    /// Adds sums written by [`ConcentrationAccumulator::to_sums`] (another rank's tokens).
    pub fn add_sums(&mut self, v: &[f64]) -> Result<()> {
        let ranks = v.get(3).copied().unwrap_or(-1.0);
        if ranks < 0.0 || v.len() != 4 + 2 * ranks as usize + BINS {
            bail!("concentration sums of {} numbers are malformed", v.len());
        }
        let ranks = ranks as usize;
        if ranks > 0 {
            if self.logp_sum.is_empty() {
                self.logp_sum = vec![0.0; ranks];
                self.prob_sum = vec![0.0; ranks];
            } else if self.logp_sum.len() != ranks {
                bail!(
                    "batches with different numbers of ranks ({} and {ranks})",
                    self.logp_sum.len()
                );
            }
        }
        self.tokens += v[0].round() as u64;
        self.sampled_sum += v[1];
        self.entropy_sum += v[2];
        for r in 0..ranks {
            self.logp_sum[r] += v[4 + r];
            self.prob_sum[r] += v[4 + ranks + r];
        }
        for (c, x) in self.counts.iter_mut().zip(&v[4 + 2 * ranks..]) {
            *c += x.round() as u64;
        }
        Ok(())
    }

    /// The means so far (zeros when no token was added).
    pub fn finish(&self) -> Concentration {
        let den = self.tokens.max(1) as f64;
        Concentration {
            tokens: self.tokens,
            lambda: self.logp_sum.iter().map(|s| s / den).collect(),
            rank_prob: self.prob_sum.iter().map(|s| s / den).collect(),
            sampled_logp: self.sampled_sum / den,
            entropy_mean: self.entropy_sum / den,
            entropy_hist: Histogram {
                edges: (0..=BINS).map(|i| i as f64 * BIN_WIDTH).collect(),
                counts: self.counts.clone(),
            },
        }
    }
}
