//! End-to-end tests of `rlvr train` / `rlvr sft`: resume after SIGKILL, non-finite guards, metrics
//! keys, the shipped base checkpoint, a smoke run with a HF checkpoint on MATH parquet.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn rlvr() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rlvr"))
}

fn repo(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(p)
}

/// Small, fast settings on countdown from the shipped base.
const SMALL: [&str; 10] = [
    "--set",
    "train.prompts_per_step=4",
    "--set",
    "train.samples_per_prompt=4",
    "--set",
    "train.eval_problems=0",
    "--set",
    "train.checkpoint_every=5",
    "--set",
    "train.mini_batches=2",
];

fn train(runs: &Path, name: &str, extra: &[&str]) -> Output {
    rlvr()
        .args([
            "train",
            "--runs-dir",
            runs.to_str().unwrap(),
            "--name",
            name,
        ])
        .args(SMALL)
        .args(extra)
        .output()
        .unwrap()
}

fn weights(dir: &Path) -> Vec<(String, tch::Tensor)> {
    let mut v = tch::Tensor::read_safetensors(dir.join("model/model.safetensors")).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_run_killed_and_resumed_ends_with_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let steps = ["--steps", "30"];
    let straight = train(tmp.path(), "straight", &steps);
    assert!(straight.status.success(), "{}", text(&straight));

    let dir = tmp.path().join("killed");
    let mut child = rlvr()
        .args([
            "train",
            "--runs-dir",
            tmp.path().to_str().unwrap(),
            "--name",
            "killed",
        ])
        .args(SMALL)
        .args(steps)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !dir.join("checkpoints/step-10/state.json").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !dir.join("checkpoints/step-30").exists(),
        "killed before the end"
    );
    let resumed = rlvr()
        .args(["train", "--resume", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(text(&resumed).contains("resuming"));
    let (a, b) = (
        weights(&tmp.path().join("straight/checkpoints/step-30")),
        weights(&dir.join("checkpoints/step-30")),
    );
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after resume");
    }
    let lines = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(lines, 30, "one metrics line per step, none duplicated");
}

#[test]
fn a_nan_step_is_skipped_and_repeated_ones_abort_keeping_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let ok = train(
        tmp.path(),
        "nan",
        &["--steps", "6", "--set", "train.inject_nan_at_step=3"],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    let metrics: Vec<serde_json::Value> =
        std::fs::read_to_string(tmp.path().join("nan/metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(metrics.len(), 6);
    assert_eq!(
        metrics[2]["skipped_updates"], 2,
        "both mini-batch updates of step 3 skipped"
    );
    assert_eq!(metrics[3]["skipped_updates"], 0);
    assert!(text(&ok).contains("non-finite"));

    let abort = train(
        tmp.path(),
        "abort",
        &[
            "--steps",
            "12",
            "--set",
            "train.inject_nan_at_step=7",
            "--set",
            "train.max_nonfinite=1",
        ],
    );
    assert!(!abort.status.success());
    assert!(text(&abort).contains("non-finite"), "{}", text(&abort));
    let ck = tmp.path().join("abort/checkpoints");
    assert!(
        ck.join("step-5/state.json").exists(),
        "last good checkpoint kept"
    );
    assert!(!ck.join("step-10").exists());
}

#[test]
fn metrics_have_the_documented_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let o = train(tmp.path(), "keys", &["--steps", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let line = std::fs::read_to_string(tmp.path().join("keys/metrics.jsonl")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    for key in [
        "step",
        "reward_mean",
        "accuracy",
        "entropy",
        "top1_prob",
        "sampled_logp",
        "lambda_1",
        "lambda_2",
        "lambda_3",
        "lambda_4",
        "lambda_5",
        "rank2_prob",
        "rank3_prob",
        "clipfrac",
        "ppo_kl",
        "kl_ref",
        "loss",
        "grad_norm",
        "lr",
        "response_len",
        "skipped_updates",
        "time_rollout",
        "time_score",
        "time_update",
        "tokens_per_s",
    ] {
        assert!(
            v.get(key).is_some_and(|x| x.is_number()),
            "metrics.jsonl lacks `{key}`"
        );
    }
    let config = std::fs::read_to_string(tmp.path().join("keys/config.toml")).unwrap();
    assert!(
        config.contains("[algo.loss]") && config.contains("[train]"),
        "resolved config written"
    );
}

#[test]
fn the_shipped_base_checkpoint_loads_and_solves_some_problems() {
    let base = repo("assets/countdown-base");
    let m = rlvr_models::HfModel::load(&base, tch::Device::Cpu, tch::Kind::Float).unwrap();
    assert!(m.vs.variables().len() >= 10);
    let tmp = tempfile::tempdir().unwrap();
    let o = train(
        tmp.path(),
        "base",
        &[
            "--steps",
            "1",
            "--set",
            "train.eval_problems=20",
            "--set",
            "train.eval_samples=4",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let before: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("base/eval/before.json")).unwrap(),
    )
    .unwrap();
    assert!(
        before["mean_at_n"].as_f64().unwrap() > 0.1,
        "the warm start solves some held-out problems: {before}"
    );
}

#[test]
fn qwen2_tiny_on_math_parquet_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let model = repo("crates/models/tests/fixtures/qwen2-tiny");
    let data = repo("crates/rewards/tests/data/math_test.parquet");
    let o = rlvr()
        .args([
            "train",
            "--runs-dir",
            tmp.path().to_str().unwrap(),
            "--name",
            "hf",
            "--algo",
            "grpo",
        ])
        .args([
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--steps",
            "2",
        ])
        .args([
            "--set",
            "train.prompts_per_step=2",
            "--set",
            "train.samples_per_prompt=2",
            "--set",
            "train.max_new_tokens=8",
        ])
        .args([
            "--set",
            "train.eval_problems=2",
            "--set",
            "train.eval_samples=2",
            "--set",
            "data.holdout=10",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let ck = tmp.path().join("hf/checkpoints/step-2/model");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(ck.join(f).exists(), "{f} in the HF-format checkpoint");
    }
    let saved = rlvr_models::HfModel::load(&ck, tch::Device::Cpu, tch::Kind::Float).unwrap();
    assert_eq!(saved.model.config().vocab_size, 512);
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("hf/metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );
}

#[test]
fn invalid_configs_fail_before_any_rollout() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, msg) in [
        (vec!["--set", "train.lr=-1"], "train.lr"),
        (vec!["--topk", "0"], "topk"),
        (vec!["--task", "nope"], "countdown"),
        (vec!["--set", "train.stepz=3"], "stepz"),
        (vec!["--model", "/nonexistent/model"], "neither a folder"),
    ] {
        let o = rlvr()
            .args([
                "train",
                "--runs-dir",
                tmp.path().to_str().unwrap(),
                "--name",
                "bad",
            ])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(text(&o).contains(msg), "{args:?}: {}", text(&o));
        assert!(
            !tmp.path().join("bad").exists(),
            "nothing written for {args:?}"
        );
    }
    // An existing run is never overwritten.
    assert!(train(tmp.path(), "once", &["--steps", "1"])
        .status
        .success());
    let again = train(tmp.path(), "once", &["--steps", "1"]);
    assert!(!again.status.success() && text(&again).contains("--resume"));
}

#[test]
fn sft_learns_from_a_task_generator_and_from_dataset_solutions() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cd");
    let o = rlvr()
        .args([
            "sft",
            "--task",
            "countdown",
            "--steps",
            "30",
            "--batch",
            "16",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("greedy accuracy"));
    rlvr_models::HfModel::load(&out, tch::Device::Cpu, tch::Kind::Float).unwrap();

    let model = repo("crates/models/tests/fixtures/qwen2-tiny");
    let data = repo("crates/rewards/tests/data/math_test.parquet");
    let out = tmp.path().join("math");
    let o = rlvr()
        .args([
            "sft",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--steps",
            "2",
            "--batch",
            "2",
        ])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let losses: Vec<f64> = text(&o)
        .lines()
        .filter_map(|l| l.split("loss ").nth(1))
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    assert!(
        !losses.is_empty() && losses.iter().all(|l| l.is_finite() && *l > 0.0),
        "{losses:?}"
    );
    let trained = rlvr_models::HfModel::load(&out, tch::Device::Cpu, tch::Kind::Float).unwrap();
    let original = rlvr_models::HfModel::load(&model, tch::Device::Cpu, tch::Kind::Float).unwrap();
    let w = |m: &rlvr_models::HfModel| m.vs.variables()["model.norm.weight"].copy();
    assert!(!w(&trained).equal(&w(&original)), "weights moved");
}
