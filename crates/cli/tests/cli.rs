//! End-to-end tests of the `rlvr` binary: listing, config printing, and configuration errors.

use rlvr_core::AlgoConfig;
use std::process::Output;

use rlvr_tests::cli::{stderr, stdout};

fn rlvr(args: &[&str]) -> Output {
    rlvr_tests::cli::run(env!("CARGO_BIN_EXE_rlvr"), args)
}

/// Sections of `rlvr list`: heading → names in printed order.
fn list_sections() -> Vec<(String, Vec<String>)> {
    let out = rlvr(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in stdout(&out).lines() {
        if let Some(head) = line.strip_suffix(':') {
            sections.push((head.to_string(), Vec::new()));
        } else if let Some(name) = line
            .strip_prefix("  ")
            .and_then(|l| l.split_whitespace().next())
        {
            if let Some(last) = sections.last_mut() {
                last.1.push(name.to_string());
            }
        }
    }
    sections
}

#[test]
fn version_names_the_commit_the_binary_was_built_from() {
    let o = rlvr(&["--version"]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).trim(),
        format!(
            "rlvr {}, commit {}",
            env!("CARGO_PKG_VERSION"),
            rlvr_tests::cli::head_commit()
        )
    );
}

#[test]
fn list_shows_every_algorithm_name_sorted() {
    let sections = list_sections();
    let get = |h: &str| {
        sections
            .iter()
            .find(|(k, _)| k == h)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    for (_, names) in &sections {
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, &sorted, "names are sorted");
    }
    let presets = get("presets");
    for p in [
        "grpo",
        "dr-grpo",
        "rloo",
        "reinforce++",
        "psr",
        "nsr",
        "w-reinforce",
        "passk",
        "pkpo",
        "kl-cov",
        "clip-cov",
        "entropy-adv",
        "forking-tokens",
        "dapo-clip",
        "simko",
    ] {
        assert!(presets.contains(&p.to_string()), "preset {p} listed");
    }
    let adv = get("advantage estimators");
    for a in [
        "grpo",
        "rloo",
        "reinforce++",
        "reinforce++-baseline",
        "psr",
        "nsr",
        "w-reinforce",
        "passk",
        "pkpo",
    ] {
        assert!(adv.contains(&a.to_string()), "estimator {a} listed");
    }
    let losses = get("losses");
    for l in ["ppo-clip", "simko", "clip-cov", "kl-cov", "entropy-adv"] {
        assert!(losses.contains(&l.to_string()), "loss {l} listed");
    }
    let gates = get("gates");
    for g in ["all", "entropy-quantile", "top1", "not-truncated"] {
        assert!(gates.contains(&g.to_string()), "gate {g} listed");
    }
}

#[test]
fn printed_config_parses_back_to_the_same_config_for_every_preset() {
    rlvr_cli::link_builtins();
    let presets = list_sections()
        .into_iter()
        .find(|(k, _)| k == "presets")
        .expect("presets section")
        .1;
    assert!(presets.len() >= 15);
    for name in presets {
        let out = rlvr(&["config", "--algo", &name]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let doc: toml::Table = stdout(&out)
            .parse()
            .unwrap_or_else(|e| panic!("{name}: printed config is TOML: {e}"));
        let printed = AlgoConfig::resolve(doc["algo"].as_table().expect("[algo]"))
            .expect("printed config resolves");
        let mut direct = toml::Table::new();
        direct.insert("preset".into(), toml::Value::String(name.clone()));
        let expected = AlgoConfig::resolve(&direct).expect("preset resolves");
        assert_eq!(
            printed.to_table().unwrap(),
            expected.to_table().unwrap(),
            "{name}: round trip"
        );
    }
}

#[test]
fn simko_config_explains_its_knobs_and_takes_flags() {
    let out = rlvr(&[
        "config",
        "--algo",
        "simko",
        "--topk",
        "5",
        "--tau",
        "0.1",
        "--lambda=1.05",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for (field, doc_word) in [
        ("topk = 5", "top candidates"),
        ("alpha = 0.01", "mixture"),
        ("lambda = 1.05", "penalty"),
        ("tau = 0.1", "quantile"),
        ("scope = \"response\"", "scope"),
        ("penalty_on = \"advantage\"", "λ applies"),
    ] {
        assert!(text.contains(field), "{field} in:\n{text}");
        assert!(text.contains(doc_word), "doc mentioning {doc_word}");
    }
}

fn write_config(dir: &tempfile::TempDir, body: &str) -> String {
    let path = dir.path().join("c.toml");
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

fn assert_fails_listing(body: &str, must_mention: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, body);
    let out = rlvr(&["config", "--config", &path]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "fails with usage status for:\n{body}"
    );
    let err = stderr(&out);
    for m in must_mention {
        assert!(err.contains(m), "error mentions `{m}`:\n{err}");
    }
}

#[test]
fn unknown_names_fail_with_the_valid_ones() {
    assert_fails_listing(
        "[algo]\npreset = \"simkoo\"\n",
        &["simkoo", "simko", "grpo", "dapo-clip"],
    );
    assert_fails_listing(
        "[algo]\npreset = \"grpo\"\n[algo.loss]\ntype = \"ppo-clipp\"\n",
        &["ppo-clipp", "ppo-clip", "simko", "kl-cov"],
    );
    assert_fails_listing(
        "[algo]\npreset = \"grpo\"\n[algo.advantage]\ntype = \"grpoo\"\n",
        &["grpoo", "rloo", "passk"],
    );
    assert_fails_listing(
        "[algo]\npreset = \"simko\"\n[algo.loss.gate]\ntype = \"entropy\"\n",
        &["entropy", "entropy-quantile", "top1"],
    );
    assert_fails_listing(
        "[algo]\npreset = \"simko\"\n[algo.loss]\ntopkk = 3\n",
        &["topkk", "topk", "alpha", "lambda"],
    );
    assert_fails_listing(
        "[algo]\npreset = \"simko\"\n[algo.loss.gate]\ntauu = 0.3\n",
        &["tauu", "tau", "scope"],
    );
    assert_fails_listing(
        "[algo]\npreset = \"simko\"\nfoo = 1\n",
        &["foo", "aggregation", "loss"],
    );
}

#[test]
fn invalid_values_and_flags_fail_before_any_work() {
    let out = rlvr(&["config", "--algo", "simko", "--tau", "1.5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("must be in [0, 1]"),
        "{}",
        stderr(&out)
    );
    let out = rlvr(&["config", "--algo", "simko", "--topkk", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--topk"), "{}", stderr(&out));
    let out = rlvr(&["config", "--algo", "simko", "--lambda", "0.5"]);
    assert!(stderr(&out).contains("lambda"), "{}", stderr(&out));
    let out = rlvr(&["config", "--config", "/nonexistent/x.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/x.toml"));
}

#[test]
fn config_prints_every_section_explained_and_parses_back() {
    let out = rlvr(&["config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("# No --algo or --config: the built-in default run (simko)."),
        "{text}"
    );
    for needle in [
        "[algo]",
        "[model]",
        "# Hidden size.",
        "[task]",
        "type = \"countdown\"",
        "[train]",
        "# Responses sampled per prompt (the group size).",
        "samples_per_prompt = 8",
    ] {
        assert!(text.contains(needle), "{needle} in:\n{text}");
    }

    let dir = tempfile::tempdir().unwrap();
    let reward = write_config(
        &dir,
        "[reward]\ndefault = \"math\"\n[reward.sources]\n\"openai/gsm8k\" = \"gsm8k\"\n\
         mine = { type = \"command\", cmd = [\"python3\", \"r.py\"] }\n",
    );
    // `rlvr config` checks that the data files exist (it does not read them).
    let data = dir.path().join("x.parquet");
    std::fs::write(&data, "").unwrap();
    let data = data.display().to_string();
    let out = rlvr(&[
        "config", "--algo", "grpo", "--data", &data, "--config", &reward,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let train_line = format!("train = \"{data}\"");
    for needle in [
        "[data]",
        train_line.as_str(),
        "# Rows held out when `test` is \"\".",
        "[reward.default]",
        "[reward.sources.\"openai/gsm8k\"]",
        "[reward.sources.mine]",
        "# Seconds to wait for the answer to one batch.",
        "timeout_s = 60.0",
    ] {
        assert!(text.contains(needle), "{needle} in:\n{text}");
    }
    // What it prints is a config file that resolves to the same run.
    let printed = dir.path().join("printed.toml");
    std::fs::write(&printed, &text).unwrap();
    let again = rlvr(&["config", "--config", printed.to_str().unwrap()]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), text);
}

#[test]
fn unknown_keys_in_data_and_train_fail_listing_the_valid_names() {
    for (set, needles) in [
        ("data.trian=x.parquet", ["trian", "train", "holdout"]),
        ("train.stpes=3", ["stpes", "steps", "samples_per_prompt"]),
    ] {
        let out = rlvr(&["config", "--data", "x.parquet", "--set", set]);
        assert_eq!(out.status.code(), Some(2), "{set}: {}", stderr(&out));
        for n in needles {
            assert!(stderr(&out).contains(n), "{n} for {set}: {}", stderr(&out));
        }
    }
}

#[test]
fn other_libraries_names_and_misplaced_flags_point_to_the_rlvr_setting() {
    for (args, needles) in [
        (vec!["train", "--lr", "1e-5"], vec!["--set train.lr=1e-5"]),
        (
            vec!["train", "--checkpointing", "true"],
            vec!["--set model.checkpointing=true"],
        ),
        (
            vec!["train", "--learning-rate", "1e-5"],
            vec!["`learning_rate` is `train.lr`"],
        ),
        (
            vec!["config", "--set", "train.learning_rate=1e-5"],
            vec![
                "unknown field `learning_rate`",
                "`learning_rate` is `train.lr`",
            ],
        ),
        (
            vec!["config", "--algo", "grpo", "--set", "algo.loss.beta=0.04"],
            vec!["`beta` is `algo.loss.kl_coef`"],
        ),
        (
            vec!["config", "--set", "train.num_generations=8"],
            vec!["`train.samples_per_prompt`"],
        ),
    ] {
        let out = rlvr(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        for n in needles {
            assert!(
                stderr(&out).contains(n),
                "{n} for {args:?}: {}",
                stderr(&out)
            );
        }
    }
}

#[test]
fn config_of_a_missing_data_file_fails() {
    let out = rlvr(&["config", "--data", "no/such/file.parquet"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no/such/file.parquet"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn logs_written_to_a_file_are_plain_text_and_verbose_logs_leave_libraries_out() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().to_str().unwrap();
    let model = rlvr_tests::cli::repo("crates/models/tests/fixtures/qwen2-tiny");
    let data = rlvr_tests::cli::repo("crates/rewards/tests/data/amc23_test.parquet");
    let out = rlvr(&[
        "train",
        "-vvv",
        "--runs-dir",
        runs,
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--steps",
        "1",
        "--set",
        "train.threads=1000",
        "--set",
        "train.prompts_per_step=2",
        "--set",
        "train.samples_per_prompt=2",
        "--set",
        "train.max_new_tokens=4",
        "--set",
        "train.eval_problems=0",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains("WARN") && log.contains("train.threads = 1000"),
        "{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a redirected log: {log:?}"
    );
    // rlvr's own trace lines, not every library's (the tokenizer alone wrote thousands).
    assert!(
        log.lines().count() < 300,
        "{} lines of -vvv",
        log.lines().count()
    );
}

#[test]
fn a_hub_id_resolves_to_its_local_cache_snapshot_and_never_downloads() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--test-org--tiny.v1");
    let snapshot = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd\n").unwrap();
    let fixture = rlvr_tests::cli::repo("crates/models/tests/fixtures/qwen2-tiny");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(fixture.join(f), snapshot.join(f)).unwrap();
    }
    let data = rlvr_tests::cli::repo("crates/rewards/tests/data/amc23_test.parquet");
    let run = |model: &str| {
        rlvr_tests::cli::command(env!("CARGO_BIN_EXE_rlvr"))
            .env("HF_HUB_CACHE", cache.path())
            .args(["config", "--model", model, "--data", data.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = run("test-org/tiny.v1");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&snapshot.display().to_string()),
        "{}",
        stdout(&out)
    );
    let out = run("test-org/absent");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("huggingface-cli download test-org/absent"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn casp_is_simko_under_the_revised_papers_name() {
    let casp = rlvr(&["config", "--algo", "casp"]);
    let simko = rlvr(&["config", "--algo", "simko"]);
    assert!(casp.status.success(), "{}", stderr(&casp));
    let algo = |o: &Output| -> toml::Table {
        let mut t: toml::Table = stdout(o).parse().unwrap();
        let mut a = t.remove("algo").unwrap().as_table().unwrap().clone();
        a.remove("preset");
        a
    };
    assert_eq!(algo(&casp), algo(&simko));
    assert!(stdout(&rlvr(&["list"])).contains("casp"));
}

#[test]
fn errors_inside_tagged_tables_name_the_key() {
    let data = rlvr_tests::cli::repo("crates/rewards/tests/data/amc23_test.parquet");
    let data = data.to_str().unwrap();
    for (sets, path) in [
        (
            vec!["reward.default.type=command", "reward.default.cmd=5"],
            "`reward.default.cmd`",
        ),
        (
            vec!["reward.default.type=math", "reward.default.rel_tol=x"],
            "`reward.default.rel_tol`",
        ),
        (vec!["model.hidden_size=abc"], "`model.hidden_size`"),
    ] {
        let mut args = vec!["config", "--data", data];
        for s in &sets {
            args.extend(["--set", s]);
        }
        let out = rlvr(&args);
        assert_eq!(out.status.code(), Some(2), "{sets:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(path), "{path}: {}", stderr(&out));
        assert!(!stderr(&out).contains(".."), "{}", stderr(&out));
    }
}

#[test]
fn plan_says_what_fits_and_refuses_an_unknown_model() {
    let o = rlvr(&["plan", "--model", "qwen2.5-7b"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("7.62B parameters"), "{out}");
    assert!(
        out.contains("does NOT fit"),
        "one 80 GB GPU cannot hold 7.6B × 16 B: {out}"
    );
    let o = rlvr(&[
        "plan",
        "--model",
        "qwen2.5-7b",
        "--ranks",
        "8",
        "--sharding",
        "optimizer",
    ]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.contains("AdamW moments") && out.contains(": fits"),
        "{out}"
    );
    let o = rlvr(&["plan", "--model", "no-such-model"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("qwen2.5-0.5b"));
}

/// A run that needs more memory than the process may use (here `ulimit -v`, as a cgroup or a
/// small machine would impose) stops with an out-of-memory error and exit code 1, naming the
/// allocation and what to lower, instead of a panic with libtorch's C++ frames.
#[test]
fn an_allocation_the_memory_limit_refuses_is_an_out_of_memory_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        // 2.4 GiB of address space: libtorch loads, the 0.5B shape's 0.5 GB embedding does not.
        .arg("ulimit -v 2500000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_rlvr"))
        .args(["train", "--runs-dir"])
        .arg(tmp.path())
        .args([
            "--name",
            "small",
            "--model",
            "qwen2.5-0.5b-shape",
            "--steps",
            "1",
        ])
        .args(["--set", "train.eval_problems=0"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: out of memory: can't allocate memory: you tried to allocate"),
        "{err}"
    );
    assert!(err.contains("train.sharding"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("frame #"),
        "{err}"
    );
}
