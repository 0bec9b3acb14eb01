//! Registered verifiers (`math`, `gsm8k`, `exact`), routing by `data_source`, and parallel batch
//! scoring.

use crate::math::{extract, MathVerifier};
use documented::DocumentedFields;
use rayon::prelude::*;
use rlvr_core::{CoreError, Outcome, RewardInput, Verdict, Verifier, VerifierConfig};
use serde::{Deserialize, Serialize};

/// Configuration of the `math` verifier.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct MathConfig {
    /// Relative tolerance of comparisons by evaluation (exact constants such as `\sqrt{12}` and
    /// `2\sqrt3`, identities in free variables): above floating-point noise, below any real
    /// difference. Decimals are compared after rounding to 6 places instead (Math-Verify's rule).
    pub rel_tol: f64,
}

impl Default for MathConfig {
    fn default() -> Self {
        MathConfig {
            rel_tol: crate::math::DEFAULT_REL_TOL,
        }
    }
}

rlvr_core::describe_fields!(MathConfig);
rlvr_core::register!(
    verifier,
    "math",
    "math answers: boxed/phrase extraction, LaTeX normalisation, numeric and symbolic equivalence",
    MathConfig
);

#[typetag::serde(name = "math")]
impl VerifierConfig for MathConfig {
    fn build(&self) -> rlvr_core::Result<Box<dyn Verifier>> {
        if !(self.rel_tol > 0.0 && self.rel_tol < 1.0) {
            return Err(CoreError::invalid(
                "verifier.rel_tol",
                self.rel_tol,
                "must be in (0, 1)",
            ));
        }
        Ok(Box::new(MathVerifier {
            rel_tol: self.rel_tol,
        }))
    }
}

/// GSM8K: the number after `####` (or the last number), compared numerically.
#[derive(Debug, Clone, Default, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct Gsm8kConfig {}

rlvr_core::describe_fields!(Gsm8kConfig);
rlvr_core::register!(
    verifier,
    "gsm8k",
    "GSM8K: the number after #### (or the last number), compared numerically",
    Gsm8kConfig
);

/// The GSM8K verifier.
#[derive(Debug, Clone, Default)]
pub struct Gsm8kVerifier;

impl Verifier for Gsm8kVerifier {
    fn verify_batch(&self, items: &[RewardInput<'_>]) -> rlvr_core::Result<Vec<Verdict>> {
        Ok(verify_each(self, items))
    }

    fn verify(&self, response: &str, ground_truth: &str) -> Verdict {
        let gold = extract::hashes(ground_truth).unwrap_or_else(|| ground_truth.trim().to_string());
        let pred = extract::hashes(response).or_else(|| extract::extract(response));
        match pred {
            None => Verdict::new(Outcome::NoAnswer, None),
            Some(p) => Verdict::new(MathVerifier::default().compare(&p, &gold), Some(p)),
        }
    }
}

#[typetag::serde(name = "gsm8k")]
impl VerifierConfig for Gsm8kConfig {
    fn build(&self) -> rlvr_core::Result<Box<dyn Verifier>> {
        Ok(Box::new(Gsm8kVerifier))
    }
}

/// Exact match of the trimmed response (or its extracted answer) with the ground truth.
#[derive(Debug, Clone, Default, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct ExactConfig {
    /// Compare the extracted final answer instead of the whole response.
    pub extract: bool,
}

rlvr_core::describe_fields!(ExactConfig);
rlvr_core::register!(
    verifier,
    "exact",
    "exact string match (optionally of the extracted answer)",
    ExactConfig
);

impl Verifier for ExactConfig {
    fn verify_batch(&self, items: &[RewardInput<'_>]) -> rlvr_core::Result<Vec<Verdict>> {
        Ok(verify_each(self, items))
    }

    fn verify(&self, response: &str, ground_truth: &str) -> Verdict {
        let pred = if self.extract {
            extract::extract(response)
        } else {
            Some(response.trim().to_string())
        };
        match pred {
            None => Verdict::new(Outcome::NoAnswer, None),
            Some(p) => {
                let outcome = if p.trim() == ground_truth.trim() {
                    Outcome::Correct
                } else {
                    Outcome::Incorrect
                };
                Verdict::new(outcome, Some(p))
            }
        }
    }
}

#[typetag::serde(name = "exact")]
impl VerifierConfig for ExactConfig {
    fn build(&self) -> rlvr_core::Result<Box<dyn Verifier>> {
        Ok(Box::new(self.clone()))
    }
}

/// The built-in verifier for a dataset's `data_source`: GSM8K sources get `gsm8k`, everything
/// else `math`.
pub fn for_data_source(data_source: &str) -> Box<dyn Verifier> {
    if data_source.to_ascii_lowercase().contains("gsm8k") {
        Box::new(Gsm8kVerifier)
    } else {
        Box::new(MathVerifier::default())
    }
}

/// Scores `(response, ground truth)` pairs in parallel, in order.
pub fn score_batch(verifier: &dyn Verifier, pairs: &[(String, String)]) -> Vec<Verdict> {
    pairs
        .par_iter()
        .map(|(r, g)| verifier.verify(r, g))
        .collect()
}

/// Verifies each item on its own, in parallel (the batch method of in-process verifiers).
pub fn verify_each<V: Verifier + ?Sized>(verifier: &V, items: &[RewardInput<'_>]) -> Vec<Verdict> {
    items
        .par_iter()
        .map(|i| verifier.verify(i.response, i.ground_truth))
        .collect()
}

/// Chooses the verifier of each response by its problem's `data_source` (the `[reward]` table of
/// a run): a source listed in `sources`, else `default`, else the built-in choice
/// ([`for_data_source`]). One batch per verifier, so a reward program sees whole batches.
pub struct SourceRouter {
    /// Verifiers of named sources.
    pub sources: std::collections::BTreeMap<String, Box<dyn Verifier>>,
    /// The verifier of every other source; `None` = the built-in choice.
    pub default: Option<Box<dyn Verifier>>,
}

impl SourceRouter {
    fn route(&self, source: &str) -> Result<&dyn Verifier, Box<dyn Verifier>> {
        match self.sources.get(source).or(self.default.as_ref()) {
            Some(v) => Ok(v.as_ref()),
            None => Err(for_data_source(source)),
        }
    }
}

impl Verifier for SourceRouter {
    fn verify(&self, response: &str, ground_truth: &str) -> Verdict {
        // Without the source, the default verifier decides.
        match self.route("") {
            Ok(v) => v.verify(response, ground_truth),
            Err(v) => v.verify(response, ground_truth),
        }
    }

    fn verify_batch(&self, items: &[RewardInput<'_>]) -> rlvr_core::Result<Vec<Verdict>> {
        let mut by_source: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
        for (k, item) in items.iter().enumerate() {
            by_source.entry(item.data_source).or_default().push(k);
        }
        let mut out: Vec<Option<Verdict>> = vec![None; items.len()];
        for (source, indices) in by_source {
            let subset: Vec<RewardInput<'_>> = indices.iter().map(|&k| items[k]).collect();
            let verdicts = match self.route(source) {
                Ok(v) => v.verify_batch(&subset)?,
                Err(builtin) => builtin.verify_batch(&subset)?,
            };
            for (k, v) in indices.into_iter().zip(verdicts) {
                out[k] = Some(v);
            }
        }
        Ok(out
            .into_iter()
            .map(|v| v.unwrap_or_else(|| Verdict::new(Outcome::TimedOut, None)))
            .collect())
    }
}
