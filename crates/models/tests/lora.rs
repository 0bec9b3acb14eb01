//! LoRA adapters against Hugging Face PEFT (fixtures made by PEFT 0.21, `fixtures/lora`): logits
//! with a PEFT adapter, `merge_and_unload`'s weights, PEFT's file layout on save, zero-initialised
//! adapters, the frozen base as reference, and the errors of adapters that do not fit.

use rlvr_core::{ModelConfig, SequenceBatch, StatsNeeds};
use rlvr_models::lora::{self, LoraConfig, Module, Targets, ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use rlvr_models::policy::{Adapters, HfModelConfig};
use rlvr_models::HfModel;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

const FIXTURES: [(&str, &str); 4] = [
    ("qwen2-tiny", "qwen2-tiny-r4-all-linear"),
    ("qwen2-tiny", "qwen2-tiny-r8-attention-rslora"),
    ("llama-tiny", "llama-tiny-r4-all-linear"),
    ("llama-tiny", "llama-tiny-r8-attention-rslora"),
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tensors(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .collect()
}

fn reference(base: &str) -> HashMap<String, Tensor> {
    tensors(&fixtures().join(base).join("reference.safetensors"))
}

fn max_masked_diff(a: &Tensor, b: &Tensor, mask: &Tensor) -> f64 {
    ((a - b).abs() * mask.unsqueeze(-1).to_kind(Kind::Float))
        .max()
        .double_value(&[])
}

/// The base model with the PEFT adapter folder `adapter` attached and loaded.
fn with_adapter(base: &str, adapter: &Path) -> HfModel {
    let mut m = HfModel::load(&fixtures().join(base), Device::Cpu, Kind::Float).unwrap();
    let adapters = Adapters {
        lora: None,
        adapter: adapter.display().to_string(),
    };
    let (spec, dir) = adapters.resolve().unwrap().unwrap();
    m.attach_adapters(&spec, Kind::Float).unwrap();
    lora::load_adapter(&mut m.vs, &dir.unwrap()).unwrap();
    m
}

fn logits(m: &HfModel, r: &HashMap<String, Tensor>) -> Tensor {
    m.model
        .forward_logits(&r["input_ids"], &r["attention_mask"])
        .unwrap()
}

#[test]
fn logits_with_a_peft_adapter_match_peft() {
    for (base, name) in FIXTURES {
        let dir = fixtures().join("lora").join(name);
        let m = with_adapter(base, &dir);
        let r = reference(base);
        let expected = tensors(&dir.join("expected.safetensors"));
        let ours = logits(&m, &r);
        let diff = max_masked_diff(&ours, &expected["logits"], &r["attention_mask"]);
        assert!(diff < 1e-4, "{name}: max |logit diff| vs PEFT {diff}");
        // The adapter matters: the base alone is far from PEFT's logits.
        let base_only = m.model.without_adapters(|| logits(&m, &r));
        let moved = max_masked_diff(&base_only, &expected["logits"], &r["attention_mask"]);
        assert!(
            moved > 1e-2,
            "{name}: the adapter changes nothing ({moved})"
        );
    }
}

#[test]
fn merging_equals_peft_merge_and_unload() {
    for (base, name) in FIXTURES {
        let dir = fixtures().join("lora").join(name);
        let mut m = with_adapter(base, &dir);
        m.merge_adapters().unwrap();
        let expected = tensors(&dir.join("expected.safetensors"));
        let out = tempfile::tempdir().unwrap();
        m.save(out.path()).unwrap();
        let saved = tensors(&out.path().join("model.safetensors"));
        for (key, want) in expected.iter().filter(|(k, _)| k.starts_with("merged.")) {
            let key = key.trim_start_matches("merged.");
            if key == "lm_head.weight" && !saved.contains_key(key) {
                continue; // tied to the embedding, saved once (as transformers does)
            }
            let got = saved
                .get(key)
                .unwrap_or_else(|| panic!("{name}: merged export lacks `{key}`"));
            let diff = (got - want).abs().max().double_value(&[]);
            assert!(
                diff < 1e-6,
                "{name}: `{key}` differs from PEFT's merge by {diff}"
            );
        }
        assert!(
            !saved.keys().any(|k| lora::is_adapter_name(k)),
            "{name}: merged export keeps adapter tensors"
        );
        // The merged folder is a plain HF model that loads back to the merged weights.
        for side in ["tokenizer.json", "tokenizer_config.json"] {
            assert!(out.path().join(side).exists(), "{name}: {side} not copied");
        }
        let r = reference(base);
        let plain = HfModel::load(out.path(), Device::Cpu, Kind::Float).unwrap();
        assert!(
            logits(&plain, &r).equal(&logits(&m, &r)),
            "{name}: reloaded logits"
        );
    }
}

#[test]
fn saved_adapters_have_peft_names_and_config() {
    for (base, name) in FIXTURES {
        let dir = fixtures().join("lora").join(name);
        let m = with_adapter(base, &dir);
        let out = tempfile::tempdir().unwrap();
        m.save(out.path()).unwrap();
        assert!(
            !out.path().join("model.safetensors").exists(),
            "{name}: an adapter checkpoint also wrote the base weights"
        );
        let theirs = tensors(&dir.join(ADAPTER_WEIGHTS));
        let ours = tensors(&out.path().join(ADAPTER_WEIGHTS));
        let keys = |t: &HashMap<String, Tensor>| t.keys().cloned().collect::<BTreeSet<_>>();
        assert_eq!(keys(&ours), keys(&theirs), "{name}: tensor names");
        for (k, t) in &theirs {
            assert!(ours[k].equal(t), "{name}: `{k}` changed on the round trip");
        }
        let cfg = |p: &Path| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(p.join(ADAPTER_CONFIG)).unwrap()).unwrap()
        };
        let (a, b) = (cfg(out.path()), cfg(&dir));
        for key in [
            "peft_type",
            "task_type",
            "r",
            "use_rslora",
            "bias",
            "use_dora",
        ] {
            assert_eq!(a[key], b[key], "{name}: adapter_config `{key}`");
        }
        assert_eq!(
            a["lora_alpha"].as_f64(),
            b["lora_alpha"].as_f64(),
            "{name}: alpha"
        );
        // Read back: the same LoRA.
        assert_eq!(
            lora::read_adapter_config(out.path())
                .unwrap()
                .spec()
                .unwrap(),
            lora::read_adapter_config(&dir).unwrap().spec().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn zero_initialised_adapters_reproduce_the_base_exactly() {
    for base in ["qwen2-tiny", "llama-tiny"] {
        let r = reference(base);
        let plain = HfModel::load(&fixtures().join(base), Device::Cpu, Kind::Float).unwrap();
        let want = logits(&plain, &r);
        for init in [lora::LoraInit::Default, lora::LoraInit::Gaussian] {
            let mut m = HfModel::load(&fixtures().join(base), Device::Cpu, Kind::Float).unwrap();
            let cfg = LoraConfig {
                rank: 16,
                init,
                ..LoraConfig::default()
            };
            m.attach_adapters(&cfg.spec().unwrap(), Kind::Float)
                .unwrap();
            assert!(
                logits(&m, &r).equal(&want),
                "{base} {init:?}: logits changed"
            );
            // A is random (PEFT's init), B zero.
            let vars = m.vs.variables();
            let a = &vars["model.layers.0.self_attn.q_proj.lora_A.weight"];
            let b = &vars["model.layers.0.mlp.down_proj.lora_B.weight"];
            assert!(a.abs().sum(Kind::Float).double_value(&[]) > 0.0);
            assert_eq!(b.abs().sum(Kind::Float).double_value(&[]), 0.0);
            // Kaiming-uniform with a = √5: U(±1/√in).
            if init == lora::LoraInit::Default {
                let bound = a.abs().max().double_value(&[]);
                assert!(bound <= 1.0 / 64f64.sqrt() + 1e-7, "{bound}");
            }
        }
    }
}

#[test]
fn only_adapters_are_trainable_and_the_base_is_the_reference() {
    let dir = fixtures().join("lora/qwen2-tiny-r4-all-linear");
    let cfg = HfModelConfig {
        path: fixtures().join("qwen2-tiny"),
        adapters: Adapters {
            lora: None,
            adapter: dir.display().to_string(),
        },
        ..HfModelConfig::default()
    };
    let policy = cfg.build(Device::Cpu).unwrap();
    assert!(policy.has_frozen_base());
    let trainable: Vec<String> = policy
        .var_store()
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(n, _)| n)
        .collect();
    assert_eq!(trainable.len(), 2 * 7 * 2, "{trainable:?}");
    assert!(trainable.iter().all(|n| lora::is_adapter_name(n)));
    let r = reference("qwen2-tiny");
    let batch = SequenceBatch {
        input_ids: r["input_ids"].shallow_clone(),
        attention_mask: r["attention_mask"].shallow_clone(),
        prompt_len: 4,
    };
    let needs = StatsNeeds::default();
    let base = HfModelConfig {
        path: fixtures().join("qwen2-tiny"),
        ..HfModelConfig::default()
    }
    .build(Device::Cpu)
    .unwrap();
    let want = base.token_stats(&batch, &needs).unwrap().logp;
    let got = policy.base_token_stats(&batch, &needs).unwrap().logp;
    assert!(
        got.equal(&want),
        "the frozen base's statistics differ from the base model's"
    );
    let adapted = policy.token_stats(&batch, &needs).unwrap().logp;
    assert!(!adapted.equal(&want), "the adapter is not applied");
    assert!(base.base_token_stats(&batch, &needs).is_err());
}

#[test]
fn adapters_that_do_not_fit_are_refused_by_name() {
    let base = fixtures().join("qwen2-tiny");
    let adapter = fixtures().join("lora/qwen2-tiny-r8-attention-rslora");
    // [model.lora] disagreeing with the adapter's own config.
    let both = Adapters {
        lora: Some(LoraConfig::default()),
        adapter: adapter.display().to_string(),
    };
    let e = both.resolve().unwrap_err().to_string();
    assert!(
        e.contains("model.lora") && e.contains("adapter_config.json"),
        "{e}"
    );
    // Attention-only adapter files into an all-linear model: missing tensors named.
    let mut m = HfModel::load(&base, Device::Cpu, Kind::Float).unwrap();
    m.attach_adapters(
        &LoraConfig {
            rank: 8,
            ..LoraConfig::default()
        }
        .spec()
        .unwrap(),
        Kind::Float,
    )
    .unwrap();
    let e = lora::load_adapter(&mut m.vs, &adapter)
        .unwrap_err()
        .to_string();
    assert!(e.contains("mlp") && e.contains("lora_"), "{e}");
    // All-linear files into an attention-only model: the extra modules named.
    let mut m = HfModel::load(&base, Device::Cpu, Kind::Float).unwrap();
    let attn = LoraConfig {
        rank: 4,
        targets: Targets::Modules(vec![
            "q_proj".into(),
            "k_proj".into(),
            "v_proj".into(),
            "o_proj".into(),
        ]),
        ..LoraConfig::default()
    };
    m.attach_adapters(&attn.spec().unwrap(), Kind::Float)
        .unwrap();
    let e = lora::load_adapter(&mut m.vs, &fixtures().join("lora/qwen2-tiny-r4-all-linear"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.lora.targets") && e.contains("mlp"), "{e}");
    // Bad settings name the valid values.
    let bad = LoraConfig {
        targets: Targets::Modules(vec!["qkv".into()]),
        ..LoraConfig::default()
    };
    let e = bad.spec().unwrap_err().to_string();
    assert!(e.contains("qkv") && e.contains(Module::Q.name()), "{e}");
    let e = LoraConfig {
        rank: 0,
        ..LoraConfig::default()
    }
    .spec()
    .unwrap_err()
    .to_string();
    assert!(e.contains("model.lora.rank"), "{e}");
    // A DoRA adapter is refused, not loaded as LoRA.
    let dora = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(adapter.join(ADAPTER_CONFIG)).unwrap();
    std::fs::write(
        dora.path().join(ADAPTER_CONFIG),
        text.replace("\"use_dora\": false", "\"use_dora\": true"),
    )
    .unwrap();
    let e = lora::read_adapter_config(dora.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("use_dora"), "{e}");
}
