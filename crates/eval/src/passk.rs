//! The unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models Trained on
//! Code", arXiv 2107.03374, §2.1): with `c` correct among `n` samples,
//! pass@k = 1 − C(n−c, k)/C(n, k), computed as the numerically stable product
//! 1 − Π_{i=n−c+1}^{n} (1 − k/i) (the paper's `estimator` function).

/// pass@k of one problem with `c` correct among `n` samples. `NaN` when `k` is 0 or exceeds `n`
/// (no unbiased estimate exists) or when `c > n`.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    if k == 0 || k > n || c > n {
        return f64::NAN;
    }
    if n - c < k {
        return 1.0;
    }
    1.0 - ((n - c + 1)..=n)
        .map(|i| 1.0 - k as f64 / i as f64)
        .product::<f64>()
}

/// The k values reported for n samples: 1, 2, 4, … ≤ n.
pub fn ks(n: usize) -> Vec<usize> {
    std::iter::successors(Some(1usize), |k| k.checked_mul(2))
        .take_while(|k| *k <= n)
        .collect()
}

/// Mean pass@k over problems given each problem's correct count (all with `n` samples).
pub fn mean_pass_at_k(n: usize, correct: &[usize], k: usize) -> f64 {
    if correct.is_empty() {
        return f64::NAN;
    }
    correct.iter().map(|&c| pass_at_k(n, c, k)).sum::<f64>() / correct.len() as f64
}
