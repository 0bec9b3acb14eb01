//! Small tensor helpers shared by the algorithms.

use rlvr_core::{CoreError, Result};
use tch::{Kind, Tensor};

/// A tensor's values as f64, row-major.
pub fn to_vec_f64(t: &Tensor) -> Result<Vec<f64>> {
    let flat = t
        .f_detach()?
        .f_to_kind(Kind::Double)?
        .f_to_device(tch::Device::Cpu)?
        .f_reshape([-1])?;
    Vec::<f64>::try_from(&flat).map_err(CoreError::from)
}

/// A tensor's values as i64, row-major.
pub fn to_vec_i64(t: &Tensor) -> Result<Vec<i64>> {
    let flat = t
        .f_detach()?
        .f_to_kind(Kind::Int64)?
        .f_to_device(tch::Device::Cpu)?
        .f_reshape([-1])?;
    Vec::<i64>::try_from(&flat).map_err(CoreError::from)
}

/// A `[B]` f32 tensor on the device of `like` from f64 values.
pub fn per_row(values: &[f64], like: &Tensor) -> Result<Tensor> {
    Ok(Tensor::from_slice(values)
        .f_to_kind(Kind::Float)?
        .f_to_device(like.device())?)
}

/// Broadcasts a `[B]` per-response value over the valid tokens of `mask` `[B, T]`.
pub fn broadcast_rows(values: &Tensor, mask: &Tensor) -> Result<Tensor> {
    Ok(values.f_unsqueeze(-1)?.f_mul(mask)?)
}

/// Σ(values·mask)/Σ(mask) over all elements (verl's `masked_mean`), 0 for an empty mask.
pub fn masked_mean(values: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let num = values.f_mul(mask)?.f_sum(Kind::Float)?;
    let den = mask.f_sum(Kind::Float)?.f_clamp_min(1e-8)?;
    Ok(num.f_div(&den)?)
}

/// Indices of the responses of each group, groups in order of first appearance.
pub fn groups(group: &Tensor) -> Result<Vec<Vec<usize>>> {
    let ids = to_vec_i64(group)?;
    let mut order: Vec<i64> = Vec::new();
    let mut members: std::collections::HashMap<i64, Vec<usize>> = std::collections::HashMap::new();
    for (i, g) in ids.iter().enumerate() {
        members
            .entry(*g)
            .or_insert_with(|| {
                order.push(*g);
                Vec::new()
            })
            .push(i);
    }
    Ok(order
        .into_iter()
        .filter_map(|g| members.remove(&g))
        .collect())
}

/// Mean and unbiased standard deviation of `xs` (std is 0 for fewer than 2 values).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// C(n, k) / C(m, k) as a stable product Π_{i<k} (n−i)/(m−i); 0 when k > n.
pub fn binom_ratio(n: usize, m: usize, k: usize) -> f64 {
    if k > n {
        return 0.0;
    }
    (0..k).map(|i| (n - i) as f64 / (m - i) as f64).product()
}

/// Validates a hyperparameter against a predicate.
pub fn check(ok: bool, param: &str, value: impl ToString, rule: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(CoreError::invalid(param, value, rule))
    }
}
