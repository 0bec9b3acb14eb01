//! Checkpoints of a run: `checkpoints/step-N/` with the model (HF layout), the optimizer moments,
//! the batches an asynchronous run generated ahead (`rollout-buffer.json`) and `state.json`, written into `step-N.tmp` and renamed when complete, so a folder with
//! `state.json` is always whole.

use crate::async_rollout::{save_buffer, RawBatch};
use crate::error::{IoResultExt, Result, ResultExt, TrainError};
use crate::optim::AdamW;
use crate::pipeline::Generated;
use crate::spool::Spool;
use rlvr_core::atomic::StagedDir;
use rlvr_core::Policy;
use std::path::{Path, PathBuf};

/// The optimizer state a checkpoint writes.
pub enum OptimizerState<'a> {
    /// A whole optimizer.
    Whole(&'a AdamW),
    /// A sharded optimizer's state, gathered into rank 0's spool ([`AdamW::spool_gathered`]).
    Spooled(Spool),
}

/// The model a checkpoint writes.
pub enum ModelState<'a> {
    /// The policy's parameters, whole.
    Whole(&'a dyn Policy),
    /// The policy's folder (configuration, side files) with its tensor files written from rank
    /// 0's spools ([`crate::param_shards::ParamShards::spool_model`]), by file name.
    Spooled(&'a dyn Policy, Vec<(String, Spool)>),
}

impl ModelState<'_> {
    fn write(self, dir: &Path) -> Result<()> {
        match self {
            ModelState::Whole(policy) => Ok(policy.save(dir)?),
            ModelState::Spooled(policy, files) => {
                // The policy writes everything (its tensor files from the released, empty
                // parameters); then each tensor file is replaced from its spool.
                policy.save(dir)?;
                let mut total = 0u64;
                for (file, spool) in files {
                    total += spool.bytes();
                    spool.write_safetensors(&dir.join(file))?;
                }
                fix_index_total(dir, total)
            }
        }
    }
}

/// Sets `metadata.total_size` of a sharded model's `model.safetensors.index.json` (if any) to
/// `total` bytes.
fn fix_index_total(dir: &Path, total: u64) -> Result<()> {
    let path = dir.join("model.safetensors.index.json");
    if !path.exists() {
        return Ok(());
    }
    let mut index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).at(&path)?)?;
    index["metadata"]["total_size"] = total.into();
    std::fs::write(&path, serde_json::to_string_pretty(&index)?).at(&path)
}

/// Writes a checkpoint of `model` and `opt` at `step` under `run/checkpoints/` atomically.
pub fn write_checkpoint(
    run: &Path,
    step: u64,
    seed: u64,
    model: ModelState<'_>,
    opt: OptimizerState<'_>,
    buffer: Option<(u64, &[Generated<RawBatch>])>,
) -> Result<PathBuf> {
    let final_dir = run.join("checkpoints").join(format!("step-{step}"));
    let staged = StagedDir::create(&final_dir, "tmp")?;
    let tmp = staged.path();
    model.write(&tmp.join("model"))?;
    let optimizer = tmp.join("optimizer.safetensors");
    match opt {
        OptimizerState::Whole(o) => o.save(&optimizer)?,
        OptimizerState::Spooled(s) => s.write_safetensors(&optimizer)?,
    }
    if let Some((max_staleness, held)) = buffer {
        save_buffer(tmp, max_staleness, held)?;
    }
    let state = serde_json::json!({ "step": step, "seed": seed });
    let state_path = tmp.join("state.json");
    std::fs::write(&state_path, serde_json::to_string_pretty(&state)?).at(&state_path)?;
    Ok(staged.publish()?)
}

/// The complete checkpoint of step `step` of the run `run`, or an error saying it is not one.
pub fn checkpoint_at(run: &Path, step: u64) -> Result<PathBuf> {
    let dir = run.join("checkpoints").join(format!("step-{step}"));
    if !dir.join("state.json").exists() {
        let have: Vec<String> = complete_checkpoints(run)
            .unwrap_or_default()
            .iter()
            .map(|(s, _)| s.to_string())
            .collect();
        return Err(TrainError::Config(format!(
            "--step {step}: {} is not a complete checkpoint (complete steps: {})",
            dir.display(),
            if have.is_empty() {
                "none".into()
            } else {
                have.join(", ")
            }
        )));
    }
    Ok(dir)
}

/// Loads a checkpoint's weights (and optimizer moments, when `opt` is given).
pub fn load_checkpoint(dir: &Path, policy: &mut dyn Policy, opt: Option<&mut AdamW>) -> Result<()> {
    policy
        .load(&dir.join("model"))
        .with_context(|| format!("loading model of {}", dir.display()))?;
    if let Some(opt) = opt {
        opt.load(&dir.join("optimizer.safetensors"))?;
    }
    Ok(())
}

/// Loads the weights of another process's checkpoint (a live run's, which its retention may
/// delete at any moment): the model's files are first pinned by hard links in a private folder
/// next to the checkpoints, so a deletion while loading cannot pull them away; a checkpoint
/// deleted before it was pinned is said to be so.
pub fn load_pinned(dir: &Path, policy: &mut dyn Policy) -> Result<()> {
    let model = dir.join("model");
    let Some(parent) = dir.parent() else {
        return load_checkpoint(dir, policy, None);
    };
    let pin = parent.join(format!(
        ".pin-{}-{}",
        std::process::id(),
        dir.file_name().map_or("x".into(), |n| n.to_string_lossy())
    ));
    let _ = std::fs::remove_dir_all(&pin);
    let pinned = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(pin.join("model"))?;
        for entry in std::fs::read_dir(&model)? {
            let path = entry?.path();
            if let Some(name) = path.file_name() {
                std::fs::hard_link(&path, pin.join("model").join(name))?;
            }
        }
        Ok(())
    })();
    let result = match pinned {
        Ok(()) => load_checkpoint(&pin, policy, None),
        Err(e) if !dir.join("state.json").exists() => Err(crate::TrainError::Run(format!(
            "{} was deleted (by the run's checkpoint retention?) while it was being read ({e}); \
             evaluate a newer step",
            dir.display()
        ))),
        // Another file system or no hard links: read in place.
        Err(_) => load_checkpoint(dir, policy, None),
    };
    let _ = std::fs::remove_dir_all(&pin);
    result
}

/// The complete checkpoints (those with `state.json`) of a run folder, by step.
pub fn complete_checkpoints(run: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let dir = run.join("checkpoints");
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(&dir).at(&dir)? {
        let path = entry.at(&dir)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(step) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if path.join("state.json").exists() {
            found.push((step, path));
        }
    }
    found.sort_by_key(|(s, _)| *s);
    Ok(found)
}

/// The highest complete checkpoint (one with `state.json`) of a run folder.
pub fn latest_checkpoint(run: &Path) -> Result<Option<(u64, PathBuf)>> {
    Ok(complete_checkpoints(run)?.pop())
}
