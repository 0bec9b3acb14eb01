//! End-to-end tests of `rlvr eval`, `rlvr compare` and `rlvr sweep`: reports, plots that decode
//! and are not blank, per-source results for datasets, and a sweep that resumes after SIGKILL.

use rlvr_tests::cli::{repo, text};
use std::path::{Path, PathBuf};

mod common;

use common::rlvr;

fn run_ok(args: &[&str]) -> String {
    rlvr_tests::cli::run_ok(env!("CARGO_BIN_EXE_rlvr"), args)
}

/// Decodes a PNG; asserts a real image with drawn content, not a blank canvas.
fn assert_png_drawn(path: &Path) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let first = pixels[0];
    let differing = pixels.iter().filter(|p| p[..3] != first[..3]).count();
    let colors: std::collections::HashSet<&[u8]> = pixels.iter().map(|p| &p[..3]).collect();
    assert!(
        info.width >= 400 && info.height >= 300,
        "{}",
        path.display()
    );
    assert!(
        differing as f64 > 0.01 * pixels.len() as f64 && colors.len() > 8,
        "{} looks blank: {differing} pixels differ from the background, {} colours",
        path.display(),
        colors.len()
    );
}

/// C(n, k) as f64 (small arguments).
fn binom(n: usize, k: usize) -> f64 {
    if k > n {
        return 0.0;
    }
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

fn small_run(runs: &Path, name: &str) -> PathBuf {
    let o = rlvr_tests::cli::train(
        env!("CARGO_BIN_EXE_rlvr"),
        runs,
        Some(name),
        &["--steps", "3"],
    );
    assert!(o.status.success(), "{}", text(&o));
    runs.join(name)
}

#[test]
fn eval_of_a_trainer_checkpoint_writes_the_table_and_plots() {
    let tmp = tempfile::tempdir().unwrap();
    let run = small_run(tmp.path(), "r");
    let out = run_ok(&[
        "eval",
        "--run",
        run.to_str().unwrap(),
        "-n",
        "8",
        "--problems",
        "12",
    ]);
    assert!(out.contains("| countdown | 12 |"), "{out}");
    let dir = run.join("eval/step-3-countdown-n8-seed0");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("eval.json")).unwrap()).unwrap();
    assert_eq!(report["samples"], 8);
    assert_eq!(report["problems"], 12);
    let ks: Vec<u64> = report["pass_at_k"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_u64().unwrap())
        .collect();
    assert_eq!(ks, vec![1, 2, 4, 8]);
    // pass@K recomputed from the per-problem counts with plain binomials.
    let counts: Vec<usize> = report["per_problem"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["correct"].as_u64().unwrap() as usize)
        .collect();
    assert_eq!(counts.len(), 12);
    for p in report["pass_at_k"].as_array().unwrap() {
        let k = p[0].as_u64().unwrap() as usize;
        let want = counts
            .iter()
            .map(|&c| 1.0 - binom(8 - c, k) / binom(8, k))
            .sum::<f64>()
            / 12.0;
        assert!((p[1].as_f64().unwrap() - want).abs() < 1e-12, "pass@{k}");
    }
    assert!(report["by_source"]["countdown"]["problems"] == 12);
    let conc = &report["concentration"];
    assert_eq!(conc["lambda"].as_array().unwrap().len(), 5);
    assert!(conc["tokens"].as_u64().unwrap() > 0);
    let probs: Vec<f64> = conc["rank_prob"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(probs.windows(2).all(|w| w[0] >= w[1]) && probs.iter().sum::<f64>() <= 1.0 + 1e-6);
    let md = std::fs::read_to_string(dir.join("eval.md")).unwrap();
    assert!(md.contains("pass@8") && md.contains("Λ(n)") && md.contains("](plots/passk.png)"));
    for fig in ["passk", "rank_probs", "entropy_hist", "training"] {
        assert_png_drawn(&dir.join(format!("plots/{fig}.png")));
        let svg = std::fs::read_to_string(dir.join(format!("plots/{fig}.svg"))).unwrap();
        assert!(svg.starts_with("<svg"), "{fig}.svg");
    }
    // Nothing is overwritten without --overwrite.
    let before = std::fs::read(dir.join("eval.json")).unwrap();
    let again = rlvr()
        .args([
            "eval",
            "--run",
            run.to_str().unwrap(),
            "-n",
            "8",
            "--seed",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(text(&again).contains("--overwrite"), "{}", text(&again));
    assert_eq!(std::fs::read(dir.join("eval.json")).unwrap(), before);
    // The initial weights (step 0) evaluate too; a missing checkpoint is a clear error.
    run_ok(&[
        "eval",
        "--run",
        run.to_str().unwrap(),
        "--step",
        "0",
        "-n",
        "2",
        "--problems",
        "3",
    ]);
    let bad = rlvr()
        .args(["eval", "--run", run.to_str().unwrap(), "--step", "7"])
        .output()
        .unwrap();
    assert!(
        text(&bad).contains("step-7") && !bad.status.success(),
        "{}",
        text(&bad)
    );

    // compare: the run (its newest evaluation) against the step-0 evaluation folder.
    let cmp = tmp.path().join("cmp");
    let out = run_ok(&[
        "compare",
        run.to_str().unwrap(),
        run.join("eval/step-0-countdown-n2-seed0").to_str().unwrap(),
        "--labels",
        "trained,initial",
        "--out",
        cmp.to_str().unwrap(),
    ]);
    assert!(
        out.contains("| trained |") && out.contains("| initial |"),
        "{out}"
    );
    let md = std::fs::read_to_string(cmp.join("comparison.md")).unwrap();
    assert!(md.contains("Λ(1)") && md.contains("plots/passk.png"));
    assert_png_drawn(&cmp.join("plots/passk.png"));
    assert_png_drawn(&cmp.join("plots/rank_probs.png"));

    // The comparison is not replaced without --overwrite.
    let step0 = run.join("eval/step-0-countdown-n2-seed0");
    let again = [
        "compare",
        run.to_str().unwrap(),
        step0.to_str().unwrap(),
        "--out",
        cmp.to_str().unwrap(),
    ];
    let o = rlvr().args(again).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--overwrite"));
    assert_eq!(
        std::fs::read_to_string(cmp.join("comparison.md")).unwrap(),
        md
    );
    run_ok(&[again.as_slice(), &["--overwrite"]].concat());
    // Single runs are said to be single seeds; without --out the comparison lands beside the
    // runs, not in the current folder.
    assert!(
        out.contains("one seed") && out.contains("rlvr sweep"),
        "{out}"
    );
    let cwd = tempfile::tempdir().unwrap();
    let o = rlvr()
        .current_dir(cwd.path())
        .args(["compare", run.to_str().unwrap(), step0.to_str().unwrap()])
        .args(["--labels", "a,b"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let beside = run
        .parent()
        .unwrap()
        .join("comparisons/a-vs-b/comparison.md");
    assert!(beside.is_file(), "{}", text(&o));
    assert!(!cwd.path().join("comparisons").exists());

    // A doctored report (pass@1 = 7.5) is refused, naming the file.
    let doctored = tmp.path().join("doctored.json");
    let json =
        std::fs::read_to_string(run.join("eval/step-0-countdown-n2-seed0/eval.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["pass_at_k"][0][1] = serde_json::json!(7.5);
    std::fs::write(&doctored, v.to_string()).unwrap();
    let o = rlvr()
        .args(["compare", doctored.to_str().unwrap(), "--out"])
        .arg(tmp.path().join("cmp2"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains("doctored.json") && text(&o).contains("pass@1 = 7.5"),
        "{}",
        text(&o)
    );

    // Evaluation settings are validated before any work.
    for (flag, value) in [
        ("--temperature", "nan"),
        ("--max-new-tokens", "0"),
        ("-n", "0"),
    ] {
        let o = rlvr()
            .args(["eval", "--run", run.to_str().unwrap(), flag, value])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {}", text(&o));
    }
}

#[test]
fn eval_of_a_hf_folder_on_a_dataset_reports_per_source() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("e");
    let model = repo("crates/models/tests/fixtures/qwen2-tiny");
    let data = repo("crates/rewards/tests/data/aime2025_test.parquet");
    let out = run_ok(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "-n",
        "2",
        "--problems",
        "3",
        "--max-new-tokens",
        "4",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("eval.json")).unwrap()).unwrap();
    assert_eq!(report["problems"], 3, "{out}");
    let sources = report["by_source"].as_object().unwrap();
    assert_eq!(sources.len(), 1);
    assert!(
        sources
            .keys()
            .next()
            .unwrap()
            .to_lowercase()
            .contains("aime"),
        "{sources:?}"
    );
    // --model without a task or dataset is refused before any work.
    let o = rlvr()
        .args(["eval", "--model", model.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains("--task"),
        "{}",
        text(&o)
    );
}

fn write_sweep(path: &Path, steps: u32) {
    std::fs::write(
        path,
        format!(
            r#"
name = "alpha"
[base.algo]
preset = "simko"
[base.train]
steps = {steps}
prompts_per_step = 4
samples_per_prompt = 4
checkpoint_every = 2
eval_problems = 6
eval_samples = 4
[grid]
"algo.loss.alpha" = [0.0, 0.01, 0.05]
"train.seed" = [0, 1]
"#
        ),
    )
    .unwrap();
}

#[test]
fn a_sweep_runs_from_toml_and_resumes_after_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("alpha.toml");
    write_sweep(&file, 6);
    let runs = tmp.path().join("runs");
    let dir = runs.join("sweeps/alpha");
    let mut child = rlvr()
        .args([
            "sweep",
            file.to_str().unwrap(),
            "--runs-dir",
            runs.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill in the middle of the second run.
    let second = dir.join("alpha=0.01_seed=0");
    rlvr_tests::cli::wait_until("a checkpoint of the second run", || {
        second.join("checkpoints/step-2/state.json").exists()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dir.join("summary.md").exists(), "killed before the end");
    let first_metrics = std::fs::read(dir.join("alpha=0.0_seed=0/metrics.jsonl")).unwrap();

    let out = run_ok(&[
        "sweep",
        file.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
    ]);
    assert!(out.contains("[1/6] alpha=0.0_seed=0: done"), "{out}");
    assert!(out.contains("[2/6] alpha=0.01_seed=0: resuming"), "{out}");
    assert!(out.contains("[6/6] alpha=0.05_seed=1: training"), "{out}");
    assert_eq!(
        std::fs::read(dir.join("alpha=0.0_seed=0/metrics.jsonl")).unwrap(),
        first_metrics,
        "a finished run is not retrained"
    );
    for alpha in ["0.0", "0.01", "0.05"] {
        for seed in [0, 1] {
            let run = dir.join(format!("alpha={alpha}_seed={seed}"));
            let lines = std::fs::read_to_string(run.join("metrics.jsonl"))
                .unwrap()
                .lines()
                .count();
            assert_eq!(lines, 6, "{}: one metrics line per step", run.display());
            assert!(run.join("eval/after.json").exists());
            let md = std::fs::read_to_string(run.join("summary.md")).unwrap();
            assert!(md.contains("| before training |") && md.contains("| after training |"));
            assert_png_drawn(&run.join("plots/training.png"));
            let cfg = std::fs::read_to_string(run.join("config.toml")).unwrap();
            assert!(cfg.contains(&format!("alpha = {alpha}")), "{cfg}");
        }
    }
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    for g in [
        "| alpha=0.0 | 2 |",
        "| alpha=0.01 | 2 |",
        "| alpha=0.05 | 2 |",
        "base (before training)",
    ] {
        assert!(summary.contains(g), "summary lacks `{g}`:\n{summary}");
    }
    assert!(summary.contains(" ± "), "mean ± std over seeds");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["groups"].as_array().unwrap().len(), 4);
    for fig in ["passk", "rank_probs", "training"] {
        assert_png_drawn(&dir.join(format!("plots/{fig}.png")));
    }
    // A second pass only re-summarises.
    let out = run_ok(&[
        "sweep",
        file.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
    ]);
    assert_eq!(out.matches(": done").count(), 6, "{out}");
    // Changing the sweep under existing runs is refused, not mixed in.
    write_sweep(&file, 8);
    let o = common::sweep(&file, &runs, &[]);
    rlvr_tests::cli::assert_fails_with(&o, "different configuration");
}

#[test]
fn bad_sweep_files_are_reported_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let cases = [
        ("[grid]\n\"train.seed\" = 3\n", "must be an array"),
        (
            "[grid]\n\"algo.loss.alpha\" = [2.0]\n[base.algo]\npreset = \"simko\"\n",
            "alpha",
        ),
        ("gird = 1\n", "unknown field"),
        ("[grid]\n\"train.stepz\" = [1]\n", "stepz"),
    ];
    for (body, want) in cases {
        let file = tmp.path().join("bad.toml");
        std::fs::write(&file, body).unwrap();
        let o = common::sweep(&file, &runs, &[]);
        assert!(!o.status.success(), "{body}");
        assert!(text(&o).contains(want), "{body}: {}", text(&o));
        assert!(
            !runs.join("sweeps/bad").exists(),
            "nothing written for {body}"
        );
    }
}

#[test]
fn run_folder_names_from_variants_stay_inside_the_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("names.toml");
    std::fs::write(
        &file,
        r#"
[[variant]]
name = ".."
[[variant]]
name = "a/b c"
[grid]
"train.seed" = [0]
"#,
    )
    .unwrap();
    let runs = tmp.path().join("runs");
    let out = run_ok(&[
        "sweep",
        file.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(out.contains("  ___seed=0  (group: ..)"), "{out}");
    assert!(out.contains("  a_b_c_seed=0  (group: a/b c)"), "{out}");
}

/// `baseline = "<group>"`: the summary pairs every other group's runs with the baseline's by seed
/// and reports the mean difference of mean@n and pass@K with its 95% t interval — checked here
/// against the runs' own evaluations (two seeds: t₀.₉₇₅,₁ = 12.706205); a baseline that is not a
/// group is refused before any training, naming the groups.
#[test]
fn a_sweep_with_a_baseline_reports_paired_differences() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("pairs.toml");
    let body = r#"
name = "pairs"
baseline = "alpha=0.0"
[base.algo]
preset = "simko"
[base.train]
steps = 2
prompts_per_step = 4
samples_per_prompt = 4
eval_problems = 8
eval_samples = 4
tensorboard = false
[grid]
"algo.loss.alpha" = [0.0, 0.3]
"train.seed" = [0, 1]
"#;
    std::fs::write(&file, body).unwrap();
    let runs = tmp.path().join("runs");
    let (f, r) = (file.to_str().unwrap(), runs.to_str().unwrap());
    run_ok(&["sweep", f, "--runs-dir", r]);
    let dir = runs.join("sweeps/pairs");
    let mean_at_n = |run: &str| -> f64 {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(run).join("eval/after.json")).unwrap(),
        )
        .unwrap();
        v["mean_at_n"].as_f64().unwrap()
    };
    let d: Vec<f64> = [0, 1]
        .iter()
        .map(|s| {
            mean_at_n(&format!("alpha=0.3_seed={s}")) - mean_at_n(&format!("alpha=0.0_seed={s}"))
        })
        .collect();
    let mean = (d[0] + d[1]) / 2.0;
    let half = 12.706205 * (d[0] - d[1]).abs() / 2.0; // sd = |d0 − d1|/√2, se = sd/√2
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(summary.contains("## Paired differences"), "{summary}");
    assert!(
        summary.contains("Differences against `alpha=0.0`"),
        "{summary}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let row = &json["paired"]["rows"][0];
    assert_eq!(row["label"], "alpha=0.3");
    assert_eq!(row["pairs"], 2);
    let m = &row["mean_at_n"];
    assert!(
        (m["mean"].as_f64().unwrap() - mean).abs() < 1e-9,
        "{m} vs {mean}"
    );
    assert!(
        (m["lo"].as_f64().unwrap() - (mean - half)).abs() < 1e-6,
        "{m}"
    );
    assert!(
        (m["hi"].as_f64().unwrap() - (mean + half)).abs() < 1e-6,
        "{m}"
    );

    std::fs::write(
        &file,
        body.replace("baseline = \"alpha=0.0\"", "baseline = \"grpo\""),
    )
    .unwrap();
    let o = rlvr().args(["sweep", f, "--runs-dir", r]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(
            "baseline `grpo` is not a group of this sweep; its groups are: alpha=0.0, alpha=0.3"
        ),
        "{}",
        text(&o)
    );
}

/// Every committed sweep file (docs/sweeps) resolves and validates all its runs (`--dry-run`,
/// from the repository root, as the files say to run them).
#[test]
fn the_committed_sweep_files_validate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = repo("docs/sweeps");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for f in files {
        let o = rlvr()
            .current_dir(repo(""))
            .arg("sweep")
            .arg(&f)
            .args(["--dry-run", "--runs-dir"])
            .arg(tmp.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}: {}", f.display(), text(&o));
    }
}

#[test]
fn model_accepts_a_checkpoint_step_folder_and_explains_other_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let data = repo("crates/rewards/tests/data/amc23_test.parquet");
    let o = common::train_hf(
        &runs,
        &data,
        &["--steps", "1", "--set", "train.eval_problems=0"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let step = runs.join("hf/checkpoints/step-1");
    let eval = |model: &Path| {
        rlvr()
            .args(["eval", "--model"])
            .arg(model)
            .arg("--data")
            .arg(&data)
            .args([
                "-n",
                "2",
                "--problems",
                "2",
                "--max-new-tokens",
                "4",
                "--out",
            ])
            .arg(tmp.path().join(format!("e{}", model.components().count())))
            .output()
            .unwrap()
    };
    // The step folder means its model/ (the Hugging Face folder inside).
    let o = eval(&step);
    assert!(o.status.success(), "{}", text(&o));
    // A run folder, the tiny model's checkpoint and a folder without config.json: said what to do.
    let o = eval(&runs.join("hf"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is a run folder") && text(&o).contains("checkpoints/step-N"));
    let tiny = small_run(&runs, "tiny");
    let o = eval(&tiny.join("checkpoints/step-3"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("character-level") && text(&o).contains("--run"),
        "{}",
        text(&o)
    );
    let o = eval(tmp.path());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no config.json"), "{}", text(&o));
}
