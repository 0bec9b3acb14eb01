//! LoRA through the binary on the qwen2-tiny fixture model: a run with `[model.lora]` writes PEFT
//! adapter checkpoints, `rlvr export` writes the adapter folder or (`--merge`) a full Hugging Face
//! folder, and `--adapter` starts a run from an adapter trained elsewhere.

mod common;

use common::{rlvr, train_hf};
use rlvr_models::lora::{self, ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use rlvr_models::HfModel;
use rlvr_tests::cli::{repo, text};
use std::path::Path;
use tch::{Device, Kind, Tensor};

fn data() -> std::path::PathBuf {
    repo("crates/rewards/tests/data/amc23_test.parquet")
}

fn export(run: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    rlvr()
        .arg("export")
        .arg(run)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// Teacher-forced logits of a few token rows.
fn logits(m: &HfModel) -> Tensor {
    let ids = Tensor::from_slice(&[5i64, 17, 33, 2, 99, 260, 301, 7, 8, 9, 10, 11]).view([2, 6]);
    let mask = Tensor::ones([2, 6], (Kind::Int64, Device::Cpu));
    m.model.forward_logits(&ids, &mask).unwrap()
}

#[test]
fn a_lora_run_exports_a_peft_adapter_and_a_merged_model() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let o = train_hf(
        &runs,
        &data(),
        &[
            "--steps",
            "2",
            "--set",
            "model.lora.rank=4",
            "--set",
            "model.lora.alpha=8",
            "--set",
            "train.lr=0.05",
            "--set",
            "train.eval_problems=0",
            // A gradient whatever the rewards (the random tiny model solves nothing).
            "--set",
            "algo.loss.entropy_coef=0.1",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let run = runs.join("hf");
    let ck = run.join("checkpoints/step-2/model");
    assert!(ck.join(ADAPTER_WEIGHTS).is_file(), "{}", text(&o));
    assert!(!ck.join("model.safetensors").exists());

    let adapter = tmp.path().join("adapter");
    let o = export(&run, &adapter, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(adapter.join(ADAPTER_CONFIG)).unwrap())
            .unwrap();
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["peft_type"], "LORA");
    let base = repo("crates/models/tests/fixtures/qwen2-tiny");
    assert_eq!(
        cfg["base_model_name_or_path"].as_str().map(Path::new),
        Some(base.as_path()),
        "the base PEFT loads the adapter onto"
    );

    let merged = tmp.path().join("merged");
    let o = export(&run, &merged, &["--merge"]);
    assert!(o.status.success(), "{}", text(&o));
    // The merged folder is a plain HF model computing what base + adapter computes.
    let plain = HfModel::load(&merged, Device::Cpu, Kind::Float).unwrap();
    let mut adapted = HfModel::load(&base, Device::Cpu, Kind::Float).unwrap();
    let spec = lora::read_adapter_config(&adapter).unwrap().spec().unwrap();
    adapted.attach_adapters(&spec, Kind::Float).unwrap();
    lora::load_adapter(&mut adapted.vs, &adapter).unwrap();
    let (a, b) = (logits(&plain), logits(&adapted));
    let diff = (&a - &b).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "merged vs adapted logits differ by {diff}");
    let unadapted = HfModel::load(&base, Device::Cpu, Kind::Float).unwrap();
    let moved = (&a - logits(&unadapted)).abs().max().double_value(&[]);
    assert!(moved > 0.0, "training did not change the adapter");

    // Nothing is overwritten; a step that is not a checkpoint is named with those that are.
    let o = export(&run, &merged, &["--merge"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("exists"), "{}", text(&o));
    let o = export(&run, &tmp.path().join("x"), &["--step", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("complete steps: 2"), "{}", text(&o));
    assert!(!tmp.path().join("x").exists());

    // A new run starts from the exported adapter (--adapter), its LoRA shape taken from it.
    let o = train_hf(
        &tmp.path().join("again"),
        &data(),
        &[
            "--steps",
            "1",
            "--adapter",
            adapter.to_str().unwrap(),
            "--set",
            "train.lr=1e-9",
            "--set",
            "train.eval_problems=0",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let again = tmp.path().join("again/hf/checkpoints/step-1/model");
    let read = |d: &Path| -> Vec<(String, Tensor)> {
        let mut v = Tensor::read_safetensors(d.join(ADAPTER_WEIGHTS)).unwrap();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    // lr = 1e-9 (AdamW moves each value by about lr): the adapter comes back as it was
    // loaded, not as a fresh one (B = 0).
    let (x, y) = (read(&adapter), read(&again));
    assert_eq!(x.len(), y.len());
    for ((n, s), (_, t)) in x.iter().zip(&y) {
        let diff = (s - t).abs().max().double_value(&[]);
        assert!(
            diff < 1e-6,
            "`{n}` moved {diff} from the adapter the run started from"
        );
        if n.contains("lora_B") {
            assert!(
                s.abs().max().double_value(&[]) > 1e-4,
                "`{n}` was not trained"
            );
        }
    }
    let o = train_hf(
        &tmp.path().join("bad"),
        &data(),
        &["--adapter", tmp.path().to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("not a PEFT adapter folder"),
        "{}",
        text(&o)
    );
}
