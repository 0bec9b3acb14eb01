//! Asynchronous training (`train.max_staleness`) in-process, on the shipped countdown policy:
//! the pipeline at k = 0 is the synchronous trainer bit for bit; k = 2 trains on batches of
//! the planned versions; a run stopped at any step and resumed ends with the weights of an
//! uninterrupted one; the corrections weigh an unchanged policy by exactly 1.

mod common;

use common::{metrics, params, small_config};
use rlvr_train::{fit, resume, Reporter, Silent, TrainError, Trainer};
use std::cell::Cell;
use std::path::Path;
use tch::Tensor;

fn int(v: i64) -> toml::Value {
    toml::Value::Integer(v)
}

/// Metrics that do not measure time or the pipeline itself.
fn comparable(m: &rlvr_train::Metrics) -> Vec<(String, f64)> {
    let v = serde_json::to_value(m).unwrap();
    let mut out: Vec<(String, f64)> = v
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.starts_with("time/") && !k.starts_with("async/"))
        .filter(|(k, _)| *k != "rollout/tokens_per_s")
        .filter_map(|(k, x)| x.as_f64().map(|x| (k.clone(), x)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn the_pipeline_at_k0_is_the_synchronous_trainer_bit_for_bit() {
    let cfg = || small_config(&[("train.steps", int(3))]);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Trainer::new(cfg(), da.path()).unwrap();
    let mut b = Trainer::new(cfg(), db.path()).unwrap();
    b.start_pipeline().unwrap();
    for step in 0..3 {
        let ma = a.train_step().unwrap();
        let mb = b.train_step().unwrap();
        assert_eq!(comparable(&ma), comparable(&mb), "step {step}");
        assert_eq!(mb.get("async/staleness_max"), Some(0.0));
    }
    for ((n, x), (_, y)) in params(&a).iter().zip(&params(&b)) {
        assert!(x.equal(y), "{n} differs");
    }
}

#[test]
fn k2_trains_on_the_planned_versions() {
    let cfg = small_config(&[("train.steps", int(5)), ("train.max_staleness", int(2))]);
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::new(cfg, dir.path()).unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let m = t.train_step().unwrap();
        assert_eq!(m.get("async/staleness_mean"), m.get("async/staleness_max"));
        seen.push(m.get("async/staleness_max").unwrap());
        assert_eq!(
            m.get("rollout/weight_version").unwrap(),
            (t.step - 1).saturating_sub(2) as f64
        );
    }
    assert_eq!(seen, vec![0.0, 1.0, 2.0, 2.0, 2.0]);
}

/// Asks the run to stop (as SIGTERM does) after `at` steps.
struct StopAfter {
    at: u64,
    seen: Cell<u64>,
}
impl Reporter for StopAfter {
    fn step(&self, _: &rlvr_train::Metrics, _: u64) {
        self.seen.set(self.seen.get() + 1);
    }
    fn stop_requested(&self) -> Option<i32> {
        (self.seen.get() == self.at).then_some(15)
    }
}

fn final_weights(run: &Path, steps: u64) -> Vec<(String, Tensor)> {
    let file = run.join(format!("checkpoints/step-{steps}/model/model.safetensors"));
    let mut v = Tensor::read_safetensors(&file).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn a_k2_run_stopped_at_any_step_resumes_to_the_same_weights() {
    let steps = 6;
    let cfg = || {
        small_config(&[
            ("train.steps", int(steps as i64)),
            ("train.max_staleness", int(2)),
        ])
    };
    let root = tempfile::tempdir().unwrap();
    let whole = root.path().join("whole");
    fit(cfg(), &whole, false, &Silent).unwrap();
    // Every step a stop could land on (the random step of the issue, all of them).
    for at in 1..steps {
        let cut = root.path().join(format!("cut-{at}"));
        let stop = StopAfter {
            at,
            seen: Cell::new(0),
        };
        match fit(cfg(), &cut, false, &stop) {
            Err(TrainError::Interrupted { step, .. }) => assert_eq!(step, at),
            other => panic!("expected an interruption, got {:?}", other.map(|_| ())),
        }
        let buffer = cut.join(format!("checkpoints/step-{at}/rollout-buffer.json"));
        assert!(
            buffer.exists(),
            "the checkpoint keeps the batches generated ahead"
        );
        resume(&cut, None, false, &Silent).unwrap();
        for ((n, x), (_, y)) in final_weights(&whole, steps)
            .iter()
            .zip(&final_weights(&cut, steps))
        {
            assert!(x.equal(y), "{n} differs after resuming at step {at}");
        }
        let (mw, mc) = (metrics(&whole), metrics(&cut));
        assert_eq!(mw.len(), mc.len());
        for (a, b) in mw.iter().zip(&mc) {
            for key in ["reward/mean", "actor/loss", "async/staleness_max"] {
                assert_eq!(a.get(key), b.get(key), "{key} at step {}", a["step"]);
            }
        }
    }
}

#[test]
fn a_finished_k2_run_extended_with_more_steps_keeps_the_bound() {
    let cfg = small_config(&[("train.steps", int(2)), ("train.max_staleness", int(2))]);
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("run");
    fit(cfg, &run, false, &Silent).unwrap();
    resume(&run, Some(4), false, &Silent).unwrap();
    let m = metrics(&run);
    let stale: Vec<f64> = m
        .iter()
        .map(|l| l["async/staleness_max"].as_f64().unwrap())
        .collect();
    // Nothing was generated ahead of the final step: steps 3-4 start again from the weights of
    // step 2 (staleness 0, then 1).
    assert_eq!(stale, vec![0.0, 1.0, 0.0, 1.0]);
}

#[test]
fn corrections_weigh_an_unchanged_policy_by_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    let always = toml::Value::String("always".into());
    let t = Trainer::new(small_config(&[("train.old_logp_pass", always)]), dir.path()).unwrap();
    let (exp, _) = t.make_experience().unwrap();
    let mask = &exp.responses.mask;
    let old = exp.old_logp.as_ref().expect("an old-policy pass");
    for table in [
        "type = \"tis\"",
        "type = \"mis\"\nlevel = \"token\"",
        "type = \"mis\"\nlevel = \"sequence\"",
        "type = \"mis\"\nlevel = \"geometric\"",
    ] {
        let c: Box<dyn rlvr_core::CorrectionConfig> = toml::from_str(table).unwrap();
        let w = c.build().unwrap().weights(old, old, mask).unwrap();
        let off = ((w - 1.0) * mask).abs().max().double_value(&[]);
        assert_eq!(off, 0.0, "{table}");
    }
}

#[test]
fn behaviour_proximal_takes_the_engines_log_probs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(&[("train.proximal", toml::Value::String("behaviour".into()))]);
    let t = Trainer::new(cfg, dir.path()).unwrap();
    let (exp, _) = t.make_experience().unwrap();
    let old = exp.old_logp.as_ref().expect("the engine's log-probs");
    assert!(old.equal(&exp.responses.rollout_logp));
    let with_correction = small_config(&[
        ("train.proximal", toml::Value::String("behaviour".into())),
        ("algo.correction.type", toml::Value::String("tis".into())),
    ]);
    let err = Trainer::new(with_correction, dir.path()).err().unwrap();
    assert!(err.to_string().contains("decoupled PPO"), "{err}");
}
