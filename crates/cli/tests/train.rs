//! End-to-end tests of `rlvr train` / `rlvr sft`: resume after SIGKILL, non-finite guards, metrics
//! keys, the shipped base checkpoint, a smoke run with a HF checkpoint on MATH parquet.

use rlvr_tests::cli::{checkpoint_weights, metrics_lines, repo, text};

mod common;

use common::{resume, rlvr, train, SMALL};

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
    rlvr_tests::cli::wait_until("no checkpoint appeared", || {
        dir.join("checkpoints/step-10/state.json").exists()
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !dir.join("checkpoints/step-30").exists(),
        "killed before the end"
    );
    let resumed = resume(&dir, &[]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(text(&resumed).contains("resuming"));
    let (a, b) = (
        checkpoint_weights(&tmp.path().join("straight/checkpoints/step-30")),
        checkpoint_weights(&dir.join("checkpoints/step-30")),
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
fn an_asynchronous_run_killed_at_a_random_step_resumes_to_the_same_weights() {
    // train.max_staleness = 2: the checkpoints carry the batches generated ahead by older
    // weights, so a SIGKILL anywhere loses nothing a resumed run needs.
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "--steps",
        "40",
        "--set",
        "train.max_staleness=2",
        "--set",
        "train.checkpoint_every=1",
    ];
    let straight = train(tmp.path(), "straight", &args);
    assert!(straight.status.success(), "{}", text(&straight));
    let at = 2 + std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 8;
    eprintln!("killing once checkpoint {at} exists");
    let dir = tmp.path().join("killed");
    let mut child = rlvr()
        .args(["train", "--runs-dir", tmp.path().to_str().unwrap()])
        .args(["--name", "killed"])
        .args(SMALL)
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    rlvr_tests::cli::wait_until("no checkpoint appeared", || {
        dir.join(format!("checkpoints/step-{at}/state.json"))
            .exists()
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !dir.join("checkpoints/step-40").exists(),
        "killed before the end"
    );
    let resumed = resume(&dir, &[]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    let (a, b) = (
        checkpoint_weights(&tmp.path().join("straight/checkpoints/step-40")),
        checkpoint_weights(&dir.join("checkpoints/step-40")),
    );
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after a kill at step >= {at}");
    }
    let (ma, mb) = (
        metrics_lines(&tmp.path().join("straight/metrics.jsonl")),
        metrics_lines(&dir.join("metrics.jsonl")),
    );
    assert_eq!(ma.len(), 40);
    for (x, y) in ma.iter().zip(&mb) {
        for key in ["reward/mean", "actor/loss", "async/staleness_max"] {
            assert_eq!(x[key], y[key], "{key} at step {}", x["step"]);
        }
    }
}

#[test]
fn metrics_have_the_documented_keys_and_tensorboard_events() {
    let tmp = tempfile::tempdir().unwrap();
    let o = train(tmp.path(), "keys", &["--steps", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = &metrics_lines(&tmp.path().join("keys/metrics.jsonl"))[0];
    for key in [
        "step",
        "reward/mean",
        "reward/accuracy",
        "conc/entropy",
        "conc/top1_prob",
        "conc/sampled_logp",
        "conc/lambda_1",
        "conc/lambda_5",
        "conc/rank2_prob",
        "conc/rank3_prob",
        "loss/clipfrac",
        "loss/ppo_kl",
        "loss/kl_ref",
        "loss/gate_frac",
        "loss/top1_penalized",
        "actor/loss",
        "actor/grad_norm",
        "actor/lr",
        "actor/skipped_updates",
        "rollout/response_len",
        "rollout/tokens_per_s",
        "time/rollout",
        "time/score",
        "time/update",
        "time/step",
    ] {
        assert!(
            v.get(key).is_some_and(|x| x.is_number()),
            "metrics.jsonl lacks `{key}`: {v}"
        );
    }
    let config = std::fs::read_to_string(tmp.path().join("keys/config.toml")).unwrap();
    assert!(
        config.contains("[algo.loss]") && config.contains("[train]"),
        "resolved config written"
    );
    let events = std::fs::read_dir(tmp.path().join("keys/tensorboard"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("events.out.tfevents.")
        })
        .count();
    assert_eq!(events, 1, "one TensorBoard event file");
}

#[test]
fn ordinary_options_may_follow_algorithm_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    let o = rlvr()
        .args(["train", "--topk", "2", "--name", "after", "--steps", "1"])
        .args(["--runs-dir", tmp.path().to_str().unwrap()])
        .args(SMALL)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let config = std::fs::read_to_string(tmp.path().join("after/config.toml")).unwrap();
    assert!(
        config.contains("topk = 2") && config.contains("steps = 1"),
        "{config}"
    );
}

#[test]
fn exit_codes_are_2_for_usage_errors_and_1_for_failures_at_run_time() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().to_str().unwrap();
    for args in [
        vec!["train", "--runs-dir", runs, "--set", "train.lr=-1"],
        vec!["train", "--runs-dir", runs, "--algo", "nope"],
        vec!["list", "nope"],
        vec!["eval"],
        vec!["train", "--runs-dir", runs, "--no-such-flag", "1"],
    ] {
        let o = rlvr().args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
    // A run whose checkpoint is damaged fails at run time when resumed.
    assert!(train(tmp.path(), "damaged", &["--steps", "1"])
        .status
        .success());
    let weights = tmp
        .path()
        .join("damaged/checkpoints/step-1/model/model.safetensors");
    std::fs::write(&weights, b"not safetensors").unwrap();
    let dir = tmp.path().join("damaged");
    let o = resume(&dir, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("step-1"), "{}", text(&o));
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
    let data = repo("crates/rewards/tests/data/math_test.parquet");
    let o = common::train_hf(
        tmp.path(),
        &data,
        &[
            "--steps",
            "2",
            "--set",
            "train.eval_problems=2",
            "--set",
            "train.eval_samples=2",
            "--set",
            "data.holdout=10",
        ],
    );
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

#[test]
fn a_terminal_shows_every_step_with_its_metrics_and_an_eta() {
    // `script` (util-linux) runs rlvr on a pseudo-terminal, as an interactive shell would.
    let tmp = tempfile::tempdir().unwrap();
    let command = format!(
        "'{}' train --runs-dir '{}' --name tty --steps 4 --set train.eval_problems=0 \
         --set train.prompts_per_step=4",
        common::BIN,
        tmp.path().display()
    );
    let o = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("`script` from util-linux runs");
    let transcript = String::from_utf8_lossy(&o.stdout).replace('\r', "\n");
    assert!(o.status.success(), "{transcript}");
    for step in 1..=4 {
        let line = transcript
            .lines()
            .find(|l| l.contains(&format!("step {step}/4: reward")))
            .unwrap_or_else(|| panic!("step {step} kept on screen:\n{transcript}"));
        for key in [" acc ", " kl ", " entropy ", " len ", " tok/s", "| eta "] {
            assert!(line.contains(key), "{key} in {line}");
        }
    }
    assert!(
        transcript.contains("steps, elapsed") && transcript.contains(", eta "),
        "the progress bar with elapsed time and ETA:\n{transcript}"
    );
    assert!(transcript.contains("run saved in"), "{transcript}");
    // No --algo: the first line says which algorithm that means.
    let first = transcript
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(
        first.starts_with("training simko (the default; choose another with --algo"),
        "{first}"
    );
}

#[test]
fn verbose_step_lines_carry_the_phase_timings() {
    let tmp = tempfile::tempdir().unwrap();
    let o = train(tmp.path(), "v", &["--steps", "2", "-v"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = rlvr_tests::cli::stdout(&o);
    let line = out
        .lines()
        .find(|l| l.starts_with("step 2/2:"))
        .unwrap_or_else(|| panic!("{out}"));
    for phase in [
        "rollout ",
        "score ",
        "advantage ",
        "make_experience ",
        "update ",
    ] {
        assert!(line.contains(phase), "{phase} in {line}");
    }
}

#[test]
fn validation_every_n_steps_lands_in_metrics_summary_and_step_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let o = train(
        tmp.path(),
        "val",
        &[
            "--steps",
            "4",
            "--set",
            "train.eval_every=2",
            "--set",
            "train.eval_problems=4",
            "--set",
            "train.eval_samples=2",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let lines = metrics_lines(&tmp.path().join("val/metrics.jsonl"));
    for (i, m) in lines.iter().enumerate() {
        let validated = (i + 1) % 2 == 0;
        assert_eq!(m.get("val/pass@1").is_some(), validated, "{m}");
        assert_eq!(m.get("val/pass@2").is_some(), validated, "{m}");
    }
    let summary = std::fs::read_to_string(tmp.path().join("val/summary.md")).unwrap();
    assert!(
        summary.contains("## Validation during training"),
        "{summary}"
    );
    // The summary names the build that wrote it (version and commit).
    assert!(
        summary.contains(&format!(
            "Written by rlvr {}, commit {}.",
            env!("CARGO_PKG_VERSION"),
            rlvr_tests::cli::head_commit()
        )),
        "{summary}"
    );
    assert!(
        summary.contains("| 2 |") && summary.contains("| 4 |"),
        "{summary}"
    );
    let out = rlvr_tests::cli::stdout(&o);
    let step2 = out
        .lines()
        .find(|l| l.starts_with("step 2/4:"))
        .unwrap_or("");
    assert!(step2.contains("val pass@1"), "{out}");
    // The training figure of the summary has the optimisation panels besides reward and entropy.
    let svg = std::fs::read_to_string(tmp.path().join("val/plots/training.svg")).unwrap();
    for title in [
        "reward",
        "response length",
        "loss",
        "KL to the reference",
        "clip fraction",
        "gradient norm",
    ] {
        assert!(svg.contains(title), "panel {title:?} in training.svg");
    }
}

#[test]
fn dataset_runs_start_from_real_model_defaults_that_flags_override() {
    let config = |extra: &[&str]| {
        let o = rlvr().arg("config").args(extra).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        rlvr_tests::cli::stdout(&o)
    };
    // A real file (config checks that it exists; it does not read it).
    let amc = repo("crates/rewards/tests/data/amc23_test.parquet");
    let amc = amc.to_str().unwrap();
    let data = config(&["--data", amc]);
    for line in [
        "max_new_tokens = 1024",
        "eval_every = 50",
        "eval_problems = 32",
    ] {
        assert!(data.contains(&format!("\n{line}\n")), "{line} in:\n{data}");
    }
    let mine = config(&["--data", amc, "--set", "train.max_new_tokens=64"]);
    assert!(mine.contains("\nmax_new_tokens = 64\n"), "{mine}");
    let task = config(&["--task", "countdown"]);
    assert!(task.contains("\nmax_new_tokens = 12\n") && task.contains("\neval_every = 0\n"));
}

#[test]
fn model_shapes_resolve_and_train_with_checkpointing() {
    // `--model NAME-shape` resolves to the built-in config; an unknown shape lists the valid ones.
    let o = rlvr()
        .args(["config", "--model", "qwen2.5-0.5b-shape"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let doc: toml::Table = text(&o).parse().unwrap();
    assert_eq!(doc["model"]["type"].as_str(), Some("shape"));
    assert_eq!(doc["model"]["name"].as_str(), Some("qwen2.5-0.5b"));
    let o = rlvr()
        .args(["config", "--model", "qwen9-shape"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("qwen2.5-0.5b-shape"), "{}", text(&o));
    // A shape from a config.json (the qwen2-tiny fixture's) trains on countdown with
    // checkpointing and the chunked LM head (chunk smaller than the step's tokens).
    let tmp = tempfile::tempdir().unwrap();
    let config = repo("crates/models/tests/fixtures/qwen2-tiny/config.json");
    let o = train(
        tmp.path(),
        "shape",
        &[
            "--steps",
            "2",
            "--model",
            "qwen2.5-0.5b-shape",
            "--set",
            &format!("model.config={}", config.display()),
            "--set",
            "model.chunk=16",
            "--set",
            "model.checkpointing=true",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let metrics = metrics_lines(&tmp.path().join("shape/metrics.jsonl"));
    assert_eq!(metrics.len(), 2);
    // A random model rarely solves anything (all-zero advantages give a zero gradient), so the
    // check is that every update ran and was finite.
    assert!(metrics.iter().all(
        |m| m["actor/grad_norm"].as_f64().is_some_and(f64::is_finite)
            && m["actor/updates"].as_f64().is_some_and(|n| n >= 1.0)
            && m["actor/skipped_updates"].as_f64() == Some(0.0)
    ));
    let saved = rlvr_models::HfModel::load(
        &tmp.path().join("shape/checkpoints/step-2/model"),
        tch::Device::Cpu,
        tch::Kind::Float,
    )
    .unwrap();
    assert_eq!(
        saved.model.config().vocab_size,
        512,
        "the config.json's shape"
    );
}
