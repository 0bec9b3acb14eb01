//! The trainer's phases in-process (no binary spawned): an RL step's experience and update, an SFT
//! step, and a non-finite loss being skipped and then aborting with the last good checkpoint.

mod common;

use common::{metrics, params, small_config};
use rlvr_core::{CoreError, LossConfig, LossInput, LossOutput, PolicyLoss, StatsNeeds};
use rlvr_train::{Silent, TrainError, Trainer};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use tch::{Kind, Tensor};

#[test]
fn one_rl_step_makes_experience_then_updates_the_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let always = toml::Value::String("always".into());
    let mut t = Trainer::new(small_config(&[("train.old_logp_pass", always)]), tmp.path()).unwrap();
    let (exp, m) = t.make_experience().unwrap();
    // 4 prompts × 4 samples, responses padded to a common length.
    assert_eq!(exp.len(), 16);
    let width = exp.responses.tokens.size()[1];
    assert!(width >= 1 && width <= t.cfg.train.max_new_tokens);
    let old_logp = exp.old_logp.as_ref().expect("an old-policy pass");
    for x in [&exp.responses.mask, &exp.advantages, old_logp] {
        assert_eq!(x.size(), vec![16, width]);
    }
    assert_eq!(exp.responses.scores.size(), vec![16]);
    assert_eq!(
        exp.responses.seq.input_ids.size()[1],
        exp.responses.seq.prompt_len + width,
        "prompt + response ids"
    );
    let groups = Vec::<i64>::try_from(&exp.responses.group).unwrap();
    assert_eq!(groups, (0..4).flat_map(|g| [g; 4]).collect::<Vec<_>>());
    // Advantages vanish on padding; old log-probs are log-probabilities.
    let pad = 1.0 - &exp.responses.mask;
    let on_pad = (&exp.advantages * &pad)
        .abs()
        .sum(Kind::Double)
        .double_value(&[]);
    assert_eq!(on_pad, 0.0);
    assert!((old_logp * &exp.responses.mask).max().double_value(&[]) <= 0.0);
    // GRPO-style advantages are centred within each prompt's group.
    let per_response = exp.advantages.sum_dim_intlist(-1, false, Kind::Double)
        / exp
            .responses
            .mask
            .sum_dim_intlist(-1, false, Kind::Double)
            .clamp_min(1.0);
    for g in 0..4 {
        let s = per_response
            .narrow(0, g * 4, 4)
            .sum(Kind::Double)
            .double_value(&[]);
        assert!(s.abs() < 1e-4, "group {g} advantages sum to {s}");
    }
    for key in [
        "reward/mean",
        "conc/lambda_1",
        "adv/abs_mean",
        "time/rollout",
    ] {
        assert!(m.get(key).is_some_and(f64::is_finite), "{key}");
    }
    // Selecting rows keeps them aligned.
    let idx = Tensor::from_slice(&[3i64, 0]);
    let sel = exp.select(&idx);
    assert_eq!(sel.len(), 2);
    assert!(sel
        .responses
        .tokens
        .get(1)
        .equal(&exp.responses.tokens.get(0)));
    assert!(sel.advantages.get(0).equal(&exp.advantages.get(3)));

    let before = params(&t);
    let lr = t.lr();
    let um = update_once(&mut t, &exp);
    let after = params(&t);
    let changed = before
        .iter()
        .zip(&after)
        .filter(|((_, a), (_, b))| !a.equal(b))
        .count();
    if um.value("actor/grad_norm") > 0.0 {
        assert!(
            changed > 0,
            "an update with a non-zero gradient moves weights"
        );
    }
    assert_eq!(um.value("actor/updates"), 1.0);
    assert_eq!(um.value("actor/skipped_updates"), 0.0);
    assert_eq!(um.value("actor/lr"), lr);
    // The whole step through the trainer advances the step counter.
    let m = t.train_step().unwrap();
    assert_eq!((m.step, t.step), (1, 1));
    assert!(m.get("time/step").is_some());
}

/// The actor's update of `exp` at the trainer's first step, in one process.
fn update_once(
    t: &mut Trainer,
    exp: &rlvr_train::experience::Experience,
) -> rlvr_train::metrics::Metrics {
    let tc = t.cfg.train.clone();
    let lr = t.lr();
    t.actor
        .update(
            t.session.policy.as_ref(),
            exp,
            &tc,
            0,
            lr,
            &rlvr_train::distributed::Single,
        )
        .unwrap()
}

/// Experience and one update of `cfg` (a fresh trainer), with the update's metrics merged in.
fn experience_and_update(
    cfg: rlvr_train::config::RunConfig,
) -> (
    Option<Tensor>,
    rlvr_train::metrics::Metrics,
    Vec<(String, Tensor)>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = Trainer::new(cfg, tmp.path()).unwrap();
    let (exp, mut m) = t.make_experience().unwrap();
    m.extend(update_once(&mut t, &exp));
    (exp.old_logp, m, params(&t))
}

#[test]
fn without_the_old_policy_pass_the_update_and_its_diagnostics_are_unchanged() {
    // One optimizer step per batch, on-policy: the old log-probs are the update's own, so the
    // pass before the update is left out (train.old_logp_pass = auto) — TRL's num_iterations
    // = 1. Against the same step with the pass (always): the same weights, loss, gradient norm
    // and diagnostics (now taken from the update's statistics), to f32 rounding.
    for algo in ["simko", "grpo", "rloo", "kl-cov"] {
        let cfg = |pass: &str| {
            small_config(&[
                ("algo.preset", toml::Value::String(algo.into())),
                ("train.old_logp_pass", toml::Value::String(pass.into())),
            ])
        };
        let (old_auto, ma, pa) = experience_and_update(cfg("auto"));
        let (old_always, mb, pb) = experience_and_update(cfg("always"));
        // KL-Cov's |log π − log π_old| keeps the pass (PolicyLoss::needs_old_pass).
        assert_eq!(
            old_auto.is_none(),
            algo != "kl-cov",
            "{algo}: the pass was left out"
        );
        assert!(old_always.is_some(), "{algo}: the pass ran");
        for ((name, a), (_, b)) in pa.iter().zip(&pb) {
            let rel = (a - b).norm().double_value(&[]) / b.norm().double_value(&[]).max(1e-12);
            assert!(rel <= 1e-5, "{algo} {name}: {rel}");
        }
        for key in [
            "actor/loss",
            "actor/grad_norm",
            "conc/lambda_1",
            "conc/lambda_2",
            "conc/top1_prob",
            "conc/entropy",
            "conc/sampled_logp",
            "rollout/logp_diff_mean",
            "rollout/kl_k3",
            "reward/mean",
        ] {
            let (x, y) = (ma.value(key), mb.value(key));
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                "{algo} {key}: {x} without the pass, {y} with it"
            );
        }
        assert!(ma.value("rollout/logp_diff_max") < 1e-4, "{algo}");
    }
    // More than one step per batch: the old policy differs from the later steps' weights.
    let two = small_config(&[("train.mini_batches", toml::Value::Integer(2))]);
    assert!(experience_and_update(two).0.is_some());
}

#[test]
fn the_update_from_the_rollouts_forward_passes_equals_the_one_that_runs_its_own() {
    // train.rollout_activations_mib: the rollout records its forward passes and the update
    // (one on-policy step, micro-batches of shuffled rows) starts from them instead of running
    // the decoder again. Same weights after the step, loss and gradient norm, to f32 rounding.
    for algo in ["simko", "grpo"] {
        let cfg = |mib: i64| {
            small_config(&[
                ("algo.preset", toml::Value::String(algo.into())),
                ("train.micro_batch_size", toml::Value::Integer(3)),
                ("train.rollout_activations_mib", toml::Value::Integer(mib)),
            ])
        };
        let run = |mib: i64| {
            let tmp = tempfile::tempdir().unwrap();
            let mut t = Trainer::new(cfg(mib), tmp.path()).unwrap();
            let (exp, mut m) = t.make_experience().unwrap();
            let recorded = exp.responses.record.is_some();
            // The update reads the record only without an old-policy pass.
            assert!(exp.old_logp.is_none(), "{algo}: one on-policy step");
            m.extend(update_once(&mut t, &exp));
            (recorded, m, params(&t))
        };
        let (recorded, ma, pa) = run(1024);
        let (plain, mb, pb) = run(0);
        assert!(recorded, "{algo}: the rollout kept its forward passes");
        assert!(!plain, "{algo}: nothing kept without the budget");
        let mut moved = 0.0f64;
        for ((name, a), (_, b)) in pa.iter().zip(&pb) {
            let rel = (a - b).norm().double_value(&[]) / b.norm().double_value(&[]).max(1e-12);
            assert!(rel <= 1e-5, "{algo} {name}: {rel}");
            moved = moved.max(rel);
        }
        for key in ["actor/loss", "actor/grad_norm", "conc/entropy"] {
            let (x, y) = (ma.value(key), mb.value(key));
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                "{algo} {key}: {x} from the record, {y} recomputed"
            );
        }
        assert!(ma.value("actor/grad_norm") > 0.0, "{algo}: a real update");
        assert_eq!(ma.value("actor/from_rollout_record"), 1.0, "{algo}");
        assert_eq!(mb.value("actor/from_rollout_record"), 0.0, "{algo}");
    }
    // Too little memory for the whole batch's record: none is kept, the update runs its own
    // forward.
    let tmp = tempfile::tempdir().unwrap();
    let t = Trainer::new(
        small_config(&[("train.rollout_activations_mib", toml::Value::Integer(1))]),
        tmp.path(),
    )
    .unwrap();
    let (exp, _) = t.make_experience().unwrap();
    assert!(exp.responses.record.is_none());
}

#[test]
fn one_sft_step_changes_the_weights() {
    use rlvr_train::sft::{sft, SftSpec};
    rlvr_models::link_anchor();
    rlvr_rewards::link_anchor();
    let tmp = tempfile::tempdir().unwrap();
    let spec = |steps: u64, out: &str| SftSpec {
        model: "tiny".into(),
        task: "countdown".into(),
        sets: vec![],
        device: None,
        steps,
        batch: 8,
        lr: 3e-3,
        seed: 5,
        out: tmp.path().join(out),
        data: None,
    };
    let zero = sft(&spec(0, "zero"), &Silent).unwrap();
    assert!(zero.final_loss.is_nan(), "no step taken");
    let one = sft(&spec(1, "one"), &Silent).unwrap();
    assert!(one.final_loss.is_finite() && one.final_loss > 0.0);
    let read = |d: &str| {
        let mut v = Tensor::read_safetensors(tmp.path().join(d).join("model.safetensors")).unwrap();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let (a, b) = (read("zero"), read("one"));
    assert_eq!(a.len(), b.len());
    assert!(
        a.iter().zip(&b).any(|((_, x), (_, y))| !x.equal(y)),
        "one SFT step moved the weights"
    );
}

/// A loss that only these tests register: PPO-clip whose loss is NaN on calls `from..from + count`
/// of `per_token_loss` (counted from 1), for testing the non-finite guard.
#[derive(Serialize, Deserialize, Default, documented::DocumentedFields)]
#[serde(default)]
struct NanOnCalls {
    /// First NaN call.
    from: u64,
    /// Number of NaN calls.
    count: u64,
}
rlvr_core::describe_fields!(NanOnCalls);
rlvr_core::register!(
    loss,
    "test-nan-on-calls",
    "test only: NaN on some calls",
    NanOnCalls
);

struct NanLoss {
    inner: Box<dyn PolicyLoss>,
    from: u64,
    count: u64,
    calls: AtomicU64,
}

#[typetag::serde(name = "test-nan-on-calls")]
impl LossConfig for NanOnCalls {
    fn build(&self) -> rlvr_core::Result<Box<dyn PolicyLoss>> {
        let ppo: Box<dyn LossConfig> =
            toml::from_str("type = \"ppo-clip\"").map_err(|e| CoreError::config("ppo-clip", e))?;
        Ok(Box::new(NanLoss {
            inner: ppo.build()?,
            from: self.from,
            count: self.count,
            calls: AtomicU64::new(0),
        }))
    }
}

impl PolicyLoss for NanLoss {
    fn needs(&self) -> StatsNeeds {
        self.inner.needs()
    }
    fn per_token_loss(&self, input: &LossInput<'_>) -> rlvr_core::Result<LossOutput> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let mut out = self.inner.per_token_loss(input)?;
        if call >= self.from && call < self.from + self.count {
            out.per_token *= f64::NAN;
        }
        Ok(out)
    }
}

fn nan_run(
    dir: &std::path::Path,
    steps: i64,
    from: i64,
    max_nonfinite: i64,
) -> rlvr_train::Result<()> {
    let cfg = small_config(&[
        ("train.steps", steps.into()),
        ("train.mini_batches", 2.into()),
        ("train.checkpoint_every", 5.into()),
        ("train.max_nonfinite", max_nonfinite.into()),
        (
            "algo.loss",
            toml::Value::Table(toml::toml! {
                type = "test-nan-on-calls"
                from = from
                count = 2
            }),
        ),
    ]);
    rlvr_train::fit(cfg, dir, false, &Silent).map(drop)
}

#[test]
fn a_nan_step_is_skipped_and_repeated_ones_abort_keeping_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    // Two mini-batches per step: calls 5 and 6 are step 3's.
    let dir = tmp.path().join("nan");
    nan_run(&dir, 6, 5, 3).unwrap();
    let m = metrics(&dir);
    assert_eq!(m.len(), 6);
    assert_eq!(
        m[2]["actor/skipped_updates"], 2.0,
        "both updates of step 3 skipped"
    );
    assert_eq!(m[3]["actor/skipped_updates"], 0.0);
    assert_eq!(m[1]["actor/skipped_updates"], 0.0);

    let dir = tmp.path().join("abort");
    let err = nan_run(&dir, 12, 13, 1).unwrap_err();
    assert!(matches!(err, TrainError::Run(_)), "{err}");
    assert!(!err.is_usage());
    assert!(err.to_string().contains("non-finite"), "{err}");
    let ck = dir.join("checkpoints");
    assert!(
        ck.join("step-5/state.json").exists(),
        "last good checkpoint kept"
    );
    assert!(!ck.join("step-10").exists());
}

#[test]
fn a_live_runs_checkpoint_is_pinned_while_another_process_loads_it() {
    use rlvr_train::checkpoint::load_pinned;
    let tmp = tempfile::tempdir().unwrap();
    let mut t = Trainer::new(small_config(&[]), tmp.path()).unwrap();
    t.train_step().unwrap();
    let ck = t.checkpoint().unwrap();
    let trained = params(&t);
    let mut other = Trainer::new(small_config(&[]), &tmp.path().join("other")).unwrap();
    load_pinned(&ck, other.session.policy.as_mut()).unwrap();
    let loaded = params(&other);
    assert!(trained
        .iter()
        .zip(&loaded)
        .all(|((n, a), (m, b))| n == m && a.equal(b)));
    let leftovers: Vec<_> = std::fs::read_dir(ck.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".pin"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Deleted by retention before it could be pinned: said so.
    std::fs::remove_dir_all(&ck).unwrap();
    let e = load_pinned(&ck, other.session.policy.as_mut())
        .unwrap_err()
        .to_string();
    assert!(e.contains("was deleted"), "{e}");
}
