//! The pass@k estimator against exact references: enumeration of all k-subsets for small n, and
//! exact big-integer binomials for n up to 1024.

use num_bigint::BigUint;
use proptest::prelude::*;
use rlvr_eval::passk::{ks, mean_pass_at_k, pass_at_k};

/// Fraction of the k-subsets of n samples (the first c correct) that contain a correct sample,
/// by walking every subset.
fn enumerate(n: usize, c: usize, k: usize) -> f64 {
    let (mut hit, mut total) = (0u64, 0u64);
    for mask in 0u32..(1u32 << n) {
        if mask.count_ones() as usize != k {
            continue;
        }
        total += 1;
        if mask & ((1u32 << c) - 1) != 0 {
            hit += 1;
        }
    }
    hit as f64 / total as f64
}

fn binom(n: usize, k: usize) -> BigUint {
    if k > n {
        return BigUint::from(0u32);
    }
    let mut r = BigUint::from(1u32);
    for i in 0..k {
        r = r * BigUint::from(n - i) / BigUint::from(i + 1);
    }
    r
}

/// 1 − C(n−c, k)/C(n, k) from exact integers, rounded to f64 through 60 decimal digits.
fn exact(n: usize, c: usize, k: usize) -> f64 {
    let scale = BigUint::from(10u32).pow(60);
    let q = binom(n - c, k) * &scale / binom(n, k);
    let digits = q.to_string();
    let frac: f64 = format!("0.{:0>60}", digits).parse().unwrap_or(f64::NAN);
    if digits.len() > 60 {
        // q == scale: the ratio is exactly 1.
        return 0.0;
    }
    1.0 - frac
}

proptest! {
    #[test]
    fn equals_enumeration_for_small_n(n in 1usize..=14, c_frac in 0.0f64..=1.0, k_frac in 0.0f64..=1.0) {
        let c = ((n as f64) * c_frac).round() as usize;
        let k = 1 + ((n - 1) as f64 * k_frac).round() as usize;
        let got = pass_at_k(n, c, k);
        let want = enumerate(n, c, k);
        prop_assert!((got - want).abs() < 1e-12, "n={n} c={c} k={k}: {got} vs {want}");
    }

    #[test]
    fn exact_for_large_n(n in 1usize..=1024, c_frac in 0.0f64..=1.0, k_frac in 0.0f64..=1.0) {
        let c = ((n as f64) * c_frac).round() as usize;
        let k = 1 + ((n - 1) as f64 * k_frac).round() as usize;
        let got = pass_at_k(n, c, k);
        prop_assert!(got.is_finite());
        prop_assert!((0.0..=1.0).contains(&got));
        let want = exact(n, c, k);
        prop_assert!((got - want).abs() < 1e-12, "n={n} c={c} k={k}: {got} vs {want}");
    }
}

#[test]
fn exact_on_a_full_grid_at_n_1024() {
    let n = 1024;
    let mut worst = 0.0f64;
    for c in [0, 1, 2, 3, 5, 10, 100, 500, 1000, 1020, 1023, 1024] {
        for k in ks(n) {
            let got = pass_at_k(n, c, k);
            assert!(got.is_finite(), "c={c} k={k}");
            worst = worst.max((got - exact(n, c, k)).abs());
        }
    }
    assert!(worst < 1e-12, "worst error {worst}");
}

#[test]
fn edge_cases() {
    assert_eq!(pass_at_k(16, 0, 1), 0.0);
    assert_eq!(pass_at_k(16, 16, 16), 1.0);
    assert_eq!(pass_at_k(16, 1, 16), 1.0);
    assert!((pass_at_k(16, 4, 1) - 0.25).abs() < 1e-15, "pass@1 is c/n");
    assert!(
        pass_at_k(4, 1, 5).is_nan(),
        "k > n has no unbiased estimate"
    );
    assert!(pass_at_k(4, 5, 1).is_nan(), "c > n is invalid");
    assert!(pass_at_k(4, 1, 0).is_nan());
    assert_eq!(ks(64), vec![1, 2, 4, 8, 16, 32, 64]);
    assert_eq!(ks(20), vec![1, 2, 4, 8, 16]);
    assert!((mean_pass_at_k(4, &[0, 4], 2) - 0.5).abs() < 1e-15);
    assert!(mean_pass_at_k(4, &[], 2).is_nan());
}
