//! The math verifier's throughput on one core over the differential corpus
//! (tests/data/verifier_diff.json, or `RLVR_VERIFIER_CORPUS`): answers verified per second,
//! extraction and gold normalisation included. `scripts/verifier-diff.sh bench` runs this and
//! Math-Verify on the same pairs and prints the ratio.

use rlvr_core::Verifier;
use rlvr_rewards::math::MathVerifier;
use std::time::Instant;

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let path = std::env::var_os("RLVR_VERIFIER_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/verifier_diff.json")
        });
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("verifier_throughput: reading {}: {e}", path.display());
            std::process::exit(1);
        }
    };
    let doc: serde_json::Value = match serde_json::from_str(&text) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("verifier_throughput: {}: {e}", path.display());
            std::process::exit(1);
        }
    };
    let pairs: Vec<(String, String)> = doc["cases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c[1].as_str()?.to_string(), c[2].as_str()?.to_string())))
        .collect();
    let v = MathVerifier::default();
    // One warm-up pass, then passes until at least two seconds have been measured.
    let mut correct = 0usize;
    for (gold, pred) in &pairs {
        correct += usize::from(v.verify(pred, gold).outcome == rlvr_core::Outcome::Correct);
    }
    let start = Instant::now();
    let mut done = 0usize;
    while start.elapsed().as_secs_f64() < 2.0 {
        for (gold, pred) in &pairs {
            std::hint::black_box(v.verify(pred, gold));
        }
        done += pairs.len();
    }
    let rate = done as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "{} pairs ({correct} judged equal), {done} verifications",
        pairs.len()
    );
    println!("rlvr answers/s: {rate:.0}");
}
