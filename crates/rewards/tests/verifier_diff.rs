//! Differential test against Math-Verify on answers nobody tuned the verifier to: a seeded corpus
//! of (gold, prediction) pairs generated from the MATH train answers and labelled by Math-Verify
//! (tests/data/verifier_diff.json, made by `scripts/verifier-diff.sh corpus`; provenance inside the
//! file). Prints the agreement per category and every disagreement; requires ≥ 97% overall and
//! ≥ 90% in every category. Deliberate disagreements are listed in `crates/rewards/CONFORMANCE.md`
//! and count as disagreements all the same.
//!
//! `RLVR_VERIFIER_CORPUS=<file>` runs the same test on another corpus (a fresh seed: a held-out
//! check).

use rlvr_core::{Outcome, Verifier};
use rlvr_rewards::math::MathVerifier;
use std::collections::BTreeMap;

/// One labelled pair: category, gold answer, prediction (a whole response), Math-Verify's verdict.
type Case = (String, String, String, bool);

fn corpus() -> (serde_json::Value, Vec<Case>) {
    let path = std::env::var_os("RLVR_VERIFIER_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/verifier_diff.json")
        });
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut doc: serde_json::Value = serde_json::from_str(&text).expect("corpus JSON");
    let cases: Vec<Case> =
        serde_json::from_value(doc["cases"].take()).expect("cases: [category, gold, pred, label]");
    (doc, cases)
}

#[test]
fn agreement_with_math_verify_on_generated_corpus() {
    let (doc, cases) = corpus();
    assert!(cases.len() >= 5000, "corpus has {} pairs", cases.len());
    let v = MathVerifier::default();
    let mut per_category: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut disagreements = Vec::new();
    for (i, (category, gold, pred, expected)) in cases.iter().enumerate() {
        let ours = v.verify(pred, gold).outcome == Outcome::Correct;
        let entry = per_category.entry(category).or_default();
        entry.1 += 1;
        if ours == *expected {
            entry.0 += 1;
        } else {
            disagreements.push(format!(
                "#{i} [{category}] Math-Verify {expected}, rlvr {ours}: gold {gold:?} pred {pred:?}"
            ));
        }
    }
    let agree: usize = per_category.values().map(|(a, _)| a).sum();
    let rate = agree as f64 / cases.len() as f64;
    println!("{}", doc["provenance"]["labeller"]);
    println!(
        "agreement with Math-Verify: {agree}/{} = {:.2}%",
        cases.len(),
        100.0 * rate
    );
    println!("| category | agree | pairs | % |\n|---|---|---|---|");
    for (c, (a, n)) in &per_category {
        println!("| {c} | {a} | {n} | {:.1} |", 100.0 * *a as f64 / *n as f64);
    }
    for d in &disagreements {
        println!("  {d}");
    }
    let weak: Vec<String> = per_category
        .iter()
        .filter(|(_, (a, n))| (*a as f64) < 0.90 * *n as f64)
        .map(|(c, (a, n))| format!("{c} {a}/{n}"))
        .collect();
    assert!(rate >= 0.97, "overall agreement {rate:.4} < 0.97");
    assert!(weak.is_empty(), "categories under 90%: {weak:?}");
}
