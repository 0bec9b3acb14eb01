//! The plugin binary lists the example plugin's loss and gate next to the built-ins, and a config
//! selects them.

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
