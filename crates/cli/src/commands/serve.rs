//! `rlvr serve`: an HTTP generation server over a Hugging Face folder, with SGLang's native
//! endpoints and OpenAI's `/v1/completions` (docs/rollouts.md); `[rollout] engine = "server"`
//! runs training against it.

use crate::model_arg::model_table;
use crate::usage_bail;
use anyhow::Result;
use rlvr_serve::ServeOptions;
use std::path::{Path, PathBuf};

/// Flags of `rlvr serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A Hugging Face model folder, a run checkpoint's step folder, or a hub id in the local
    /// cache (text prompts need its tokenizer.json; token ids always work).
    #[arg(long)]
    pub model: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 = any free port; the chosen one is printed).
    #[arg(long, default_value_t = 30000)]
    pub port: u16,
    /// Device: cpu | cuda | cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Samples generated together at most (the running batch).
    #[arg(long, default_value_t = 512)]
    pub max_running: usize,
    /// Requests queued or running at most; beyond it the server answers 503.
    #[arg(long, default_value_t = 4096)]
    pub max_queue: usize,
    /// Precision of the served weights: f32 | bf16 (half the memory on a GPU; the served
    /// log-probs then differ from an f32 trainer's by bf16 rounding — see rollout/logp_diff_*).
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    pub dtype: String,
    /// libtorch threads (0 = libtorch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Batch-invariant generation: every sampled token's log-prob is bit-identical to a
    /// full-sequence pass over it, so it equals the log-prob a trainer with
    /// `model.batch_invariant = true` recomputes (f32 on the CPU; slower attention).
    #[arg(long)]
    pub batch_invariant: bool,
}

/// The HF folder `--model` names.
fn model_folder(model: &str) -> Result<PathBuf> {
    let dir = Path::new(model);
    if dir.join("config.json").is_file() {
        return Ok(dir.to_path_buf());
    }
    if dir.join("model/config.json").is_file() {
        return Ok(dir.join("model"));
    }
    let table = model_table(model)?;
    match (
        table.get("type").and_then(|t| t.as_str()),
        table.get("path"),
    ) {
        (Some("hf"), Some(toml::Value::String(p))) => Ok(PathBuf::from(p)),
        _ => usage_bail!(
            "--model {model}: rlvr serve needs a Hugging Face folder (config.json + \
             safetensors), a checkpoint step folder, or a cached hub id"
        ),
    }
}

/// Runs `rlvr serve` until Ctrl-C.
pub fn exec(args: ServeArgs) -> Result<()> {
    let model = model_folder(&args.model)?;
    let device = match rlvr_models::device::parse_device(&args.device) {
        Ok(d) => d,
        Err(e) => usage_bail!("--device {}: {e}", args.device),
    };
    if args.threads > 0 {
        tch::set_num_threads(args.threads as i32);
    }
    rlvr_core::memory::configure_process_memory();
    let server = rlvr_serve::start(ServeOptions {
        model: model.clone(),
        host: args.host,
        port: args.port,
        device,
        max_running: args.max_running,
        max_queue: args.max_queue,
        kind: match args.dtype.as_str() {
            "bf16" => tch::Kind::BFloat16,
            _ => tch::Kind::Float,
        },
        batch_invariant: args.batch_invariant,
    })?;
    // The first line of standard output is the address (scripts and tests read it).
    println!("rlvr serve: listening on {}", server.url());
    eprintln!(
        "serving {} on {} (max {} samples together, {} requests queued); Ctrl-C stops",
        model.display(),
        args.device,
        args.max_running,
        args.max_queue
    );
    server.wait()?;
    Ok(())
}
