//! The rollout generator of asynchronous training (`train.max_staleness`, docs/async.md): the
//! [`Generate`] work of the [`crate::pipeline::Pipeline`] thread — a copy of the policy in this
//! process, or the rollout servers — and the buffered batches a checkpoint keeps.

use crate::engine::{ServedSample, ServerEngine};
use crate::error::{IoResultExt, Result, TrainError};
use crate::pipeline::{Generate, Generated};
use crate::rollout::generation_samples;
use rlvr_core::{Policy, SamplingConfig};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::Tensor;

/// The file of a checkpoint holding the batches generated ahead of its step.
pub const BUFFER_FILE: &str = "rollout-buffer.json";

/// One step's generation request: `n` left-padded rows per problem.
pub struct RolloutJob {
    /// Prompt ids `[B, P]`.
    pub ids: Tensor,
    /// Prompt mask `[B, P]`.
    pub mask: Tensor,
    /// Each problem's prompt without padding (what a server is sent).
    pub per_problem: Vec<Vec<i64>>,
    /// Responses per problem.
    pub n: usize,
    /// The step's sampling (seed, streams).
    pub sampling: SamplingConfig,
}

/// One generated batch, before decoding and scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawBatch {
    /// The responses, row by row.
    pub samples: Vec<ServedSample>,
    /// Seconds spent generating.
    pub time_generate: f64,
}

/// Published weights.
pub enum Weights {
    /// A copy of every variable of the trainer's policy (the native generator).
    Tensors(HashMap<String, Tensor>),
    /// A folder the servers load (`ServerEngine::write_folder`).
    Folder(PathBuf),
    /// Loaded into the servers by the trainer already (partial rollouts).
    Loaded,
}

/// Where the generator thread generates.
pub enum RolloutGenerator {
    /// Its own copy of the policy, in this process.
    Native {
        /// The copy (weights loaded from each published version).
        policy: Box<dyn Policy>,
        /// Stop tokens.
        stop: Vec<i64>,
    },
    /// The rollout servers.
    Server {
        /// Their client (shared with the trainer, which writes the weight folders).
        engine: Arc<ServerEngine>,
        /// Stop tokens.
        stop: Vec<i64>,
    },
}

impl Generate for RolloutGenerator {
    type Weights = Weights;
    type Job = RolloutJob;
    type Output = RawBatch;

    fn load(&mut self, version: u64, weights: Weights) -> Result<()> {
        match (self, weights) {
            (RolloutGenerator::Native { policy, .. }, Weights::Tensors(t)) => {
                rlvr_models::checkpoint::load_named(policy.var_store_mut(), &t)?;
                Ok(())
            }
            (RolloutGenerator::Server { engine, .. }, Weights::Folder(path)) => {
                engine.load_folder(version, &path)
            }
            (RolloutGenerator::Server { .. }, Weights::Loaded) => Ok(()),
            _ => Err(TrainError::Run(
                "internal: weights of the wrong kind for the generator".into(),
            )),
        }
    }

    fn run(&mut self, job: RolloutJob, version: u64) -> Result<RawBatch> {
        let t0 = Instant::now();
        let samples = match self {
            RolloutGenerator::Native { policy, stop } => {
                let gen = policy.generate(&job.ids, &job.mask, &job.sampling, stop)?;
                generation_samples(&gen, version)?
            }
            RolloutGenerator::Server { engine, stop } => {
                engine.generate(&job.per_problem, job.n, &job.sampling, stop)?
            }
        };
        Ok(RawBatch {
            samples,
            time_generate: t0.elapsed().as_secs_f64(),
        })
    }
}

/// A copy of every variable of `policy` (the weights a native generator loads).
pub fn snapshot(policy: &dyn Policy) -> Weights {
    let _guard = tch::no_grad_guard();
    Weights::Tensors(
        policy
            .var_store()
            .variables()
            .into_iter()
            .map(|(name, t)| (name, t.detach().copy()))
            .collect(),
    )
}

/// What [`BUFFER_FILE`] holds.
#[derive(Debug, Serialize, Deserialize)]
struct BufferFile {
    /// `train.max_staleness` of the run that wrote it.
    max_staleness: u64,
    /// The batches, by step.
    batches: Vec<BufferedBatch>,
}

#[derive(Debug, Serialize, Deserialize)]
struct BufferedBatch {
    index: u64,
    version: u64,
    batch: RawBatch,
}

/// Writes the batches generated ahead of a checkpoint into its folder `dir`.
pub fn save_buffer(dir: &Path, max_staleness: u64, held: &[Generated<RawBatch>]) -> Result<()> {
    let file = BufferFile {
        max_staleness,
        batches: held
            .iter()
            .map(|g| BufferedBatch {
                index: g.index,
                version: g.version,
                batch: g.output.clone(),
            })
            .collect(),
    };
    let path = dir.join(BUFFER_FILE);
    std::fs::write(&path, serde_json::to_vec(&file)?).at(&path)
}

/// The batches a checkpoint (folder `dir`, of step `step`) kept, consecutive from `step`; none
/// when it has no buffer file.
pub fn load_buffer(dir: &Path, step: u64) -> Result<Vec<Generated<RawBatch>>> {
    let path = dir.join(BUFFER_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read(&path).at(&path)?;
    let file: BufferFile = serde_json::from_slice(&text)
        .map_err(|e| TrainError::Run(format!("{} is not a rollout buffer: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, b) in file.batches.into_iter().enumerate() {
        if b.index != step + i as u64 || b.version > b.index {
            return Err(TrainError::Run(format!(
                "{}: batch {} (version {}) where batch {} was expected",
                path.display(),
                b.index,
                b.version,
                step + i as u64
            )));
        }
        out.push(Generated {
            index: b.index,
            version: b.version,
            output: b.batch,
            idle_s: 0.0,
        });
    }
    Ok(out)
}
