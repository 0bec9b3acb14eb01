//! The math answer verifier (docs/design.md §7): extraction, normalisation, and equivalence by exact,
//! numeric (relative tolerance) and symbolic checks. Never panics; bounded in time by input-size
//! limits instead of signals or killed threads.

pub mod answer;
pub mod expr;
pub mod extract;
pub mod normalize;

use answer::{equal, parse_answer};
use rlvr_core::{Outcome, Verdict, Verifier};

/// Answers longer than this are not compared (the work budget): the verdict is `TimedOut`.
pub const MAX_ANSWER_LEN: usize = 2000;
/// Responses longer than this are cut to their last part before extraction.
pub const MAX_RESPONSE_LEN: usize = 100_000;

/// Default relative tolerance of comparisons by evaluation: far above f64 rounding noise, far
/// below a real difference (`1000000` and `1000001` differ at 1e-6).
pub const DEFAULT_REL_TOL: f64 = 1e-9;

/// The math verifier.
#[derive(Debug, Clone)]
pub struct MathVerifier {
    /// Relative tolerance of comparisons by evaluation (exact constants, identities); decimals
    /// are compared after rounding instead ([`expr::FLOAT_ROUNDING`]).
    pub rel_tol: f64,
}

impl Default for MathVerifier {
    fn default() -> Self {
        MathVerifier {
            rel_tol: DEFAULT_REL_TOL,
        }
    }
}

/// The tail of `s` of at most `n` bytes, cut at a character boundary.
fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut start = s.len() - n;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

impl MathVerifier {
    /// Compares an already-extracted answer with the ground truth.
    pub fn compare(&self, pred: &str, gold: &str) -> Outcome {
        // Normalisation is linear but makes several passes: refuse oversized answers first.
        if pred.len() > 4 * MAX_ANSWER_LEN || gold.len() > 4 * MAX_ANSWER_LEN {
            return Outcome::TimedOut;
        }
        let g = normalize::normalize(gold);
        if g.is_empty() {
            return Outcome::GoldUnparseable;
        }
        let p = normalize::normalize(pred);
        if p.is_empty() {
            return Outcome::NoAnswer;
        }
        if p.len() > MAX_ANSWER_LEN || g.len() > MAX_ANSWER_LEN {
            return Outcome::TimedOut;
        }
        let squash = |s: &str| {
            s.to_lowercase()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
        };
        if p == g || squash(&p) == squash(&g) {
            return Outcome::Correct;
        }
        if equal(&parse_answer(&g), &parse_answer(&p), self.rel_tol) {
            Outcome::Correct
        } else {
            Outcome::Incorrect
        }
    }
}

impl Verifier for MathVerifier {
    fn verify_batch(
        &self,
        items: &[rlvr_core::RewardInput<'_>],
    ) -> rlvr_core::Result<Vec<Verdict>> {
        Ok(crate::verifiers::verify_each(self, items))
    }

    fn verify(&self, response: &str, ground_truth: &str) -> Verdict {
        let response = tail(response, MAX_RESPONSE_LEN);
        let ground_truth = tail(ground_truth, MAX_RESPONSE_LEN);
        let gold = extract::last_boxed(ground_truth).unwrap_or_else(|| ground_truth.to_string());
        let Some(pred) = extract::extract(response) else {
            return Verdict::new(Outcome::NoAnswer, None);
        };
        let outcome = self.compare(&pred, &gold);
        Verdict::new(outcome, Some(pred))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(response: &str, gold: &str) -> bool {
        MathVerifier::default().verify(response, gold).outcome == Outcome::Correct
    }

    #[test]
    fn math_verify_rules() {
        // Decimals at 6 places, exact values exactly.
        assert!(same("\\boxed{0.333333}", "\\frac{1}{3}"));
        assert!(!same("\\boxed{0.33}", "\\frac{1}{3}"));
        assert!(same("\\boxed{9.424778}", "3\\pi"));
        assert!(!same("\\boxed{1000001}", "1000000"));
        assert!(same("\\boxed{\\sqrt{12}}", "2\\sqrt{3}"));
        // A predicted equation answers with its right side.
        assert!(same("We find $m+n = 795$.", "795"));
        assert!(!same("\\boxed{x \\neq 5}", "5"));
        // Percent: x/100, or x against a whole number.
        assert!(same("\\boxed{25\\%}", "25"));
        assert!(same("\\boxed{25\\%}", "0.25"));
        assert!(!same("\\boxed{\\frac{5}{7}\\%}", "\\frac{5}{7}"));
        // Lists, tuples and intervals.
        assert!(same("\\boxed{3; 1; 2}", "1,2,3"));
        assert!(same("$p=5,q=2$", "(5,2)"));
        assert!(same("\\boxed{[-\\infty, 1)}", "(-\\infty,1)"));
        assert!(!same("\\boxed{[0, 1)}", "(0,1)"));
        assert!(same("\\boxed{x \\in (-\\infty, 1]}", "(-\\infty,1]"));
        // Matrices in any environment.
        assert!(same(
            "\\boxed{\\left[\\begin{array}{cc}1 & 0 \\\\ 0 & 1\\end{array}\\right]}",
            "\\begin{pmatrix}1&0\\\\0&1\\end{pmatrix}"
        ));
        // Where rlvr is right and Math-Verify 0.9.0 extracts nothing (CONFORMANCE.md).
        assert!(same("The answer is \\$13.", "13"));
        assert!(same("The answer is -.5.", "-\\frac{1}{2}"));
        // Digits inside words are not numbers.
        assert!(!same("The answer is abc123def.", "123"));
        // Answers joined by "and"/"or" in text are one list answer (as Math-Verify reads them).
        assert!(same("The solutions are $x=2$ and $x=-3$.", "2, -3"));
        assert!(!same("The solutions are $x=2$ and $x=-4$.", "2, -3"));
        // Deliberate differences from Math-Verify 0.9.0 (CONFORMANCE.md): an inequality chain is
        // its interval, and a stated answer is not replaced by a later sanity check.
        assert!(same("\\boxed{-1 < x < 3}", "(-1,3)"));
        assert!(same("\\boxed{0 \\le x \\le 2}", "[0,2]"));
        assert!(!same("\\boxed{0 \\le x < 2}", "[0,2]"));
        // An absolute value between bounds is two intervals.
        assert!(same(
            "\\boxed{1 \\le |z| \\le \\frac{3}{2}}",
            "\\left[-\\frac32,-1\\right]\\cup\\left[1,\\frac32\\right]"
        ));
        assert!(!same(
            "\\boxed{1 < |z| \\le \\frac{3}{2}}",
            "\\left[-\\frac32,-1\\right]\\cup\\left[1,\\frac32\\right]"
        ));
        assert!(same(
            "The answer is $7$. As a sanity check, $3 \\cdot 4 = 12$.",
            "7"
        ));
        assert!(!same(
            "The answer is $8$. As a sanity check, $3 \\cdot 4 = 12$.",
            "7"
        ));
    }
}
