//! Helpers the decoder's integration tests share.
#![allow(dead_code)]

use rlvr_core::{StatsNeeds, TokenStats};
use rlvr_models::HfModel;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

/// A fixture model (`tests/fixtures/NAME`) in f32 on the CPU.
pub fn model(name: &str) -> HfModel {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    HfModel::load(&dir, Device::Cpu, Kind::Float).unwrap()
}

/// Left-pads rows of ids into `[B, W]` ids and mask.
pub fn left_pad(rows: &[Vec<i64>]) -> (Tensor, Tensor) {
    let w = rows.iter().map(Vec::len).max().unwrap();
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for r in rows {
        ids.extend(std::iter::repeat_n(0, w - r.len()).chain(r.iter().copied()));
        mask.extend(std::iter::repeat_n(0i64, w - r.len()).chain(std::iter::repeat_n(1, r.len())));
    }
    let shape = [rows.len() as i64, w as i64];
    (
        Tensor::from_slice(&ids).reshape(shape),
        Tensor::from_slice(&mask).reshape(shape),
    )
}

/// What the update tests ask of the statistics: all of it.
pub fn needs() -> StatsNeeds {
    StatsNeeds {
        entropy: true,
        entropy_grad: true,
        topk: 3,
        top1: true,
        reference: false,
    }
}

/// A loss that uses every differentiable statistic and couples the batch non-linearly (a square
/// of a sum), so per-token separability cannot be what makes chunking exact.
pub fn loss(s: &TokenStats, mask: &Tensor) -> Tensor {
    let top1 = s.is_top1.as_ref().unwrap();
    let per_token = &s.logp * (top1 * 0.5 + 1.0)
        + s.topk_logp.as_ref().unwrap().select(-1, 1) * 0.7
        - s.entropy.as_ref().unwrap() * 0.3;
    let total = (per_token * mask).sum(Kind::Float) / mask.sum(Kind::Float);
    &total * &total + total
}

/// Each variable's gradient (zeros where none), by name; the gradients are zeroed after.
pub fn grads(m: &HfModel) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> =
        m.vs.variables()
            .into_iter()
            .map(|(k, t)| {
                let g = t.grad();
                let g = if g.defined() {
                    g.copy()
                } else {
                    t.zeros_like()
                };
                (k, g)
            })
            .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, t) in m.vs.variables() {
        let mut t = t;
        t.zero_grad();
    }
    v
}

/// The largest relative difference (to each tensor's largest magnitude) between two gradient sets.
pub fn max_rel_diff(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> f64 {
    a.iter()
        .zip(b)
        .map(|((k, x), (_, y))| {
            let scale = x.abs().max().double_value(&[]).max(1e-6);
            let d = (x - y).abs().max().double_value(&[]) / scale;
            assert!(d.is_finite(), "{k}: non-finite gradient");
            d
        })
        .fold(0.0, f64::max)
}

/// Releases every gradient of `m` (as the trainer does after an optimizer step).
pub fn release_grads(m: &HfModel) {
    let vars: Vec<Tensor> = m.vs.variables().into_values().collect();
    rlvr_kernels::release_grads(&vars).unwrap();
}
