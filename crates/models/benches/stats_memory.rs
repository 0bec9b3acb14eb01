//! Peak memory of token statistics, chunked vs one full log-softmax, at vocabulary 151936
//! (`cargo bench -p rlvr-models --bench stats_memory`). Each measurement runs in its own child
//! process (peak RSS, VmHWM, is per process) and reports the peak above the process's state after
//! building the model and hidden states. No gradients: the rollout/reference passes.

use rlvr_core::{token_stats_from_logits, StatsNeeds};
use rlvr_models::token_stats::chunked_stats;
use rlvr_models::{HfModel, TinyModelConfig};
use tch::{Device, Kind, Tensor};

const VOCAB: i64 = 151_936;
const CHUNK: i64 = 256;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn child(mode: &str, tokens: i64) {
    let cfg = TinyModelConfig {
        vocab_size: VOCAB,
        hidden_size: 64,
        layers: 1,
        heads: 4,
        kv_heads: 2,
        intermediate_size: 128,
        ..Default::default()
    };
    let m = HfModel::fresh(&cfg.config_json(), Device::Cpu, 0).expect("model");
    let _g = tch::no_grad_guard();
    let hidden = Tensor::randn([tokens, 64], (Kind::Float, Device::Cpu));
    let targets = Tensor::randint(VOCAB, [tokens], (Kind::Int64, Device::Cpu));
    let needs = StatsNeeds {
        entropy: true,
        entropy_grad: false,
        topk: 3,
        top1: true,
        reference: false,
    };
    let base = peak_rss_mib();
    let s = match mode {
        "chunked" => chunked_stats(&m.model, &hidden, &targets, &needs, CHUNK).expect("stats"),
        _ => token_stats_from_logits(&m.model.logits(&hidden).expect("logits"), &targets, &needs)
            .expect("stats"),
    };
    std::hint::black_box(s.logp.sum(Kind::Float).double_value(&[]));
    println!("{}", peak_rss_mib() - base);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        let mode = args.get(pos + 1).cloned().unwrap_or_default();
        let tokens = args
            .get(pos + 2)
            .and_then(|t| t.parse().ok())
            .unwrap_or(1024);
        child(&mode, tokens);
        return;
    }
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    let run = |mode: &str, tokens: i64| -> f64 {
        let out = std::process::Command::new(&exe)
            .args(["--child", mode, &tokens.to_string()])
            .output()
            .expect("child");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(f64::NAN)
    };
    println!("token statistics, vocabulary {VOCAB}, chunk {CHUNK} tokens: extra peak RSS (MiB)");
    println!(
        "{:>7} {:>10} {:>10} {:>8}",
        "tokens", "chunked", "naive", "ratio"
    );
    for tokens in [1024, 2048, 4096] {
        let (c, n) = (run("chunked", tokens), run("naive", tokens));
        println!("{tokens:>7} {c:>10.0} {n:>10.0} {:>8.1}", n / c);
    }
}
