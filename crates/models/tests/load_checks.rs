//! A model that cannot be what its files say fails at load, naming the problem: non-finite
//! weights, a checkpoint deeper than its `config.json`, configuration values out of range.

use rlvr_models::HfModel;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2-tiny")
}

/// A copy of the qwen2-tiny fixture in `dir`, its `config.json` changed by `edit`.
fn copy_with(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(fixture().join(f), dir.join(f)).unwrap();
    }
    let text = std::fs::read_to_string(fixture().join("config.json")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut cfg);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    dir.to_path_buf()
}

fn load_error(dir: &Path) -> String {
    HfModel::load(dir, Device::Cpu, Kind::Float)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_else(|| panic!("{} loaded", dir.display()))
}

#[test]
fn the_unchanged_copy_loads() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(HfModel::load(&copy_with(tmp.path(), |_| {}), Device::Cpu, Kind::Float).is_ok());
}

#[test]
fn non_finite_weights_fail_at_load_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_with(tmp.path(), |_| {});
    let path = dir.join("model.safetensors");
    let mut tensors = Tensor::read_safetensors(&path).unwrap();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let (name, t) = tensors
        .iter_mut()
        .find(|(n, _)| n.ends_with("mlp.up_proj.weight"))
        .unwrap();
    let name = name.clone();
    let _ = t.get(0).get(3).fill_(f64::NAN);
    let list: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    Tensor::write_safetensors(&list, &path).unwrap();
    let e = load_error(&dir);
    assert!(e.contains(&name) && e.contains("NaN or infinite"), "{e}");
}

#[test]
fn a_checkpoint_deeper_than_its_config_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_with(tmp.path(), |c| c["num_hidden_layers"] = 1.into());
    let e = load_error(&dir);
    assert!(
        e.contains("2 decoder layers") && e.contains("num_hidden_layers = 1"),
        "{e}"
    );
}

#[test]
fn configuration_values_out_of_range_fail() {
    for (key, value) in [
        ("rms_norm_eps", serde_json::json!(0.0)),
        ("rms_norm_eps", serde_json::json!(-1e-6)),
        ("rope_theta", serde_json::json!(0.0)),
        ("rope_theta", serde_json::json!(-10000.0)),
        ("max_position_embeddings", serde_json::json!(0)),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = copy_with(tmp.path(), |c| c[key] = value.clone());
        let e = load_error(&dir);
        assert!(e.contains(key) && e.contains("> 0"), "{key} = {value}: {e}");
    }
}

#[test]
fn the_parameter_count_from_the_config_is_what_the_decoder_allocates() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut seen = 0;
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join("config.json").exists() {
            continue;
        }
        let model = HfModel::load(&dir, Device::Cpu, Kind::Float).unwrap();
        let allocated: i128 = model
            .vs
            .variables()
            .values()
            .map(|t| t.numel() as i128)
            .sum();
        assert_eq!(
            model.model.config().parameter_count(),
            allocated,
            "{}",
            dir.display()
        );
        seen += 1;
    }
    assert!(seen >= 2, "fixtures of several architectures");
}

#[test]
fn a_model_larger_than_memory_is_refused_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_with(tmp.path(), |c| {
        c["hidden_size"] = 4_000_000.into();
        c["intermediate_size"] = 4_000_000.into();
    });
    let e = load_error(&dir);
    assert!(e.contains("GiB") && e.contains("lower hidden_size"), "{e}");
}
