//! Metrics reach the run's log: every metric any registered loss emits (with every registered
//! gate) is in `metrics.jsonl`, every key is documented in docs/metrics.md, and the TensorBoard
//! events mirror `metrics.jsonl` (tags, steps, values), also after a resume.

mod common;

use common::{metrics, small_config};
use rlvr_core::registry::{self, ComponentKind};
use rlvr_core::{token_stats_from_logits, LossConfig};
use rlvr_tests::loss::LossBatch;
use rlvr_train::metrics::{loss_metric_key, read_tensorboard_scalars, MetricsLog};
use rlvr_train::Silent;
use std::collections::BTreeSet;
use tch::{Kind as TKind, Tensor};

/// Names of the per-token metrics a loss configuration emits, from one synthetic call.
fn emitted(loss_table: &toml::Table) -> Vec<String> {
    let cfg: Box<dyn LossConfig> = toml::Value::Table(loss_table.clone()).try_into().unwrap();
    let loss = cfg.build().unwrap();
    let (b, t, v) = (4, 6, 11);
    tch::manual_seed(0);
    let logits = Tensor::randn([b, t, v], (TKind::Float, tch::Device::Cpu));
    let tokens = Tensor::randint(v, [b, t], (TKind::Int64, tch::Device::Cpu));
    let stats = token_stats_from_logits(&logits, &tokens, &loss.needs()).unwrap();
    let mask = Tensor::ones([b, t], (TKind::Float, tch::Device::Cpu));
    let scores = Tensor::from_slice(&[1.0f32, 0.0, 1.0, 0.0]);
    let batch = LossBatch {
        old_logp: stats.logp.detach() - 0.01,
        advantages: (&scores - 0.5).unsqueeze(1) * &mask,
        mask,
        scores,
        tokens,
    };
    let mut input = batch.input(&stats);
    input.ref_logp = Some(&batch.old_logp);
    let out = loss.per_token_loss(&input).unwrap();
    out.metrics.iter().map(|m| m.name.to_string()).collect()
}

/// Every registered loss at its defaults, and `ppo-clip` with each registered gate.
fn loss_tables() -> Vec<(String, toml::Table)> {
    rlvr_algos::presets::link_anchor();
    let default = |kind: ComponentKind, name: &str| -> toml::Table {
        let r = registry::find(kind, name).unwrap();
        r.factory
            .default_toml()
            .unwrap()
            .as_table()
            .unwrap()
            .clone()
    };
    let mut out = Vec::new();
    for name in registry::names(ComponentKind::Loss) {
        if name.starts_with("test-") {
            continue;
        }
        out.push((format!("loss {name}"), default(ComponentKind::Loss, name)));
    }
    for gate in registry::names(ComponentKind::Gate) {
        let mut t = default(ComponentKind::Loss, "ppo-clip");
        t.insert(
            "gate".into(),
            toml::Value::Table(default(ComponentKind::Gate, gate)),
        );
        out.push((format!("ppo-clip with gate {gate}"), t));
    }
    out
}

#[test]
fn every_metric_of_every_loss_and_gate_reaches_metrics_jsonl() {
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (i, (what, table)) in loss_tables().into_iter().enumerate() {
        let names = emitted(&table);
        let cfg = small_config(&[
            ("train.steps", 1.into()),
            ("algo.loss", toml::Value::Table(table)),
        ]);
        let dir = tmp.path().join(format!("run-{i}"));
        rlvr_train::fit(cfg, &dir, false, &Silent).unwrap_or_else(|e| panic!("{what}: {e}"));
        let line = &metrics(&dir)[0];
        for name in &names {
            let key = loss_metric_key(name);
            assert!(
                line.get(&key).is_some_and(|v| v.is_number()),
                "{what}: metric `{name}` is missing from metrics.jsonl as `{key}`: {line}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} metrics checked");
}

#[test]
fn every_key_of_metrics_jsonl_is_documented() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/metrics.md"),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut keys = BTreeSet::new();
    for (i, preset) in ["simko", "grpo", "kl-cov"].iter().enumerate() {
        // The first run also validates (train.eval_every): its `val/*` keys are checked too.
        let validate = i64::from(i == 0);
        let cfg = small_config(&[
            ("train.steps", 1.into()),
            ("train.eval_every", validate.into()),
            ("train.eval_problems", (2 * validate).into()),
            ("train.eval_samples", 2.into()),
            (
                "algo",
                toml::Value::Table(toml::toml! { preset = (*preset) }),
            ),
        ]);
        let dir = tmp.path().join(format!("run-{i}"));
        rlvr_train::fit(cfg, &dir, false, &Silent).unwrap();
        keys.extend(metrics(&dir)[0].as_object().unwrap().keys().cloned());
    }
    assert!(keys.contains("val/pass@2"), "validation keys: {keys:?}");
    for key in &keys {
        assert!(
            doc.contains(&format!("`{key}`")),
            "docs/metrics.md does not list `{key}`"
        );
    }
}

#[test]
fn tensorboard_events_mirror_metrics_jsonl_also_after_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tb");
    let cfg = small_config(&[("train.steps", 3.into())]);
    rlvr_train::fit(cfg, &dir, false, &Silent).unwrap();
    let lines = metrics(&dir);
    let scalars = read_tensorboard_scalars(&dir.join("tensorboard")).unwrap();
    let mut expected = Vec::new();
    for line in &lines {
        let step = line["step"].as_i64().unwrap();
        for (k, v) in line.as_object().unwrap() {
            if k != "step" {
                expected.push((k.clone(), step, v.as_f64().unwrap() as f32));
            }
        }
    }
    let sort = |mut v: Vec<(String, i64, f32)>| {
        v.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        v
    };
    assert_eq!(sort(scalars), sort(expected.clone()));
    assert!(expected
        .iter()
        .any(|(k, s, _)| k == "reward/mean" && *s == 3));

    // A resumed run continues after step 2: the log drops step 3 everywhere.
    drop(MetricsLog::open(&dir, 2, true).unwrap());
    let scalars = read_tensorboard_scalars(&dir.join("tensorboard")).unwrap();
    assert!(scalars.iter().all(|(_, s, _)| *s <= 2));
    assert_eq!(
        sort(scalars),
        sort(expected.into_iter().filter(|e| e.1 <= 2).collect())
    );
    assert_eq!(metrics(&dir).len(), 2);
}

#[test]
fn the_run_summary_notes_a_pass_at_k_below_the_model_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("eval")).unwrap();
    let report = |pass: [(usize, f64); 3]| {
        serde_json::json!({
            "problems": 100, "samples": 16, "mean_at_n": pass[0].1,
            "pass_at_k": pass.iter().map(|(k, v)| serde_json::json!([k, v])).collect::<Vec<_>>(),
        })
        .to_string()
    };
    std::fs::write(
        dir.join("eval/before.json"),
        report([(1, 0.413), (8, 0.819), (16, 0.880)]),
    )
    .unwrap();
    std::fs::write(
        dir.join("eval/after.json"),
        report([(1, 0.497), (8, 0.772), (16, 0.810)]),
    )
    .unwrap();
    let metrics = dir.join("metrics.jsonl");
    std::fs::write(&metrics, "").unwrap();
    rlvr_train::summary::write_run_summary(dir, &small_config(&[]), &metrics).unwrap();
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(
        md.contains("pass@8 0.819 → 0.772, pass@16 0.880 → 0.810"),
        "{md}"
    );
}
