//! Data-parallel `rlvr train` on the c10d Gloo engine with two real processes: the same global
//! batch trains the same weights as one process, only rank 0 writes the run folder, the torchrun
//! variables work without the launcher, and a killed rank stops the other (which names the
//! failure) while `--resume` then ends with the weights of an uninterrupted run.

use rlvr_tests::cli::{checkpoint_weights, metrics_lines, same_weights, text, wait_until};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::rlvr;

/// The countdown default, 5 steps, with a small before/after evaluation (so that its batches
/// are dealt to both ranks: 40 × 16 samples is three batches of 256 rows).
const RUN: [&str; 8] = [
    "--steps",
    "5",
    "--set",
    "train.eval_problems=40",
    "--set",
    "train.checkpoint_every=0",
    "--set",
    "train.tensorboard=false",
];

fn train(runs: &Path, name: &str, extra: &[&str]) -> Output {
    rlvr()
        .args(["train", "--runs-dir"])
        .arg(runs)
        .args(["--name", name])
        .args(RUN)
        .args(extra)
        .output()
        .unwrap()
}

/// Every tensor of the two checkpoints within `rel` relative distance, ‖a − b‖₂ ≤ rel·‖a‖₂.
/// (Not element by element: the gradient of two ranks is the same sum taken in another order,
/// equal to rounding, and AdamW's step is nearly sign(g)·lr for an element whose gradient is at
/// rounding level (|g| ≈ ε = 1e-8), so a few such elements legitimately move by up to lr either
/// way; the same holds for PyTorch DDP against one process.)
///
/// `slack` adds an absolute allowance to ‖Δ‖: a LoRA `B` starts at zero, so its norm is its few
/// updates alone (about lr·√n·steps) and one such element moving by a fraction of lr already
/// exceeds 1e-5·‖θ‖; `slack = lr` allows that one element and nothing like a wrong gradient
/// (which moves every element, ‖Δ‖ ≈ lr·√n).
fn assert_close_weights(a: &Path, b: &Path, rel: f64, slack: f64) {
    let (wa, wb) = (checkpoint_weights(a), checkpoint_weights(b));
    assert_eq!(wa.len(), wb.len());
    for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        let scale = ta.norm().double_value(&[]).max(1e-12);
        let diff = (ta - tb).norm().double_value(&[]);
        assert!(
            diff <= rel * scale + slack,
            "{na}: ‖Δ‖ {diff} vs ‖θ‖ {scale}"
        );
    }
}

fn per_step(path: &Path, key: &str) -> Vec<f64> {
    metrics_lines(path)
        .iter()
        .map(|m| m[key].as_f64().unwrap_or(f64::NAN))
        .collect()
}

/// 2 ranks and 1 process on the same global batch: same rewards at every step, same weights
/// after 5 steps (1e-5 relative), one metrics line per step written by rank 0, and the same
/// held-out evaluation.
fn same_as_one_process(algo: &str, extra: &[&str], slack: f64) {
    same_as_one_process_on(algo, extra, slack, "2")
}

/// [`same_as_one_process`] with `nproc` ranks.
fn same_as_one_process_on(algo: &str, extra: &[&str], slack: f64, nproc: &str) {
    same_as_one_process_sharded(algo, extra, slack, nproc, &[])
}

/// [`same_as_one_process_on`] with the ranks alone also given `ranks_only` (a sharding level:
/// the one process holds everything, `train.sharding = "none"`).
fn same_as_one_process_sharded(
    algo: &str,
    extra: &[&str],
    slack: f64,
    nproc: &str,
    ranks_only: &[&str],
) {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = vec!["--algo", algo];
    args.extend(extra);
    let one = train(tmp.path(), "one", &args);
    assert!(one.status.success(), "{}", text(&one));
    args.extend(ranks_only);
    args.extend(["--nproc", nproc]);
    let two = train(tmp.path(), "two", &args);
    assert!(two.status.success(), "{}", text(&two));
    let out = text(&two);
    assert_eq!(
        out.matches("step 5/5").count(),
        1,
        "rank 0 alone reports: {out}"
    );
    assert_same_training(&tmp.path().join("one"), &tmp.path().join("two"), slack);
}

/// Two runs' step-5 weights within 1e-5 relative (plus `slack`), the same rewards and response
/// lengths at every step, gradient norms within 1e-5, one metrics line per step, and the same
/// held-out evaluation.
fn assert_same_training(d1: &Path, d2: &Path, slack: f64) {
    assert_close_weights(
        &d1.join("checkpoints/step-5"),
        &d2.join("checkpoints/step-5"),
        1e-5,
        slack,
    );
    let (m1, m2) = (d1.join("metrics.jsonl"), d2.join("metrics.jsonl"));
    assert_eq!(metrics_lines(&m2).len(), 5, "one line per step");
    for key in ["reward/mean", "reward/accuracy", "rollout/response_len"] {
        let (a, b) = (per_step(&m1, key), per_step(&m2, key));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-9, "{key}: {a:?} vs {b:?}");
        }
    }
    let (g1, g2) = (
        per_step(&m1, "actor/grad_norm"),
        per_step(&m2, "actor/grad_norm"),
    );
    for (x, y) in g1.iter().zip(&g2) {
        assert!(
            (x - y).abs() <= 1e-5 * x.abs().max(1e-6),
            "grad norm {g1:?} vs {g2:?}"
        );
    }
    let report = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("eval/after.json")).unwrap()).unwrap()
    };
    assert_eq!(report(d1)["pass_at_k"], report(d2)["pass_at_k"]);
    assert_eq!(report(d2)["problems"], 40);
}

#[test]
fn two_ranks_train_what_one_process_trains_grpo() {
    same_as_one_process("grpo", &[], 0.0);
}

#[test]
fn two_ranks_train_what_one_process_trains_simko_with_two_mini_batches() {
    same_as_one_process("simko", &["--set", "train.mini_batches=2"], 0.0);
}

/// `--nproc 2` and `--nproc 3` at one sharding level train what one unsharded process trains: SimKO with
/// 2 mini-batches, and GRPO with gradient clipping active (the default run's gradient norms are
/// above 0.5).
fn sharded_runs_train_what_one_process_trains(level: &str) {
    let sharding = format!("train.sharding={level}");
    let sharded = ["--set", sharding.as_str()];
    for nproc in ["2", "3"] {
        // Micro-batches of 7: the ranks' rows of a mini-batch make unequal numbers of them, so
        // a rank out of rows runs zero-weighted ones to take part in the collectives.
        let simko = [
            "--set",
            "train.mini_batches=2",
            "--set",
            "train.micro_batch_size=7",
        ];
        same_as_one_process_sharded("simko", &simko, 0.0, nproc, &sharded);
        let grpo = ["--set", "train.grad_clip=0.5"];
        same_as_one_process_sharded("grpo", &grpo, 0.0, nproc, &sharded);
    }
}

#[test]
fn optimizer_sharding_trains_what_one_process_trains_on_two_and_three_ranks() {
    // ZeRO-1: each rank updates the AdamW moments of its slices, then gathers the parameters.
    sharded_runs_train_what_one_process_trains("optimizer");
}

#[test]
fn gradient_sharding_trains_what_one_process_trains_on_two_and_three_ranks() {
    // ZeRO-2: gradients reduce-scattered into the owners' slices layer by layer.
    sharded_runs_train_what_one_process_trains("gradients");
}

#[test]
fn full_sharding_trains_what_one_process_trains_on_two_and_three_ranks() {
    // ZeRO-3: parameters too live in slices, each layer gathered for its forward and backward.
    sharded_runs_train_what_one_process_trains("full");
}

/// bf16 mixed precision (run here on the CPU) under `full`: the decoder projections are gathered
/// as bf16 compute copies for the update and the rollouts (the log names how many), which is
/// exact — the same bf16 matmuls over the same f32 masters — so the run trains what the
/// unsharded bf16 run on the same two ranks trains; and bf16 really ran (the f32 run's weights
/// differ).
#[test]
fn full_sharding_gathers_bf16_compute_copies_and_trains_what_unsharded_bf16_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "--algo",
            "simko",
            "--set",
            "train.mini_batches=2",
            "--nproc",
            "2",
        ];
        args.extend(extra);
        let out = train(tmp.path(), name, &args);
        assert!(out.status.success(), "{name}: {}", text(&out));
        text(&out)
    };
    let bf16 = ["--set", "model.mixed_precision=bf16"];
    let none = run("none", &bf16);
    assert!(!none.contains("compute copies"), "{none}");
    let full = run(
        "full",
        &[&bf16[..], &["--set", "train.sharding=full"]].concat(),
    );
    assert!(
        full.contains("parameters") && full.contains("gathered as bf16 compute copies"),
        "{full}"
    );
    assert_same_training(&tmp.path().join("none"), &tmp.path().join("full"), 0.0);
    run("f32", &[]);
    let (a, b) = (
        checkpoint_weights(&tmp.path().join("none/checkpoints/step-5")),
        checkpoint_weights(&tmp.path().join("f32/checkpoints/step-5")),
    );
    let moved = a.iter().zip(&b).any(|((_, x), (_, y))| {
        (x - y).norm().double_value(&[]) > 1e-4 * x.norm().double_value(&[])
    });
    assert!(
        moved,
        "the bf16 run trained the f32 run's weights: bf16 did not run"
    );
}

#[test]
fn a_sharded_run_resumes_on_another_rank_count() {
    resumes_on_another_rank_count("optimizer");
}

#[test]
fn a_fully_sharded_run_resumes_on_another_rank_count() {
    resumes_on_another_rank_count("full");
}

/// 3 steps on 2 ranks, then steps 4–5 on 3 ranks: the saved moments and weights are whole and
/// each rank takes its new slices; the weights end as one process's.
fn resumes_on_another_rank_count(level: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let sharding = format!("train.sharding={level}");
    let sharded = [
        "--set",
        sharding.as_str(),
        "--set",
        "train.checkpoint_every=3",
    ];
    let one = train(tmp.path(), "one", &sharded);
    assert!(one.status.success(), "{}", text(&one));
    let dir = tmp.path().join("moved");
    let mut args: Vec<&str> = sharded.to_vec();
    args.extend(["--nproc", "2", "--steps", "3"]);
    let first = rlvr()
        .args(["train", "--runs-dir"])
        .arg(tmp.path())
        .args(["--name", "moved"])
        .args(&RUN[2..])
        .args(&args)
        .output()
        .unwrap();
    assert!(first.status.success(), "{}", text(&first));
    let o = std::fs::read(dir.join("checkpoints/step-3/optimizer.safetensors")).unwrap();
    assert!(!o.is_empty());
    let resumed = rlvr()
        .args(["train", "--resume"])
        .arg(&dir)
        .args(["--steps", "5", "--nproc", "3"])
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert_close_weights(
        &tmp.path().join("one/checkpoints/step-5"),
        &dir.join("checkpoints/step-5"),
        1e-5,
        0.0,
    );
}

/// Starts rank `rank` of 2 with the torchrun variables set by hand.
#[test]
fn two_ranks_train_what_one_process_trains_lora_with_a_kl_to_the_base() {
    same_as_one_process(
        "grpo",
        &[
            "--set",
            "model.lora.rank=8",
            "--set",
            "algo.loss.kl_coef=0.05",
        ],
        2e-4, // train.lr
    );
}

fn torchrun_rank(rank: usize, port: u16, args: &[&str], timeout_s: &str) -> Child {
    rlvr()
        .args(args)
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("WORLD_SIZE", "2")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("RLVR_COLLECTIVE_TIMEOUT", timeout_s)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Two processes given RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT by hand (as
/// torchrun or srun would) train together what `--nproc 2` trains.
#[test]
fn the_torchrun_variables_run_the_same_job_without_the_launcher() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().to_str().unwrap();
    let launched = train(tmp.path(), "launched", &["--nproc", "2"]);
    assert!(launched.status.success(), "{}", text(&launched));
    let mut args = vec!["train", "--runs-dir", runs, "--name", "manual"];
    args.extend(RUN);
    let port = free_port();
    let ranks: Vec<Child> = (0..2)
        .map(|r| torchrun_rank(r, port, &args, "60"))
        .collect();
    let outs: Vec<Output> = ranks
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for (r, o) in outs.iter().enumerate() {
        assert!(o.status.success(), "rank {r}: {}", text(o));
    }
    assert!(text(&outs[0]).contains("step 5/5"), "{}", text(&outs[0]));
    assert!(!text(&outs[1]).contains("step 5/5"), "rank 1 is quiet");
    assert!(same_weights(
        &tmp.path().join("launched/checkpoints/step-5"),
        &tmp.path().join("manual/checkpoints/step-5"),
    ));
}

/// A rank killed mid-run makes the other exit non-zero within 60 s, naming what failed; the
/// run then resumes (here with the launcher) and ends with the weights of an uninterrupted run.
#[test]
fn a_killed_rank_stops_the_other_and_the_run_resumes_to_the_same_weights() {
    killed_and_resumed("none");
}

/// [`a_killed_rank_stops_the_other_and_the_run_resumes_to_the_same_weights`] with parameters,
/// gradients and moments in slices: the resumed run ends bit for bit where an uninterrupted
/// one does.
#[test]
fn a_killed_fully_sharded_run_resumes_to_the_same_weights() {
    killed_and_resumed("full");
}

fn killed_and_resumed(level: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().to_str().unwrap();
    let sharding = format!("train.sharding={level}");
    let long = [
        "--steps",
        "30",
        "--set",
        "train.eval_problems=0",
        "--set",
        "train.checkpoint_every=5",
        "--set",
        "train.tensorboard=false",
        "--set",
        sharding.as_str(),
    ];
    let mut straight = vec![
        "train",
        "--runs-dir",
        runs,
        "--name",
        "straight",
        "--nproc",
        "2",
    ];
    straight.extend(long);
    let o = rlvr().args(&straight).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));

    let mut args = vec!["train", "--runs-dir", runs, "--name", "killed"];
    args.extend(long);
    let port = free_port();
    let mut rank0 = torchrun_rank(0, port, &args, "20");
    let mut rank1 = torchrun_rank(1, port, &args, "20");
    let dir = tmp.path().join("killed");
    wait_until("a checkpoint", || {
        dir.join("checkpoints/step-10/state.json").exists()
    });
    rank1.kill().unwrap(); // SIGKILL
    rank1.wait().unwrap();
    let killed_at = Instant::now();
    let status = loop {
        if let Some(s) = rank0.try_wait().unwrap() {
            break s;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "rank 0 still runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = rank0.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!status.success());
    assert!(
        err.contains("error (rank 0 of 2)") && err.contains("rank 1 stopped"),
        "{err}"
    );
    assert!(
        !dir.join("checkpoints/step-30").exists(),
        "killed before the end"
    );
    let resumed = rlvr()
        .args(["train", "--resume"])
        .arg(&dir)
        .args(["--nproc", "2"])
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(text(&resumed).contains("resuming"), "{}", text(&resumed));
    assert!(same_weights(
        &tmp.path().join("straight/checkpoints/step-30"),
        &dir.join("checkpoints/step-30"),
    ));
    assert_eq!(metrics_lines(&dir.join("metrics.jsonl")).len(), 30);
}

/// `--nproc` under a launcher and dynamic sampling with two ranks are refused before any work.
#[test]
fn unsupported_combinations_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let o = rlvr()
        .args(["train", "--runs-dir"])
        .arg(tmp.path())
        .args(["--nproc", "2"])
        .env("WORLD_SIZE", "2")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("WORLD_SIZE is already set"),
        "{}",
        text(&o)
    );
    let o = rlvr()
        .args(["train", "--runs-dir"])
        .arg(tmp.path())
        .args(["--name", "bad-env"])
        .env("WORLD_SIZE", "2")
        .env("RANK", "0")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("MASTER_ADDR"), "{}", text(&o));
    // More ranks than prompt groups per step: refused before any rank starts or anything is
    // written (it used to crash in libtorch after the first evaluation).
    let o = rlvr()
        .args(["train", "--runs-dir"])
        .arg(tmp.path())
        .args(["--name", "too-many", "--nproc", "3"])
        .args(["--set", "train.prompts_per_step=2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("3 data-parallel ranks but train.prompts_per_step = 2"),
        "{}",
        text(&o)
    );
    assert!(!tmp.path().join("too-many").exists());
}

/// `RLVR_DIST_BACKEND` runs the engine even with one rank (the path a lone GPU takes with NCCL):
/// with Gloo its collectives are identities, so the weights equal a plain run's bit for bit and
/// `time/all_reduce` is logged; a missing NCCL shim is a configuration error that says how to
/// build it.
#[test]
fn an_engine_asked_for_runs_with_one_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = train(tmp.path(), "plain", &[]);
    assert!(plain.status.success(), "{}", text(&plain));
    let gloo = rlvr()
        .args(["train", "--runs-dir"])
        .arg(tmp.path())
        .args(["--name", "gloo"])
        .args(RUN)
        .env("RLVR_DIST_BACKEND", "gloo")
        .output()
        .unwrap();
    assert!(gloo.status.success(), "{}", text(&gloo));
    assert!(same_weights(
        &tmp.path().join("plain/checkpoints/step-5"),
        &tmp.path().join("gloo/checkpoints/step-5"),
    ));
    let lines = metrics_lines(&tmp.path().join("gloo/metrics.jsonl"));
    assert!(lines.iter().all(|m| m["time/all_reduce"].is_f64()));
    let nccl = rlvr()
        .args(["train", "--runs-dir"])
        .arg(tmp.path())
        .args(["--name", "nccl"])
        .env("RLVR_DIST_BACKEND", "nccl")
        .env("RLVR_NCCL_SHIM", tmp.path().join("missing.so"))
        .output()
        .unwrap();
    assert_eq!(nccl.status.code(), Some(2), "{}", text(&nccl));
    assert!(
        text(&nccl).contains("scripts/build-nccl-shim.sh"),
        "{}",
        text(&nccl)
    );
    assert!(!tmp.path().join("nccl").exists(), "nothing written");
}

/// Ctrl-C in a terminal signals the whole foreground process group: the launcher and (before
/// this was fixed) every rank, which then got the forwarded signal a second time and quit without
/// a checkpoint. Now the ranks checkpoint their last step, the job says where it stopped (once,
/// not as an error) and exits 130, and `--resume` continues.
#[test]
fn ctrl_c_of_a_launched_job_checkpoints_and_is_not_an_error() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("job");
    let mut cmd = rlvr();
    cmd.args(["train", "--nproc", "2", "--runs-dir"])
        .arg(tmp.path())
        .args(["--name", "job", "--steps", "400"])
        .args([
            "--set",
            "train.eval_problems=0",
            "--set",
            "train.checkpoint_every=0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = cmd.spawn().unwrap();
    let metrics = dir.join("metrics.jsonl");
    wait_until("three training steps", || {
        std::fs::read_to_string(&metrics).is_ok_and(|m| m.lines().count() >= 3)
    });
    // What a terminal does: SIGINT to the whole process group.
    let kill = std::process::Command::new("kill")
        .args(["-INT", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(130), "{msg}");
    assert!(!msg.contains("error"), "{msg}");
    assert_eq!(
        msg.matches("stopped by signal 2 after step").count(),
        1,
        "{msg}"
    );
    let done = metrics_lines(&metrics).len();
    assert!(
        dir.join(format!("checkpoints/step-{done}/state.json"))
            .exists(),
        "a checkpoint at step {done}: {msg}"
    );
    let o = rlvr()
        .args(["train", "--nproc", "2", "--resume"])
        .arg(&dir)
        .args(["--steps", &(done + 2).to_string()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(metrics_lines(&metrics).len(), done + 2);
}
