//! LoRA runs in-process: only the adapters train (the base stays bit-identical), the KL reference
//! is the frozen base, checkpoints are PEFT adapter folders, and a resumed run ends where an
//! uninterrupted one does.

mod common;

use common::small_config;
use rlvr_models::lora::{is_adapter_name, ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use rlvr_train::{Silent, Trainer};
use std::collections::BTreeMap;
use tch::Tensor;

fn lora_config(steps: i64) -> rlvr_train::config::RunConfig {
    small_config(&[
        (
            "model.lora",
            toml::Value::Table(toml::toml! {
                rank = 4
                alpha = 8
            }),
        ),
        ("train.lr", 2e-2.into()),
        ("train.steps", steps.into()),
        ("train.checkpoint_every", 1.into()),
        ("algo.loss.kl_coef", 0.05.into()),
    ])
}

fn params(t: &Trainer) -> BTreeMap<String, Tensor> {
    t.session
        .policy
        .var_store()
        .variables()
        .into_iter()
        .map(|(n, x)| (n, x.detach().copy()))
        .collect()
}

#[test]
fn lora_training_changes_only_the_adapters() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = Trainer::new(lora_config(2), &tmp.path().join("run")).unwrap();
    assert!(
        matches!(
            t.reference,
            Some(rlvr_train::experience::Reference::FrozenBase)
        ),
        "the KL reference is the frozen base, not a second copy"
    );
    let before = params(&t);
    assert_eq!(
        t.actor.opt.len(),
        before.keys().filter(|n| is_adapter_name(n)).count(),
        "AdamW holds adapter moments only"
    );
    for _ in 0..2 {
        let m = t.train_step().unwrap();
        let kl = m.get("loss/kl_ref");
        assert!(kl.is_some_and(|k| k.is_finite()), "KL to the base: {kl:?}");
        t.step += 1;
    }
    let after = params(&t);
    let mut moved = 0;
    for (name, b) in &before {
        let a = &after[name];
        if is_adapter_name(name) {
            moved += usize::from(!a.equal(b));
        } else {
            assert!(a.equal(b), "base weight `{name}` changed");
        }
    }
    assert!(moved > 0, "no adapter moved");
    let ck = t.checkpoint().unwrap().join("model");
    assert!(ck.join(ADAPTER_WEIGHTS).is_file() && ck.join(ADAPTER_CONFIG).is_file());
    assert!(
        !ck.join("model.safetensors").exists(),
        "base weights written"
    );
}

#[test]
fn a_resumed_lora_run_ends_where_an_uninterrupted_one_does() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    rlvr_train::fit(lora_config(3), &whole, false, &Silent).unwrap();
    let part = tmp.path().join("part");
    rlvr_train::fit(lora_config(2), &part, false, &Silent).unwrap();
    let read = |run: &std::path::Path, step: u64| -> BTreeMap<String, Tensor> {
        let ck = run.join(format!("checkpoints/step-{step}/model"));
        Tensor::read_safetensors(ck.join(ADAPTER_WEIGHTS))
            .unwrap()
            .into_iter()
            .collect()
    };
    let (a, b) = (read(&whole, 2), read(&part, 2));
    for (k, x) in &a {
        assert!(x.equal(&b[k]), "`{k}` differs at step 2, before any resume");
    }
    rlvr_train::resume(&part, Some(3), false, &Silent).unwrap();
    let (a, b) = (read(&whole, 3), read(&part, 3));
    assert!(!a.is_empty());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, x) in &a {
        assert!(x.equal(&b[k]), "`{k}` differs after resume");
    }
}
