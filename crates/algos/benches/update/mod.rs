//! One policy-update step from logits, shared by the benchmarks: token statistics, gates, loss,
//! token-mean aggregation, gradient into the logits — both as the trainer runs it (the models'
//! chunked `backward_through_stats`: fused statistics, analytic gradient) and through plain
//! autograd over the whole `[tokens, vocab]` graph. `RLVR_BENCH_DEVICE=cuda` runs it
//! on a GPU (the step ends with a scalar read, which synchronises).

use rlvr_core::{
    token_stats_from_logits, AlgoConfig, Algorithm, GlobalCounts, LossInput, TokenStats,
};
use rlvr_models::stats_grad::{backward_through_stats, ChunkedLogits};
use tch::{Device, Kind, Tensor};

/// Tokens per chunk (the models' default).
pub const CHUNK: i64 = 1024;

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

/// The aggregated loss of `stats` under `algo`.
fn loss(algo: &Algorithm, x: &Inputs, stats: &TokenStats) -> rlvr_core::Result<Tensor> {
    let input = LossInput {
        stats,
        old_logp: &x.old_logp,
        ref_logp: None,
        advantages: &x.adv,
        mask: &x.mask,
        scores: &x.scores,
        tokens: &x.tokens,
        truncated: None,
    };
    let out = algo.loss.per_token_loss(&input)?;
    let counts = GlobalCounts::of_mask(&x.mask)?;
    algo.aggregation
        .reduce(&out.per_token, &x.mask, counts, algo.loss_normalizer)
}

/// One update step through plain autograd; returns the gradient norm so the work cannot be
/// optimised away.
pub fn step_autograd(algo: &Algorithm, x: &Inputs) -> f64 {
    let logits = x.logits.copy().set_requires_grad(true);
    let stats = token_stats_from_logits(&logits, &x.tokens, &algo.loss.needs()).expect("stats");
    loss(algo, x, &stats).expect("loss").backward();
    logits.grad().norm().double_value(&[])
}

/// Logits `[N, V]` held in memory; each chunk's gradient is written into `sink` when there is
/// one, else only one of its elements is summed into `check` (the work is eager either way).
struct Held<'a> {
    logits: Tensor,
    sink: Option<&'a Tensor>,
    check: std::cell::RefCell<Tensor>,
}

impl ChunkedLogits for Held<'_> {
    fn rows(&self) -> i64 {
        self.logits.size()[0]
    }
    fn logits(&self, start: i64, len: i64) -> rlvr_core::Result<Tensor> {
        Ok(self.logits.narrow(0, start, len))
    }
    fn backward(
        &self,
        start: i64,
        len: i64,
        held: Option<Tensor>,
        grad_of: &mut dyn FnMut(Tensor, bool) -> rlvr_core::Result<Tensor>,
    ) -> rlvr_core::Result<()> {
        // Views of the shared inputs: the gradient gets its own storage.
        let logits = held.unwrap_or_else(|| self.logits.narrow(0, start, len));
        let g = grad_of(logits, false)?;
        match self.sink {
            Some(sink) => {
                sink.narrow(0, start, len).copy_(&g);
            }
            None => {
                let mut check = self.check.borrow_mut();
                *check = &*check + g.get(0).get(0);
            }
        }
        Ok(())
    }
}

/// One update step as the trainer runs it (chunks of `chunk` tokens): the statistics, the loss
/// and each chunk's gradient into the logits. With `sink` the gradient is written into it (a `[B·T, V]` f32
/// tensor) and the step returns its norm; without, each chunk's gradient is dropped
/// once computed (in the trainer it goes on into the LM head's matmuls, the same for every
/// algorithm) and the step returns the sum of one element per chunk — so a timing holds only
/// what differs between algorithms, not a 2 GiB copy and a norm over it.
pub fn step(algo: &Algorithm, x: &Inputs, chunk: i64, sink: Option<&Tensor>) -> f64 {
    let size = x.logits.size();
    let (b, t, v) = (size[0], size[1], size[2]);
    let held = Held {
        logits: x.logits.reshape([b * t, v]),
        sink,
        check: std::cell::RefCell::new(Tensor::zeros([], (Kind::Float, x.logits.device()))),
    };
    backward_through_stats(
        &held,
        &x.tokens.reshape([b * t]),
        &[b, t],
        &algo.loss.needs(),
        chunk,
        0,
        &mut |s| loss(algo, x, s),
    )
    .expect("update");
    match sink {
        Some(grad) => grad.norm().double_value(&[]),
        None => held.check.into_inner().double_value(&[]),
    }
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
