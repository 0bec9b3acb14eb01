//! The model thread: owns the weights and the running batch ([`Batcher`]), takes jobs from the
//! HTTP handlers in arrival order, admits waiting generation requests between decode steps
//! (continuous batching) and answers each job when its last sample finishes. A weight update
//! waits for the running samples to finish on the old weights, then loads; requests behind it
//! run on the new ones — unless generation is paused in place (`/pause_generation`), when it
//! loads at once between two decode steps and the running samples continue on the new weights
//! (partial rollouts; each token's version is returned).

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

/// The samples of a generation job, prompt-major (`n` per prompt), with the weight version of
/// each generated token (one version unless the weights changed while the sample generated).
pub struct Generated {
    /// The samples.
    pub samples: Vec<FinishedSample>,
    /// Per sample, the version of each of its tokens.
    pub versions: Vec<Vec<String>>,
}

/// Work on the weights that needs the model thread to itself; returns a message.
pub type WeightUpdate = Box<dyn FnOnce(&mut HfModel) -> Result<String, String> + Send>;

/// A job's answer channel for control and weight jobs.
pub type Reply = oneshot::Sender<Result<String, String>>;

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
        reply: Reply,
    },
    /// Run `update` on the weights once nothing is generating (the distributed weight update).
    Exclusive {
        /// The work, given the model; returns a message.
        update: WeightUpdate,
        /// The new version (None: unchanged).
        version: Option<String>,
        /// Where the answer goes.
        reply: Reply,
    },
    /// Stop decoding, keeping the running samples and their caches (SGLang's
    /// `pause_generation` in mode `in_place`): weight jobs then run at once, between two decode
    /// steps of the running samples (partial rollouts).
    Pause {
        /// Where the answer goes.
        reply: Reply,
    },
    /// Decode again after [`Job::Pause`].
    Continue {
        /// Where the answer goes.
        reply: Reply,
    },
}

impl Job {
    fn is_generate(&self) -> bool {
        matches!(self, Job::Generate { .. })
    }
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
    /// Decode steps done when the job was admitted (its first tokens come from that step's
    /// weights).
    admitted: u64,
    reply: oneshot::Sender<Result<Generated, String>>,
}

/// The model thread's state.
struct Scheduler {
    model: HfModel,
    device: Device,
    max_running: usize,
    jobs: mpsc::UnboundedReceiver<Job>,
    shared: Arc<Shared>,
    batcher: Batcher,
    queue: VecDeque<Job>,
    waiting: HashMap<u64, Waiting>,
    /// A ticket names one prompt: job id × 2^20 + prompt index.
    next_job: u64,
    progress: Progress,
    /// Paused in place (no decoding; weight jobs run at once).
    paused: bool,
    /// Decode steps done.
    steps: u64,
    /// The weight version from each decode step on: (first step, version), in order.
    timeline: Vec<(u64, String)>,
}

/// Runs jobs until every sender is dropped.
pub fn run(
    model: HfModel,
    device: Device,
    max_running: usize,
    jobs: mpsc::UnboundedReceiver<Job>,
    shared: Arc<Shared>,
) {
    let version = shared.version.lock().map(|v| v.clone()).unwrap_or_default();
    let mut s = Scheduler {
        model,
        device,
        max_running,
        jobs,
        shared,
        batcher: Batcher::new(),
        queue: VecDeque::new(),
        waiting: HashMap::new(),
        next_job: 0,
        progress: Progress {
            tokens: 0,
            since: std::time::Instant::now(),
        },
        paused: false,
        steps: 0,
        timeline: vec![(0, version)],
    };
    while s.wait_for_work() {
        while let Ok(j) = s.jobs.try_recv() {
            s.queue.push_back(j);
        }
        s.control_jobs();
        if !s.paused {
            let admit = s.admit_front();
            s.generate(admit);
        }
    }
}

impl Scheduler {
    /// Whether something can run now: decoding (not paused) or a control job (paused).
    fn runnable(&self) -> bool {
        if self.paused {
            self.queue.iter().any(|j| !j.is_generate())
        } else {
            !self.batcher.is_idle() || !self.queue.is_empty()
        }
    }

    /// Blocks until there is work; false once every sender is gone.
    fn wait_for_work(&mut self) -> bool {
        if self.runnable() {
            return true;
        }
        let was_idle = self.batcher.is_idle();
        while !self.runnable() {
            match self.jobs.blocking_recv() {
                Some(j) => self.queue.push_back(j),
                None => return false,
            }
        }
        if was_idle && !self.paused {
            // Progress counts busy time only.
            self.progress = Progress {
                tokens: 0,
                since: std::time::Instant::now(),
            };
            // Requests sent together arrive a little apart: gather them for a moment so they
            // share one prefill instead of joining one by one.
            let until = std::time::Instant::now() + GATHER;
            while std::time::Instant::now() < until {
                match self.jobs.try_recv() {
                    Ok(j) => self.queue.push_back(j),
                    Err(_) => std::thread::sleep(std::time::Duration::from_micros(200)),
                }
            }
        }
        true
    }

    /// Runs control and weight jobs: while paused every one queued (generation jobs wait),
    /// otherwise those at the front — a weight update once the running samples finished.
    fn control_jobs(&mut self) {
        loop {
            let at = if self.paused {
                self.queue.iter().position(|j| !j.is_generate())
            } else {
                match self.queue.front() {
                    Some(Job::Generate { .. }) | None => None,
                    Some(Job::Pause { .. } | Job::Continue { .. }) => Some(0),
                    Some(_) if self.batcher.is_idle() => Some(0),
                    Some(_) => None,
                }
            };
            let Some(job) = at.and_then(|i| self.queue.remove(i)) else {
                return;
            };
            match job {
                Job::Pause { reply } => {
                    self.paused = true;
                    self.answer(reply, Ok("generation paused in place".into()));
                }
                Job::Continue { reply } => {
                    let was = std::mem::replace(&mut self.paused, false);
                    let message = if was {
                        "generation continues"
                    } else {
                        "not paused"
                    };
                    self.answer(reply, Ok(message.into()));
                    return;
                }
                job => self.update_weights(job),
            }
        }
    }

    fn answer(&self, reply: Reply, result: Result<String, String>) {
        let _ = reply.send(result);
        self.shared.pending.fetch_sub(1, Ordering::SeqCst);
    }

    /// Takes the generation jobs at the front that fit the running batch.
    fn admit_front(&mut self) -> Vec<BatchRequest> {
        let mut admit = Vec::new();
        let mut rows = self.batcher.live();
        while let Some(Job::Generate { prompts, .. }) = self.queue.front() {
            let n: usize = prompts.iter().map(|p| p.n).sum();
            if rows > 0 && rows + n > self.max_running {
                break;
            }
            rows += n;
            let Some(Job::Generate { prompts, reply }) = self.queue.pop_front() else {
                break;
            };
            let job = self.next_job;
            self.next_job += 1;
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
            self.waiting.insert(
                job,
                Waiting {
                    offsets,
                    samples: vec![None; at],
                    left: at,
                    admitted: self.steps,
                    reply,
                },
            );
        }
        admit
    }

    /// Admits `admit`, runs one decode step, and answers the jobs whose samples all finished.
    fn generate(&mut self, admit: Vec<BatchRequest>) {
        let mut finished = Vec::new();
        let (model, device) = (&self.model.model, self.device);
        let outcome = (|| -> Result<(), ServeError> {
            if !admit.is_empty() {
                finished.extend(self.batcher.admit(model, device, admit)?);
            }
            if !self.batcher.is_idle() {
                let rows = self.batcher.live();
                finished.extend(self.batcher.step(model, device)?);
                self.steps += 1;
                self.progress.step(rows, self.queue.len(), &self.shared);
            }
            Ok(())
        })();
        if let Err(e) = outcome {
            // A failed step fails every running job; the server goes on with the next ones.
            tracing::error!("generation failed: {e}");
            self.batcher = Batcher::new();
            for (_, w) in self.waiting.drain() {
                let _ = w.reply.send(Err(format!("generation failed: {e}")));
                self.shared.pending.fetch_sub(1, Ordering::SeqCst);
            }
            return;
        }
        for s in finished {
            self.deliver(s);
        }
        self.trim_timeline();
    }

    /// Files a finished sample with its job; answers the job once its last sample is in.
    fn deliver(&mut self, s: FinishedSample) {
        let (job, prompt) = (s.ticket >> 20, (s.ticket & ((1 << 20) - 1)) as usize);
        let Some(w) = self.waiting.get_mut(&job) else {
            return;
        };
        let at = w.offsets.get(prompt).copied();
        if let Some(slot) = at.and_then(|a| w.samples.get_mut(a + s.index)) {
            *slot = Some(s);
            w.left -= 1;
        }
        if w.left > 0 {
            return;
        }
        let Some(w) = self.waiting.remove(&job) else {
            return;
        };
        let samples: Vec<FinishedSample> = w.samples.into_iter().flatten().collect();
        let versions = samples
            .iter()
            .map(|s| self.token_versions(w.admitted, s.tokens.len()))
            .collect();
        let _ = w.reply.send(Ok(Generated { samples, versions }));
        self.shared.pending.fetch_sub(1, Ordering::SeqCst);
    }

    /// The version of each of `len` tokens of a sample admitted after `admitted` decode steps:
    /// token 0 comes from the admission's prefill, token i ≥ 1 from the logits of decode step
    /// `admitted + i − 1`.
    fn token_versions(&self, admitted: u64, len: usize) -> Vec<String> {
        (0..len as u64)
            .map(|i| {
                let step = admitted + i.max(1) - 1;
                let at = self.timeline.partition_point(|(from, _)| *from <= step);
                self.timeline[at.saturating_sub(1)].1.clone()
            })
            .collect()
    }

    /// Drops timeline entries no running job can still need.
    fn trim_timeline(&mut self) {
        let oldest = self
            .waiting
            .values()
            .map(|w| w.admitted)
            .min()
            .unwrap_or(self.steps);
        let keep = self
            .timeline
            .partition_point(|(from, _)| *from <= oldest)
            .saturating_sub(1);
        self.timeline.drain(..keep);
    }

    /// Runs a weight job and answers it; the new version holds from the next decode step.
    fn update_weights(&mut self, job: Job) {
        let (result, version, reply) = match job {
            Job::LoadFromDisk {
                path,
                version,
                reply,
            } => {
                let r = rlvr_models::checkpoint::load_weights(&mut self.model.vs, &path)
                    .map(|()| format!("loaded the weights of {}", path.display()))
                    .map_err(|e| format!("cannot load {}: {e}", path.display()));
                (r, version, reply)
            }
            Job::Exclusive {
                update,
                version,
                reply,
            } => (update(&mut self.model), version, reply),
            Job::Generate { reply, .. } => {
                let _ = reply.send(Err("internal: not a weight job".into()));
                self.shared.pending.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            Job::Pause { reply } | Job::Continue { reply } => {
                self.answer(reply, Err("internal: not a weight job".into()));
                return;
            }
        };
        if let (true, Some(v)) = (result.is_ok(), version) {
            if let Ok(mut cur) = self.shared.version.lock() {
                *cur = v.clone();
            }
            self.timeline.push((self.steps, v));
        }
        self.answer(reply, result);
    }
}
