//! Registered verifiers (`math`, `gsm8k`, `exact`), routing by `data_source`, and parallel batch
//! scoring.

use crate::math::{extract, MathVerifier};
use documented::DocumentedFields;
use rayon::prelude::*;
use rlvr_core::{CoreError, Outcome, Verdict, Verifier, VerifierConfig};
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

/// The verifier for a dataset's `data_source`: GSM8K sources get `gsm8k`, everything else `math`.
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
