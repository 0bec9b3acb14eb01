//! Rollouts of a LoRA policy, the two ways (`cargo bench -p rlvr-models --bench lora_rollout`):
//! adapters applied on the fly (two thin matmuls per adapted layer and token) against a merged
//! copy (plain generation, plus refreshing the copy, `W + s·B·A` for every adapted layer, once
//! per training step). The 39M Qwen2 shape of the rollout benchmark, LoRA rank 8 and 64 on all
//! linear layers, 16 prompts of 32 tokens, 64 new tokens, greedy.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rlvr_core::SamplingConfig;
use rlvr_models::generate::generate;
use rlvr_models::lora::LoraConfig;
use rlvr_models::HfModel;
use tch::{Device, Kind, Tensor};

const BATCH: i64 = 16;
const PROMPT: i64 = 32;
const NEW: i64 = 64;
const SHAPE: &str = include_str!("../../../scripts/bench/qwen2-39m.json");

fn model(rank: i64) -> HfModel {
    let mut m = HfModel::fresh(SHAPE, Device::Cpu, 0).expect("model");
    if rank > 0 {
        let cfg = LoraConfig {
            rank,
            alpha: 2.0 * rank as f64,
            ..LoraConfig::default()
        };
        m.attach_adapters(&cfg.spec().expect("spec"), Kind::Float)
            .expect("adapters");
        // Trained adapters: B away from zero (its value does not change the cost).
        let _g = tch::no_grad_guard();
        for (name, mut v) in m.vs.variables() {
            if name.contains("lora_B") {
                let _ = v.normal_(0.0, 0.01);
            }
        }
    }
    m
}

/// What refreshing a merged rollout copy costs: `W + s·B·A` into a new tensor per adapted layer.
fn merged_copy(m: &HfModel, scale: f64) -> Vec<Tensor> {
    let _g = tch::no_grad_guard();
    let vars = m.vs.variables();
    vars.iter()
        .filter_map(|(name, a)| {
            let stem = name.strip_suffix(".lora_A.weight")?;
            let b = &vars[&format!("{stem}.lora_B.weight")];
            let w = &vars[&format!("{stem}.weight")];
            Some(w + b.matmul(a) * scale)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    tch::manual_seed(1);
    let prompt = Tensor::randint(32768, [BATCH, PROMPT], (Kind::Int64, Device::Cpu));
    let mask = prompt.ones_like();
    let cfg = SamplingConfig {
        temperature: 0.0,
        max_new_tokens: NEW,
        ..Default::default()
    };
    let mut group = c.benchmark_group("lora_rollout_16x64_tokens");
    group.sample_size(10);
    group.throughput(Throughput::Elements((BATCH * NEW) as u64));
    let plain = model(0);
    group.bench_function("merged_copy_generate", |b| {
        b.iter(|| generate(&plain.model, &prompt, &mask, &cfg, &[], 0).expect("generate"))
    });
    for rank in [8, 64] {
        let adapted = model(rank);
        group.bench_function(format!("merged_copy_refresh_r{rank}"), |b| {
            b.iter(|| merged_copy(&adapted, 2.0))
        });
        group.bench_function(format!("on_the_fly_generate_r{rank}"), |b| {
            b.iter(|| generate(&adapted.model, &prompt, &mask, &cfg, &[], 0).expect("generate"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
