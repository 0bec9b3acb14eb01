//! The [`Policy`] implementation over a HF-layout decoder, and the registered model configs:
//! `hf` (a Hugging Face folder) and `tiny` (a small Qwen2-style decoder trained from scratch).

use crate::backward::{
    recorded_loss_backward, response_loss_backward, sharded_loss_backward, UpdatePlan,
};
use crate::checkpoint::HfModel;
use crate::error::ModelError;
use crate::generate::generate;
use crate::lora::{self, AdapterSpec, LoraConfig};
use crate::rollout_record::RolloutRecord;
use crate::token_stats::{response_stats, DEFAULT_CHUNK};
use documented::DocumentedFields;
use rlvr_core::{
    CoreError, Generation, ModelConfig, Policy, SamplingConfig, SequenceBatch, StatsNeeds,
    TokenStats,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// A decoder policy.
pub struct HfPolicy {
    /// The model.
    pub model: HfModel,
    /// Padding id used for generated responses.
    pub pad: i64,
    /// Tokens per chunk for token statistics.
    pub chunk: i64,
    /// Activation checkpointing in the update (keep layer inputs, recompute in backward).
    pub checkpoint: bool,
    /// LM-head logits kept from the statistics pass for the gradient pass, in bytes
    /// ([`UpdatePlan::keep_logits_bytes`]).
    pub keep_logits_bytes: i64,
    /// Keep each layer's attention output for the recomputation ([`UpdatePlan::save_attention`]).
    pub save_attention: bool,
    /// Bytes of kept projection outputs ([`UpdatePlan::keep_projection_bytes`]).
    pub keep_projection_bytes: i64,
    /// Keep more in the layers' pending gradients' memory
    /// ([`UpdatePlan::keep_in_gradient_memory`]).
    pub keep_in_gradient_memory: bool,
}

impl HfPolicy {
    /// A policy over `model` with default chunking and no checkpointing.
    pub fn new(model: HfModel, pad: i64) -> HfPolicy {
        HfPolicy {
            model,
            pad,
            chunk: DEFAULT_CHUNK,
            checkpoint: false,
            keep_logits_bytes: crate::backward::DEFAULT_KEEP_LOGITS_BYTES,
            save_attention: crate::backward::DEFAULT_SAVE_ATTENTION,
            keep_projection_bytes: crate::backward::DEFAULT_KEEP_PROJECTION_BYTES,
            keep_in_gradient_memory: crate::backward::DEFAULT_KEEP_IN_GRADIENT_MEMORY,
        }
    }
}

impl HfPolicy {
    /// The update's memory/time plan, with checkpointing on or off.
    fn update_plan(&self, checkpoint: bool) -> UpdatePlan {
        UpdatePlan {
            chunk: self.chunk,
            checkpoint,
            keep_logits_bytes: self.keep_logits_bytes,
            save_attention: self.save_attention,
            keep_projection_bytes: self.keep_projection_bytes,
            keep_in_gradient_memory: self.keep_in_gradient_memory,
        }
    }
}

impl Policy for HfPolicy {
    fn vocab_size(&self) -> i64 {
        self.model.model.config().vocab_size
    }

    fn max_positions(&self) -> Option<i64> {
        Some(self.model.model.config().max_position_embeddings)
    }

    fn device(&self) -> Device {
        self.model.vs.device()
    }

    fn token_stats(
        &self,
        batch: &SequenceBatch,
        needs: &StatsNeeds,
    ) -> rlvr_core::Result<TokenStats> {
        Ok(response_stats(&self.model.model, batch, needs, self.chunk)?)
    }

    fn backward_loss(
        &self,
        batch: &SequenceBatch,
        needs: &StatsNeeds,
        loss_of: &mut dyn FnMut(&TokenStats) -> rlvr_core::Result<Tensor>,
    ) -> rlvr_core::Result<f64> {
        let plan = self.update_plan(self.checkpoint);
        let model = &self.model.model;
        Ok(model.training(|| response_loss_backward(model, batch, needs, plan, loss_of))?)
    }

    fn backward_loss_sharded(
        &self,
        batch: &SequenceBatch,
        needs: &StatsNeeds,
        hooks: &dyn rlvr_core::ShardHooks,
        loss_of: &mut dyn FnMut(&TokenStats) -> rlvr_core::Result<Tensor>,
    ) -> rlvr_core::Result<f64> {
        let plan = self.update_plan(true);
        let model = &self.model.model;
        Ok(model.training(|| sharded_loss_backward(model, batch, needs, plan, hooks, loss_of))?)
    }

    fn supports_sharding(&self) -> bool {
        true
    }

    fn compute_copies(&self) -> Option<(Kind, Vec<String>)> {
        let kind = self.model.model.mixed_kind()?;
        // Linear::forward casts a projection's weight and bias to the compute kind before use;
        // norms, embeddings and the LM head are read as stored.
        let names = self
            .model
            .vs
            .variables()
            .into_iter()
            .filter(|(name, t)| {
                t.requires_grad()
                    && name.starts_with("model.layers.")
                    && (name.ends_with("_proj.weight") || name.ends_with("_proj.bias"))
                    && !name.contains("lora_")
            })
            .map(|(name, _)| name)
            .collect();
        Some((kind, names))
    }

    fn has_frozen_base(&self) -> bool {
        self.model.adapters.is_some()
    }

    fn batch_invariant(&self) -> bool {
        self.model.model.batch_invariant()
    }

    fn set_packed_generation(&mut self, on: bool) {
        self.model.model.set_packed_generation(on);
    }

    fn check_generation_fits(&self, rows: i64, positions: i64) -> rlvr_core::Result<()> {
        Ok(crate::generate::check_rollout_fits(
            &self.model.model,
            rows,
            positions,
            self.device(),
        )?)
    }

    fn merge_adapters(&mut self) -> rlvr_core::Result<()> {
        Ok(self.model.merge_adapters()?)
    }

    fn base_token_stats(
        &self,
        batch: &SequenceBatch,
        needs: &StatsNeeds,
    ) -> rlvr_core::Result<TokenStats> {
        if !self.has_frozen_base() {
            return Err(CoreError::Input(
                "the policy has no adapters, so no frozen base to serve as the reference".into(),
            ));
        }
        let model = &self.model.model;
        Ok(model.without_adapters(|| response_stats(model, batch, needs, self.chunk))?)
    }

    fn generate(
        &self,
        prompt_ids: &Tensor,
        prompt_mask: &Tensor,
        sampling: &SamplingConfig,
        stop_tokens: &[i64],
    ) -> rlvr_core::Result<Generation> {
        Ok(generate(
            &self.model.model,
            prompt_ids,
            prompt_mask,
            sampling,
            stop_tokens,
            self.pad,
        )?)
    }

    fn generate_recorded(
        &self,
        prompt_ids: &Tensor,
        prompt_mask: &Tensor,
        sampling: &SamplingConfig,
        stop_tokens: &[i64],
        budget_bytes: u64,
    ) -> rlvr_core::Result<Generation> {
        let (mut gen, record) = crate::generate::generate_recording(
            &self.model.model,
            prompt_ids,
            prompt_mask,
            sampling,
            stop_tokens,
            self.pad,
            budget_bytes,
        )?;
        gen.record = record.map(|r| {
            let rows = r.rows();
            rlvr_core::ForwardRecord::new(Box::new(r), rows)
        });
        Ok(gen)
    }

    fn backward_loss_recorded(
        &self,
        batch: &SequenceBatch,
        record: &rlvr_core::ForwardRecord,
        needs: &StatsNeeds,
        loss_of: &mut dyn FnMut(&TokenStats) -> rlvr_core::Result<Tensor>,
    ) -> rlvr_core::Result<f64> {
        let plan = self.update_plan(true);
        let model = &self.model.model;
        let rows = Tensor::from_slice(record.rows()).f_to_device(self.device())?;
        record.with_data(|data| match data.downcast_mut::<RolloutRecord>() {
            Some(r) => Ok(model.training(|| {
                recorded_loss_backward(model, batch, r, &rows, needs, plan, loss_of)
            })?),
            None => self.backward_loss(batch, needs, loss_of),
        })
    }

    fn var_store(&self) -> &VarStore {
        &self.model.vs
    }

    fn var_store_mut(&mut self) -> &mut VarStore {
        &mut self.model.vs
    }

    fn tensor_files(&self) -> Option<Vec<(String, Vec<String>)>> {
        self.model.tensor_files()
    }

    fn save(&self, dir: &Path) -> rlvr_core::Result<()> {
        Ok(self.model.save(dir)?)
    }

    fn load(&mut self, dir: &Path) -> rlvr_core::Result<()> {
        let loaded = if self.model.adapters.is_some() {
            lora::load_adapter(&mut self.model.vs, dir)
        } else {
            crate::checkpoint::load_weights(&mut self.model.vs, dir)
        };
        loaded.map_err(ModelError::into_load_error)
    }
}

/// Parameter precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dtype {
    /// 32-bit floats (training).
    F32,
    /// bfloat16 (rollouts and reference passes; log-softmax stays f32).
    Bf16,
}

impl Dtype {
    /// The libtorch kind.
    pub fn kind(self) -> Kind {
        match self {
            Dtype::F32 => Kind::Float,
            Dtype::Bf16 => Kind::BFloat16,
        }
    }
}

/// Precision of the update's matmuls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MixedPrecision {
    /// Compute in the parameters' precision.
    #[default]
    None,
    /// bf16 matmuls and attention over f32 master weights (norms, residuals, log-softmax and
    /// the loss in f32; AdamW moments f32). CUDA only: on a CPU it falls back to f32.
    Bf16,
}

/// The default of `model.keep_logits_mib` ([`crate::backward::DEFAULT_KEEP_LOGITS_BYTES`]).
pub const DEFAULT_KEEP_LOGITS_MIB: i64 = crate::backward::DEFAULT_KEEP_LOGITS_BYTES >> 20;

/// The default of `model.keep_projections_mib` ([`crate::backward::DEFAULT_KEEP_PROJECTION_BYTES`]).
pub const DEFAULT_KEEP_PROJECTIONS_MIB: i64 = crate::backward::DEFAULT_KEEP_PROJECTION_BYTES >> 20;

/// The update plan of a model config: `model.chunk` tokens per LM-head chunk,
/// `model.keep_logits_mib` of kept logits, checkpointing on or off, `model.save_attention`,
/// `model.keep_projections_mib` of kept projection outputs, `model.keep_in_gradient_memory`.
pub(crate) fn update_plan(
    chunk: i64,
    keep_logits_mib: i64,
    checkpoint: bool,
    save_attention: bool,
    keep_projections_mib: i64,
    keep_in_gradient_memory: bool,
) -> rlvr_core::Result<UpdatePlan> {
    for (key, mib) in [
        ("model.keep_logits_mib", keep_logits_mib),
        ("model.keep_projections_mib", keep_projections_mib),
    ] {
        if !(0..=1 << 30).contains(&mib) {
            return Err(CoreError::invalid(key, mib, "must be between 0 and 2^30"));
        }
    }
    Ok(UpdatePlan {
        keep_logits_bytes: keep_logits_mib << 20,
        save_attention,
        keep_projection_bytes: keep_projections_mib << 20,
        keep_in_gradient_memory,
        ..UpdatePlan::new(chunk, checkpoint)
    })
}

/// Applies the memory/precision switches and the LoRA adapters to a freshly built policy.
pub(crate) fn configure_policy(
    mut policy: HfPolicy,
    device: Device,
    plan: UpdatePlan,
    mixed: MixedPrecision,
    batch_invariant: bool,
    packed_generation: bool,
    adapters: &Adapters,
) -> rlvr_core::Result<HfPolicy> {
    policy.chunk = plan.chunk;
    policy.checkpoint = plan.checkpoint;
    policy.keep_logits_bytes = plan.keep_logits_bytes;
    policy.save_attention = plan.save_attention;
    policy.keep_projection_bytes = plan.keep_projection_bytes;
    policy.keep_in_gradient_memory = plan.keep_in_gradient_memory;
    let mut bf16 = mixed == MixedPrecision::Bf16;
    if bf16 && !device.is_cuda() {
        tracing::warn!(
            "model.mixed_precision = \"bf16\" on a CPU: bf16 matmuls are slower than f32 on \
             most CPUs (it is there to check the bf16 path without a GPU; \"none\" computes in f32)"
        );
    }
    if let Some((spec, from)) = adapters.resolve()? {
        if spec.dropout > 0.0 && plan.checkpoint {
            return Err(CoreError::invalid(
                "model.lora.dropout",
                spec.dropout,
                "must be 0 with model.checkpointing = true (recomputing a layer in backward \
                 would draw another dropout mask); set one of them off",
            ));
        }
        // The frozen base in bf16 on CUDA (half the memory); the adapters stay f32.
        let base_kind = if device.is_cuda() {
            bf16 = true;
            Kind::BFloat16
        } else {
            policy.model.vs.kind()
        };
        policy.model.attach_adapters(&spec, base_kind)?;
        if let Some(dir) = from {
            lora::load_adapter(&mut policy.model.vs, &dir)?;
        }
    }
    if bf16 {
        policy.model.model.set_compute_kind(Some(Kind::BFloat16));
    }
    policy.model.model.set_packed_generation(packed_generation);
    if batch_invariant {
        policy
            .model
            .model
            .set_batch_invariant(true)
            .map_err(|e| CoreError::invalid("model.batch_invariant", true, e.to_string()))?;
    }
    Ok(policy)
}

/// The LoRA settings of a model config: `[model.lora]` and `model.adapter`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct Adapters {
    /// Train LoRA adapters over the frozen model ([model.lora]: rank, alpha, dropout, targets,
    /// init, rslora); absent = train every weight.
    pub lora: Option<LoraConfig>,
    /// A PEFT adapter folder (adapter_config.json + adapter_model.safetensors) to start from;
    /// its adapter_config.json sets the LoRA shape. "" = none.
    pub adapter: String,
}

impl Adapters {
    /// The adapter shape and the folder to load adapters from, if any; `[model.lora]` and the
    /// adapter's `adapter_config.json` must agree when both are given.
    pub fn resolve(&self) -> rlvr_core::Result<Option<(AdapterSpec, Option<PathBuf>)>> {
        if self.adapter.is_empty() {
            return Ok(match &self.lora {
                Some(l) => Some((l.spec()?, None)),
                None => None,
            });
        }
        let dir = PathBuf::from(&self.adapter);
        let from_file = lora::read_adapter_config(&dir)?;
        let cfg = match &self.lora {
            None => from_file,
            Some(l) => {
                let same = (l.rank, l.alpha, l.spec()?.targets, l.rslora)
                    == (
                        from_file.rank,
                        from_file.alpha,
                        from_file.spec()?.targets,
                        from_file.rslora,
                    );
                if !same {
                    return Err(CoreError::invalid(
                        "model.lora",
                        format!("rank {} alpha {} targets {:?}", l.rank, l.alpha, l.targets),
                        format!(
                            "differs from the adapter {}'s adapter_config.json (rank {} alpha {} \
                             targets {:?}); remove [model.lora] to use the adapter's",
                            dir.display(),
                            from_file.rank,
                            from_file.alpha,
                            from_file.targets
                        ),
                    ));
                }
                l.clone()
            }
        };
        Ok(Some((cfg.spec()?, Some(dir))))
    }

    /// Whether adapters are trained.
    pub fn enabled(&self) -> bool {
        self.lora.is_some() || !self.adapter.is_empty()
    }
}

/// Configuration of the `hf` model: a Hugging Face folder.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct HfModelConfig {
    /// Folder with config.json and model.safetensors (or a sharded index).
    pub path: PathBuf,
    /// Parameter precision: f32 | bf16.
    pub dtype: Dtype,
    /// Tokens per chunk when computing token statistics.
    pub chunk: i64,
    /// MiB of LM-head logits kept from the statistics pass for the gradient pass in the update,
    /// besides the last chunk's (each kept chunk is not recomputed: less compute, more peak
    /// memory); 0 (the default) recomputes all but the last chunk.
    pub keep_logits_mib: i64,
    /// With checkpointing, keep each decoder layer's attention output, log-sum-exp and
    /// post-attention residual so that the recomputation in backward skips the attention kernel
    /// and the output projection (CPU, f32; `2 · hidden + heads` floats per token and layer).
    pub save_attention: bool,
    /// MiB of the q/k/v, gate and up projections' outputs kept from the forward for the
    /// backward, layer by layer (the last first) while they fit (with `save_attention`;
    /// `(heads + 2 · kv_heads) · head_dim + 2 · intermediate` floats per token and layer): a kept
    /// layer's backward runs none of those products again. 0 (the default) recomputes them.
    pub keep_projections_mib: i64,
    /// With checkpointing, in the first micro-batch after an optimizer step (when the decoder
    /// layers' gradients do not exist yet) also keep LM-head logits, then the last layers'
    /// projection outputs, in the bytes those gradients will take later in the same update less
    /// what the forward keeps until then: each byte kept saves the product that would
    /// recompute it (half the model's width in FLOPs). Live memory stays below the end of the
    /// backward's; under the heap's reuse the measured peak can still rise a little
    /// (docs/performance.md). false keeps only the budgets above.
    pub keep_in_gradient_memory: bool,
    /// Padding id of generated responses (from the tokenizer when loaded through a task).
    pub pad: i64,
    /// Activation checkpointing per decoder layer in the update: keeps layer inputs only and
    /// recomputes each layer in backward (far less memory for long responses, ~30% more compute).
    pub checkpointing: bool,
    /// Matmul precision of the update and rollouts: none | bf16 (for CUDA; on a CPU it runs slowly, to check the bf16 path).
    pub mixed_precision: MixedPrecision,
    /// Batch-invariant passes outside the update (rollouts, log-prob recomputation): a token's
    /// log-prob is bit-identical whichever batch, padding or cache computes it, so the sampler's
    /// log-probs equal the trainer's (rollout/logp_diff_* = 0; `rlvr serve --batch-invariant`
    /// for served rollouts). f32 on the CPU; slower attention.
    pub batch_invariant: bool,
    /// Rollouts on a CPU (f32) multiply packed weights: each rollout first copies the projections
    /// and the LM head into MKL's GEMM layout, which a plain product would redo at every decode
    /// step (about half of a step at a few rows). Costs that copy's memory (about the weights'
    /// size) while the rollout runs; false saves it. No effect on a GPU or with batch_invariant.
    pub packed_generation: bool,
    /// LoRA adapters.
    #[serde(flatten)]
    pub adapters: Adapters,
}

impl Default for HfModelConfig {
    fn default() -> Self {
        HfModelConfig {
            path: PathBuf::from("model"),
            dtype: Dtype::F32,
            chunk: DEFAULT_CHUNK,
            keep_logits_mib: DEFAULT_KEEP_LOGITS_MIB,
            save_attention: crate::backward::DEFAULT_SAVE_ATTENTION,
            keep_projections_mib: DEFAULT_KEEP_PROJECTIONS_MIB,
            keep_in_gradient_memory: crate::backward::DEFAULT_KEEP_IN_GRADIENT_MEMORY,
            pad: 0,
            checkpointing: false,
            mixed_precision: MixedPrecision::None,
            batch_invariant: false,
            packed_generation: true,
            adapters: Adapters::default(),
        }
    }
}

rlvr_core::describe_fields!(HfModelConfig, Adapters);
rlvr_core::register!(
    model,
    "hf",
    "a Hugging Face Llama/Qwen2/Qwen3 folder (safetensors, single or sharded)",
    HfModelConfig
);

#[typetag::serde(name = "hf")]
impl ModelConfig for HfModelConfig {
    fn build(&self, device: Device) -> rlvr_core::Result<Box<dyn Policy>> {
        if self.chunk < 1 {
            return Err(CoreError::invalid(
                "model.chunk",
                self.chunk,
                "must be >= 1",
            ));
        }
        let model = HfModel::load(&self.path, device, self.dtype.kind())?;
        let plan = update_plan(
            self.chunk,
            self.keep_logits_mib,
            self.checkpointing,
            self.save_attention,
            self.keep_projections_mib,
            self.keep_in_gradient_memory,
        )?;
        Ok(Box::new(configure_policy(
            HfPolicy::new(model, self.pad),
            device,
            plan,
            self.mixed_precision,
            self.batch_invariant,
            self.packed_generation,
            &self.adapters,
        )?))
    }

    fn codec(&self) -> rlvr_core::Result<Box<dyn rlvr_core::TextCodec>> {
        Ok(Box::new(crate::tokenizer::HfTokenizer::from_dir(
            &self.path,
        )?))
    }

    fn source(&self) -> String {
        self.path.display().to_string()
    }

    fn files(&self) -> Option<PathBuf> {
        Some(self.path.clone())
    }

    fn with_weights_from(&self, dir: &std::path::Path) -> Option<Box<dyn ModelConfig>> {
        // A LoRA checkpoint holds adapters only: it needs the base.
        (!self.adapters.enabled()).then(|| {
            Box::new(HfModelConfig {
                path: dir.to_path_buf(),
                ..self.clone()
            }) as Box<dyn ModelConfig>
        })
    }
}

/// Configuration of the `tiny` model: a small Qwen2-style decoder initialised from a seed, for
/// training from scratch on CPU with a character tokenizer.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct TinyModelConfig {
    /// Characters of the character-level tokenizer (ids 0 and 1 are pad and end-of-sequence).
    pub alphabet: String,
    /// Vocabulary size: at least the alphabet plus the two specials.
    pub vocab_size: i64,
    /// Hidden size.
    pub hidden_size: i64,
    /// Number of decoder layers.
    pub layers: i64,
    /// Query heads.
    pub heads: i64,
    /// Key/value heads.
    pub kv_heads: i64,
    /// MLP inner size.
    pub intermediate_size: i64,
    /// Initialisation seed.
    pub seed: i64,
    /// Optional checkpoint folder (HF layout, e.g. written by `rlvr sft`) to start from; "" = none.
    pub init: String,
    /// Activation checkpointing per decoder layer in the update.
    pub checkpointing: bool,
    /// Matmul precision: none | bf16 (for CUDA; on a CPU it runs slowly, to check the bf16 path).
    pub mixed_precision: MixedPrecision,
    /// Batch-invariant passes outside the update (rollouts, log-prob recomputation): a token's
    /// log-prob is bit-identical whichever batch, padding or cache computes it, so the sampler's
    /// log-probs equal the trainer's (rollout/logp_diff_* = 0; `rlvr serve --batch-invariant`
    /// for served rollouts). f32 on the CPU; slower attention.
    pub batch_invariant: bool,
    /// Rollouts on a CPU (f32) multiply packed weights: each rollout first copies the projections
    /// and the LM head into MKL's GEMM layout, which a plain product would redo at every decode
    /// step (about half of a step at a few rows). Costs that copy's memory (about the weights'
    /// size) while the rollout runs; false saves it. No effect on a GPU or with batch_invariant.
    pub packed_generation: bool,
    /// LoRA adapters.
    #[serde(flatten)]
    pub adapters: Adapters,
}

impl Default for TinyModelConfig {
    fn default() -> Self {
        TinyModelConfig {
            alphabet: "0123456789+-*=: ".into(),
            vocab_size: 32,
            hidden_size: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            intermediate_size: 192,
            seed: 0,
            init: String::new(),
            checkpointing: false,
            mixed_precision: MixedPrecision::None,
            batch_invariant: false,
            packed_generation: true,
            adapters: Adapters::default(),
        }
    }
}

impl TinyModelConfig {
    /// The HF `config.json` text of this model (Qwen2 layout), so checkpoints load anywhere.
    pub fn config_json(&self) -> String {
        let v = serde_json::json!({
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "max_position_embeddings": 512,
            "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0,
            "tie_word_embeddings": true,
            "hidden_act": "silu",
            "torch_dtype": "float32"
        });
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }
}

rlvr_core::describe_fields!(TinyModelConfig, Adapters);
rlvr_core::register!(
    model,
    "tiny",
    "a small Qwen2-style decoder initialised from a seed (CPU, from scratch)",
    TinyModelConfig
);

#[typetag::serde(name = "tiny")]
impl ModelConfig for TinyModelConfig {
    fn build(&self, device: Device) -> rlvr_core::Result<Box<dyn Policy>> {
        let chars = crate::tokenizer::CharTokenizer::new(&self.alphabet);
        if chars.vocab_size() > self.vocab_size {
            return Err(CoreError::invalid(
                "model.vocab_size",
                self.vocab_size,
                format!("must be >= {} (alphabet + 2 specials)", chars.vocab_size()),
            ));
        }
        let mut model = HfModel::fresh(&self.config_json(), device, self.seed)?;
        if !self.init.is_empty() {
            crate::checkpoint::load_weights(&mut model.vs, std::path::Path::new(&self.init))?;
            model.source = Some(PathBuf::from(&self.init));
        }
        let plan = UpdatePlan::new(DEFAULT_CHUNK, self.checkpointing);
        Ok(Box::new(configure_policy(
            HfPolicy::new(model, 0),
            device,
            plan,
            self.mixed_precision,
            self.batch_invariant,
            self.packed_generation,
            &self.adapters,
        )?))
    }

    fn codec(&self) -> rlvr_core::Result<Box<dyn rlvr_core::TextCodec>> {
        Ok(Box::new(crate::tokenizer::CharTokenizer::new(
            &self.alphabet,
        )))
    }

    fn files(&self) -> Option<PathBuf> {
        (!self.init.is_empty()).then(|| PathBuf::from(&self.init))
    }

    fn with_weights_from(&self, dir: &std::path::Path) -> Option<Box<dyn ModelConfig>> {
        // A LoRA checkpoint holds adapters only: it needs the base.
        (!self.adapters.enabled()).then(|| {
            Box::new(TinyModelConfig {
                init: dir.display().to_string(),
                ..self.clone()
            }) as Box<dyn ModelConfig>
        })
    }
}
