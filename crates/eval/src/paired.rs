//! Paired comparisons across seeds: for runs of two configurations paired by seed, the mean
//! difference of a metric with a 95% Student-t interval (mean ± t₀.₉₇₅,ₙ₋₁ · s/√n, s the sample
//! standard deviation of the differences), so "better" can mean "the interval excludes zero".
//! With the few seeds RL studies run, the t interval is the honest choice: a percentile bootstrap
//! of three differences has at most ten distinct resampled means and is too narrow.

use crate::report::EvalReport;
use std::fmt::Write;

/// t₀.₉₇₅ for 1–30 degrees of freedom (standard tables, e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2).
const T975: [f64; 30] = [
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157,
    2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922,
    2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831,
    2.048407, 2.045230, 2.042272,
];

/// The 97.5% quantile of Student's t with `df` ≥ 1 degrees of freedom: the table up to 30, then
/// the Cornish–Fisher expansion around the normal quantile (error below 1e-4 there).
pub fn t_quantile_975(df: usize) -> f64 {
    if df == 0 {
        return f64::INFINITY;
    }
    if df <= T975.len() {
        return T975[df - 1];
    }
    let z = 1.959_963_984_540_054_f64;
    let n = df as f64;
    z + (z.powi(3) + z) / (4.0 * n)
        + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * n * n)
}

/// The mean of paired differences and its 95% t interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PairedInterval {
    /// Number of pairs.
    pub n: usize,
    /// Mean difference.
    pub mean: f64,
    /// Lower end of the 95% interval.
    pub lo: f64,
    /// Upper end of the 95% interval.
    pub hi: f64,
}

impl PairedInterval {
    /// The interval of `diffs`; `None` with fewer than two pairs (no spread to estimate).
    pub fn of(diffs: &[f64]) -> Option<PairedInterval> {
        let n = diffs.len();
        if n < 2 {
            return None;
        }
        let mean = diffs.iter().sum::<f64>() / n as f64;
        let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let half = t_quantile_975(n - 1) * (var / n as f64).sqrt();
        Some(PairedInterval {
            n,
            mean,
            lo: mean - half,
            hi: mean + half,
        })
    }

    /// Whether zero lies outside the interval (a difference at the 5% level).
    pub fn excludes_zero(&self) -> bool {
        self.lo > 0.0 || self.hi < 0.0
    }

    /// `+0.012 [-0.004, +0.028]`, in bold when the interval excludes zero.
    pub fn display(&self, digits: usize) -> String {
        let text = format!(
            "{:+.digits$} [{:+.digits$}, {:+.digits$}]",
            self.mean, self.lo, self.hi
        );
        if self.excludes_zero() {
            format!("**{text}**")
        } else {
            text
        }
    }
}

/// Runs of one configuration, each with its pairing key (e.g. its seed).
pub type Keyed<'a> = Vec<(String, &'a EvalReport)>;

/// The differences `group − baseline` of `metric` over the keys both have, in the group's order.
fn diffs(
    group: &Keyed<'_>,
    baseline: &Keyed<'_>,
    metric: &dyn Fn(&EvalReport) -> Option<f64>,
) -> Vec<f64> {
    group
        .iter()
        .filter_map(|(key, r)| {
            let b = baseline.iter().find(|(k, _)| k == key)?.1;
            Some(metric(r)? - metric(b)?)
        })
        .collect()
}

/// One group against the baseline: mean@n and pass@K for each `k`, paired by key.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PairedRow {
    /// The group's label.
    pub label: String,
    /// Pairs found (keys present in both).
    pub pairs: usize,
    /// Δ mean@n.
    pub mean_at_n: Option<PairedInterval>,
    /// Δ pass@K per K.
    pub pass_at_k: Vec<(usize, Option<PairedInterval>)>,
}

/// Paired rows of every group against `baseline` for the given `ks`.
pub fn paired_rows(
    baseline: &Keyed<'_>,
    groups: &[(String, Keyed<'_>)],
    ks: &[usize],
) -> Vec<PairedRow> {
    groups
        .iter()
        .map(|(label, g)| {
            let mean = diffs(g, baseline, &|r| Some(r.mean_at_n));
            PairedRow {
                label: label.clone(),
                pairs: mean.len(),
                mean_at_n: PairedInterval::of(&mean),
                pass_at_k: ks
                    .iter()
                    .map(|&k| (k, PairedInterval::of(&diffs(g, baseline, &|r| r.pass(k)))))
                    .collect(),
            }
        })
        .collect()
}

/// A markdown table of [`paired_rows`] against the group named `baseline`.
pub fn paired_markdown(baseline: &str, rows: &[PairedRow]) -> String {
    let mut s = String::new();
    let ks: Vec<usize> = rows
        .first()
        .map(|r| r.pass_at_k.iter().map(|(k, _)| *k).collect())
        .unwrap_or_default();
    let head: Vec<String> = ks.iter().map(|k| format!("Δ pass@{k}")).collect();
    let _ = writeln!(
        s,
        "Differences against `{baseline}`, paired by seed: mean [95% t interval]; **bold** when \
         the interval excludes zero.\n"
    );
    let _ = writeln!(s, "| group | pairs | Δ mean@n | {} |", head.join(" | "));
    let _ = writeln!(s, "|---|---:|---:|{}", "---:|".repeat(ks.len()));
    let cell = |p: &Option<PairedInterval>| p.map_or("–".to_string(), |p| p.display(3));
    for r in rows {
        let cells: Vec<String> = r.pass_at_k.iter().map(|(_, p)| cell(p)).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            r.label,
            r.pairs,
            cell(&r.mean_at_n),
            cells.join(" | ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// By hand: differences 0.02, 0.05, −0.01 have mean 0.02 and sample sd 0.03; the standard
    /// error is 0.03/√3 = 0.0173205; t₀.₉₇₅,₂ = 4.302653, so the half-width is 0.0745242 and the
    /// interval [−0.0545242, 0.0945242], which contains zero.
    #[test]
    fn t_interval_matches_a_hand_computation() {
        let p = PairedInterval::of(&[0.02, 0.05, -0.01]).unwrap();
        assert_eq!(p.n, 3);
        assert!((p.mean - 0.02).abs() < 1e-12);
        assert!((p.lo - (-0.054_524_2)).abs() < 1e-6, "{p:?}");
        assert!((p.hi - 0.094_524_2).abs() < 1e-6, "{p:?}");
        assert!(!p.excludes_zero());
        assert_eq!(p.display(3), "+0.020 [-0.055, +0.095]");
        // Four equal-ish positive differences: 0.03, 0.04, 0.05, 0.04 → mean 0.04, sd 0.0081650,
        // se 0.0040825, t₀.₉₇₅,₃ = 3.182446 → [0.027008, 0.052992]: excludes zero.
        let q = PairedInterval::of(&[0.03, 0.04, 0.05, 0.04]).unwrap();
        assert!(
            (q.lo - 0.027_008_0).abs() < 1e-6 && (q.hi - 0.052_992_0).abs() < 1e-6,
            "{q:?}"
        );
        assert!(q.excludes_zero());
        assert!(q.display(3).starts_with("**+0.040"));
        assert!(PairedInterval::of(&[0.1]).is_none());
    }

    #[test]
    fn t_quantiles_continue_smoothly_past_the_table() {
        // Cornish–Fisher at 30 agrees with the table's 2.042272 to 1e-4, and tends to z.
        let z: f64 = 1.959_963_984_540_054;
        let cf30 = z
            + (z * z * z + z) / 120.0
            + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * 900.0);
        assert!((cf30 - t_quantile_975(30)).abs() < 1e-4);
        assert!((t_quantile_975(40) - 2.021075).abs() < 1e-4);
        assert!((t_quantile_975(120) - 1.979930).abs() < 1e-4);
        assert!(t_quantile_975(31) < t_quantile_975(30));
    }
}
