//! # rlvr-tests
//!
//! Support shared by the workspace's tests and benches (and usable by plugin crates' tests):
//! running a CLI binary and reading its output ([`cli`]), the loss-input tensors a policy-loss
//! test builds ([`loss`]), the atoms of generated verifier inputs ([`fuzz`]) and the docs'
//! benchmark tables rendered from `docs/bench/*.json` ([`bench`]). The whole-system tests of the
//! registries live in `tests/tests/`.
//!
//! It depends only on `rlvr-core`, so any crate can take it as a dev-dependency.

pub mod bench;

/// The files under `dir` (recursively) whose extension is `ext`, sorted (for tests that read the
/// repository's sources and scripts).
pub fn files_with_extension(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            panic!("cannot read {}", d.display());
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

pub mod cli {
    //! Running a binary under test.
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    /// A command running `bin` with one libtorch thread. Tests compare weights of separate runs
    /// bit for bit, and the default thread count follows the machine's load (`train.threads =
    /// 0`, re-checked between steps) while a GEMM sums in another order with another thread
    /// count; so every test run pins it (docs/configuration.md, `threads`).
    pub fn command(bin: &str) -> Command {
        let mut cmd = Command::new(bin);
        cmd.env("OMP_NUM_THREADS", "1");
        cmd
    }

    /// Runs `bin` with `args` and returns its output (panics only if it cannot start).
    pub fn run(bin: &str, args: &[&str]) -> Output {
        command(bin)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{bin} does not start: {e}"))
    }

    /// Runs `bin` with `args`, asserts success and returns stdout + stderr.
    pub fn run_ok(bin: &str, args: &[&str]) -> String {
        let o = run(bin, args);
        assert!(o.status.success(), "{bin} {args:?}:\n{}", text(&o));
        text(&o)
    }

    /// Standard output and standard error together.
    pub fn text(o: &Output) -> String {
        format!("{}{}", stdout(o), String::from_utf8_lossy(&o.stderr))
    }

    /// Standard output.
    pub fn stdout(o: &Output) -> String {
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Standard error.
    pub fn stderr(o: &Output) -> String {
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// The checkout's HEAD commit as `rlvr --version` names it (12 hex digits; "unknown"
    /// outside a git checkout), for tests of what the binary says about its build.
    pub fn head_commit() -> String {
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    }

    /// A path inside the workspace root.
    pub fn repo(p: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
    }

    /// Small, fast settings for `rlvr train` on countdown from the shipped base checkpoint.
    pub const SMALL_RUN: [&str; 10] = [
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

    /// `bin train --runs-dir RUNS [--name NAME] SMALL_RUN EXTRA` (no `--name` when `name` is
    /// `None`).
    pub fn train(bin: &str, runs: &Path, name: Option<&str>, extra: &[&str]) -> Output {
        let mut cmd = command(bin);
        cmd.args(["train", "--runs-dir"]).arg(runs);
        if let Some(name) = name {
            cmd.args(["--name", name]);
        }
        cmd.args(SMALL_RUN)
            .args(extra)
            .output()
            .unwrap_or_else(|e| panic!("{bin} does not start: {e}"))
    }

    /// `bin train --resume DIR EXTRA`.
    pub fn resume(bin: &str, dir: &Path, extra: &[&str]) -> Output {
        command(bin)
            .args(["train", "--resume"])
            .arg(dir)
            .args(extra)
            .output()
            .unwrap_or_else(|e| panic!("{bin} does not start: {e}"))
    }

    /// Asserts that a command failed and said `needle`.
    pub fn assert_fails_with(o: &Output, needle: &str) {
        let all = text(o);
        assert!(!o.status.success(), "expected a failure: {all}");
        assert!(all.contains(needle), "expected {needle:?} in: {all}");
    }

    /// The weights of a checkpoint folder, sorted by name.
    pub fn checkpoint_weights(ck: &Path) -> Vec<(String, tch::Tensor)> {
        // A LoRA run's checkpoint holds its adapters only.
        let adapters = ck.join("model/adapter_model.safetensors");
        let path = if adapters.exists() {
            adapters
        } else {
            ck.join("model/model.safetensors")
        };
        let mut v = tch::Tensor::read_safetensors(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Whether two checkpoints hold bit-identical weights.
    pub fn same_weights(a: &Path, b: &Path) -> bool {
        let (a, b) = (checkpoint_weights(a), checkpoint_weights(b));
        a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.0 == y.0 && x.1.equal(&y.1))
    }

    /// Polls `done` every 5 ms until it holds; panics naming `what` after two minutes.
    pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let start = std::time::Instant::now();
        while !done() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(120),
                "timed out waiting for {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// The JSON lines of a `metrics.jsonl` file.
    pub fn metrics_lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }
}

pub mod loss {
    //! The tensors of a [`LossInput`] besides the policy's statistics, owned.
    use rlvr_core::{GlobalCounts, LossInput, LossOutput, TokenStats};
    use std::collections::HashMap;
    use tch::{Kind, Tensor};

    /// Old log-probs, advantages, mask, scores and tokens of `B` responses of `T` tokens.
    pub struct LossBatch {
        /// `[B, T]` f32.
        pub old_logp: Tensor,
        /// `[B, T]` f32.
        pub advantages: Tensor,
        /// `[B, T]` f32.
        pub mask: Tensor,
        /// `[B]` f32.
        pub scores: Tensor,
        /// `[B, T]` i64.
        pub tokens: Tensor,
    }

    impl LossBatch {
        /// From a fixture with the official code's names (`old_log_prob`, `advantages`, `mask`,
        /// `scores`, `tokens`).
        pub fn from_fixture(f: &HashMap<String, Tensor>) -> LossBatch {
            let get = |k: &str| {
                f.get(k)
                    .unwrap_or_else(|| panic!("fixture lacks `{k}`"))
                    .shallow_clone()
            };
            LossBatch {
                old_logp: get("old_log_prob"),
                advantages: get("advantages"),
                mask: get("mask"),
                scores: get("scores"),
                tokens: get("tokens"),
            }
        }

        /// Rows `start..start + len`.
        pub fn rows(&self, start: i64, len: i64) -> LossBatch {
            let r = |x: &Tensor| x.narrow(0, start, len);
            LossBatch {
                old_logp: r(&self.old_logp),
                advantages: r(&self.advantages),
                mask: r(&self.mask),
                scores: r(&self.scores),
                tokens: r(&self.tokens),
            }
        }

        /// The loss input with `stats` (no reference, truncation unknown).
        pub fn input<'a>(&'a self, stats: &'a TokenStats) -> LossInput<'a> {
            LossInput {
                stats,
                old_logp: &self.old_logp,
                ref_logp: None,
                advantages: &self.advantages,
                mask: &self.mask,
                scores: &self.scores,
                tokens: &self.tokens,
                truncated: None,
            }
        }

        /// The mini-batch's global counts.
        pub fn counts(&self) -> GlobalCounts {
            GlobalCounts::of_mask(&self.mask).expect("a [B, T] mask")
        }

        /// Mean of a loss metric over valid tokens (panics when the loss does not emit it).
        pub fn metric_mean(&self, out: &LossOutput, name: &str) -> f64 {
            let m = out
                .metrics
                .iter()
                .find(|m| m.name == name)
                .unwrap_or_else(|| panic!("metric `{name}` emitted"));
            (&m.values * &self.mask).sum(Kind::Double).double_value(&[]) / self.counts().tokens
        }
    }
}

pub mod fuzz {
    //! Pieces of LaTeX-like answers that generated verifier inputs are made of: the commands,
    //! brackets, numbers and phrases that a math verifier parses, plus pathological ones (huge
    //! numbers, nested powers, non-ASCII).
    pub const LATEX_ATOMS: &[&str] = &[
        "\\boxed{",
        "}",
        "{",
        "\\frac",
        "\\sqrt[",
        "]",
        "^",
        "_",
        "(",
        ")",
        "[",
        "\\{",
        "\\}",
        "1",
        "0",
        "9",
        "x",
        "e",
        "i",
        "\\pi",
        "+",
        "-",
        "*",
        "/",
        ",",
        "=",
        "<",
        "\\le",
        "!",
        "\\text{",
        "$",
        "\\\\",
        "&",
        "\\begin{pmatrix}",
        "\\end{pmatrix}",
        "%",
        ".",
        " ",
        "answer is",
        "####",
        "\\infty",
        "\\cup",
        "10^{10^{10}}",
        "99999999999999999999",
        "\\sin",
        "é",
        "∞",
    ];
}
