//! 10^5 generated inputs through the math verifier: counts panics and reports the slowest and
//! mean time per verification (`cargo bench -p rlvr-rewards --bench verifier_fuzz`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rlvr_core::Verifier;
use rlvr_rewards::math::MathVerifier;
use std::time::Instant;

use rlvr_tests::fuzz::LATEX_ATOMS as ATOMS;

fn input(rng: &mut ChaCha8Rng, i: usize) -> String {
    match i % 100 {
        // Occasional pathological sizes: deep nesting and megabyte strings.
        0 => format!(
            "\\boxed{{{}1{}}}",
            "(".repeat(rng.random_range(100..20_000)),
            ")".repeat(rng.random_range(100..20_000))
        ),
        1 => "9^".repeat(rng.random_range(10..2000)) + "9",
        2 => "x".repeat(rng.random_range(100_000..1_000_000)),
        _ => (0..rng.random_range(0..80))
            .map(|_| ATOMS[rng.random_range(0..ATOMS.len())])
            .collect(),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let n: usize = std::env::var("RLVR_FUZZ_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let v = MathVerifier::default();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (mut worst, mut total, mut panics, mut over_50ms) = (0.0f64, 0.0f64, 0usize, 0usize);
    let mut worst_input = String::new();
    for i in 0..n {
        let (resp, gold) = (input(&mut rng, i), input(&mut rng, i + 3));
        let t = Instant::now();
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| v.verify(&resp, &gold)))
            .is_ok();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        panics += usize::from(!ok);
        over_50ms += usize::from(ms > 50.0);
        total += ms;
        if ms > worst {
            worst = ms;
            worst_input = resp.chars().take(60).collect();
        }
    }
    println!("{n} inputs: {panics} panics, {over_50ms} over 50 ms, slowest {worst:.2} ms ({worst_input:?}…), mean {:.4} ms", total / n as f64);
}
