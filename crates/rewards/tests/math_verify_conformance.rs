//! Agreement with Math-Verify's own verdicts on the cases of its test suite
//! (tests/data/math_verify_cases.json). Prints the agreement per source file and every
//! disagreement; requires ≥ 95% overall. Deliberate disagreements are listed in
//! `crates/rewards/CONFORMANCE.md`.

use rlvr_core::{Outcome, Verifier};
use rlvr_rewards::math::{extract::extract, MathVerifier};
use std::collections::BTreeMap;

#[test]
fn agreement_with_math_verify() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/math_verify_cases.json");
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let v = MathVerifier::default();
    let mut per_source: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut agree = 0;
    let mut disagreements = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let gold_text = c["gold"].as_str().unwrap();
        let pred_text = c["pred"].as_str().unwrap();
        let expected = c["expected"].as_bool().unwrap();
        // Math-Verify extracts from both sides.
        let gold = extract(gold_text).unwrap_or_else(|| gold_text.to_string());
        let ours = v.verify(pred_text, &gold).outcome == Outcome::Correct;
        let entry = per_source
            .entry(c["source"].as_str().unwrap().to_string())
            .or_default();
        entry.1 += 1;
        if ours == expected {
            agree += 1;
            entry.0 += 1;
        } else {
            disagreements.push(format!(
                "#{i} [{}] expected {expected}: gold {:?} pred {:?}",
                c["source"].as_str().unwrap(),
                truncate(gold_text),
                truncate(pred_text)
            ));
        }
    }
    let rate = agree as f64 / cases.len() as f64;
    println!(
        "Math-Verify agreement: {agree}/{} = {:.1}%",
        cases.len(),
        rate * 100.0
    );
    for (s, (a, n)) in &per_source {
        println!("  {s}: {a}/{n}");
    }
    for d in &disagreements {
        println!("  {d}");
    }
    assert!(rate >= 0.95, "agreement {rate} < 0.95");
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 90 {
        let head: String = s.chars().take(40).collect();
        let tail: String = s
            .chars()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("{head} … {tail}")
    } else {
        s.to_string()
    }
}
