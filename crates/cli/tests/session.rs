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

/// `rlvr train --runs-dir runs --name NAME` with `--set` of each of `sets`, in `cwd`.
fn train_with(cwd: &Path, name: &str, sets: &[&str]) -> Output {
    let mut args = vec!["train", "--runs-dir", "runs", "--name", name];
    for set in sets {
        args.extend(["--set", set]);
    }
    run(&args, cwd)
}

/// A one-step run `runs/r` under `tmp`; returns its folder.
fn trained_run(tmp: &Path) -> std::path::PathBuf {
    let runs = tmp.join("runs");
    let o = common::train(&runs, "r", &["--steps", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    runs.join("r")
}

#[test]
fn every_command_honours_train_device_with_the_same_error() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let run_dir = trained_run(tmp.path());
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
    assert!(!run_dir
        .join("eval")
        .join("step-1-countdown-n2-seed0")
        .exists());
}

#[test]
fn sample_works_in_bounded_batches_with_the_same_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let run_arg = trained_run(tmp.path());
    let run_arg = run_arg.to_str().unwrap();
    let cwd = tmp.path();
    let whole = run(&["sample", "--run", run_arg, "--n", "40"], cwd);
    assert!(whole.status.success(), "{}", text(&whole));
    // Batches of 7 responses: each response keeps its own random stream, so the same samples.
    let batched = run(
        &["sample", "--run", run_arg, "--n", "40", "--batch-rows", "7"],
        cwd,
    );
    assert!(batched.status.success(), "{}", text(&batched));
    assert_eq!(
        rlvr_tests::cli::stdout(&whole),
        rlvr_tests::cli::stdout(&batched)
    );
    assert!(rlvr_tests::cli::stdout(&whole).contains("40 samples"));
    for (args, needle) in [
        (vec!["--n", "0"], "--n must be >= 1"),
        (vec!["--batch-rows", "0"], "--batch-rows must be >= 1"),
        (
            vec!["--min-share", "2"],
            "--min-share must be a fraction in (0, 1]",
        ),
        (
            vec!["--min-share", "NaN"],
            "--min-share must be a fraction in (0, 1]",
        ),
    ] {
        let mut all = vec!["sample", "--run", run_arg];
        all.extend(args);
        let o = run(&all, cwd);
        assert_eq!(o.status.code(), Some(2), "{all:?}: {}", text(&o));
        assert!(stderr(&o).contains(needle), "{all:?}: {}", text(&o));
    }
}

#[test]
fn two_evaluations_racing_for_one_folder_never_both_report_success() {
    let tmp = tempfile::tempdir().unwrap();
    let run_arg = trained_run(tmp.path());
    let args = [
        "eval",
        "--run",
        run_arg.to_str().unwrap(),
        "-n",
        "4",
        "--problems",
        "40",
    ];
    let children: Vec<_> = (0..2)
        .map(|_| {
            rlvr()
                .args(args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let ok = outputs.iter().filter(|o| o.status.success()).count();
    assert_eq!(ok, 1, "exactly one evaluation gets the folder");
    let lost = outputs.iter().find(|o| !o.status.success()).unwrap();
    assert_eq!(lost.status.code(), Some(2));
    assert!(stderr(lost).contains("already exists"), "{}", text(lost));
    let dir = run_arg.join("eval/step-1-countdown-n4-seed0");
    assert!(dir.join("eval.json").exists());
    // Another seed is another folder.
    let mut other = args.to_vec();
    other.extend(["--seed", "3"]);
    let o = rlvr().args(&other).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(run_arg
        .join("eval/step-1-countdown-n4-seed3/eval.json")
        .exists());
}

#[test]
fn the_saved_in_banner_comes_only_once_the_run_folder_exists() {
    let tmp = tempfile::tempdir().unwrap();
    // Responses as long as the model's context: refused when the session opens.
    let o = train_with(tmp.path(), "x", &["train.max_new_tokens=512"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        stderr(&o).contains("leaves no room for a prompt"),
        "{}",
        text(&o)
    );
    assert!(
        !rlvr_tests::cli::stdout(&o).contains("saved in"),
        "{}",
        text(&o)
    );
    assert!(!tmp.path().join("runs/x").exists());
    let o = common::train(&tmp.path().join("runs"), "y", &["--steps", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        rlvr_tests::cli::stdout(&o).contains("saved in"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_model_larger_than_memory_fails_with_the_setting_to_lower_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let o = train_with(
        tmp.path(),
        "big",
        &[
            "model.init=\"\"",
            "model.hidden_size=4000000",
            "model.intermediate_size=4000000",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("lower hidden_size"), "{}", text(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", text(&o));
    assert!(!tmp.path().join("runs/big").exists());
}

#[test]
fn an_evaluation_whose_logits_overflow_fails_instead_of_reporting_zeros() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = rlvr_tests::cli::repo("crates/models/tests/fixtures/qwen2-tiny");
    let model = tmp.path().join("overflowing");
    std::fs::create_dir(&model).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture.join(f), model.join(f)).unwrap();
    }
    // Finite weights (1e37 × ~0.02) whose products overflow f32 in the MLP.
    let mut tensors = tch::Tensor::read_safetensors(fixture.join("model.safetensors")).unwrap();
    for (name, t) in tensors.iter_mut() {
        if name.ends_with("up_proj.weight") {
            *t = &*t * 1e37;
        }
    }
    let list: Vec<(&str, &tch::Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    tch::Tensor::write_safetensors(&list, model.join("model.safetensors")).unwrap();
    let o = run(
        &[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--task",
            "countdown",
            "-n",
            "2",
            "--problems",
            "4",
        ],
        tmp.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("logits are not finite"), "{}", text(&o));
    // Its claimed folder is released: nothing written.
    assert!(!tmp.path().join("evals").read_dir().unwrap().any(|_| true));
}
