//! `rlvr plan`: one rank's predicted memory by component for a model shape, sequence lengths,
//! micro-batch, rank count and sharding level, and whether it fits the device
//! (`rlvr_train::plan`; docs/distributed.md compares the predictions with measured peaks).

use crate::usage_bail;
use anyhow::Result;
use rlvr_models::hf_config::HfConfig;
use rlvr_train::plan::{plan, PlanInput, GIB};
use rlvr_train::sharding::Sharding;
use std::path::Path;

/// Flags of `rlvr plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// A built-in shape (qwen2.5-0.5b … qwen2.5-32b, qwen3-*, llama3.*; `rlvr list model`), a
    /// Hugging Face folder, or its config.json.
    #[arg(long)]
    pub model: String,
    /// Data-parallel ranks.
    #[arg(long, default_value_t = 1)]
    pub ranks: i64,
    /// train.sharding: none | optimizer | gradients | full.
    #[arg(long, default_value = "none", value_parser = ["none", "optimizer", "gradients", "full"])]
    pub sharding: String,
    /// Prompt tokens per response.
    #[arg(long, default_value_t = 256)]
    pub prompt_tokens: i64,
    /// Response tokens per response.
    #[arg(long, default_value_t = 1024)]
    pub response_tokens: i64,
    /// Responses per forward/backward on a rank.
    #[arg(long, default_value_t = 2)]
    pub micro_batch: i64,
    /// Responses a rank generates together.
    #[arg(long, default_value_t = 16)]
    pub rollout_rows: i64,
    /// Device memory per rank in GB (10^9 bytes).
    #[arg(long, default_value_t = 80.0)]
    pub device_memory: f64,
    /// cpu (f32 activations) | cuda (bf16 mixed precision: bf16 activations and KV cache).
    #[arg(long, default_value = "cuda", value_parser = ["cpu", "cuda"])]
    pub device: String,
    /// model.keep_projections_mib: MiB of projection outputs kept for the backward (CPU, f32).
    #[arg(long, default_value_t = rlvr_models::policy::DEFAULT_KEEP_PROJECTIONS_MIB)]
    pub keep_projections_mib: i64,
    /// train.rollout_activations_mib: MiB for the rollout's recorded forward passes, which the
    /// update then reads instead of running its forward (CPU, f32; counted when they fit).
    #[arg(long, default_value_t = 0)]
    pub rollout_activations_mib: i64,
}

/// The config of `--model`.
fn config(model: &str) -> Result<HfConfig> {
    let shape = model.strip_suffix("-shape").unwrap_or(model);
    if let Some(text) = rlvr_models::shapes::find(shape) {
        return Ok(HfConfig::from_json(text)?);
    }
    let path = Path::new(model);
    for file in [path.to_path_buf(), path.join("config.json")] {
        if file.is_file() {
            return Ok(HfConfig::from_file(&file)?);
        }
    }
    usage_bail!(
        "--model {model}: not a built-in shape ({}) nor a Hugging Face folder or config.json",
        rlvr_models::shapes::names()
    )
}

/// Runs `rlvr plan`.
pub fn exec(args: PlanArgs) -> Result<()> {
    if args.ranks < 1 || args.micro_batch < 1 || args.rollout_rows < 1 {
        usage_bail!("--ranks, --micro-batch and --rollout-rows must be at least 1");
    }
    if args.prompt_tokens < 0 || args.response_tokens < 1 || args.device_memory <= 0.0 {
        usage_bail!("--prompt-tokens >= 0, --response-tokens >= 1 and --device-memory > 0");
    }
    let sharding = match args.sharding.as_str() {
        "optimizer" => Sharding::Optimizer,
        "gradients" => Sharding::Gradients,
        "full" => Sharding::Full,
        _ => Sharding::None,
    };
    let input = PlanInput {
        config: config(&args.model)?,
        prompt_tokens: args.prompt_tokens,
        response_tokens: args.response_tokens,
        micro_batch: args.micro_batch,
        rollout_rows: args.rollout_rows,
        ranks: args.ranks,
        sharding,
        bf16: args.device == "cuda",
        // model.packed_generation's default on a CPU.
        packed_generation: args.device != "cuda",
        chunk: 1024,
        keep_logits_bytes: rlvr_models::backward::DEFAULT_KEEP_LOGITS_BYTES,
        save_attention: rlvr_models::backward::DEFAULT_SAVE_ATTENTION,
        keep_projection_bytes: args.keep_projections_mib.max(0) << 20,
        keep_in_gradient_memory: rlvr_models::backward::DEFAULT_KEEP_IN_GRADIENT_MEMORY,
        rollout_record_bytes: args.rollout_activations_mib.max(0).saturating_mul(1 << 20),
        device_bytes: args.device_memory * 1e9,
    };
    let p = plan(&input);
    println!(
        "{}: {:.2}B parameters, {} rank(s), sharding {}, {} × ({} + {}) tokens per micro-batch, \
         {} rollout rows, {}",
        args.model,
        p.parameters / 1e9,
        args.ranks,
        args.sharding,
        args.micro_batch,
        args.prompt_tokens,
        args.response_tokens,
        args.rollout_rows,
        if input.bf16 {
            "bf16 activations"
        } else {
            "f32"
        }
    );
    println!("{:<40} {:>10}  when", "per rank", "GiB");
    for c in &p.components {
        println!("{:<40} {:>10.2}  {}", c.name, c.bytes / GIB, c.phase);
    }
    println!(
        "peak: update {:.2}, rollout {:.2}, optimizer step {:.2} GiB → {:.2} GiB = {:.1} GB of {} GB: {}",
        p.update_peak / GIB,
        p.rollout_peak / GIB,
        p.optimizer_peak / GIB,
        p.peak / GIB,
        p.peak / 1e9,
        args.device_memory,
        if p.fits { "fits" } else { "does NOT fit" }
    );
    Ok(())
}
