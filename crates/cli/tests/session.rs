//! Every command that runs a policy opens one run session (`rlvr_train::Session`): `train`,
//! `eval`, `sample` and `sft` all honour `train.device`, and a device that cannot be used fails
//! each of them the same way (exit 2, the same message) before any work.

use rlvr_tests::cli::{stderr, text};
use std::path::Path;
use std::process::Output;

mod common;

use common::rlvr;

/// The error line of a failed command, after checking it is a usage error that wrote nothing.
fn usage_error(o: &Output, what: &str) -> String {
    assert_eq!(o.status.code(), Some(2), "{what}: {}", text(o));
    let line = stderr(o)
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or_else(|| panic!("{what}: no error line in {}", text(o)))
        .to_string();
    assert!(line.contains("train.device"), "{what}: {line}");
    line
}

fn run(args: &[&str], cwd: &Path) -> Output {
    rlvr().current_dir(cwd).args(args).output().unwrap()
}

#[test]
fn every_command_honours_train_device_with_the_same_error() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let o = common::train(&runs, "r", &["--steps", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let run_dir = runs.join("r");
    let run_arg = run_dir.to_str().unwrap();
    let cwd = tmp.path();

    // Flags: the same device name given to each command.
    let flagged: [(&str, Vec<&str>); 5] = [
        (
            "train --device",
            vec!["train", "--name", "x", "--device", "tpu"],
        ),
        (
            "train --set train.device",
            vec!["train", "--name", "y", "--set", "train.device=tpu"],
        ),
        (
            "eval --device",
            vec!["eval", "--run", run_arg, "-n", "2", "--device", "tpu"],
        ),
        (
            "sample --device",
            vec!["sample", "--run", run_arg, "--n", "2", "--device", "tpu"],
        ),
        (
            "sft --device",
            vec!["sft", "--steps", "1", "--out", "sft-out", "--device", "tpu"],
        ),
    ];
    let mut lines: Vec<(&str, String)> = Vec::new();
    for (what, args) in &flagged {
        let mut args = args.clone();
        if args[0] == "train" {
            args.extend(["--runs-dir", "runs"]);
        }
        lines.push((what, usage_error(&run(&args, cwd), what)));
    }
    // The run's own train.device: eval and sample read it from config.toml.
    let config = run_dir.join("config.toml");
    let text_cfg = std::fs::read_to_string(&config).unwrap();
    assert!(text_cfg.contains("device = \"cpu\""), "{text_cfg}");
    std::fs::write(
        &config,
        text_cfg.replace("device = \"cpu\"", "device = \"tpu\""),
    )
    .unwrap();
    lines.push((
        "eval of a run on tpu",
        usage_error(&run(&["eval", "--run", run_arg, "-n", "2"], cwd), "eval"),
    ));
    lines.push((
        "sample of a run on tpu",
        usage_error(
            &run(&["sample", "--run", run_arg, "--n", "2"], cwd),
            "sample",
        ),
    ));
    let first = &lines[0].1;
    for (what, line) in &lines {
        assert_eq!(line, first, "{what} says another error");
    }
    assert!(
        first.contains("unknown device `tpu`; valid: cpu, cuda, cuda:N"),
        "{first}"
    );
    // Nothing was written: no run folders, no evaluation, no model.
    assert!(!runs.join("x").exists() && !runs.join("y").exists());
    assert!(!cwd.join("sft-out").exists());
    assert!(!run_dir.join("eval").join("step-1-countdown-n2").exists());
}
