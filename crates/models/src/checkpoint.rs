//! Hugging Face checkpoint folders: `config.json` plus `model.safetensors` or a sharded
//! `model.safetensors.index.json`; loaded into a [`VarStore`] with shape checks, and saved back in
//! the same layout (tensor names, sharding, and the original `config.json` text) so transformers
//! or vLLM can load a trained policy.

use crate::error::{ModelError, Result};
use crate::hf_config::HfConfig;
use crate::lora::AdapterSpec;
use crate::transformer::Transformer;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Files copied unchanged when a checkpoint is saved.
const SIDE_FILES: [&str; 5] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
    "special_tokens_map.json",
];

/// A loaded HF model: parameters, decoder and where it came from.
#[derive(Debug)]
pub struct HfModel {
    /// The parameters (HF names).
    pub vs: VarStore,
    /// The decoder over `vs`.
    pub model: Transformer,
    /// `config.json` text as read, written back unchanged on save.
    pub config_text: String,
    /// Tensor name → shard file name, when the source was sharded.
    pub shards: Option<BTreeMap<String, String>>,
    /// Folder the model was loaded from, for side files.
    pub source: Option<PathBuf>,
    /// The LoRA adapters over frozen base weights, when attached ([`HfModel::attach_adapters`]).
    pub adapters: Option<AdapterSpec>,
}

fn read_tensors(file: &Path) -> Result<HashMap<String, Tensor>> {
    if !file.exists() {
        return Err(ModelError::io(file, "no such file"));
    }
    Ok(Tensor::read_safetensors(file)
        .map_err(|e| ModelError::io(file, e))?
        .into_iter()
        .collect())
}

/// Tensor name → shard, from `model.safetensors.index.json`.
fn read_index(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::io(path, e))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::io(path, "no `weight_map` object"))?;
    map.iter()
        .map(|(k, f)| {
            f.as_str()
                .map(|f| (k.clone(), f.to_string()))
                .ok_or_else(|| ModelError::io(path, format!("shard of `{k}` is not a string")))
        })
        .collect()
}

/// Bytes of memory available to this process for new allocations on the CPU (Linux:
/// `MemAvailable` plus free swap); `None` where unknown.
pub(crate) fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = info.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some(field("MemAvailable:")? + field("SwapFree:").unwrap_or(0))
}

/// Refuses, before anything is allocated, a model whose parameters alone would not fit the
/// memory of a CPU device (libtorch would abort the process instead of failing).
pub fn check_fits(cfg: &HfConfig, device: Device, kind: Kind) -> Result<()> {
    if device != Device::Cpu {
        return Ok(());
    }
    let Some(available) = available_memory() else {
        return Ok(());
    };
    let bytes = cfg.parameter_count() * kind.elt_size_in_bytes() as i128;
    if bytes > available as i128 {
        let gib = |b: i128| b as f64 / (1u64 << 30) as f64;
        return Err(ModelError::TooLarge(format!(
            "the model has {:.3e} parameters: {:.1} GiB as {kind:?} before any training state, \
             but {:.1} GiB of memory is available; lower hidden_size, intermediate_size, \
             num_hidden_layers or vocab_size (model.* settings or config.json), or use a larger \
             machine",
            cfg.parameter_count() as f64,
            gib(bytes),
            gib(available as i128)
        )));
    }
    Ok(())
}

impl HfModel {
    /// Loads a folder on `device`, parameters in `kind` (f32 for training, bf16 for rollouts).
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<HfModel> {
        let config_path = dir.join("config.json");
        let config_text =
            std::fs::read_to_string(&config_path).map_err(|e| ModelError::io(&config_path, e))?;
        let cfg = HfConfig::from_json(&config_text).map_err(|e| e.in_file(&config_path))?;
        check_fits(&cfg, device, Kind::Float)?;
        let mut vs = VarStore::new(device);
        let model = Transformer::new(&vs.root(), &cfg)?;
        let index = dir.join("model.safetensors.index.json");
        let (tensors, shards) = if index.exists() {
            let map = read_index(&index)?;
            let mut all = HashMap::new();
            let files: std::collections::BTreeSet<&String> = map.values().collect();
            for f in files {
                all.extend(read_tensors(&dir.join(f))?);
            }
            (all, Some(map))
        } else {
            (read_tensors(&dir.join("model.safetensors"))?, None)
        };
        copy_into(&mut vs, &tensors).map_err(|e| match e {
            ModelError::Checkpoint(m) => ModelError::Checkpoint(format!("{}: {m}", dir.display())),
            e => e,
        })?;
        if kind != Kind::Float {
            vs.set_kind(kind);
        }
        Ok(HfModel {
            vs,
            model,
            config_text,
            shards,
            source: Some(dir.to_path_buf()),
            adapters: None,
        })
    }

    /// A freshly initialised model (for training from scratch), with a `config.json` text.
    pub fn fresh(config_text: &str, device: Device, seed: i64) -> Result<HfModel> {
        let cfg = HfConfig::from_json(config_text)?;
        check_fits(&cfg, device, Kind::Float)?;
        tch::manual_seed(seed);
        let vs = VarStore::new(device);
        let model = Transformer::new(&vs.root(), &cfg)?;
        Ok(HfModel {
            vs,
            model,
            config_text: config_text.to_string(),
            shards: None,
            source: None,
            adapters: None,
        })
    }

    /// Freezes every parameter and adds LoRA adapters (the only trainable parameters from then
    /// on). `base_kind` is the frozen weights' precision (bf16 saves memory on CUDA; adapters
    /// stay f32).
    pub fn attach_adapters(&mut self, spec: &AdapterSpec, base_kind: Kind) -> Result<()> {
        if self.adapters.is_some() {
            return Err(ModelError::Unsupported(
                "the model already has adapters".into(),
            ));
        }
        self.vs.freeze();
        if base_kind != self.vs.kind() {
            let _guard = tch::no_grad_guard();
            for (_, mut var) in self.vs.variables() {
                var.set_data(&var.f_to_kind(base_kind)?);
            }
        }
        self.model.attach_adapters(&self.vs.root(), spec)?;
        self.adapters = Some(spec.clone());
        Ok(())
    }

    /// Folds the adapters into the base weights (PEFT's `merge_and_unload`): afterwards the
    /// model is a plain HF model and saves as one.
    pub fn merge_adapters(&mut self) -> Result<()> {
        self.model.merge_adapters()?;
        self.adapters = None;
        Ok(())
    }

    /// The tensor files [`HfModel::save`] writes, each with the parameter names it holds (in
    /// name order); `None` with adapters (a PEFT folder).
    pub fn tensor_files(&self) -> Option<Vec<(String, Vec<String>)>> {
        if self.adapters.is_some() {
            return None;
        }
        let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut names: Vec<String> = self
            .vs
            .variables()
            .into_keys()
            .filter(|k| !crate::lora::is_adapter_name(k))
            .collect();
        names.sort();
        for name in names {
            let file = match &self.shards {
                None => "model.safetensors".to_string(),
                Some(map) => map
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| "model-extra.safetensors".into()),
            };
            files.entry(file).or_default().push(name);
        }
        Some(files.into_iter().collect())
    }

    /// Writes the model in the layout it was loaded in (single file or the same shards); a
    /// model with adapters writes a PEFT adapter folder instead ([`crate::lora::save_adapter`]:
    /// the base is where it was loaded from).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        if let Some(spec) = &self.adapters {
            crate::lora::save_adapter(&self.vs, dir, spec, self.source.as_deref())?;
            return self.copy_side_files(dir);
        }
        let vars = self.vs.variables();
        let named: BTreeMap<String, Tensor> = vars
            .into_iter()
            .filter(|(k, _)| !crate::lora::is_adapter_name(k))
            .map(|(k, v)| (k, v.detach().to_kind(Kind::Float).to_device(Device::Cpu)))
            .collect();
        match &self.shards {
            None => write_file(&dir.join("model.safetensors"), named.iter().collect())?,
            Some(map) => {
                let mut by_file: BTreeMap<&str, Vec<(&String, &Tensor)>> = BTreeMap::new();
                for (name, t) in &named {
                    let file = map
                        .get(name)
                        .map(String::as_str)
                        .unwrap_or("model-extra.safetensors");
                    by_file.entry(file).or_default().push((name, t));
                }
                for (file, items) in by_file {
                    write_file(&dir.join(file), items)?;
                }
                let weight_map: serde_json::Map<String, serde_json::Value> = named
                    .keys()
                    .map(|k| {
                        (
                            k.clone(),
                            map.get(k)
                                .cloned()
                                .unwrap_or_else(|| "model-extra.safetensors".into())
                                .into(),
                        )
                    })
                    .collect();
                let total: i64 = named.values().map(|t| t.numel() as i64 * 4).sum();
                let index = serde_json::json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
                let path = dir.join("model.safetensors.index.json");
                std::fs::write(
                    &path,
                    serde_json::to_string_pretty(&index).unwrap_or_default(),
                )
                .map_err(|e| ModelError::io(&path, e))?;
            }
        }
        let cfg_path = dir.join("config.json");
        std::fs::write(&cfg_path, &self.config_text).map_err(|e| ModelError::io(&cfg_path, e))?;
        self.copy_side_files(dir)
    }

    /// Copies the tokenizer and generation files of the source folder into `dir`.
    fn copy_side_files(&self, dir: &Path) -> Result<()> {
        if let Some(src) = &self.source {
            for f in SIDE_FILES {
                let from = src.join(f);
                if from.exists() && src != dir {
                    std::fs::copy(&from, dir.join(f)).map_err(|e| ModelError::io(&from, e))?;
                }
            }
        }
        Ok(())
    }
}

fn write_file(path: &Path, items: Vec<(&String, &Tensor)>) -> Result<()> {
    let list: Vec<(&str, &Tensor)> = items.into_iter().map(|(k, t)| (k.as_str(), t)).collect();
    Tensor::write_safetensors(&list, path).map_err(|e| ModelError::io(path, e))
}

/// The decoder layers of tensor names `model.layers.<i>.…` (one past the highest index).
fn layer_count<'a>(names: impl Iterator<Item = &'a String>) -> usize {
    names
        .filter_map(|n| {
            n.strip_prefix("model.layers.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .map(|i| i + 1)
        .max()
        .unwrap_or(0)
}

/// Copies checkpoint tensors into the store's variables, checking names, shapes and that every
/// value is finite. Tensors the model does not use are refused when they are whole decoder
/// layers the configuration lacks (a checkpoint deeper than `num_hidden_layers`), and otherwise
/// named in a warning (as transformers does).
fn copy_into(vs: &mut VarStore, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let _guard = tch::no_grad_guard();
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut unused: Vec<&String> = tensors
        .keys()
        .filter(|k| !vars.iter().any(|(n, _)| n == *k))
        .collect();
    unused.sort();
    let (have, given) = (
        layer_count(vars.iter().map(|(n, _)| n)),
        layer_count(tensors.keys()),
    );
    if given > have && have > 0 {
        return Err(ModelError::Checkpoint(format!(
            "it has {given} decoder layers but config.json says num_hidden_layers = \
             {have}; fix the config (layers beyond it would be silently dropped)"
        )));
    }
    if !unused.is_empty() {
        let shown: Vec<&str> = unused.iter().take(5).map(|s| s.as_str()).collect();
        tracing::warn!(
            "{} checkpoint tensor(s) are not used by the model: {}{}",
            unused.len(),
            shown.join(", "),
            if unused.len() > 5 { ", …" } else { "" }
        );
    }
    // Every tensor is checked before any is copied: a refused load leaves the weights as they
    // were (a server keeps serving its weights when an update is bad).
    for (name, var) in &vars {
        let src = tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor(name.clone()))?;
        if src.size() != var.size() {
            return Err(ModelError::ShapeMismatch {
                name: name.clone(),
                expected: var.size(),
                found: src.size(),
            });
        }
        if src.is_floating_point() && !bool::try_from(src.f_isfinite()?.f_all()?)? {
            return Err(ModelError::Checkpoint(format!(
                "tensor `{name}` holds NaN or infinite values; the file is corrupt \
                 (or was saved from a diverged run): use an earlier checkpoint"
            )));
        }
    }
    for (name, mut var) in vars {
        let src = tensors
            .get(&name)
            .ok_or_else(|| ModelError::MissingTensor(name.clone()))?;
        var.f_copy_(&src.f_to_kind(var.kind())?.f_to_device(var.device())?)?;
    }
    Ok(())
}

/// Copies `tensors` into the variables of `vs` by name, all or nothing: every variable must be
/// there with its shape and finite values (weights received over a weight-update group).
pub fn load_named(vs: &mut VarStore, tensors: &HashMap<String, Tensor>) -> Result<()> {
    copy_into(vs, tensors)
}

/// Loads every `*.safetensors` file of `dir` into the variables of `vs` by name, checking shapes
/// (any policy's checkpoint: HF layout or a tabular table).
pub fn load_weights(vs: &mut VarStore, dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut tensors = HashMap::new();
    for entry in entries {
        let path = entry.map_err(|e| ModelError::io(dir, e))?.path();
        if path.extension().and_then(|e| e.to_str()) == Some("safetensors") {
            tensors.extend(read_tensors(&path)?);
        }
    }
    copy_into(vs, &tensors)
}
