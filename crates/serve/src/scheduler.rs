//! The model thread: owns the weights and the running batch ([`Batcher`]), takes jobs from the
//! HTTP handlers in arrival order, admits waiting generation requests between decode steps
//! (continuous batching) and answers each job when its last sample finishes. A weight update
//! waits for the running samples to finish on the old weights, then loads; requests behind it
//! run on the new ones.

use crate::ServeError;
use rlvr_core::SamplingConfig;
use rlvr_models::batcher::{BatchRequest, Batcher, FinishedSample};
use rlvr_models::HfModel;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tch::Device;
use tokio::sync::{mpsc, oneshot};

/// How often a busy server logs its progress.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Tokens generated since the last progress line, and when that was.
struct Progress {
    tokens: usize,
    since: std::time::Instant,
}

impl Progress {
    /// Counts one decode step of `rows` rows; logs a line every [`PROGRESS_EVERY`].
    fn step(&mut self, rows: usize, waiting: usize, shared: &Shared) {
        self.tokens += rows;
        let secs = self.since.elapsed().as_secs_f64();
        if secs >= PROGRESS_EVERY.as_secs_f64() {
            let version = shared.version.lock().map(|v| v.clone()).unwrap_or_default();
            tracing::info!(
                "generating {rows} samples, {waiting} requests waiting, {:.0} tokens/s over the \
                 last {secs:.0} s (weights {version})",
                self.tokens as f64 / secs
            );
            *self = Progress {
                tokens: 0,
                since: std::time::Instant::now(),
            };
        }
    }
}

/// How long an idle server gathers arriving requests before it starts a batch.
const GATHER: std::time::Duration = std::time::Duration::from_millis(10);

/// One prompt of a generation job.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// Token ids.
    pub ids: Vec<i64>,
    /// Samples.
    pub n: usize,
    /// Sampling (seed and first stream included).
    pub sampling: SamplingConfig,
    /// Stop token ids.
    pub stop: Vec<i64>,
}

/// The samples of a generation job, prompt-major (`n` per prompt), and the weights' version.
pub type Generated = (Vec<FinishedSample>, String);

/// Work on the weights that needs the model thread to itself; returns a message.
pub type WeightUpdate = Box<dyn FnOnce(&mut HfModel) -> Result<String, String> + Send>;

/// What the HTTP side asks of the model thread.
pub enum Job {
    /// Generate for these prompts.
    Generate {
        /// The prompts.
        prompts: Vec<Prompt>,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Generated, String>>,
    },
    /// Load `*.safetensors` from a folder; the new weights are `version`.
    LoadFromDisk {
        /// The folder.
        path: PathBuf,
        /// The new version (None: unchanged).
        version: Option<String>,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// Run `update` on the weights once nothing is generating (the distributed weight update).
    Exclusive {
        /// The work, given the model; returns a message.
        update: WeightUpdate,
        /// The new version (None: unchanged).
        version: Option<String>,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<String, String>>,
    },
}

/// State shared with the HTTP side.
pub struct Shared {
    /// Jobs queued or running.
    pub pending: AtomicUsize,
    /// The current weights' version.
    pub version: Mutex<String>,
    /// The LoRA adapter applied to every request, by name (`/load_lora_adapter`).
    pub adapter: Mutex<Option<String>>,
}

struct Waiting {
    /// The first sample slot of each of the job's prompts.
    offsets: Vec<usize>,
    samples: Vec<Option<FinishedSample>>,
    left: usize,
    reply: oneshot::Sender<Result<Generated, String>>,
}

/// Runs jobs until every sender is dropped.
pub fn run(
    mut model: HfModel,
    device: Device,
    max_running: usize,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    shared: Arc<Shared>,
) {
    let mut batcher = Batcher::new();
    let mut queue: VecDeque<Job> = VecDeque::new();
    let mut waiting: HashMap<u64, Waiting> = HashMap::new();
    // A ticket names one prompt: job id × 2^20 + prompt index.
    let mut next_job: u64 = 0;
    let mut progress = Progress {
        tokens: 0,
        since: std::time::Instant::now(),
    };
    loop {
        if batcher.is_idle() && queue.is_empty() {
            match jobs.blocking_recv() {
                Some(j) => queue.push_back(j),
                None => return,
            }
            // Progress counts busy time only.
            progress = Progress {
                tokens: 0,
                since: std::time::Instant::now(),
            };
            // Requests sent together arrive a little apart: gather them for a moment so they
            // share one prefill instead of joining one by one.
            let until = std::time::Instant::now() + GATHER;
            while std::time::Instant::now() < until {
                match jobs.try_recv() {
                    Ok(j) => queue.push_back(j),
                    Err(_) => std::thread::sleep(std::time::Duration::from_micros(200)),
                }
            }
        }
        while let Ok(j) = jobs.try_recv() {
            queue.push_back(j);
        }
        // Admit the generation jobs at the front that fit; stop at a weight update.
        let mut admit = Vec::new();
        let mut rows = batcher.live();
        while let Some(front) = queue.front() {
            match front {
                Job::Generate { prompts, .. } => {
                    let n: usize = prompts.iter().map(|p| p.n).sum();
                    if rows > 0 && rows + n > max_running {
                        break;
                    }
                    rows += n;
                    let Some(Job::Generate { prompts, reply }) = queue.pop_front() else {
                        break;
                    };
                    let job = next_job;
                    next_job += 1;
                    let total: usize = prompts.iter().map(|p| p.n).sum();
                    let mut offsets = Vec::with_capacity(prompts.len());
                    let mut at = 0;
                    for (i, p) in prompts.into_iter().enumerate() {
                        offsets.push(at);
                        at += p.n;
                        admit.push(BatchRequest {
                            ticket: (job << 20) | i as u64,
                            prompt: p.ids,
                            n: p.n,
                            sampling: p.sampling,
                            stop: p.stop,
                        });
                    }
                    waiting.insert(
                        job,
                        Waiting {
                            offsets,
                            samples: vec![None; total],
                            left: total,
                            reply,
                        },
                    );
                }
                _ if batcher.is_idle() && admit.is_empty() => {
                    if let Some(job) = queue.pop_front() {
                        update_weights(&mut model, job, &shared);
                    }
                }
                _ => break,
            }
        }
        let mut finished = Vec::new();
        let outcome = (|| -> Result<(), ServeError> {
            if !admit.is_empty() {
                finished.extend(batcher.admit(&model.model, device, admit)?);
            }
            if !batcher.is_idle() {
                let rows = batcher.live();
                finished.extend(batcher.step(&model.model, device)?);
                progress.step(rows, queue.len(), &shared);
            }
            Ok(())
        })();
        if let Err(e) = outcome {
            // A failed step fails every running job; the server goes on with the next ones.
            tracing::error!("generation failed: {e}");
            batcher = Batcher::new();
            for (_, w) in waiting.drain() {
                let _ = w.reply.send(Err(format!("generation failed: {e}")));
                shared.pending.fetch_sub(1, Ordering::SeqCst);
            }
            continue;
        }
        let version = shared.version.lock().map(|v| v.clone()).unwrap_or_default();
        for s in finished {
            let (job, prompt) = (s.ticket >> 20, (s.ticket & ((1 << 20) - 1)) as usize);
            let Some(w) = waiting.get_mut(&job) else {
                continue;
            };
            let at = w.offsets.get(prompt).copied();
            if let Some(slot) = at.and_then(|a| w.samples.get_mut(a + s.index)) {
                *slot = Some(s);
                w.left -= 1;
            }
            if w.left == 0 {
                if let Some(w) = waiting.remove(&job) {
                    let samples = w.samples.into_iter().flatten().collect();
                    let _ = w.reply.send(Ok((samples, version.clone())));
                    shared.pending.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
    }
}

/// Runs a weight job (nothing is generating) and answers it.
fn update_weights(model: &mut HfModel, job: Job, shared: &Shared) {
    let (result, version, reply) = match job {
        Job::LoadFromDisk {
            path,
            version,
            reply,
        } => {
            let r = rlvr_models::checkpoint::load_weights(&mut model.vs, &path)
                .map(|()| format!("loaded the weights of {}", path.display()))
                .map_err(|e| format!("cannot load {}: {e}", path.display()));
            (r, version, reply)
        }
        Job::Exclusive {
            update,
            version,
            reply,
        } => (update(model), version, reply),
        Job::Generate { reply, .. } => {
            let _ = reply.send(Err("internal: not a weight job".into()));
            shared.pending.fetch_sub(1, Ordering::SeqCst);
            return;
        }
    };
    if result.is_ok() {
        if let (Some(v), Ok(mut cur)) = (version, shared.version.lock()) {
            *cur = v;
        }
    }
    let _ = reply.send(result);
    shared.pending.fetch_sub(1, Ordering::SeqCst);
}
