//! Small countdown runs on the shipped base checkpoint, built in-process.

#![allow(dead_code)]

use rlvr_train::config::{default_document, set, RunConfig};

/// The default run document with small, fast settings and `overrides` (dotted key, TOML value).
pub fn small_config(overrides: &[(&str, toml::Value)]) -> RunConfig {
    rlvr_algos::presets::link_anchor();
    rlvr_models::link_anchor();
    rlvr_rewards::link_anchor();
    let mut doc = default_document();
    for (k, v) in [
        ("train.prompts_per_step", 4),
        ("train.samples_per_prompt", 4),
        ("train.eval_problems", 0),
        ("train.steps", 2),
        ("train.checkpoint_every", 0),
    ] {
        set(&mut doc, k, toml::Value::Integer(v)).unwrap();
    }
    for (k, v) in overrides {
        set(&mut doc, k, v.clone()).unwrap();
    }
    RunConfig::from_document(doc).unwrap()
}

/// The JSON lines of a run's `metrics.jsonl`.
pub fn metrics(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A copy of every variable of a trainer's policy, by name.
pub fn params(t: &rlvr_train::Trainer) -> Vec<(String, tch::Tensor)> {
    let mut v: Vec<(String, tch::Tensor)> = t
        .session
        .policy
        .var_store()
        .variables()
        .into_iter()
        .map(|(n, x)| (n, x.detach().copy()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
