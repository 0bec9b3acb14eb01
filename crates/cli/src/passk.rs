//! The unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models Trained on
//! Code", arXiv 2107.03374): 1 − C(n−c, k)/C(n, k), computed as the stable product
//! 1 − Π_{i=n−c+1}^{n} (1 − k/i).

/// pass@k of one problem with `c` correct among `n` samples (k ≤ n).
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    if k == 0 || k > n {
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
