//! Rewards without recompiling: `command` and `http` verifiers chosen per `data_source` by the
//! `[reward]` table, on the qwen2-tiny fixture model and the AMC23 parquet file (40 rows). The
//! reward programs are Python scripts (tests/fixtures/reward_program.py, examples/rewards).

use rlvr_tests::cli::{assert_fails_with, checkpoint_weights, metrics_lines, repo, text};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

mod common;

fn program() -> String {
    repo("crates/cli/tests/fixtures/reward_program.py")
        .display()
        .to_string()
}

/// A config file with the given `[reward]` table.
fn config(dir: &Path, reward: &str) -> PathBuf {
    let path = dir.join("reward.toml");
    std::fs::write(&path, reward).unwrap();
    path
}

/// A dataset run of `steps` steps on AMC23 with `[reward]` from `cfg`, no evaluation.
fn run(runs: &Path, cfg: &Path, steps: &str, env: &[(&str, &Path)], extra: &[&str]) -> Output {
    run_with(runs, cfg, steps, env, extra, |_| {})
}

/// [`run`], with a last change to the command (e.g. an environment variable).
fn run_with(
    runs: &Path,
    cfg: &Path,
    steps: &str,
    env: &[(&str, &Path)],
    extra: &[&str],
    tweak: impl FnOnce(&mut std::process::Command),
) -> Output {
    let model = repo("crates/models/tests/fixtures/qwen2-tiny");
    let data = repo("crates/rewards/tests/data/amc23_test.parquet");
    let mut cmd = common::rlvr();
    cmd.args(["train", "--name", "hf", "--algo", "grpo", "--steps", steps])
        .arg("--runs-dir")
        .arg(runs)
        .arg("--config")
        .arg(cfg)
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(data)
        .args(["--set", "train.prompts_per_step=2"])
        .args(["--set", "train.samples_per_prompt=2"])
        .args(["--set", "train.max_new_tokens=6"])
        .args(["--set", "train.eval_problems=0"])
        .args(["--set", "data.holdout=4"])
        .args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tweak(&mut cmd);
    cmd.output().expect("rlvr starts")
}

/// The (ids, scores) batches a `parity` program logged.
fn logged(path: &Path) -> Vec<(Vec<String>, Vec<f64>)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                serde_json::from_value(v["ids"].clone()).unwrap(),
                serde_json::from_value(v["scores"].clone()).unwrap(),
            )
        })
        .collect()
}

/// Each step's `reward/mean` is the mean of the scores the program gave that step's batch, and
/// the advantages are nonzero exactly when a group's scores differ.
fn check_scores_reach_advantages(runs: &Path, log: &Path, steps: usize) {
    let batches = logged(log);
    assert_eq!(batches.len(), steps, "one batch of 4 per step: {batches:?}");
    let metrics = metrics_lines(&runs.join("hf/metrics.jsonl"));
    assert_eq!(metrics.len(), steps);
    let mut some_mixed = false;
    for ((ids, scores), m) in batches.iter().zip(&metrics) {
        assert_eq!(scores.len(), 4, "2 prompts x 2 samples");
        assert!(ids.iter().all(|id| id.starts_with("row-")), "{ids:?}");
        let mean = scores.iter().sum::<f64>() / 4.0;
        let logged_mean = m["reward/mean"].as_f64().unwrap();
        assert!((logged_mean - mean).abs() < 1e-6, "{m} vs {scores:?}");
        let mixed = scores[0] != scores[1] || scores[2] != scores[3];
        let adv = m["adv/abs_mean"].as_f64().unwrap();
        assert_eq!(adv > 0.0, mixed, "advantages {adv} for scores {scores:?}");
        some_mixed |= mixed;
    }
    // samples.jsonl keeps the first response of each prompt with the score it got.
    let samples = metrics_lines(&runs.join("hf/samples.jsonl"));
    assert_eq!(samples.len(), 2 * steps, "two prompts per step");
    for (k, s) in samples.iter().enumerate() {
        let (step, first_of_prompt) = (k / 2, 2 * (k % 2));
        assert_eq!(s["step"].as_u64(), Some(step as u64 + 1), "{s}");
        assert_eq!(
            s["score"].as_f64(),
            Some(batches[step].1[first_of_prompt]),
            "{s}"
        );
        let response = s["response"].as_str().unwrap();
        assert_eq!(
            s["score"].as_f64(),
            Some((response.chars().count() % 2) as f64),
            "{s}"
        );
        assert!(s["prompt"].as_str().is_some_and(|p| !p.is_empty()), "{s}");
    }
    assert!(
        some_mixed,
        "no step had mixed scores: {batches:?} (pick another seed)"
    );
}

#[test]
fn a_command_reward_program_scores_the_responses() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("scores.jsonl");
    let cfg = config(
        tmp.path(),
        &format!(
            "[reward.sources]\n\"TianHongZXY/amc23\" = {{ type = \"command\", cmd = [\"python3\", {:?}, \"parity\"] }}\n",
            program()
        ),
    );
    let o = run(tmp.path(), &cfg, "4", &[("REWARD_LOG", &log)], &[]);
    assert!(o.status.success(), "{}", text(&o));
    check_scores_reach_advantages(tmp.path(), &log, 4);
    // The saved config keeps the table, so a resumed run scores the same way.
    let saved = std::fs::read_to_string(tmp.path().join("hf/config.toml")).unwrap();
    assert!(saved.contains("[reward.sources"), "{saved}");
}

#[test]
fn an_http_reward_service_scores_the_responses() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("scores.jsonl");
    let mut server = std::process::Command::new("python3")
        .args([program().as_str(), "http"])
        .env("REWARD_LOG", &log)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 starts");
    let mut port = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let http = |path: &str| {
        config(
            tmp.path(),
            &format!(
                "[reward]\ndefault = {{ type = \"http\", url = \"http://127.0.0.1:{}{path}\", timeout_s = 20, retries = 0 }}\n",
                port.trim()
            ),
        )
    };
    // A redirect is named with its target, not reported as another status.
    let o = run(tmp.path(), &http("/moved"), "1", &[], &[]);
    assert_fails_with(&o, "answered HTTP 302, a redirect to /score");
    std::fs::remove_dir_all(tmp.path().join("hf")).unwrap();
    let o = run(tmp.path(), &http("/score"), "3", &[], &[]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(o.status.success(), "{}", text(&o));
    check_scores_reach_advantages(tmp.path(), &log, 3);
    // Nobody listening any more: one plain reason, no doubled prefixes.
    std::fs::remove_dir_all(tmp.path().join("hf")).unwrap();
    let o = run(tmp.path(), &http("/score"), "1", &[], &[]);
    assert_fails_with(&o, "request failed (Connection Failed): Connection refused");
    let error = text(&o)
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or_default()
        .to_string();
    for word in ["Network Error", "Connection Failed"] {
        assert!(error.matches(word).count() <= 1, "{error}");
    }
}

#[test]
fn the_example_reward_script_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let script = repo("examples/rewards/boxed_reward.py");
    let cfg = config(
        tmp.path(),
        &format!(
            "[reward]\ndefault = {{ type = \"command\", cmd = [\"python3\", {:?}] }}\n",
            script.display().to_string()
        ),
    );
    let o = run(tmp.path(), &cfg, "2", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    // The untrained fixture model writes no boxed answer: every response scores 0.
    for m in metrics_lines(&tmp.path().join("hf/metrics.jsonl")) {
        assert_eq!(m["reward/mean"].as_f64(), Some(0.0), "{m}");
    }
}

/// A failing program: the run stops with a named error within the timeout and retries, and the
/// checkpoints written before stay intact.
fn fails_cleanly(mode: &str, needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &format!(
            "[reward]\ndefault = {{ type = \"command\", cmd = [\"python3\", {:?}, {mode:?}], timeout_s = 2, retries = 1 }}\n",
            program()
        ),
    );
    let state = tmp.path().join("answered");
    let start = Instant::now();
    let o = run_with(
        tmp.path(),
        &cfg,
        "6",
        &[("REWARD_STATE", &state)],
        &["--set", "train.checkpoint_every=1"],
        |c| {
            c.env("HANG_AFTER", "2");
        },
    );
    let took = start.elapsed();
    assert_fails_with(&o, "reward command `python3");
    for n in needles {
        assert_fails_with(&o, n);
    }
    assert_eq!(o.status.code(), Some(1), "a run-time failure: {}", text(&o));
    // Two attempts of at most 2 s each, plus the steps before: far below a hang.
    assert!(took < Duration::from_secs(90), "took {took:?}");
    if mode == "hang" {
        // Steps 1 and 2 were scored and checkpointed before the program stopped answering.
        let ck = tmp.path().join("hf/checkpoints/step-2");
        assert!(!checkpoint_weights(&ck).is_empty());
        assert!(!tmp.path().join("hf/checkpoints/step-3").exists());
    }
}

#[test]
fn a_reward_program_that_hangs_fails_the_run_with_a_named_error() {
    fails_cleanly(
        "hang",
        &["did not answer a batch of 4 within 2 s", "after 2 attempts"],
    );
}

#[test]
fn a_reward_program_that_crashes_fails_the_run_with_its_status_and_stderr() {
    fails_cleanly(
        "crash",
        &["exit status: 3", "reward model weights not found"],
    );
}

#[test]
fn a_reward_program_that_raises_reports_the_exception_line() {
    fails_cleanly(
        "traceback",
        &[
            "exit status: 1",
            "ValueError: test case 7 has no expected output",
        ],
    );
}

#[test]
fn a_reward_program_that_prints_junk_fails_the_run() {
    fails_cleanly("junk", &["malformed JSON", "this is not json"]);
}

#[test]
fn reward_tables_are_checked_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[reward]\ndefualt = \"math\"\n",
            "unknown key `reward.defualt`; valid keys: default, sources",
        ),
        ("[reward]\ndefault = \"maths\"\n", "maths"),
        (
            "[reward]\ndefault = { type = \"command\", cmd = [\"python3\"], timeout = 3 }\n",
            "timeout",
        ),
        (
            "[reward]\ndefault = { type = \"command\", cmd = [\"no-such-reward-program-x\"] }\n",
            "cannot start",
        ),
        (
            "[reward]\ndefault = { type = \"http\", url = \"https://example.com\" }\n",
            "must be an http:// URL",
        ),
        ("[reward]\ndefault = 3\n", "must be a verifier name"),
    ];
    for (table, needle) in cases {
        let cfg = config(tmp.path(), table);
        let o = run(tmp.path(), &cfg, "1", &[], &[]);
        assert_fails_with(&o, needle);
        assert_eq!(o.status.code(), Some(2), "a usage error: {}", text(&o));
        assert!(!tmp.path().join("hf").exists(), "no run folder for {table}");
    }
    // A built-in task has its own verifier.
    let cfg = config(tmp.path(), "[reward]\ndefault = \"math\"\n");
    let o = common::rlvr()
        .args(["train", "--runs-dir"])
        .arg(tmp.path())
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_fails_with(
        &o,
        "[reward] chooses verifiers by data_source for dataset runs",
    );
}

/// The commands of the README section "Your own model, data and reward", run as written (from
/// the repository root; `scripts/rlvr.sh` is this binary and `runs/` a temporary folder); then
/// `rlvr sample` (chat template as in training) and a second dataset evaluated at the same step.
#[test]
fn the_readme_own_model_data_and_reward_section_works() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let section = readme
        .split("## Your own model, data and reward")
        .nth(1)
        .expect("the README section");
    let block = section
        .split("```sh")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("its shell block");
    let commands: Vec<&str> = block
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("scripts/rlvr.sh "))
        .collect();
    assert_eq!(commands.len(), 4, "{block}");
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().display().to_string();
    for line in commands {
        let line = line.replace("runs/", &format!("{runs}/"));
        let mut words = line.split_whitespace().skip(1);
        let sub = words.next().unwrap();
        let mut cmd = common::rlvr();
        cmd.current_dir(repo("")).arg(sub);
        if sub == "train" {
            cmd.args(["--runs-dir", &runs]);
        }
        cmd.args(words);
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{line}: {}", text(&o));
    }
    let metrics = metrics_lines(&tmp.path().join("mine/metrics.jsonl"));
    assert_eq!(metrics.len(), 2);
    // The verl reward file read every row's extra_info (it raises KeyError without it, which
    // would have failed the run).
    assert_eq!(
        metrics_lines(&tmp.path().join("verl/metrics.jsonl")).len(),
        2
    );
    // `rlvr sample` shows the prompt exactly as training builds it (the chat template applied).
    let run = tmp.path().join("mine");
    let o = common::rlvr()
        .current_dir(repo(""))
        .args(["sample", "--run", run.to_str().unwrap(), "--n", "4"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    rlvr_cli::link_builtins();
    // The saved config names data and model relative to the repository root, where the run
    // started.
    let mut doc = rlvr_train::config::read_document(&run.join("config.toml")).unwrap();
    let data = repo("crates/rewards/tests/data/amc23_test.parquet");
    rlvr_train::config::set(&mut doc, "data.train", data.to_str().unwrap()).unwrap();
    let model = repo("crates/models/tests/fixtures/qwen2-tiny");
    rlvr_train::config::set(&mut doc, "model.path", model.to_str().unwrap()).unwrap();
    let cfg = rlvr_train::config::RunConfig::from_document(doc).unwrap();
    let session = rlvr_train::Session::open(&cfg, rlvr_train::Placement::single()).unwrap();
    let problem = session.problems.test[0].clone();
    let expected = session.codec.render_prompt(&problem).unwrap();
    assert!(expected.starts_with("<|im_start|>"), "{expected}");
    let printed = rlvr_tests::cli::stdout(&o);
    assert!(
        printed.contains(&format!(
            "prompt: {expected:?}\nanswer: {:?}",
            problem.ground_truth
        )),
        "{printed}"
    );
    let own = tmp.path().join("mine/eval/step-2-amc23_test-n4-seed0");
    assert!(own.join("eval.json").exists(), "the eval command's folder");
    // A second dataset at the same step gets its own folder; each eval.json says what it read.
    let o = common::rlvr()
        .current_dir(repo(""))
        .args([
            "eval",
            "--run",
            &format!("{runs}/mine"),
            "-n",
            "2",
            "--problems",
            "2",
        ])
        .args(["--data", "crates/rewards/tests/data/aime2025_test.parquet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let other = tmp.path().join("mine/eval/step-2-aime2025_test-n2-seed0");
    for (dir, file) in [
        (&own, "amc23_test.parquet"),
        (&other, "aime2025_test.parquet"),
    ] {
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("eval.json")).unwrap()).unwrap();
        let from = json["problems_from"].as_str().unwrap_or_default();
        assert!(from.contains(file), "{from}");
        assert!(
            json["sampling"]["max_new_tokens"].as_i64().is_some(),
            "{json}"
        );
    }
}

#[test]
fn several_validation_files_each_get_their_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let files: Vec<String> = ["aime2025_test", "math_test"]
        .iter()
        .map(|f| {
            repo(&format!("crates/rewards/tests/data/{f}.parquet"))
                .display()
                .to_string()
        })
        .collect();
    let cfg = config(
        tmp.path(),
        &format!("[data]\neval_data = [{:?}, {:?}]\n", files[0], files[1]),
    );
    let o = run(
        tmp.path(),
        &cfg,
        "2",
        &[],
        &[
            "--set",
            "train.eval_every=1",
            "--set",
            "train.eval_problems=2",
            "--set",
            "train.eval_samples=2",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    for m in metrics_lines(&tmp.path().join("hf/metrics.jsonl")) {
        for key in [
            "val/pass@1",
            "val/pass@2",
            "val/aime2025_test/pass@1",
            "val/aime2025_test/mean@n",
            "val/math_test/pass@2",
        ] {
            assert!(m.get(key).is_some(), "{key} in {m}");
        }
    }
    let summary = std::fs::read_to_string(tmp.path().join("hf/summary.md")).unwrap();
    assert!(summary.contains("math_test/pass@1"), "{summary}");
    // A file that does not exist fails before any work.
    let bad = config(
        tmp.path(),
        "[data]\neval_data = [\"/no/such/file.parquet\"]\n",
    );
    let o = run(&tmp.path().join("other"), &bad, "1", &[], &[]);
    assert_fails_with(&o, "/no/such/file.parquet");
    assert!(!tmp.path().join("other/hf").exists());
}

/// A `[reward]` table whose default is the test program in `mode`.
fn program_config(dir: &Path, mode: &str, limits: &str) -> PathBuf {
    config(
        dir,
        &format!(
            "[reward]\ndefault = {{ type = \"command\", cmd = [\"python3\", {:?}, {mode:?}]{limits} }}\n",
            program()
        ),
    )
}

#[test]
fn blank_lines_around_answers_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("scores.jsonl");
    let cfg = program_config(tmp.path(), "blank", "");
    let o = run(tmp.path(), &cfg, "3", &[("REWARD_LOG", &log)], &[]);
    assert!(o.status.success(), "{}", text(&o));
    check_scores_reach_advantages(tmp.path(), &log, 3);
}

/// A run scored by the test program in `mode` fails at run time (exit 1) naming the program and
/// saying each of `needles`; returns the run's metric lines.
fn program_fails(mode: &str, limits: &str, needles: &[&str]) -> Vec<serde_json::Value> {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = program_config(tmp.path(), mode, limits);
    let o = run(tmp.path(), &cfg, "3", &[], &[]);
    for needle in ["reward command `python3"].iter().chain(needles) {
        assert_fails_with(&o, needle);
    }
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let path = tmp.path().join("hf/metrics.jsonl");
    match path.exists() {
        true => metrics_lines(&path),
        false => Vec::new(),
    }
}

#[test]
fn a_line_that_answers_no_batch_stops_the_run_instead_of_scoring_the_next() {
    let metrics = program_fails(
        "twice",
        "",
        &[
            "printed a line that answers no batch",
            "stdout is for answers only",
        ],
    );
    // The first step was scored by its own answer; the leftover never scored step 2.
    assert_eq!(metrics.len(), 1, "{metrics:?}");
}

#[test]
fn a_score_beyond_a_32_bit_float_is_refused_naming_the_program_and_item() {
    let metrics = program_fails(
        "huge",
        ", retries = 0",
        &["item 0: score 1e200 is out of range"],
    );
    assert!(metrics.is_empty(), "{metrics:?}");
}

/// Whether process `pid` is gone (or a zombie nobody reaped).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn a_program_that_exits_is_noticed_at_once_and_its_children_are_ended() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = program_config(tmp.path(), "orphan", ", timeout_s = 60, retries = 0");
    let state = tmp.path().join("child-pid");
    let start = Instant::now();
    let o = run(tmp.path(), &cfg, "2", &[("REWARD_STATE", &state)], &[]);
    let took = start.elapsed();
    assert_fails_with(&o, "exited without answering");
    assert_fails_with(&o, "exit status: 4");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // Its child keeps stdout open, yet the run did not wait for the 60 s timeout.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let pid: u32 = std::fs::read_to_string(&state)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(gone(pid), "the program's child {pid} outlived the run");
}

#[test]
fn dataset_settings_that_would_mislead_are_refused_or_said() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "");
    let data = repo("crates/rewards/tests/data/amc23_test.parquet");
    let o = run(
        tmp.path(),
        &cfg,
        "1",
        &[],
        &["--set", "data.template=Q: {question} {prompt}"],
    );
    assert_fails_with(&o, "data.template has the placeholder {question}");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!tmp.path().join("hf").exists());
    // 40 rows: a hold-out of 100 is capped at half, and said so.
    let o = run(tmp.path(), &cfg, "1", &[], &["--set", "data.holdout=100"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("data.holdout = 100 but") && text(&o).contains("holding out 20"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(tmp.path().join("hf")).unwrap();
    let test = format!("data.test={}", data.display());
    let o = run(
        tmp.path(),
        &cfg,
        "1",
        &[],
        &["--set", &test, "--set", "train.threads=100000"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("data.test is the training file"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("train.threads = 100000 but this machine has"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_run_without_learning_signal_says_so_once() {
    // The random tiny model solves no AMC problem: every reward is 0, every advantage 0.
    let tmp = tempfile::tempdir().unwrap();
    let data = repo("crates/rewards/tests/data/amc23_test.parquet");
    let o = common::train_hf(
        tmp.path(),
        &data,
        &[
            "--steps",
            "7",
            "--set",
            "train.eval_problems=0",
            "--set",
            "train.max_new_tokens=4",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        text(&o).matches("no learning signal for 5 steps").count(),
        1,
        "{}",
        text(&o)
    );
    // The default run learns: no such warning.
    let o = common::train(tmp.path(), "learns", &["--steps", "6"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("no learning signal"), "{}", text(&o));
}
