//! The `rlvr` binary of this package, wrapped around `rlvr_tests::cli`.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Small, fast settings on countdown from the shipped base checkpoint.
pub const SMALL: [&str; 10] = rlvr_tests::cli::SMALL_RUN;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_rlvr");

/// A command running the binary (one libtorch thread: see `rlvr_tests::cli::command`).
pub fn rlvr() -> Command {
    rlvr_tests::cli::command(BIN)
}

/// `rlvr train` of a small named run.
pub fn train(runs: &Path, name: &str, extra: &[&str]) -> Output {
    rlvr_tests::cli::train(BIN, runs, Some(name), extra)
}

/// `rlvr train --resume DIR EXTRA`.
pub fn resume(dir: &Path, extra: &[&str]) -> Output {
    rlvr_tests::cli::resume(BIN, dir, extra)
}

/// `rlvr sweep FILE --runs-dir RUNS EXTRA`.
pub fn sweep(file: &Path, runs: &Path, extra: &[&str]) -> Output {
    rlvr()
        .arg("sweep")
        .arg(file)
        .arg("--runs-dir")
        .arg(runs)
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("{BIN} does not start: {e}"))
}

/// `rlvr train --algo grpo` of the qwen2-tiny fixture model on a dataset file, 2 prompts × 2
/// samples of at most 8 tokens per step, as run `hf` in `runs`.
pub fn train_hf(runs: &Path, data: &Path, extra: &[&str]) -> Output {
    let model = rlvr_tests::cli::repo("crates/models/tests/fixtures/qwen2-tiny");
    rlvr()
        .args(["train", "--name", "hf", "--algo", "grpo"])
        .arg("--runs-dir")
        .arg(runs)
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(data)
        .args(["--set", "train.prompts_per_step=2"])
        .args(["--set", "train.samples_per_prompt=2"])
        .args(["--set", "train.max_new_tokens=8"])
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("{BIN} does not start: {e}"))
}
