//! Checkpoints of a run: `checkpoints/step-N/` with the model (HF layout), the optimizer moments
//! and `state.json`, written into `step-N.tmp` and renamed when complete, so a folder with
//! `state.json` is always whole.

use crate::error::{IoResultExt, Result, ResultExt};
use crate::optim::AdamW;
use rlvr_core::atomic::StagedDir;
use rlvr_core::Policy;
use std::path::{Path, PathBuf};

/// Writes a checkpoint of `policy` and `opt` at `step` under `run/checkpoints/` atomically.
pub fn write_checkpoint(
    run: &Path,
    step: u64,
    seed: u64,
    policy: &dyn Policy,
    opt: &AdamW,
) -> Result<PathBuf> {
    let final_dir = run.join("checkpoints").join(format!("step-{step}"));
    let staged = StagedDir::create(&final_dir, "tmp")?;
    let tmp = staged.path();
    policy.save(&tmp.join("model"))?;
    opt.save(&tmp.join("optimizer.safetensors"))?;
    let state = serde_json::json!({ "step": step, "seed": seed });
    let state_path = tmp.join("state.json");
    std::fs::write(&state_path, serde_json::to_string_pretty(&state)?).at(&state_path)?;
    Ok(staged.publish()?)
}

/// Loads a checkpoint's weights (and optimizer moments, when `opt` is given).
pub fn load_checkpoint(dir: &Path, policy: &mut dyn Policy, opt: Option<&mut AdamW>) -> Result<()> {
    rlvr_models::checkpoint::load_weights(policy.var_store_mut(), &dir.join("model"))
        .with_context(|| format!("loading model of {}", dir.display()))?;
    if let Some(opt) = opt {
        opt.load(&dir.join("optimizer.safetensors"))?;
    }
    Ok(())
}

/// The highest complete checkpoint (one with `state.json`) of a run folder.
pub fn latest_checkpoint(run: &Path) -> Result<Option<(u64, PathBuf)>> {
    let dir = run.join("checkpoints");
    if !dir.exists() {
        return Ok(None);
    }
    let mut best: Option<(u64, PathBuf)> = None;
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
        if path.join("state.json").exists() && best.as_ref().is_none_or(|(b, _)| step > *b) {
            best = Some((step, path));
        }
    }
    Ok(best)
}
