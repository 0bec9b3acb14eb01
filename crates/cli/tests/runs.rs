//! Run folders can be trusted: one process per run folder (locks), names that stay inside
//! `--runs-dir`, settings and weights that are finite, resume that changes nothing it should not,
//! a graceful stop on SIGINT that resumes to the same weights, checkpoint retention, and a full
//! disk reported with its path while the previous checkpoint stays intact.

use rlvr_tests::cli::{assert_fails_with, checkpoint_weights, metrics_lines, same_weights, text};
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;

use common::{resume, rlvr, train, SMALL};

fn all_finite(ck: &Path) -> bool {
    checkpoint_weights(ck)
        .iter()
        .all(|(_, t)| t.isfinite().all().int64_value(&[]) != 0)
}

#[test]
fn two_runs_with_one_name_never_share_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let spawn = || {
        rlvr()
            .args(["train", "--runs-dir", tmp.path().to_str().unwrap()])
            .args(["--name", "same", "--steps", "12"])
            .args(SMALL)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let ok = [a.status.success(), b.status.success()];
    assert_eq!(ok.iter().filter(|x| **x).count(), 1, "exactly one runs");
    let loser = if ok[0] { &b } else { &a };
    let msg = text(loser);
    assert!(
        msg.contains("in use by pid"),
        "the loser names the lock holder: {msg}"
    );
    let steps: Vec<u64> = metrics_lines(&tmp.path().join("same/metrics.jsonl"))
        .iter()
        .map(|l| l["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=12).collect::<Vec<_>>(), "metrics 1..N once");

    // A run being trained is locked: a second process names the holder.
    let mut child = rlvr()
        .args(["train", "--runs-dir", tmp.path().to_str().unwrap()])
        .args(["--name", "live", "--steps", "400"])
        .args(SMALL)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dir = tmp.path().join("live");
    rlvr_tests::cli::wait_until("first checkpoint", || {
        dir.join("checkpoints/step-5/state.json").exists()
    });
    let other = resume(&dir, &[]);
    let _ = child.kill();
    let _ = child.wait();
    assert_fails_with(&other, &format!("in use by pid {}", child.id()));
}

#[test]
fn names_that_leave_the_runs_folder_are_rejected_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    for name in ["..", "../../x", "/abs", "", "a/b", "x\ny"] {
        let o = train(&runs, name, &["--steps", "1"]);
        assert_eq!(o.status.code(), Some(2), "{name:?}: {}", text(&o));
        assert!(text(&o).contains("--name"), "{}", text(&o));
        assert!(!runs.exists(), "nothing written for {name:?}");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
    // Default names are unique even when two runs start in the same second.
    let unnamed =
        || rlvr_tests::cli::train(env!("CARGO_BIN_EXE_rlvr"), &runs, None, &["--steps", "1"]);
    let (a, b) = (unnamed(), unnamed());
    assert!(a.status.success() && b.status.success(), "{}", text(&b));
    assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 2);
}

#[test]
fn non_finite_settings_are_rejected_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    for (set, key) in [
        ("train.weight_decay=nan", "train.weight_decay"),
        ("train.weight_decay=inf", "train.weight_decay"),
        ("train.lr=nan", "train.lr"),
        ("algo.loss.alpha=nan", "algo.loss.alpha"),
        ("train.temperature=-inf", "train.temperature"),
        ("model.dtpye=bf16", "model.dtpye"),
        ("task.foo=1", "task.foo"),
    ] {
        let o = train(tmp.path(), "bad", &["--set", set]);
        assert_eq!(o.status.code(), Some(2), "{set}: {}", text(&o));
        assert!(text(&o).contains(key), "{set}: {}", text(&o));
        assert!(
            !tmp.path().join("bad").exists(),
            "nothing written for {set}"
        );
    }
    // Top-K beyond the vocabulary fails before the folder exists.
    let o = train(tmp.path(), "bad", &["--topk", "100"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("vocabulary"), "{}", text(&o));
    assert!(!tmp.path().join("bad").exists());
}

#[test]
fn exploding_weights_are_never_checkpointed_and_the_last_good_one_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let o = train(tmp.path(), "boom", &["--steps", "5"]);
    assert!(o.status.success(), "{}", text(&o));
    // The user raises the learning rate in the run's config and extends the run.
    let dir = tmp.path().join("boom");
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    let config = config.replace("lr = 0.0002", "lr = 1e300");
    assert!(config.contains("lr = 1e300"));
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let o = resume(&dir, &["--steps", "10"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let msg = text(&o);
    assert!(msg.contains("not finite"), "{msg}");
    assert!(
        msg.contains("last good checkpoint") && msg.contains("step-5"),
        "{msg}"
    );
    let ck = dir.join("checkpoints");
    assert!(all_finite(&ck.join("step-5")));
    let complete: Vec<_> = std::fs::read_dir(&ck)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("state.json").exists())
        .collect();
    assert_eq!(complete.len(), 1, "no checkpoint after step 5");
}

#[test]
fn resume_refuses_changes_extends_steps_and_keeps_the_newest_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let o = train(tmp.path(), "r", &["--steps", "20"]);
    assert!(o.status.success(), "{}", text(&o));
    let dir = tmp.path().join("r");
    let ck = dir.join("checkpoints");
    let mut kept: Vec<String> = std::fs::read_dir(&ck)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(kept, ["step-10", "step-15", "step-20"], "keep_last = 3");
    for extra in [
        vec!["--algo", "grpo"],
        vec!["--set", "train.lr=5"],
        vec!["--topk", "2"],
        vec!["--seed", "3"],
    ] {
        let o = resume(&dir, &[&["--steps", "25"], extra.as_slice()].concat());
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", text(&o));
        assert!(text(&o).contains("would change it"), "{}", text(&o));
    }
    assert_eq!(
        metrics_lines(&dir.join("metrics.jsonl")).len(),
        20,
        "untouched"
    );
    let o = resume(&dir, &["--steps", "25"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(metrics_lines(&dir.join("metrics.jsonl")).len(), 25);
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(config.contains("steps = 25"), "{config}");
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    assert!(history.contains("\"train.steps\":[20,25]"), "{history}");
    assert!(ck.join("step-25/state.json").exists() && !ck.join("step-10").exists());
}

#[test]
fn sigint_checkpoints_the_current_step_and_resume_matches_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let steps = ["--steps", "120", "--set", "train.checkpoint_every=0"];
    let straight = train(tmp.path(), "straight", &steps);
    assert!(straight.status.success(), "{}", text(&straight));

    let dir = tmp.path().join("stopped");
    let child = rlvr()
        .args(["train", "--runs-dir", tmp.path().to_str().unwrap()])
        .args(["--name", "stopped"])
        .args(SMALL)
        .args(steps)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = dir.join("metrics.jsonl");
    rlvr_tests::cli::wait_until("three training steps", || {
        metrics.exists() && std::fs::read_to_string(&metrics).unwrap().lines().count() >= 3
    });
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(text(&out).contains("--resume"), "{}", text(&out));
    let done = metrics_lines(&metrics).len();
    assert!((3..120).contains(&done), "{done}");
    assert!(
        dir.join(format!("checkpoints/step-{done}/state.json"))
            .exists(),
        "a checkpoint at the step it stopped after"
    );
    let resumed = resume(&dir, &[]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(same_weights(
        &tmp.path().join("straight/checkpoints/step-120"),
        &dir.join("checkpoints/step-120")
    ));
}

/// Runs `script` (sh) with a 2 MB tmpfs mounted at `$1`, in a private mount namespace (as root,
/// or in a user namespace otherwise); `$2` is the rlvr binary, `$3` a folder outside the tmpfs.
fn with_small_tmpfs(script: &str, outside: &Path) -> Output {
    let mnt = outside.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let body = format!("mount -t tmpfs -o size=2m tmpfs \"$1\" || exit 97\n{script}");
    let run = |ns: &[&str]| {
        Command::new("unshare")
            .args(ns)
            .args(["sh", "-c", &body, "sh"])
            .arg(&mnt)
            .arg(env!("CARGO_BIN_EXE_rlvr"))
            .arg(outside)
            .output()
            .unwrap()
    };
    let o = run(&["-m"]);
    if o.status.code() != Some(97) && o.status.success() {
        return o;
    }
    let o2 = run(&["-rm"]);
    assert_ne!(
        o2.status.code(),
        Some(97),
        "this test needs root or user namespaces to mount a small tmpfs: {}\n{}",
        text(&o),
        text(&o2)
    );
    o2
}

#[test]
fn a_full_disk_is_reported_with_its_path_and_the_previous_checkpoint_stays_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let script = format!(
        "\"$2\" train --runs-dir \"$1\" --name full --steps 20 {} >\"$3/out.txt\" 2>&1\n\
         echo \"exit $?\" >>\"$3/out.txt\"\ncp -r \"$1/full\" \"$3/full\"\n",
        SMALL.join(" ")
    );
    let o = with_small_tmpfs(&script, tmp.path());
    assert!(o.status.success(), "{}", text(&o));
    let out = std::fs::read_to_string(tmp.path().join("out.txt")).unwrap();
    assert!(out.contains("exit 1"), "a run-time failure: {out}");
    assert!(
        out.contains("No space left on device") || out.contains("os error 28"),
        "{out}"
    );
    assert!(out.contains("/full/"), "the error names the path: {out}");
    let ck = tmp.path().join("full/checkpoints");
    assert!(ck.join("step-5/state.json").exists(), "{out}");
    assert!(all_finite(&ck.join("step-5")));
    tch::Tensor::read_safetensors(ck.join("step-5/optimizer.safetensors")).unwrap();
}

#[test]
fn inputs_are_bounded_by_the_models_context() {
    let tmp = tempfile::tempdir().unwrap();
    // A response length beyond the model's 512 positions fails before any work.
    let o = train(
        tmp.path(),
        "long",
        &["--set", "train.max_new_tokens=1000000000"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("context of 512"), "{}", text(&o));
    assert!(!tmp.path().join("long").exists());

    // A 1 MB prompt is dropped and counted, never sent to the model.
    let data = tmp.path().join("data.jsonl");
    let mut rows = vec![serde_json::json!({"prompt": "x ".repeat(500_000), "answer": "1"})];
    for i in 0..8 {
        rows.push(serde_json::json!({"prompt": format!("What is {i}+1?"), "answer": i + 1}));
    }
    let text_rows: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    std::fs::write(&data, text_rows.join("\n")).unwrap();
    let o = common::train_hf(
        tmp.path(),
        &data,
        &["--steps", "1", "--set", "train.eval_problems=0"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("dropped 1 training problem(s)"),
        "{}",
        text(&o)
    );
}

#[test]
fn sweeps_lock_their_folder_and_validate_their_name() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let file = tmp.path().join("s.toml");
    let body = |name: &str| {
        format!(
            "name = \"{name}\"\n[base.train]\nsteps = 200\nprompts_per_step = 4\n\
             samples_per_prompt = 4\neval_problems = 0\n[grid]\n\"train.seed\" = [0, 1]\n"
        )
    };
    std::fs::write(&file, body("../..")).unwrap();
    let o = common::sweep(&file, &runs, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("sweep name"), "{}", text(&o));
    assert!(!runs.exists());

    std::fs::write(&file, body("locked")).unwrap();
    let args = [
        "sweep",
        file.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
    ];
    let first = rlvr()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let metrics = runs.join("sweeps/locked/seed=0/metrics.jsonl");
    rlvr_tests::cli::wait_until("the first sweep trains", || metrics.exists());
    let second = rlvr().args(args).output().unwrap();
    let pid = first.id();
    let mut first = first;
    let _ = first.kill();
    let _ = first.wait();
    assert_fails_with(&second, &format!("in use by pid {pid}"));
}

#[test]
fn a_failed_resume_changes_nothing_and_names_the_intact_previous_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let o = train(tmp.path(), "r", &["--steps", "10"]);
    assert!(o.status.success(), "{}", text(&o));
    let dir = tmp.path().join("r");
    let config = std::fs::read(dir.join("config.toml")).unwrap();
    // The newest checkpoint (step 10) is corrupt; step 5 is intact.
    let model = dir.join("checkpoints/step-10/model/model.safetensors");
    std::fs::write(&model, b"not a safetensors file").unwrap();
    let o = resume(&dir, &["--steps", "15"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert_fails_with(&o, "checkpoint step 10");
    assert_fails_with(&o, "the previous complete checkpoint is step 5");
    assert_eq!(
        std::fs::read(dir.join("config.toml")).unwrap(),
        config,
        "config.toml is rewritten only after the checkpoint loaded"
    );
    assert!(
        !dir.join("history.jsonl").exists(),
        "no history of a resume that failed"
    );
    // Removing the corrupt one, as told, resumes from step 5.
    std::fs::remove_dir_all(dir.join("checkpoints/step-10")).unwrap();
    let o = resume(&dir, &["--steps", "12"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("from step 5"), "{}", text(&o));
    assert!(std::fs::read_to_string(dir.join("history.jsonl"))
        .unwrap()
        .contains("[10,12]"));
}

#[test]
fn a_run_resumes_from_its_checkpoint_when_the_model_folder_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    let fixture = rlvr_tests::cli::repo("crates/models/tests/fixtures/qwen2-tiny");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(fixture.join(f), model.join(f)).unwrap();
    }
    let args = [
        "--model",
        model.to_str().unwrap(),
        "--task",
        "countdown",
        "--steps",
        "2",
        "--set",
        "train.max_new_tokens=4",
    ];
    let o = train(tmp.path(), "r", &args);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_dir_all(&model).unwrap();
    let dir = tmp.path().join("r");
    let o = resume(&dir, &["--steps", "3"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("is gone; the model is built from checkpoint step 2's copy"),
        "{}",
        text(&o)
    );
    assert!(dir.join("checkpoints/step-3/model/tokenizer.json").exists());
    // The run's record still names the original folder.
    let cfg = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(cfg.contains(model.to_str().unwrap()), "{cfg}");
}

#[test]
fn resume_refuses_changed_data_unless_told_and_records_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("train.parquet");
    let repo = rlvr_tests::cli::repo;
    std::fs::copy(repo("crates/rewards/tests/data/amc23_test.parquet"), &data).unwrap();
    let model = repo("crates/models/tests/fixtures/qwen2-tiny");
    let args = [
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--steps",
        "2",
        "--set",
        "train.max_new_tokens=4",
        "--set",
        "data.holdout=4",
    ];
    let o = train(tmp.path(), "r", &args);
    assert!(o.status.success(), "{}", text(&o));
    let dir = tmp.path().join("r");
    assert!(dir.join("data-files.json").exists());
    // Unchanged data resumes.
    let o = resume(&dir, &["--steps", "3"]);
    assert!(o.status.success(), "{}", text(&o));
    // Another file under the same name is refused, naming it, before any work.
    std::fs::copy(
        repo("crates/rewards/tests/data/aime2025_test.parquet"),
        &data,
    )
    .unwrap();
    let o = resume(&dir, &["--steps", "4"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_fails_with(&o, "the run's data changed since it started");
    assert_fails_with(&o, data.to_str().unwrap());
    assert_fails_with(&o, "--allow-changed-data");
    assert!(!dir.join("checkpoints/step-4").exists());
    // Told so, it resumes and says so in history.jsonl.
    let o = resume(&dir, &["--steps", "4", "--allow-changed-data"]);
    assert!(o.status.success(), "{}", text(&o));
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    assert!(history.contains("data_changed"), "{history}");
    // The new contents are the record now.
    let o = resume(&dir, &["--steps", "5"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_taken_run_name_says_whether_the_run_can_be_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let o = common::train(tmp.path(), "done", &["--steps", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = common::train(tmp.path(), "done", &["--steps", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains("latest complete checkpoint: step 2") && msg.contains("--resume"),
        "{msg}"
    );
    // A run that failed before its first checkpoint cannot be resumed: say how to free the name.
    let failed = tmp.path().join("failed");
    std::fs::create_dir_all(&failed).unwrap();
    std::fs::write(failed.join("config.toml"), "").unwrap();
    let o = common::train(tmp.path(), "failed", &["--steps", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains("no complete checkpoint") && msg.contains("rm -r"),
        "{msg}"
    );
}

#[test]
fn a_rollout_that_cannot_fit_in_memory_is_refused_before_the_run_starts() {
    // 16 prompts × 10^7 samples: hundreds of GiB of KV cache. Before, the kernel killed the
    // process part-way through the allocation (exit 137).
    let tmp = tempfile::tempdir().unwrap();
    let o = train(
        tmp.path(),
        "huge",
        &["--steps", "1", "--set", "train.samples_per_prompt=10000000"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains("GiB")
            && msg.contains("train.samples_per_prompt")
            && msg.contains("available"),
        "{msg}"
    );
    assert!(
        !tmp.path().join("huge").exists(),
        "no run folder for a run that cannot start"
    );
}
