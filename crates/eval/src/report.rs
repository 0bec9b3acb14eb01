//! Evaluation reports: pass@K per data source and overall, mean@n, concentration diagnostics; as
//! JSON (serde) and as markdown tables.

use crate::concentration::Concentration;
use crate::passk::{ks, mean_pass_at_k};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// One problem's outcome: how many of the samples were verified correct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProblemResult {
    /// Problem id within its task or dataset.
    pub id: String,
    /// Origin of the problem (the dataset's `data_source`).
    pub data_source: String,
    /// Samples verified correct.
    pub correct: usize,
}

/// pass@K and mean@n over a set of problems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceReport {
    /// Problems.
    pub problems: usize,
    /// (K, pass@K) for K = 1, 2, 4, … ≤ samples.
    pub pass_at_k: Vec<(usize, f64)>,
    /// Mean accuracy over all samples.
    pub mean_at_n: f64,
}

impl SourceReport {
    fn of(samples: usize, correct: &[usize]) -> SourceReport {
        SourceReport {
            problems: correct.len(),
            pass_at_k: ks(samples)
                .into_iter()
                .map(|k| (k, mean_pass_at_k(samples, correct, k)))
                .collect(),
            mean_at_n: correct.iter().sum::<usize>() as f64
                / (correct.len().max(1) * samples.max(1)) as f64,
        }
    }
}

/// The result of evaluating one policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Problems evaluated.
    pub problems: usize,
    /// Samples per problem (n).
    pub samples: usize,
    /// (K, pass@K) over all problems.
    pub pass_at_k: Vec<(usize, f64)>,
    /// Mean accuracy over all samples (mean@n).
    pub mean_at_n: f64,
    /// The same per data source.
    #[serde(default)]
    pub by_source: BTreeMap<String, SourceReport>,
    /// Probability-concentration diagnostics of the sampled responses.
    #[serde(default)]
    pub concentration: Option<Concentration>,
    /// Per-problem correct counts (so any pass@K can be recomputed).
    #[serde(default)]
    pub per_problem: Vec<ProblemResult>,
}

/// The pass@K values of `after` lower than `before`'s by more than `tolerance`: (K, before,
/// after). Training that sharpens a policy raises pass@1 and can lower pass@K at large K (the
/// concentration SimKO is about); a run summary says so instead of leaving it to be noticed.
pub fn passk_drops(
    before: &EvalReport,
    after: &EvalReport,
    tolerance: f64,
) -> Vec<(usize, f64, f64)> {
    before
        .pass_at_k
        .iter()
        .filter_map(|&(k, b)| {
            let a = after.pass_at_k.iter().find(|(ka, _)| *ka == k)?.1;
            (a < b - tolerance).then_some((k, b, a))
        })
        .collect()
}

/// A sentence naming the pass@K values that fell below the model before training; `None` when
/// none did.
pub fn passk_drop_note(before: &EvalReport, after: &EvalReport) -> Option<String> {
    let drops = passk_drops(before, after, 0.005);
    if drops.is_empty() {
        return None;
    }
    let list: Vec<String> = drops
        .iter()
        .map(|(k, b, a)| format!("pass@{k} {b:.3} → {a:.3}"))
        .collect();
    Some(format!(
        "pass@K fell below the model before training: {} (one run, one seed: confirm over \
         seeds with `rlvr sweep` before concluding)",
        list.join(", ")
    ))
}

impl EvalReport {
    /// Reads a report written as JSON (`eval.json`, `eval/after.json`) and checks it
    /// ([`EvalReport::validate`]), naming the file in errors.
    pub fn read(path: &std::path::Path) -> anyhow::Result<EvalReport> {
        use anyhow::Context;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let report: EvalReport = serde_json::from_str(&text)
            .with_context(|| format!("{}: not an evaluation report", path.display()))?;
        report
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: invalid evaluation report: {e}", path.display()))?;
        Ok(report)
    }

    /// Checks what a report claims: pass@K and mean@n are probabilities, K ≤ n, and the counts
    /// per problem do not exceed n.
    pub fn validate(&self) -> Result<(), String> {
        let prob = |what: String, x: f64| {
            if (0.0..=1.0).contains(&x) {
                Ok(())
            } else {
                Err(format!("{what} = {x} is not in [0, 1]"))
            }
        };
        for (k, p) in &self.pass_at_k {
            prob(format!("pass@{k}"), *p)?;
            if *k == 0 || *k > self.samples {
                return Err(format!(
                    "pass@{k} with {} samples per problem",
                    self.samples
                ));
            }
        }
        prob("mean@n".into(), self.mean_at_n)?;
        for (source, r) in &self.by_source {
            for (k, p) in &r.pass_at_k {
                prob(format!("{source}: pass@{k}"), *p)?;
            }
            prob(format!("{source}: mean@n"), r.mean_at_n)?;
        }
        if let Some(p) = self.per_problem.iter().find(|p| p.correct > self.samples) {
            return Err(format!(
                "problem {} has {} correct of {} samples",
                p.id, p.correct, self.samples
            ));
        }
        Ok(())
    }

    /// Like [`EvalReport::read`], but `None` when the file does not exist.
    pub fn read_if_exists(path: &std::path::Path) -> anyhow::Result<Option<EvalReport>> {
        if path.exists() {
            Self::read(path).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Aggregates per-problem results of `samples` samples each.
    pub fn from_results(
        samples: usize,
        results: Vec<ProblemResult>,
        concentration: Option<Concentration>,
    ) -> EvalReport {
        let correct: Vec<usize> = results.iter().map(|r| r.correct).collect();
        let all = SourceReport::of(samples, &correct);
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for r in &results {
            groups
                .entry(r.data_source.clone())
                .or_default()
                .push(r.correct);
        }
        EvalReport {
            problems: all.problems,
            samples,
            pass_at_k: all.pass_at_k,
            mean_at_n: all.mean_at_n,
            by_source: groups
                .into_iter()
                .map(|(s, c)| (s, SourceReport::of(samples, &c)))
                .collect(),
            concentration,
            per_problem: results,
        }
    }

    /// pass@K for one K, if reported.
    pub fn pass(&self, k: usize) -> Option<f64> {
        self.pass_at_k
            .iter()
            .find(|(x, _)| *x == k)
            .map(|(_, v)| *v)
    }

    /// A markdown section: pass@K per data source and the concentration diagnostics.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let ks: Vec<usize> = self.pass_at_k.iter().map(|(k, _)| *k).collect();
        let head: Vec<String> = ks.iter().map(|k| format!("pass@{k}")).collect();
        let _ = writeln!(
            s,
            "| data source | problems | mean@{} | {} |",
            self.samples,
            head.join(" | ")
        );
        let _ = writeln!(s, "|---|---:|---:|{}", "---:|".repeat(ks.len()));
        let mut row = |name: &str, r: &SourceReport| {
            let cells: Vec<String> = r.pass_at_k.iter().map(|(_, v)| format!("{v:.3}")).collect();
            let _ = writeln!(
                s,
                "| {name} | {} | {:.3} | {} |",
                r.problems,
                r.mean_at_n,
                cells.join(" | ")
            );
        };
        if self.by_source.len() > 1 || self.by_source.is_empty() {
            row(
                "**all**",
                &SourceReport {
                    problems: self.problems,
                    pass_at_k: self.pass_at_k.clone(),
                    mean_at_n: self.mean_at_n,
                },
            );
        }
        for (name, r) in &self.by_source {
            row(name, r);
        }
        if let Some(c) = &self.concentration {
            let _ = writeln!(
                s,
                "\nProbability concentration over {} response tokens (SimKO, arXiv 2510.14807):\n",
                c.tokens
            );
            let _ = writeln!(s, "| rank n | Λ(n) = mean log p | mean p |");
            let _ = writeln!(s, "|---:|---:|---:|");
            for (i, (l, p)) in c.lambda.iter().zip(&c.rank_prob).enumerate() {
                let _ = writeln!(s, "| {} | {l:.4} | {p:.4} |", i + 1);
            }
            let _ = writeln!(
                s,
                "\nSampled token mean log-prob {:.4}; mean token entropy {:.4} nats.",
                c.sampled_logp, c.entropy_mean
            );
        }
        s
    }
}

/// A cell: the plain value for one run, mean ± std for several.
fn cell(values: &[f64], digits: usize) -> String {
    match crate::MeanStd::of(values) {
        None => "–".into(),
        Some(m) if m.n == 1 => format!("{:.digits$}", m.mean),
        Some(m) => m.display(digits),
    }
}

/// Side-by-side markdown tables of groups of reports (a group = repeats of one configuration,
/// e.g. seeds; shown as mean ± std, or the plain value for a single report): pass@K and mean@n,
/// then Λ(n), the rank-n probabilities, the sampled token's log-prob and the entropy.
pub fn compare_markdown(groups: &[(String, Vec<&EvalReport>)]) -> String {
    let mut s = String::new();
    let all = || groups.iter().flat_map(|(_, g)| g.iter());
    let mut ks: Vec<usize> = all()
        .flat_map(|r| r.pass_at_k.iter().map(|(k, _)| *k))
        .collect();
    ks.sort_unstable();
    ks.dedup();
    let head: Vec<String> = ks.iter().map(|k| format!("pass@{k}")).collect();
    let _ = writeln!(
        s,
        "| run | runs | problems × n | mean@n | {} |",
        head.join(" | ")
    );
    let _ = writeln!(s, "|---|---:|---:|---:|{}", "---:|".repeat(ks.len()));
    for (name, g) in groups {
        let shape = g
            .first()
            .map_or("–".into(), |r| format!("{} × {}", r.problems, r.samples));
        let means: Vec<f64> = g.iter().map(|r| r.mean_at_n).collect();
        let cells: Vec<String> = ks
            .iter()
            .map(|k| {
                let v: Vec<f64> = g.iter().filter_map(|r| r.pass(*k)).collect();
                cell(&v, 3)
            })
            .collect();
        let _ = writeln!(
            s,
            "| {name} | {} | {shape} | {} | {} |",
            g.len(),
            cell(&means, 3),
            cells.join(" | ")
        );
    }
    let ranks = all()
        .filter_map(|r| r.concentration.as_ref().map(|c| c.lambda.len()))
        .max()
        .unwrap_or(0);
    if ranks > 0 {
        let lam: Vec<String> = (1..=ranks).map(|n| format!("Λ({n})")).collect();
        let prob: Vec<String> = (1..=ranks).map(|n| format!("p(rank {n})")).collect();
        let _ = writeln!(
            s,
            "\n| run | {} | {} | sampled log p | entropy |",
            lam.join(" | "),
            prob.join(" | ")
        );
        let _ = writeln!(s, "|---|{}---:|---:|", "---:|".repeat(2 * ranks));
        for (name, g) in groups {
            let cs: Vec<&Concentration> =
                g.iter().filter_map(|r| r.concentration.as_ref()).collect();
            if cs.is_empty() {
                continue;
            }
            let col = |f: &dyn Fn(&Concentration) -> Option<f64>| {
                let v: Vec<f64> = cs.iter().filter_map(|c| f(c)).collect();
                cell(&v, 4)
            };
            let l: Vec<String> = (0..ranks)
                .map(|i| col(&|c| c.lambda.get(i).copied()))
                .collect();
            let p: Vec<String> = (0..ranks)
                .map(|i| col(&|c| c.rank_prob.get(i).copied()))
                .collect();
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} |",
                l.join(" | "),
                p.join(" | "),
                col(&|c| Some(c.sampled_logp)),
                col(&|c| Some(c.entropy_mean))
            );
        }
    }
    s
}

#[cfg(test)]
mod drop_tests {
    use super::*;

    fn report(pass: &[(usize, f64)]) -> EvalReport {
        EvalReport {
            problems: 100,
            samples: 16,
            pass_at_k: pass.to_vec(),
            mean_at_n: pass[0].1,
            by_source: BTreeMap::new(),
            concentration: None,
            per_problem: Vec::new(),
        }
    }

    #[test]
    fn a_pass_at_k_below_the_model_before_training_is_named() {
        let before = report(&[(1, 0.413), (8, 0.819), (16, 0.880)]);
        let after = report(&[(1, 0.497), (8, 0.772), (16, 0.877)]);
        // pass@16 moved by 0.003: display rounding, not named.
        assert_eq!(passk_drops(&before, &after, 0.005), vec![(8, 0.819, 0.772)]);
        let note = passk_drop_note(&before, &after).unwrap();
        assert!(
            note.contains("pass@8 0.819 → 0.772") && note.contains("rlvr sweep"),
            "{note}"
        );
        assert!(passk_drop_note(&before, &before).is_none());
    }
}
