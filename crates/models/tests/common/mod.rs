//! Helpers the decoder's integration tests share.
#![allow(dead_code)]

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
