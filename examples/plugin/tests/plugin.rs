//! The example plugin's loss and gate are registered from outside rlvr, listed by the plugin
//! binary, and selectable by a config.

use std::process::Command;

fn plugin_bin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rlvr-with-plugin"))
        .args(args)
        .output()
        .expect("binary runs")
}

#[test]
fn plugin_binary_lists_the_plugin_loss_and_gate() {
    let out = plugin_bin(&["list"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("vanilla-pg"), "{text}");
    assert!(text.contains("first-tokens"), "{text}");
    assert!(text.contains("simko"), "built-ins still present: {text}");
}

#[test]
fn plugin_loss_and_gate_are_selected_by_a_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugin.toml");
    std::fs::write(&path, "[algo]\npreset = \"grpo\"\n[algo.loss]\ntype = \"vanilla-pg\"\n[algo.loss.gate]\ntype = \"first-tokens\"\nn = 8\n").unwrap();
    let out = plugin_bin(&["config", "--config", path.to_str().unwrap(), "--n", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: toml::Table = String::from_utf8_lossy(&out.stdout).parse().unwrap();
    let loss = doc["algo"]["loss"].as_table().unwrap();
    assert_eq!(loss["type"].as_str(), Some("vanilla-pg"));
    assert_eq!(loss["gate"]["type"].as_str(), Some("first-tokens"));
    assert_eq!(
        loss["gate"]["n"].as_integer(),
        Some(3),
        "plugin field became a flag"
    );
    // Invalid plugin parameters are validated like built-in ones.
    let out = plugin_bin(&["config", "--config", path.to_str().unwrap(), "--n", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gate.n"));
}

#[test]
fn plugin_pieces_compute_what_they_say() {
    use rlvr_core::{GateInput, LossConfig, LossInput, StatsNeeds, TokenStats};
    use tch::{Kind, Tensor};
    rlvr_plugin_example::link();
    let cfg: Box<dyn LossConfig> =
        toml::from_str("type = \"vanilla-pg\"\n[gate]\ntype = \"first-tokens\"\nn = 2\n").unwrap();
    let loss = cfg.build().unwrap();
    assert_eq!(loss.needs(), StatsNeeds::default());
    let logp = Tensor::from_slice(&[-1.0f32, -2.0, -3.0, -4.0]).view([1, 4]);
    let stats = TokenStats {
        logp,
        entropy: None,
        topk_logp: None,
        topk_ids: None,
        is_top1: None,
    };
    let mask = Tensor::ones([1, 4], (Kind::Float, tch::Device::Cpu));
    let adv = Tensor::full([1, 4], 2.0, (Kind::Float, tch::Device::Cpu));
    let zeros = mask.zeros_like();
    let tokens = zeros.to_kind(Kind::Int64);
    let scores = Tensor::ones([1], (Kind::Float, tch::Device::Cpu));
    let input = LossInput {
        stats: &stats,
        old_logp: &zeros,
        ref_logp: None,
        advantages: &adv,
        mask: &mask,
        scores: &scores,
        tokens: &tokens,
        truncated: None,
    };
    let out = loss.per_token_loss(&input).unwrap();
    let values = Vec::<f32>::try_from(out.per_token.reshape([-1])).unwrap();
    assert_eq!(values, vec![2.0, 4.0, 0.0, 0.0]);
    let _ = GateInput {
        stats: &stats,
        mask: &mask,
        tokens: &tokens,
        truncated: None,
    };
}
