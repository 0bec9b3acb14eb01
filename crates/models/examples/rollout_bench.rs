//! Rollout throughput on one model: `P` prompts × `N` samples × up to `T` new tokens, sampled at
//! temperature 1 with a stop set sized so responses end at varied lengths. Used by
//! scripts/bench-rollout.sh, which runs it for this build, for an older build, and next to
//! transformers' `generate` on the same weights and prompts.
//!
//! `rollout_bench CONFIG_JSON OUT_DIR [PROMPTS N T]`: builds the model of CONFIG_JSON (seed 0),
//! writes it to OUT_DIR/model (HF layout) and the prompts to OUT_DIR/prompts.json unless they
//! exist, generates, and prints one JSON line with the generated tokens and tokens/s.
//! RLVR_BENCH_DEVICE=cuda samples on the GPU in bf16; RLVR_BENCH_WARMUP=1 generates the first
//! prompt's samples once before timing, RLVR_BENCH_WARMUP=full the whole workload.

use rlvr_core::SamplingConfig;
use rlvr_models::generate::generate;
use rlvr_models::HfModel;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() {
    rlvr_core::memory::configure_process_memory();
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: rollout_bench CONFIG_JSON OUT_DIR [PROMPTS SAMPLES NEW_TOKENS]");
        std::process::exit(2);
    }
    let arg = |i: usize, d: i64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (prompts, samples, new_tokens) = (arg(3, 32), arg(4, 8), arg(5, 256));
    let out = Path::new(&args[2]);
    let text = std::fs::read_to_string(&args[1]).expect("config json");
    let device = match std::env::var("RLVR_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda(0),
        _ => Device::Cpu,
    };
    let mut model = HfModel::fresh(&text, device, 0).expect("model");
    // RLVR_BENCH_INVARIANT=1: batch-invariant generation (`model.batch_invariant`).
    if std::env::var("RLVR_BENCH_INVARIANT").as_deref() == Ok("1") {
        model
            .model
            .set_batch_invariant(true)
            .expect("batch-invariant");
    }
    let vocab = model.model.config().vocab_size;
    if !out.join("model").exists() {
        model.save(&out.join("model")).expect("save");
    }
    // Prompts of 16..64 tokens (seeded), left-padded; one stop id per 128 vocabulary ids, so a
    // near-uniform random model stops with probability ~1/128 per token.
    let prompts_file = out.join("prompts.json");
    let rows: Vec<Vec<i64>> = if prompts_file.exists() {
        serde_json::from_str(&std::fs::read_to_string(&prompts_file).expect("prompts"))
            .expect("json")
    } else {
        tch::manual_seed(7);
        let rows: Vec<Vec<i64>> = (0..prompts)
            .map(|i| {
                let len = 16 + (i * 37) % 49;
                Vec::<i64>::try_from(Tensor::randint_low(
                    2,
                    vocab,
                    [len],
                    (Kind::Int64, Device::Cpu),
                ))
                .expect("ids")
            })
            .collect();
        std::fs::write(&prompts_file, serde_json::to_string(&rows).expect("json")).expect("write");
        rows
    };
    let stop: Vec<i64> = (0..vocab).step_by(128).map(|i| i + 1).collect();
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for r in &rows {
        for _ in 0..samples {
            ids.extend(std::iter::repeat_n(0, width - r.len()).chain(r.iter().copied()));
            mask.extend(
                std::iter::repeat_n(0i64, width - r.len()).chain(std::iter::repeat_n(1, r.len())),
            );
        }
    }
    let shape = [rows.len() as i64 * samples, width as i64];
    let ids = Tensor::from_slice(&ids).reshape(shape).to_device(device);
    let mask = Tensor::from_slice(&mask).reshape(shape).to_device(device);
    if device.is_cuda() {
        // Rollouts in bf16 (weights cast once), as a GPU run would sample.
        model.vs.set_kind(Kind::BFloat16);
    }
    let cfg = SamplingConfig {
        temperature: 1.0,
        top_p: 1.0,
        top_k: 0,
        max_new_tokens: new_tokens,
        seed: 0,
        first_stream: 0,
    };
    let warmup = std::env::var("RLVR_BENCH_WARMUP").unwrap_or_default();
    if warmup == "1" || warmup == "full" {
        // "1": the first prompt's samples once before timing (what scripts/bench-serve.sh's
        // client sends the server before it times); "full": the whole workload once (a
        // trainer's later rollouts: memory already faulted in).
        let n = if warmup == "full" {
            shape[0]
        } else {
            samples.min(shape[0])
        };
        let _ = generate(
            &model.model,
            &ids.narrow(0, 0, n),
            &mask.narrow(0, 0, n),
            &cfg,
            &stop,
            0,
        )
        .expect("warm-up");
    }
    let t0 = Instant::now();
    let g = generate(&model.model, &ids, &mask, &cfg, &stop, 0).expect("generate");
    if device.is_cuda() {
        tch::Cuda::synchronize(0);
    }
    let secs = t0.elapsed().as_secs_f64();
    let tokens = g.mask.sum(Kind::Float).double_value(&[]);
    let longest = g.tokens.size()[1];
    println!(
        "{}",
        serde_json::json!({
            "impl": "rlvr",
            "rows": shape[0],
            "generated_tokens": tokens,
            "mean_length": tokens / shape[0] as f64,
            "longest": longest,
            "seconds": secs,
            "tokens_per_s": tokens / secs,
            "threads": tch::get_num_threads(),
            "device": format!("{device:?}"),
            "mkl_code_path": rlvr_kernels::mkl_code_path(),
        })
    );
}
