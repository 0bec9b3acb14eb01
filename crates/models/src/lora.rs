//! LoRA adapters (Hu et al. 2021, arXiv 2106.09685) on the decoder's linear layers, with the
//! arithmetic, initialisation, names and files of Hugging Face PEFT (`peft/tuners/lora/layer.py`,
//! `Linear.forward` and `reset_lora_parameters`; `peft/utils/save_and_load.py`):
//!
//! `y = x Wᵀ + b + s · (dropout(x) Aᵀ) Bᵀ`, `A` `[r, in]`, `B` `[out, r]`, `s = α / r` (`α / √r` with
//! rsLoRA, Kalajdzievski 2023). PEFT's default init: `A` Kaiming-uniform with `a = √5` (that is
//! U(±1/√in)), `B` zero, so a fresh adapter leaves the model's outputs exactly as they were.
//!
//! Files: `adapter_config.json` (`peft_type = "LORA"`, `r`, `lora_alpha`, `target_modules`, …) and
//! `adapter_model.safetensors` with tensors named
//! `base_model.model.model.layers.<i>.<self_attn|mlp>.<module>.lora_<A|B>.weight`.

use crate::error::{ModelError, Result};
use documented::DocumentedFields;
use rlvr_core::CoreError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use tch::nn::{f_init, Init, Path as VsPath, VarStore};
use tch::{Device, Kind, Tensor};

/// The adapter weights file of a PEFT folder.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// The adapter config file of a PEFT folder.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The prefix PEFT puts before the base model's parameter names.
const PEFT_PREFIX: &str = "base_model.model.";

/// A linear layer of a decoder layer, by its HF module name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Module {
    /// `self_attn.q_proj`.
    Q,
    /// `self_attn.k_proj`.
    K,
    /// `self_attn.v_proj`.
    V,
    /// `self_attn.o_proj`.
    O,
    /// `mlp.gate_proj`.
    Gate,
    /// `mlp.up_proj`.
    Up,
    /// `mlp.down_proj`.
    Down,
}

impl Module {
    /// Every linear layer of a decoder layer: PEFT's `"all-linear"` for a causal LM (the LM head
    /// is excluded).
    pub const ALL: [Module; 7] = [
        Module::Q,
        Module::K,
        Module::V,
        Module::O,
        Module::Gate,
        Module::Up,
        Module::Down,
    ];

    /// The HF module name (`q_proj`, …).
    pub fn name(self) -> &'static str {
        match self {
            Module::Q => "q_proj",
            Module::K => "k_proj",
            Module::V => "v_proj",
            Module::O => "o_proj",
            Module::Gate => "gate_proj",
            Module::Up => "up_proj",
            Module::Down => "down_proj",
        }
    }

    /// The block it belongs to (`self_attn` or `mlp`).
    pub fn parent(self) -> &'static str {
        match self {
            Module::Q | Module::K | Module::V | Module::O => "self_attn",
            _ => "mlp",
        }
    }

    /// The module called `name`.
    pub fn from_name(name: &str) -> Option<Module> {
        Module::ALL.into_iter().find(|m| m.name() == name)
    }

    fn list() -> String {
        Module::ALL.map(Module::name).join(", ")
    }
}

/// Which linear layers get adapters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Targets {
    /// `"all-linear"`.
    Preset(String),
    /// Module names, e.g. `["q_proj", "v_proj"]`.
    Modules(Vec<String>),
}

impl Default for Targets {
    fn default() -> Self {
        Targets::Preset("all-linear".into())
    }
}

impl Targets {
    /// The modules named, or an error naming the valid ones.
    pub fn modules(&self) -> Result<Vec<Module>> {
        let bad = |what: &str| {
            ModelError::Core(CoreError::invalid(
                "model.lora.targets",
                what,
                format!(
                    "use \"all-linear\" or a list of module names ({})",
                    Module::list()
                ),
            ))
        };
        let mut out = match self {
            Targets::Preset(p) if p == "all-linear" => Module::ALL.to_vec(),
            Targets::Preset(p) => return Err(bad(&format!("{p:?}"))),
            Targets::Modules(names) => names
                .iter()
                .map(|n| Module::from_name(n).ok_or_else(|| bad(&format!("{n:?}"))))
                .collect::<Result<Vec<_>>>()?,
        };
        out.sort();
        out.dedup();
        if out.is_empty() {
            return Err(bad("[]"));
        }
        Ok(out)
    }
}

/// How adapter weights start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoraInit {
    /// PEFT's default: `A` Kaiming-uniform (U(±1/√in)), `B` zero.
    #[default]
    Default,
    /// PEFT's `"gaussian"`: `A` normal with standard deviation 1/r, `B` zero.
    Gaussian,
}

/// `[model.lora]`: train low-rank adapters over frozen base weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// Adapter rank r (≥ 1).
    pub rank: i64,
    /// Scale numerator α: the adapter's output is multiplied by α / r.
    pub alpha: f64,
    /// Dropout on the adapter's input in the update's forward passes (0 = none, PEFT's default).
    pub dropout: f64,
    /// Adapted layers: "all-linear" (q,k,v,o,gate,up,down; not the LM head) or a list of module
    /// names, e.g. ["q_proj", "v_proj"].
    pub targets: Targets,
    /// Initialisation: default (A Kaiming-uniform, B zero) | gaussian (A normal, std 1/r; B zero).
    pub init: LoraInit,
    /// rsLoRA scaling α / √r instead of α / r.
    pub rslora: bool,
    /// Seed of the adapters' initial values (each adapter draws from its own stream).
    pub seed: u64,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: Targets::default(),
            init: LoraInit::Default,
            rslora: false,
            seed: 0,
        }
    }
}

rlvr_core::describe_fields!(LoraConfig);

/// A validated [`LoraConfig`]: what each adapter is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterSpec {
    /// Rank r.
    pub rank: i64,
    /// α.
    pub alpha: f64,
    /// Output scale s (α/r or α/√r).
    pub scale: f64,
    /// Input dropout probability in updates.
    pub dropout: f64,
    /// Adapted modules, in [`Module::ALL`] order.
    pub targets: Vec<Module>,
    /// Initialisation.
    pub init: LoraInit,
    /// rsLoRA scaling.
    pub rslora: bool,
    /// Seed of the initial values.
    pub seed: u64,
}

impl LoraConfig {
    /// Checks every value and resolves the targets.
    pub fn spec(&self) -> Result<AdapterSpec> {
        let invalid = |param: &str, value: String, rule: &str| {
            ModelError::Core(CoreError::invalid(param, value, rule))
        };
        if self.rank < 1 {
            return Err(invalid(
                "model.lora.rank",
                self.rank.to_string(),
                "must be >= 1",
            ));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(invalid(
                "model.lora.alpha",
                self.alpha.to_string(),
                "must be a finite number > 0",
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(invalid(
                "model.lora.dropout",
                self.dropout.to_string(),
                "must be in [0, 1)",
            ));
        }
        let r = self.rank as f64;
        Ok(AdapterSpec {
            rank: self.rank,
            alpha: self.alpha,
            scale: if self.rslora {
                self.alpha / r.sqrt()
            } else {
                self.alpha / r
            },
            dropout: self.dropout,
            targets: self.targets.modules()?,
            init: self.init,
            rslora: self.rslora,
            seed: self.seed,
        })
    }
}

/// One adapter: `A` `[r, in]`, `B` `[out, r]`, scale and dropout.
#[derive(Debug)]
pub struct Adapter {
    a: Tensor,
    b: Tensor,
    scale: f64,
    dropout: f64,
}

impl Adapter {
    /// The adapter's trained tensors, `A` and `B`.
    pub fn tensors(&self) -> [&Tensor; 2] {
        [&self.a, &self.b]
    }

    /// Creates `lora_A.weight` and `lora_B.weight` under `p` (the adapted module's path); `A`'s
    /// values come from random stream `stream` of the spec's seed.
    pub fn new(
        p: &VsPath,
        input: i64,
        output: i64,
        spec: &AdapterSpec,
        stream: u64,
    ) -> Result<Adapter> {
        // f32 whatever the frozen weights' precision (the store's kind).
        let device = p.device();
        let a = initial_a(spec, input, stream)?.f_to_device(device)?;
        let b = f_init(Init::Const(0.0), &[output, spec.rank], device, Kind::Float)?;
        let a = (p / "lora_A").add("weight", a, true);
        let b = (p / "lora_B").add("weight", b, true);
        Ok(Adapter {
            a,
            b,
            scale: spec.scale,
            dropout: spec.dropout,
        })
    }

    /// `s · (dropout(x) Aᵀ) Bᵀ` in `kind` (dropout only when `training`); both products
    /// [`rlvr_kernels::invariant_linear`] when `invariant` (a batch-invariant f32 pass).
    pub fn delta(&self, x: &Tensor, kind: Kind, training: bool, invariant: bool) -> Result<Tensor> {
        if invariant {
            let h = rlvr_kernels::invariant_linear(x, &self.a, None)?;
            return Ok(rlvr_kernels::invariant_linear(&h, &self.b, None)?.f_mul_scalar(self.scale)?);
        }
        let x = if training && self.dropout > 0.0 {
            x.f_dropout(self.dropout, true)?
        } else {
            x.shallow_clone()
        };
        let (a, b) = if self.a.kind() == kind {
            (self.a.shallow_clone(), self.b.shallow_clone())
        } else {
            (self.a.f_to_kind(kind)?, self.b.f_to_kind(kind)?)
        };
        Ok(x.f_to_kind(kind)?
            .f_linear::<Tensor>(&a, None)?
            .f_linear::<Tensor>(&b, None)?
            .f_mul_scalar(self.scale)?)
    }

    /// `s · B A` `[out, in]`: what merging adds to the base weight.
    pub fn weight_delta(&self) -> Result<Tensor> {
        Ok(self.b.f_matmul(&self.a)?.f_mul_scalar(self.scale)?)
    }
}

/// `A` `[r, in]` at initialisation, from a ChaCha stream of its own (not libtorch's global
/// generator, which other threads and earlier draws would shift): PEFT's default U(±1/√in)
/// (Kaiming-uniform with a = √5), or N(0, 1/r²) for `gaussian` (Box–Muller).
fn initial_a(spec: &AdapterSpec, input: i64, stream: u64) -> Result<Tensor> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(spec.seed);
    rng.set_stream(stream);
    let n = (spec.rank * input) as usize;
    let values: Vec<f32> = match spec.init {
        LoraInit::Default => {
            let bound = 1.0 / (input as f64).sqrt();
            (0..n)
                .map(|_| (rng.random::<f64>() * 2.0 - 1.0) * bound)
                .map(|v| v as f32)
                .collect()
        }
        LoraInit::Gaussian => {
            let std = 1.0 / spec.rank as f64;
            (0..n)
                .map(|_| {
                    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]
                    let u2 = rng.random::<f64>();
                    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * std
                })
                .map(|v| v as f32)
                .collect()
        }
    };
    Ok(Tensor::f_from_slice(&values)?.f_reshape([spec.rank, input])?)
}

/// Whether a store variable is an adapter's.
pub fn is_adapter_name(name: &str) -> bool {
    name.contains(".lora_A.") || name.contains(".lora_B.")
}

/// The `adapter_config.json` text PEFT writes for `spec` over the base folder `base`.
pub fn adapter_config_json(spec: &AdapterSpec, base: Option<&Path>) -> String {
    let targets: Vec<&str> = spec.targets.iter().map(|m| m.name()).collect();
    let v = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base.map(|b| b.display().to_string()),
        "r": spec.rank,
        "lora_alpha": spec.alpha,
        "lora_dropout": spec.dropout,
        "target_modules": targets,
        "use_rslora": spec.rslora,
        "init_lora_weights": match spec.init {
            LoraInit::Default => serde_json::Value::Bool(true),
            LoraInit::Gaussian => serde_json::Value::String("gaussian".into()),
        },
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "use_dora": false,
        "modules_to_save": null,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": null
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// The LoRA settings of a PEFT adapter folder's `adapter_config.json`; features rlvr does not
/// implement (DoRA, bias training, per-layer ranks, extra trained modules, …) are refused by name.
pub fn read_adapter_config(dir: &Path) -> Result<LoraConfig> {
    let path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::io(&path, e))?;
    let bad = |m: String| ModelError::Checkpoint(format!("{}: {m}", path.display()));
    let get = |k: &str| v.get(k).filter(|x| !x.is_null());
    match get("peft_type").and_then(|t| t.as_str()) {
        Some("LORA") => {}
        other => {
            return Err(bad(format!(
                "peft_type is {other:?}; only \"LORA\" adapters load"
            )))
        }
    }
    type InUse = fn(&serde_json::Value) -> bool;
    let unsupported: [(&str, InUse); 8] = [
        ("use_dora", |x| x.as_bool() == Some(true)),
        ("bias", |x| x.as_str() != Some("none")),
        ("fan_in_fan_out", |x| x.as_bool() == Some(true)),
        ("modules_to_save", |x| {
            x.as_array().is_some_and(|a| !a.is_empty())
        }),
        ("layers_to_transform", |x| !x.is_null()),
        ("rank_pattern", |x| {
            x.as_object().is_some_and(|o| !o.is_empty())
        }),
        ("alpha_pattern", |x| {
            x.as_object().is_some_and(|o| !o.is_empty())
        }),
        ("lora_bias", |x| x.as_bool() == Some(true)),
    ];
    for (key, used) in unsupported {
        if let Some(x) = get(key) {
            if used(x) {
                return Err(bad(format!(
                    "`{key}` = {x} is not supported by rlvr's LoRA"
                )));
            }
        }
    }
    let rank = get("r")
        .and_then(|r| r.as_i64())
        .ok_or_else(|| bad("no integer `r`".into()))?;
    let alpha = get("lora_alpha")
        .and_then(|a| a.as_f64())
        .ok_or_else(|| bad("no number `lora_alpha`".into()))?;
    let targets = match get("target_modules") {
        Some(serde_json::Value::String(s)) => Targets::Preset(s.clone()),
        // PEFT matches a target by the end of a module's path; "all-linear" is saved as the
        // full paths it resolved to (`model.layers.0.self_attn.q_proj`). Every layer gets the
        // named modules here; an adapter that skips some layers then fails to load by name.
        Some(serde_json::Value::Array(a)) => {
            let mut names: Vec<String> = a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(|s| s.rsplit('.').next().unwrap_or(s).to_string())
                        .ok_or_else(|| bad(format!("target module {x} is not a string")))
                })
                .collect::<Result<_>>()?;
            names.sort();
            names.dedup();
            Targets::Modules(names)
        }
        _ => return Err(bad("no `target_modules`".into())),
    };
    Ok(LoraConfig {
        rank,
        alpha,
        dropout: get("lora_dropout").and_then(|d| d.as_f64()).unwrap_or(0.0),
        targets,
        init: match get("init_lora_weights").and_then(|i| i.as_str()) {
            Some("gaussian") => LoraInit::Gaussian,
            _ => LoraInit::Default,
        },
        rslora: get("use_rslora").and_then(|r| r.as_bool()).unwrap_or(false),
        seed: 0,
    })
}

/// Writes the adapters of `vs` as a PEFT folder: `adapter_config.json` and
/// `adapter_model.safetensors` (f32, PEFT's names).
pub fn save_adapter(
    vs: &VarStore,
    dir: &Path,
    spec: &AdapterSpec,
    base: Option<&Path>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| is_adapter_name(n))
        .map(|(n, t)| {
            (
                format!("{PEFT_PREFIX}{n}"),
                t.detach().to_kind(Kind::Float).to_device(Device::Cpu),
            )
        })
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let list: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let file = dir.join(ADAPTER_WEIGHTS);
    Tensor::write_safetensors(&list, &file).map_err(|e| ModelError::io(&file, e))?;
    let cfg = dir.join(ADAPTER_CONFIG);
    std::fs::write(&cfg, adapter_config_json(spec, base)).map_err(|e| ModelError::io(&cfg, e))
}

/// Loads `adapter_model.safetensors` of a PEFT folder into the adapter variables of `vs`: every
/// adapter must be in the file with its shape and finite values; tensors for modules the model
/// does not adapt are refused (they would be silently dropped).
pub fn load_adapter(vs: &mut VarStore, dir: &Path) -> Result<()> {
    let file = dir.join(ADAPTER_WEIGHTS);
    if !file.exists() {
        return Err(ModelError::io(
            &file,
            "no such file (not a PEFT adapter folder)",
        ));
    }
    let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(&file)
        .map_err(|e| ModelError::io(&file, e))?
        .into_iter()
        .map(|(n, t)| {
            // PEFT drops the adapter name on save; files written with it keep `.default`.
            let n = n
                .strip_prefix(PEFT_PREFIX)
                .unwrap_or(&n)
                .replace(".default.", ".");
            (n, t)
        })
        .collect();
    let _guard = tch::no_grad_guard();
    let vars: HashMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| is_adapter_name(n))
        .collect();
    let mut extra: Vec<&String> = tensors.keys().filter(|k| !vars.contains_key(*k)).collect();
    if !extra.is_empty() {
        extra.sort();
        return Err(ModelError::Checkpoint(format!(
            "{}: {} tensor(s) adapt modules this model has no adapter for (first: `{}`); set \
             model.lora.targets to the adapter's target_modules",
            file.display(),
            extra.len(),
            extra[0]
        )));
    }
    for (name, mut var) in vars {
        let src = tensors
            .get(&name)
            .ok_or_else(|| ModelError::MissingTensor(format!("{PEFT_PREFIX}{name}")))?;
        if src.size() != var.size() {
            return Err(ModelError::ShapeMismatch {
                name,
                expected: var.size(),
                found: src.size(),
            });
        }
        if !bool::try_from(src.f_isfinite()?.f_all()?)? {
            return Err(ModelError::Checkpoint(format!(
                "{}: tensor `{name}` holds NaN or infinite values",
                file.display()
            )));
        }
        var.f_copy_(&src.f_to_kind(var.kind())?.f_to_device(var.device())?)?;
    }
    Ok(())
}
