//! Generation speed with vs without the KV cache (`cargo bench -p rlvr-models --bench
//! generation`): a 4-layer, 256-wide Qwen2-style decoder, 8 prompts of 16 tokens, 64 new tokens,
//! greedy. "uncached" recomputes the whole sequence for every new token.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rlvr_core::SamplingConfig;
use rlvr_models::generate::generate;
use rlvr_models::{HfModel, TinyModelConfig};
use tch::{Device, Kind, Tensor};

const BATCH: i64 = 8;
const PROMPT: i64 = 16;
const NEW: i64 = 64;

fn model() -> HfModel {
    let cfg = TinyModelConfig {
        vocab_size: 4096,
        hidden_size: 256,
        layers: 4,
        heads: 8,
        kv_heads: 4,
        intermediate_size: 768,
        ..Default::default()
    };
    HfModel::fresh(&cfg.config_json(), Device::Cpu, 0).expect("model")
}

fn uncached(m: &HfModel, prompt: &Tensor) -> Tensor {
    let _g = tch::no_grad_guard();
    let mut ids = prompt.shallow_clone();
    for _ in 0..NEW {
        let mask = ids.ones_like();
        let logits = m.model.forward_logits(&ids, &mask).expect("forward");
        let next = logits.select(1, -1).argmax(-1, true);
        ids = Tensor::cat(&[&ids, &next], 1);
    }
    ids
}

fn bench(c: &mut Criterion) {
    let m = model();
    tch::manual_seed(1);
    let prompt = Tensor::randint(4096, [BATCH, PROMPT], (Kind::Int64, Device::Cpu));
    let mask = prompt.ones_like();
    let cfg = SamplingConfig {
        temperature: 0.0,
        max_new_tokens: NEW,
        ..Default::default()
    };
    let mut group = c.benchmark_group("generate_8x64_tokens");
    group.sample_size(10);
    group.throughput(Throughput::Elements((BATCH * NEW) as u64));
    group.bench_function("kv_cache", |b| {
        b.iter(|| generate(&m.model, &prompt, &mask, &cfg, &[], 0).expect("generate"))
    });
    group.bench_function("uncached", |b| b.iter(|| uncached(&m, &prompt)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
