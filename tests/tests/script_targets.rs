//! Every cargo target a script builds or runs exists: `scripts/**/*.sh` and `.ci/run` name
//! examples, benches, binaries and tests (`-p CRATE --example NAME`), and a target that was moved
//! or deleted would otherwise break only the script (the benchmark records of `scripts/bench.sh`
//! among them), long after the change that lost it. Targets are read from `cargo metadata`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (package, kind, name) of every target in the workspace.
fn workspace_targets() -> BTreeSet<(String, String, String)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(repo())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let mut targets = BTreeSet::new();
    for package in meta["packages"].as_array().expect("packages") {
        let pname = package["name"].as_str().expect("package name");
        for target in package["targets"].as_array().expect("targets") {
            let name = target["name"].as_str().expect("target name");
            for kind in target["kind"].as_array().expect("target kinds") {
                let kind = kind.as_str().expect("kind");
                targets.insert((pname.to_string(), kind.to_string(), name.to_string()));
            }
        }
    }
    targets
}

fn scripts() -> Vec<PathBuf> {
    let mut out = vec![repo().join(".ci/run")];
    out.extend(rlvr_tests::files_with_extension(
        &repo().join("scripts"),
        "sh",
    ));
    out
}

/// The (package if named, kind, name) targets one cargo command line names.
fn named_targets(line: &str) -> Vec<(Option<String>, &'static str, String)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some(start) = words.iter().position(|w| *w == "cargo") else {
        return Vec::new();
    };
    let words = &words[start..];
    let package = words
        .windows(2)
        .find(|w| w[0] == "-p" || w[0] == "--package")
        .map(|w| w[1].to_string());
    let mut out = Vec::new();
    for w in words.windows(2) {
        let kind = match w[0] {
            "--example" => "example",
            "--bench" => "bench",
            "--bin" => "bin",
            "--test" => "test",
            _ => continue,
        };
        let name = w[1].trim_matches(|c: char| c == '"' || c == '\'' || c == ')' || c == ';');
        out.push((package.clone(), kind, name.to_string()));
    }
    out
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_cargo_target_a_script_names_exists() {
    let targets = workspace_targets();
    let mut checked = 0;
    let mut missing = Vec::new();
    for script in scripts() {
        let text = std::fs::read_to_string(&script).expect("script is text");
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            for (package, kind, name) in named_targets(line) {
                checked += 1;
                let found = targets.iter().any(|(p, k, t)| {
                    k == kind && *t == name && package.as_deref().is_none_or(|want| want == p)
                });
                if !found {
                    missing.push(format!(
                        "{}:{}: {} `{name}` of {}",
                        relative(&script),
                        n + 1,
                        kind,
                        package.as_deref().unwrap_or("the workspace")
                    ));
                }
            }
        }
    }
    assert!(
        checked >= 10,
        "found the scripts' cargo targets ({checked})"
    );
    assert!(
        missing.is_empty(),
        "scripts name targets that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn a_missing_example_is_reported() {
    let targets = workspace_targets();
    let named = named_targets("cargo build --release -p rlvr-models --example no_such_example");
    assert_eq!(
        named,
        vec![(
            Some("rlvr-models".into()),
            "example",
            "no_such_example".into()
        )]
    );
    assert!(!targets
        .iter()
        .any(|(_, k, t)| k == "example" && t == "no_such_example"));
    assert!(targets.contains(&(
        "rlvr-models".into(),
        "example".into(),
        "rollout_bench".into()
    )));
}
