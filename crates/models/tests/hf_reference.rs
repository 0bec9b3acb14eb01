//! The decoder against transformers' outputs on the tiny fixtures: teacher-forced logits, greedy
//! generation through the KV cache, cached vs uncached decoding, and save → load round trips.

use rlvr_models::transformer::positions_from_mask;
use rlvr_models::{HfModel, KvCache};
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

const MODELS: [&str; 3] = ["qwen2-tiny", "llama-tiny", "qwen3-tiny"];

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The device of the reference checks: CPU, or `RLVR_TEST_DEVICE` (`cuda`, `cuda:N`) to run the
/// same checks on a GPU.
fn device() -> Device {
    match std::env::var("RLVR_TEST_DEVICE") {
        Ok(d) => rlvr_models::device::parse_device(&d).unwrap(),
        Err(_) => Device::Cpu,
    }
}

/// The fixture's inputs and transformers' outputs, on [`device`].
fn reference(name: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(dir(name).join("reference.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, t.to_device(device())))
        .collect()
}

fn max_masked_diff(a: &Tensor, b: &Tensor, mask: &Tensor) -> f64 {
    ((a - b).abs() * mask.unsqueeze(-1).to_kind(Kind::Float))
        .max()
        .double_value(&[])
}

#[test]
fn logits_match_transformers() {
    for name in MODELS {
        let m = HfModel::load(&dir(name), device(), Kind::Float).unwrap();
        let r = reference(name);
        let positions = positions_from_mask(&r["attention_mask"]).unwrap();
        assert!(positions.equal(&r["position_ids"]), "{name}: positions");
        let logits = m
            .model
            .forward_logits(&r["input_ids"], &r["attention_mask"])
            .unwrap();
        let diff = max_masked_diff(&logits, &r["expected_logits"], &r["attention_mask"]);
        assert!(diff < 1e-4, "{name}: max |logit diff| {diff}");
    }
}

/// Greedy decoding: prefill the left-padded prompts into a cache, then one token at a time.
fn greedy_cached(m: &HfModel, ids: &Tensor, mask: &Tensor, steps: i64) -> (Tensor, Vec<Tensor>) {
    let mut cache = KvCache::new();
    let mut positions = positions_from_mask(mask).unwrap();
    let mut key_mask = mask.shallow_clone();
    let hidden = m
        .model
        .forward_hidden(ids, &positions, &key_mask, Some(&mut cache))
        .unwrap();
    let mut logits = m.model.logits(&hidden.select(1, -1)).unwrap();
    let mut out = vec![ids.shallow_clone()];
    let mut step_logits = Vec::new();
    for _ in 0..steps {
        step_logits.push(logits.shallow_clone());
        let next = logits.argmax(-1, true);
        out.push(next.shallow_clone());
        positions = positions.select(1, -1).unsqueeze(1) + 1;
        key_mask = Tensor::cat(&[&key_mask, &next.ones_like()], 1);
        let hidden = m
            .model
            .forward_hidden(&next, &positions, &key_mask, Some(&mut cache))
            .unwrap();
        logits = m.model.logits(&hidden.select(1, -1)).unwrap();
    }
    (Tensor::cat(&out, 1), step_logits)
}

#[test]
fn greedy_generation_through_the_kv_cache_matches_transformers() {
    for name in MODELS {
        let m = HfModel::load(&dir(name), device(), Kind::Float).unwrap();
        let r = reference(name);
        let expected = &r["expected_greedy_ids"];
        let steps = expected.size()[1] - r["input_ids"].size()[1];
        let (ids, _) = greedy_cached(&m, &r["input_ids"], &r["attention_mask"], steps);
        assert!(
            ids.equal(expected),
            "{name}: greedy ids {ids:?} vs {expected:?}"
        );
    }
}

#[test]
fn teacher_forced_logits_equal_prefill_plus_cached_steps() {
    for name in MODELS {
        let m = HfModel::load(&dir(name), device(), Kind::Float).unwrap();
        let r = reference(name);
        let steps = 6;
        let (ids, step_logits) = greedy_cached(&m, &r["input_ids"], &r["attention_mask"], steps);
        let full_mask = Tensor::cat(
            &[
                &r["attention_mask"],
                &ids.narrow(1, r["input_ids"].size()[1], steps).ones_like(),
            ],
            1,
        );
        let full = m.model.forward_logits(&ids, &full_mask).unwrap();
        let p = r["input_ids"].size()[1];
        for (s, cached) in step_logits.iter().enumerate() {
            let teacher = full.select(1, p - 1 + s as i64);
            let diff = (&teacher - cached).abs().max().double_value(&[]);
            assert!(
                diff < 1e-4,
                "{name}: step {s} cached vs teacher-forced {diff}"
            );
        }
    }
}

#[test]
fn save_then_load_gives_identical_logits_and_hf_layout() {
    for name in MODELS {
        let m = HfModel::load(&dir(name), device(), Kind::Float).unwrap();
        let r = reference(name);
        let tmp = tempfile::tempdir().unwrap();
        m.save(tmp.path()).unwrap();
        let again = HfModel::load(tmp.path(), device(), Kind::Float).unwrap();
        let a = m
            .model
            .forward_logits(&r["input_ids"], &r["attention_mask"])
            .unwrap();
        let b = again
            .model
            .forward_logits(&r["input_ids"], &r["attention_mask"])
            .unwrap();
        assert!(a.equal(&b), "{name}: identical logits after round trip");
        let orig_cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir(name).join("config.json")).unwrap())
                .unwrap();
        let saved_cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(tmp.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(orig_cfg, saved_cfg, "{name}: config.json layout kept");
        let names = |p: PathBuf| -> Vec<String> {
            let mut v: Vec<String> = Tensor::read_safetensors(p)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            names(dir(name).join("model.safetensors")),
            names(tmp.path().join("model.safetensors")),
            "{name}: tensor names"
        );
        assert!(tmp.path().join("tokenizer.json").exists());
    }
}

#[test]
fn bad_checkpoints_fail_with_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let src = dir("qwen2-tiny");
    std::fs::copy(
        src.join("model.safetensors"),
        tmp.path().join("model.safetensors"),
    )
    .unwrap();
    let cfg = std::fs::read_to_string(src.join("config.json")).unwrap();
    std::fs::write(
        tmp.path().join("config.json"),
        cfg.replace("\"qwen2\"", "\"mistral\""),
    )
    .unwrap();
    let err = HfModel::load(tmp.path(), device(), Kind::Float)
        .unwrap_err()
        .to_string();
    assert!(err.contains("mistral") && err.contains("qwen3"), "{err}");
    std::fs::write(
        tmp.path().join("config.json"),
        cfg.replace("\"intermediate_size\": 160", "\"intermediate_size\": 128"),
    )
    .unwrap();
    let err = HfModel::load(tmp.path(), device(), Kind::Float)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mlp") && err.contains("160") && err.contains("128"),
        "{err}"
    );
    std::fs::write(
        tmp.path().join("config.json"),
        cfg.replace(
            "\"rope_scaling\": null",
            "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 2.0}",
        ),
    )
    .unwrap();
    let err = HfModel::load(tmp.path(), device(), Kind::Float)
        .unwrap_err()
        .to_string();
    assert!(err.contains("yarn"), "{err}");
}

#[test]
fn sharded_checkpoints_load_and_save_in_the_same_layout() {
    let src = dir("llama-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let tensors: Vec<(String, Tensor)> =
        Tensor::read_safetensors(src.join("model.safetensors")).unwrap();
    let (first, second): (Vec<_>, Vec<_>) = tensors
        .iter()
        .partition(|(k, _)| k.contains("layers.0") || k.contains("embed"));
    let mut weight_map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", &first),
        ("model-00002-of-00002.safetensors", &second),
    ] {
        let list: Vec<(&str, &Tensor)> = part.iter().map(|(k, t)| (k.as_str(), t)).collect();
        Tensor::write_safetensors(&list, tmp.path().join(file)).unwrap();
        for (k, _) in part.iter() {
            weight_map.insert(k.clone(), file.into());
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(
        tmp.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    std::fs::copy(src.join("config.json"), tmp.path().join("config.json")).unwrap();
    let sharded = HfModel::load(tmp.path(), device(), Kind::Float).unwrap();
    let single = HfModel::load(&src, device(), Kind::Float).unwrap();
    let r = reference("llama-tiny");
    let a = single
        .model
        .forward_logits(&r["input_ids"], &r["attention_mask"])
        .unwrap();
    let b = sharded
        .model
        .forward_logits(&r["input_ids"], &r["attention_mask"])
        .unwrap();
    assert!(a.equal(&b), "sharded load = single-file load");
    let out = tempfile::tempdir().unwrap();
    sharded.save(out.path()).unwrap();
    assert!(out.path().join("model-00001-of-00002.safetensors").exists());
    assert!(out.path().join("model-00002-of-00002.safetensors").exists());
    assert!(!out.path().join("model.safetensors").exists());
    let again = HfModel::load(out.path(), device(), Kind::Float).unwrap();
    assert!(again
        .model
        .forward_logits(&r["input_ids"], &r["attention_mask"])
        .unwrap()
        .equal(&a));
}
