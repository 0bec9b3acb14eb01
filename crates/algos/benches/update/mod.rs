//! One policy-update step from logits, shared by the benchmarks: token statistics (core's
//! constructor), gates, loss, token-mean aggregation, backward. `RLVR_BENCH_DEVICE=cuda` runs it
//! on a GPU (the step ends with a scalar read, which synchronises).

use rlvr_core::{token_stats_from_logits, AlgoConfig, Algorithm, GlobalCounts, LossInput};
use tch::{Device, Kind, Tensor};

/// Inputs of one step: B responses × T tokens over a vocabulary of V.
pub struct Inputs {
    pub logits: Tensor,
    pub tokens: Tensor,
    pub old_logp: Tensor,
    pub adv: Tensor,
    pub mask: Tensor,
    pub scores: Tensor,
}

/// The device from `RLVR_BENCH_DEVICE` (`cpu`, `cuda`, `cuda:N`), default CPU.
pub fn device() -> Device {
    match std::env::var("RLVR_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda(0),
        Ok(d) if d.starts_with("cuda:") => Device::Cuda(d[5..].parse().expect("cuda:N")),
        _ => Device::Cpu,
    }
}

/// Random inputs of the given size (seeded), on [`device`].
pub fn inputs(b: i64, t: i64, v: i64) -> Inputs {
    tch::manual_seed(0);
    let dev = device();
    let opts = (Kind::Float, dev);
    let logits = Tensor::randn([b, t, v], opts);
    let tokens = Tensor::randint(v, [b, t], (Kind::Int64, dev));
    let old_logp = Tensor::randn([b, t], opts) * 0.1 - (v as f64).ln();
    let scores = Tensor::randint(2, [b], (Kind::Int64, dev)).to_kind(Kind::Float);
    let adv = (&scores - 0.5)
        .unsqueeze(1)
        .expand([b, t], false)
        .contiguous();
    let mask = Tensor::ones([b, t], opts);
    Inputs {
        logits,
        tokens,
        old_logp,
        adv,
        mask,
        scores,
    }
}

/// The algorithm of a preset.
pub fn algorithm(preset: &str) -> Algorithm {
    rlvr_algos::presets::link_anchor();
    let mut t = toml::Table::new();
    t.insert("preset".into(), preset.into());
    AlgoConfig::resolve(&t)
        .expect("preset")
        .build()
        .expect("valid")
}

/// One full update step; returns the gradient norm so the work cannot be optimised away.
pub fn step(algo: &Algorithm, x: &Inputs) -> f64 {
    let logits = x.logits.copy().set_requires_grad(true);
    let stats = token_stats_from_logits(&logits, &x.tokens, &algo.loss.needs()).expect("stats");
    let input = LossInput {
        stats: &stats,
        old_logp: &x.old_logp,
        ref_logp: None,
        advantages: &x.adv,
        mask: &x.mask,
        scores: &x.scores,
        tokens: &x.tokens,
        truncated: None,
    };
    let out = algo.loss.per_token_loss(&input).expect("loss");
    let counts = GlobalCounts::of_mask(&x.mask).expect("counts");
    algo.aggregation
        .reduce(&out.per_token, &x.mask, counts, algo.loss_normalizer)
        .expect("reduce")
        .backward();
    logits.grad().norm().double_value(&[])
}

/// Size from `RLVR_BENCH_SIZE=BxTxV`, default 16×1024×32768 (16k tokens, 32k vocabulary).
pub fn size() -> (i64, i64, i64) {
    let text = std::env::var("RLVR_BENCH_SIZE").unwrap_or_else(|_| "16x1024x32768".into());
    let parts: Vec<i64> = text.split('x').filter_map(|p| p.parse().ok()).collect();
    match parts[..] {
        [b, t, v] => (b, t, v),
        _ => panic!("RLVR_BENCH_SIZE must look like 16x1024x32768, got {text}"),
    }
}
