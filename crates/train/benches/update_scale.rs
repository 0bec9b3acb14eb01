//! One update of a real model shape on this device: forward + backward of the SimKO loss over a
//! micro-batch of responses and one AdamW step, with activation checkpointing and the chunked LM
//! head, at several response lengths. Each length runs in its own child process so its peak RSS
//! (VmHWM) is its own (on CUDA the peak allocated memory is read from nvidia-smi by the script).
//! Prints one JSON line per length.
//!
//! `cargo bench -p rlvr-train --bench update_scale`; environment: RLVR_BENCH_SHAPE (default
//! qwen2.5-0.5b), RLVR_BENCH_LENGTHS (default 512,1024,2048,4096), RLVR_BENCH_BATCH (2),
//! RLVR_BENCH_KEEP_LOGITS_MIB (model.keep_logits_mib; default the policy's),
//! RLVR_BENCH_SAVE_ATTENTION (model.save_attention: 1 | 0; default the policy's),
//! RLVR_BENCH_KEEP_PROJECTIONS_MIB (model.keep_projections_mib; default the policy's),
//! RLVR_BENCH_KEEP_IN_GRADIENT_MEMORY (model.keep_in_gradient_memory: 1 | 0; default the
//! policy's),
//! RLVR_BENCH_PROMPT (32), RLVR_BENCH_DEVICE (cpu | cuda), RLVR_BENCH_MIXED (bf16 | none, CUDA),
//! RLVR_BENCH_CHECKPOINT (1 | 0), RLVR_BENCH_STEPS (1: the last step is reported),
//! RLVR_BENCH_LORA (0: every weight trains; r > 0: LoRA rank r, α = 2r, on all linear layers).
//! scripts/bench-update.sh runs it next to PyTorch + transformers.

use rlvr_core::{AlgoConfig, GlobalCounts, LossInput, Policy, SequenceBatch};
use rlvr_models::{HfModel, HfPolicy};
use rlvr_train::optim::{optimizer_step, AdamW};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn device() -> Device {
    match env("RLVR_BENCH_DEVICE", "cpu").as_str() {
        "cuda" => Device::Cuda(0),
        _ => Device::Cpu,
    }
}

fn child(len: i64) {
    let shape = env("RLVR_BENCH_SHAPE", "qwen2.5-0.5b");
    let b: i64 = env("RLVR_BENCH_BATCH", "2")
        .parse()
        .expect("RLVR_BENCH_BATCH");
    let p: i64 = env("RLVR_BENCH_PROMPT", "32")
        .parse()
        .expect("RLVR_BENCH_PROMPT");
    let steps: usize = env("RLVR_BENCH_STEPS", "1")
        .parse()
        .expect("RLVR_BENCH_STEPS");
    let checkpoint = env("RLVR_BENCH_CHECKPOINT", "1") == "1";
    let dev = device();
    let text = rlvr_models::shapes::find(&shape).expect("RLVR_BENCH_SHAPE names a built-in shape");
    let model = HfModel::fresh(text, dev, 0).expect("model");
    let mut policy = HfPolicy::new(model, 0);
    policy.checkpoint = checkpoint;
    if let Ok(on) = std::env::var("RLVR_BENCH_SAVE_ATTENTION") {
        policy.save_attention = on == "1";
    }
    if let Ok(mib) = std::env::var("RLVR_BENCH_KEEP_LOGITS_MIB") {
        let mib: i64 = mib.parse().expect("RLVR_BENCH_KEEP_LOGITS_MIB");
        policy.keep_logits_bytes = mib << 20;
    }
    if let Ok(mib) = std::env::var("RLVR_BENCH_KEEP_PROJECTIONS_MIB") {
        let mib: i64 = mib.parse().expect("RLVR_BENCH_KEEP_PROJECTIONS_MIB");
        policy.keep_projection_bytes = mib << 20;
    }
    if let Ok(on) = std::env::var("RLVR_BENCH_KEEP_IN_GRADIENT_MEMORY") {
        policy.keep_in_gradient_memory = on == "1";
    }
    let lora: i64 = env("RLVR_BENCH_LORA", "0")
        .parse()
        .expect("RLVR_BENCH_LORA");
    if lora > 0 {
        let cfg = rlvr_models::lora::LoraConfig {
            rank: lora,
            alpha: 2.0 * lora as f64,
            ..Default::default()
        };
        let spec = cfg.spec().expect("LoRA settings");
        let base_kind = if dev.is_cuda() {
            Kind::BFloat16
        } else {
            Kind::Float
        };
        policy
            .model
            .attach_adapters(&spec, base_kind)
            .expect("adapters");
    }
    let mixed = dev.is_cuda() && (lora > 0 || env("RLVR_BENCH_MIXED", "bf16") == "bf16");
    if mixed {
        policy.model.model.set_compute_kind(Some(Kind::BFloat16));
    }
    let vocab = policy.vocab_size();
    let params: i64 = policy
        .var_store()
        .variables()
        .values()
        .filter(|t| t.requires_grad())
        .map(|t| t.numel() as i64)
        .sum();
    let mut opt = AdamW::new(policy.var_store(), 0.0);
    rlvr_algos::presets::link_anchor();
    let mut table = toml::Table::new();
    table.insert("preset".into(), "simko".into());
    let algo = AlgoConfig::resolve(&table)
        .expect("preset")
        .build()
        .expect("algo");
    tch::manual_seed(1);
    let ids = Tensor::randint(vocab, [b, p + len], (Kind::Int64, dev));
    let batch = SequenceBatch {
        input_ids: ids.shallow_clone(),
        attention_mask: Tensor::ones([b, p + len], (Kind::Int64, dev)),
        prompt_len: p,
    };
    let mask = Tensor::ones([b, len], (Kind::Float, dev));
    let scores = Tensor::from_slice(&[1.0f32, 0.0])
        .repeat([b / 2 + 1])
        .narrow(0, 0, b)
        .to_device(dev);
    let adv = (&scores - 0.5).unsqueeze(1).expand([b, len], false);
    let old_logp = Tensor::full([b, len], -(vocab as f64).ln(), (Kind::Float, dev));
    let tokens = ids.narrow(1, p, len);
    let counts = GlobalCounts::of_mask(&mask).expect("counts");
    let needs = algo.loss.needs();
    let base_rss = peak_rss_mib();
    let (mut secs, mut loss) = (0.0, 0.0);
    for _ in 0..steps.max(1) {
        if dev.is_cuda() {
            tch::Cuda::synchronize(0);
        }
        let t0 = Instant::now();
        AdamW::zero_grad(policy.var_store());
        loss = policy
            .backward_loss(&batch, &needs, &mut |stats| {
                let input = LossInput {
                    stats,
                    old_logp: &old_logp,
                    ref_logp: None,
                    advantages: &adv,
                    mask: &mask,
                    scores: &scores,
                    tokens: &tokens,
                    truncated: None,
                };
                let out = algo.loss.per_token_loss(&input)?;
                algo.aggregation
                    .reduce(&out.per_token, &mask, counts, algo.loss_normalizer)
            })
            .expect("update");
        optimizer_step(&mut opt, policy.var_store(), loss, 1e-6, 1.0).expect("AdamW step");
        // As the one-process trainer does after each step.
        AdamW::release_grads(policy.var_store()).expect("release gradients");
        if dev.is_cuda() {
            tch::Cuda::synchronize(0);
        }
        secs = t0.elapsed().as_secs_f64();
    }
    let tokens_total = (b * (p + len)) as f64;
    // 6·N·T for forward + backward, plus 2·N·T of recomputation with checkpointing.
    let total: i64 = policy
        .var_store()
        .variables()
        .values()
        .map(|t| t.numel() as i64)
        .sum();
    let flops = (if checkpoint { 8.0 } else { 6.0 }) * total as f64 * tokens_total;
    println!(
        "{}",
        serde_json::json!({
            "impl": "rlvr",
            "shape": shape,
            "device": format!("{dev:?}"),
            "mixed_bf16": mixed,
            "checkpointing": checkpoint,
            "batch": b,
            "prompt": p,
            "response_tokens": len,
            "params": total,
            "trained_params": params,
            "lora_rank": lora,
            "seconds": secs,
            "tokens_per_s": tokens_total / secs,
            "model_tflops_per_s": flops / secs / 1e12,
            "peak_rss_mib": peak_rss_mib(),
            "keep_logits_mib": policy.keep_logits_bytes >> 20,
            "save_attention": policy.save_attention,
            "keep_projections_mib": policy.keep_projection_bytes >> 20,
            "keep_in_gradient_memory": policy.keep_in_gradient_memory,
            "rss_before_update_mib": base_rss,
            "loss": loss,
        })
    );
}

fn main() {
    rlvr_core::memory::configure_process_memory();
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        let len = args
            .get(pos + 1)
            .and_then(|l| l.parse().ok())
            .expect("--child LEN");
        child(len);
        return;
    }
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return; // not a criterion bench
    }
    let exe = std::env::current_exe().expect("own path");
    for len in env("RLVR_BENCH_LENGTHS", "512,1024,2048,4096").split(',') {
        let out = std::process::Command::new(&exe)
            .args(["--child", len.trim()])
            .output()
            .expect("child runs");
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().last() {
            Some(line) if out.status.success() => println!("{line}"),
            _ => println!(
                "{}",
                serde_json::json!({
                    "impl": "rlvr",
                    "response_tokens": len.trim(),
                    "failed": String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""),
                })
            ),
        }
    }
}
