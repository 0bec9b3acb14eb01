//! The verifier on real data: every MATH test solution's boxed answer must verify against its
//! target (≥ 99%), and all four verl parquet files read.

use rlvr_core::{Outcome, Verifier};
use rlvr_rewards::data::{self, OnBadRow};
use rlvr_rewards::math::MathVerifier;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

#[test]
fn all_four_parquet_files_read() {
    for (file, rows, source) in [
        ("math_train.parquet", 7500, "TianHongZXY/MATH"),
        ("math_test.parquet", 5000, "TianHongZXY/MATH"),
        ("aime2025_test.parquet", 30, "TianHongZXY/AIME2025"),
        ("amc23_test.parquet", 40, "TianHongZXY/amc23"),
    ] {
        let ds = data::read(&data(file), OnBadRow::Fail).unwrap_or_else(|e| panic!("{file}: {e}"));
        let sources: std::collections::BTreeSet<&str> =
            ds.records.iter().map(|r| r.data_source.as_str()).collect();
        println!("{file}: {} rows, sources {sources:?}", ds.records.len());
        assert_eq!(ds.records.len(), rows, "{file}");
        assert_eq!(ds.skipped, 0);
        assert!(
            ds.records.iter().all(|r| r.data_source == source
                && !r.prompt.is_empty()
                && !r.prompt[0].content.is_empty()),
            "{file}"
        );
        // The data has a few empty targets (e.g. MATH test row with target ""): the verifier
        // reports those as GoldUnparseable rather than guessing.
        let empty = ds
            .records
            .iter()
            .filter(|r| r.ground_truth.trim().is_empty())
            .count();
        assert!(empty * 1000 <= rows, "{file}: {empty} empty targets");
    }
}

#[test]
fn math_test_solutions_verify_against_their_targets() {
    let ds = data::read(&data("math_test.parquet"), OnBadRow::Fail).unwrap();
    let v = MathVerifier::default();
    let mut failures: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut correct = 0;
    for r in &ds.records {
        let solution = r.solution.as_deref().expect("MATH rows carry a solution");
        let verdict = v.verify(solution, &r.ground_truth);
        if verdict.outcome == Outcome::Correct {
            correct += 1;
        } else {
            let key = format!("{:?}", verdict.outcome);
            failures.entry(key).or_default().push((
                verdict.extracted.unwrap_or_default(),
                r.ground_truth.clone(),
            ));
        }
    }
    let rate = correct as f64 / ds.records.len() as f64;
    println!(
        "MATH test self-consistency: {correct}/{} = {:.2}%",
        ds.records.len(),
        rate * 100.0
    );
    for (k, v) in &failures {
        println!("  {k}: {}", v.len());
        for (p, g) in v.iter().take(40) {
            println!("    pred {p:?} gold {g:?}");
        }
    }
    assert!(rate >= 0.99, "rate {rate}");
}
