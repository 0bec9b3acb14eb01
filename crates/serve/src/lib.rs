//! # rlvr-serve
//!
//! `rlvr serve`: an HTTP generation server over rlvr's decoder (docs/rollouts.md). One model
//! thread runs the continuous batch ([`rlvr_models::batcher`]); the HTTP side is axum on a small
//! tokio runtime (axum: the tokio project's own server framework on hyper — maintained with
//! tokio, HTTP/1.1 keep-alive and graceful shutdown done right — rather than a hand-written
//! listener). Endpoints follow SGLang's native API and OpenAI's `/v1/completions`, so a trainer
//! written for SGLang or vLLM can use it, and rlvr's trainer can use SGLang or vLLM instead.

mod adapters;
pub mod api;
mod http;
pub mod scheduler;
mod weight_group;

use rlvr_models::tokenizer::HfTokenizer;
use rlvr_models::HfModel;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use tch::{Device, Kind};

/// What can go wrong starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The model folder could not be served.
    #[error(transparent)]
    Model(#[from] rlvr_models::ModelError),
    /// libtorch failed.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// Binding or running the listener failed.
    #[error("{0}")]
    Io(String),
    /// A bad option.
    #[error("{0}")]
    Usage(String),
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// A HF model folder (config.json + safetensors; tokenizer.json for text prompts).
    pub model: PathBuf,
    /// Address to listen on.
    pub host: String,
    /// Port (0 = any free port; the chosen one is in [`Server::url`]).
    pub port: u16,
    /// Device of the model.
    pub device: Device,
    /// Samples generated together at most (the running batch).
    pub max_running: usize,
    /// Requests queued or running at most; beyond it requests get 503.
    pub max_queue: usize,
    /// Precision of the served weights (f32, or bf16 to halve a GPU's memory; log-softmax and
    /// sampling stay f32).
    pub kind: Kind,
    /// Batch-invariant generation (`Transformer::set_batch_invariant`): served log-probs equal,
    /// bit for bit, an invariant trainer's recomputation (`model.batch_invariant = true`).
    pub batch_invariant: bool,
}

/// What the handlers share.
pub(crate) struct App {
    pub jobs: tokio::sync::mpsc::UnboundedSender<scheduler::Job>,
    pub shared: Arc<scheduler::Shared>,
    pub tokenizer: Option<Arc<HfTokenizer>>,
    pub eos: Vec<i64>,
    pub vocab_size: i64,
    pub max_positions: i64,
    pub opts: ServeOptions,
    pub next_seed: AtomicUsize,
    /// Weight-update groups (`/init_weights_update_group`) by name.
    pub groups: Mutex<std::collections::HashMap<String, Arc<Mutex<rlvr_dist::C10dGroup>>>>,
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServeError>>>,
}

impl Server {
    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Blocks until the server ends (Ctrl-C, or [`Server::stop`] from elsewhere).
    pub fn wait(mut self) -> Result<(), ServeError> {
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ServeError::Io("the server thread panicked".into())),
            None => Ok(()),
        }
    }

    /// Stops accepting requests, lets running ones finish, and waits.
    pub fn stop(mut self) -> Result<(), ServeError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.wait()
    }
}

/// The end-of-sequence ids of a model folder: `eos_token_id` of generation_config.json and
/// config.json (a number or a list), and the tokenizer's.
fn eos_ids(dir: &Path, tokenizer: Option<&HfTokenizer>) -> Vec<i64> {
    let mut ids: Vec<i64> = Vec::new();
    for file in ["generation_config.json", "config.json"] {
        let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        match v.get("eos_token_id") {
            Some(serde_json::Value::Number(n)) => ids.extend(n.as_i64()),
            Some(serde_json::Value::Array(a)) => ids.extend(a.iter().filter_map(|x| x.as_i64())),
            _ => {}
        }
    }
    if let Some(t) = tokenizer {
        ids.extend(rlvr_core::TextCodec::stop_tokens(t));
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Loads the model and starts serving it; returns once the port is bound.
pub fn start(opts: ServeOptions) -> Result<Server, ServeError> {
    if opts.max_running == 0 || opts.max_queue == 0 {
        return Err(ServeError::Usage(
            "--max-running and --max-queue must be at least 1".into(),
        ));
    }
    if !matches!(opts.kind, Kind::Float | Kind::BFloat16) {
        return Err(ServeError::Usage(format!(
            "--dtype: {:?} is not served; f32 or bf16",
            opts.kind
        )));
    }
    let mut model = HfModel::load(&opts.model, opts.device, opts.kind)?;
    if opts.batch_invariant {
        model
            .model
            .set_batch_invariant(true)
            .map_err(|e| ServeError::Usage(format!("--batch-invariant: {e}")))?;
    }
    let tokenizer = if opts.model.join("tokenizer.json").exists() {
        Some(Arc::new(HfTokenizer::from_dir(&opts.model)?))
    } else {
        None
    };
    let cfg = model.model.config().clone();
    let shared = Arc::new(scheduler::Shared {
        pending: AtomicUsize::new(0),
        version: Mutex::new("default".into()),
        adapter: Mutex::new(None),
    });
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let device = opts.device;
    let max_running = opts.max_running;
    let model_shared = shared.clone();
    std::thread::Builder::new()
        .name("rlvr-serve-model".into())
        .spawn(move || scheduler::run(model, device, max_running, rx, model_shared))
        .map_err(|e| ServeError::Io(format!("cannot start the model thread: {e}")))?;
    let app = Arc::new(App {
        jobs: tx,
        shared,
        eos: eos_ids(&opts.model, tokenizer.as_deref()),
        tokenizer,
        vocab_size: cfg.vocab_size,
        max_positions: cfg.max_position_embeddings,
        opts: opts.clone(),
        next_seed: AtomicUsize::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as usize)
                .unwrap_or(0),
        ),
        groups: Mutex::new(Default::default()),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ServeError::Io(format!("cannot start the HTTP runtime: {e}")))?;
    let where_ = format!("{}:{}", opts.host, opts.port);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(&where_))
        .map_err(|e| ServeError::Io(format!("cannot listen on {where_}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Io(format!("cannot listen on {where_}: {e}")))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let router = http::router(app);
    let thread = std::thread::Builder::new()
        .name("rlvr-serve-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let stopped = async {
                    tokio::select! {
                        _ = stop_rx => {},
                        _ = tokio::signal::ctrl_c() => {},
                    }
                };
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .await
                    .map_err(|e| ServeError::Io(format!("the server stopped: {e}")))
            })
        })
        .map_err(|e| ServeError::Io(format!("cannot start the HTTP thread: {e}")))?;
    Ok(Server {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}
