//! What `--model` (and `--adapter`) name: a Hugging Face folder, a run checkpoint's step folder,
//! a hub id already in the local Hugging Face cache, a model shape, or a registered model.

use crate::args::ModelArgs;
use crate::usage_bail;
use anyhow::{Context, Result};
use rlvr_core::registry::{self, ComponentKind};
use rlvr_train::config::set;
use std::path::{Path, PathBuf};

/// The `[model]` table of `--model`: a folder is a Hugging Face checkpoint, `<shape>-shape` a
/// randomly initialised real model shape, anything else a registered model name.
pub fn model_table(model: &str) -> Result<toml::Table> {
    if Path::new(model).is_dir() {
        let path = hf_folder(Path::new(model))?;
        return Ok([
            ("type".to_string(), "hf".into()),
            ("path".to_string(), toml::Value::String(path)),
        ]
        .into_iter()
        .collect());
    }
    if let Some(shape) = model
        .strip_suffix("-shape")
        .filter(|s| rlvr_models::shapes::find(s).is_some())
    {
        return Ok([
            ("type".to_string(), "shape".into()),
            ("name".to_string(), toml::Value::String(shape.into())),
        ]
        .into_iter()
        .collect());
    }
    if let Some(dir) = hub_cache_entry(model)? {
        return Ok([
            ("type".to_string(), "hf".into()),
            ("path".to_string(), toml::Value::String(dir)),
        ]
        .into_iter()
        .collect());
    }
    registry::find(ComponentKind::Model, model).with_context(|| {
        format!(
            "--model is neither a folder, a registered model nor a model shape ({}-shape)",
            rlvr_models::shapes::names().replace(", ", "-shape, ")
        )
    })?;
    Ok([("type".to_string(), toml::Value::String(model.into()))]
        .into_iter()
        .collect())
}

/// The Hugging Face hub cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`), as huggingface_hub lays it out.
fn hub_cache() -> Option<PathBuf> {
    if let Some(c) = std::env::var_os("HF_HUB_CACHE") {
        return Some(PathBuf::from(c));
    }
    if let Some(h) = std::env::var_os("HF_HOME") {
        return Some(PathBuf::from(h).join("hub"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
}

/// The local snapshot of hub id `org/name` (`models--org--name/snapshots/<refs/main>`), when
/// `model` looks like a hub id; an id that is not in the cache is a usage error (nothing is
/// downloaded).
fn hub_cache_entry(model: &str) -> Result<Option<String>> {
    let parts: Vec<&str> = model.split('/').collect();
    let [org, name] = parts.as_slice() else {
        return Ok(None);
    };
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !s.starts_with('.')
    };
    if !plain(org) || !plain(name) {
        return Ok(None);
    }
    let Some(cache) = hub_cache() else {
        return Ok(None);
    };
    let repo = cache.join(format!("models--{org}--{name}"));
    let snapshots = repo.join("snapshots");
    let main = std::fs::read_to_string(repo.join("refs/main")).ok();
    let snapshot = match main.map(|r| snapshots.join(r.trim())) {
        Some(s) if s.is_dir() => Some(s),
        _ => {
            // No refs/main: a single snapshot is unambiguous.
            let all: Vec<PathBuf> = std::fs::read_dir(&snapshots)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            match all.as_slice() {
                [one] => Some(one.clone()),
                [] => None,
                _ => usage_bail!(
                    "--model {model}: {} holds {} snapshots and no refs/main; give the snapshot \
                     folder itself",
                    snapshots.display(),
                    all.len()
                ),
            }
        }
    };
    match snapshot {
        Some(s) if s.join("config.json").is_file() => Ok(Some(s.display().to_string())),
        _ => usage_bail!(
            "--model {model}: not a folder, and not in the Hugging Face cache ({}); rlvr does \
             not download models: fetch it first (`huggingface-cli download {model}`) or give \
             its folder",
            repo.display()
        ),
    }
}

/// The Hugging Face folder `--model DIR` names: DIR itself, or a run checkpoint's `model/` when
/// DIR is a checkpoint step folder; a run folder or a LoRA checkpoint is explained.
fn hf_folder(dir: &Path) -> Result<String> {
    let shown = dir.display();
    if dir.join("config.json").is_file() {
        return Ok(dir.display().to_string());
    }
    let inner = dir.join("model");
    if dir.join("state.json").is_file() && inner.is_dir() {
        if inner.join(rlvr_models::lora::ADAPTER_CONFIG).is_file() {
            usage_bail!(
                "--model {shown}: this checkpoint holds LoRA adapters only; give the base model \
                 and the adapters: --model BASE --adapter {}",
                inner.display()
            );
        }
        if !inner.join("tokenizer.json").is_file() {
            usage_bail!(
                "--model {shown}: a checkpoint of the built-in character-level model (no \
                 tokenizer.json; its alphabet is in the run's config.toml): evaluate it with \
                 `rlvr eval --run RUN --step N`, or start a run from it with --set \
                 model.init={}",
                inner.display()
            );
        }
        return Ok(inner.display().to_string());
    }
    if dir.join("config.toml").is_file() && dir.join("checkpoints").is_dir() {
        usage_bail!(
            "--model {shown} is a run folder; give one of its checkpoints, e.g. --model \
             {shown}/checkpoints/step-N (or evaluate the run with `rlvr eval --run {shown}`)"
        );
    }
    usage_bail!("--model {shown}: no config.json (not a Hugging Face model folder)")
}

/// Sets `model.adapter` from `--adapter` (a PEFT adapter folder over the model).
pub fn apply_adapter(doc: &mut toml::Table, model: &ModelArgs) -> Result<()> {
    if let Some(a) = &model.adapter {
        if !Path::new(a)
            .join(rlvr_models::lora::ADAPTER_CONFIG)
            .is_file()
        {
            usage_bail!(
                "--adapter {a}: not a PEFT adapter folder (no {})",
                rlvr_models::lora::ADAPTER_CONFIG
            );
        }
        set(doc, "model.adapter", a.as_str())?;
    }
    Ok(())
}
