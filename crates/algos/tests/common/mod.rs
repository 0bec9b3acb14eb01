//! Shared helpers of the algorithm tests.
#![allow(dead_code)]

use rlvr_core::{AlgoConfig, LossConfig, PolicyLoss};
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{Kind, Tensor};

/// Keeps rlvr-algos (and its link-time registrations) in the test binary.
pub fn link() {
    rlvr_algos::presets::link_anchor();
}

/// Path of a fixture file.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference")
        .join(name)
}

/// All tensors of a fixture file, by name.
pub fn load(file: &str) -> HashMap<String, Tensor> {
    link();
    Tensor::read_safetensors(fixture(file))
        .expect("fixture readable")
        .into_iter()
        .collect()
}

/// The manifest entries of one kind.
pub fn manifest(kind: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(fixture("manifest.json")).expect("manifest readable");
    let all: Vec<serde_json::Value> = serde_json::from_str(&text).expect("manifest is JSON");
    all.into_iter().filter(|c| c["kind"] == kind).collect()
}

/// Asserts |a − e| ≤ rel·|e| + abs elementwise, reporting the worst element.
pub fn assert_close(actual: &Tensor, expected: &Tensor, rel: f64, abs: f64, what: &str) {
    let a = actual.to_kind(Kind::Double).reshape([-1]);
    let e = expected.to_kind(Kind::Double).reshape([-1]);
    assert_eq!(a.size(), e.size(), "{what}: shape");
    let err = (&a - &e).abs() - e.abs() * rel - abs;
    let worst = err.max().double_value(&[]);
    if worst > 0.0 {
        let i = err.argmax(0, false).int64_value(&[]);
        panic!(
            "{what}: element {i} actual {} expected {} (tolerance rel {rel} abs {abs})",
            a.double_value(&[i]),
            e.double_value(&[i])
        );
    }
}

/// Builds a loss from a TOML `[algo.loss]`-style table body.
pub fn loss_from_toml(body: &str) -> Box<dyn PolicyLoss> {
    let cfg: Box<dyn LossConfig> = toml::from_str(body).expect("loss config parses");
    cfg.build().expect("loss config valid")
}

/// Resolves an `[algo]` table given as TOML text.
pub fn algo_from_toml(body: &str) -> AlgoConfig {
    let table: toml::Table = body.parse().expect("toml");
    AlgoConfig::resolve(&table).expect("algo resolves")
}
