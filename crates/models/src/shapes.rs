//! Model sizes as data: the `config.json` of real checkpoints (Qwen2.5, Qwen3, Llama 3.x), so a
//! randomly initialised model of exactly that shape can be built for benchmarks and memory
//! planning without downloading weights (`--model qwen2.5-0.5b-shape`, or `[model] type =
//! "shape"` with `name` or a `config` file).

use crate::checkpoint::HfModel;
use crate::policy::{configure_policy, update_plan, Adapters, HfPolicy, MixedPrecision};
use crate::token_stats::DEFAULT_CHUNK;
use crate::tokenizer::CharTokenizer;
use documented::DocumentedFields;
use rlvr_core::{CoreError, ModelConfig, Policy};
use serde::{Deserialize, Serialize};
use tch::Device;

/// Built-in shapes: name and the checkpoint's `config.json` text.
pub const SHAPES: [(&str, &str); 13] = [
    ("qwen2.5-0.5b", include_str!("../shapes/qwen2.5-0.5b.json")),
    ("qwen2.5-1.5b", include_str!("../shapes/qwen2.5-1.5b.json")),
    ("qwen2.5-3b", include_str!("../shapes/qwen2.5-3b.json")),
    ("qwen2.5-7b", include_str!("../shapes/qwen2.5-7b.json")),
    ("qwen2.5-14b", include_str!("../shapes/qwen2.5-14b.json")),
    ("qwen2.5-32b", include_str!("../shapes/qwen2.5-32b.json")),
    ("qwen3-0.6b", include_str!("../shapes/qwen3-0.6b.json")),
    ("qwen3-1.7b", include_str!("../shapes/qwen3-1.7b.json")),
    ("qwen3-4b", include_str!("../shapes/qwen3-4b.json")),
    ("qwen3-8b", include_str!("../shapes/qwen3-8b.json")),
    ("llama3.2-1b", include_str!("../shapes/llama3.2-1b.json")),
    ("llama3.2-3b", include_str!("../shapes/llama3.2-3b.json")),
    ("llama3.1-8b", include_str!("../shapes/llama3.1-8b.json")),
];

/// The `config.json` text of a built-in shape.
pub fn find(name: &str) -> Option<&'static str> {
    SHAPES.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// The names of the built-in shapes, comma-separated (for error messages).
pub fn names() -> String {
    SHAPES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Configuration of the `shape` model: a real model's architecture, randomly initialised, with
/// a character tokenizer so the built-in tasks run on it.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct ShapeModelConfig {
    /// A built-in shape (qwen2.5-0.5b, qwen2.5-1.5b, …, llama3.1-8b); ignored when `config` is set.
    pub name: String,
    /// A Hugging Face `config.json` file instead of a built-in shape; "" = none.
    pub config: String,
    /// Characters of the character-level tokenizer (ids 0 and 1 are pad and end-of-sequence).
    pub alphabet: String,
    /// Initialisation seed.
    pub seed: i64,
    /// Tokens per chunk of the LM head in the update.
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

impl Default for ShapeModelConfig {
    fn default() -> Self {
        ShapeModelConfig {
            name: "qwen2.5-0.5b".into(),
            config: String::new(),
            alphabet: "0123456789+-*=: ".into(),
            seed: 0,
            chunk: DEFAULT_CHUNK,
            keep_logits_mib: crate::policy::DEFAULT_KEEP_LOGITS_MIB,
            save_attention: crate::backward::DEFAULT_SAVE_ATTENTION,
            keep_projections_mib: crate::policy::DEFAULT_KEEP_PROJECTIONS_MIB,
            keep_in_gradient_memory: crate::backward::DEFAULT_KEEP_IN_GRADIENT_MEMORY,
            checkpointing: true,
            mixed_precision: MixedPrecision::None,
            batch_invariant: false,
            packed_generation: true,
            adapters: Adapters::default(),
        }
    }
}

impl ShapeModelConfig {
    /// The `config.json` text this configuration names.
    pub fn config_text(&self) -> rlvr_core::Result<String> {
        if !self.config.is_empty() {
            return std::fs::read_to_string(&self.config).map_err(|e| {
                CoreError::invalid("model.config", &self.config, format!("cannot read: {e}"))
            });
        }
        find(&self.name).map(str::to_string).ok_or_else(|| {
            CoreError::invalid(
                "model.name",
                &self.name,
                format!("is not a built-in shape; valid: {}", names()),
            )
        })
    }
}

rlvr_core::describe_fields!(ShapeModelConfig, Adapters);
rlvr_core::register!(
    model,
    "shape",
    "a real model's shape (qwen2.5-0.5b … llama3.1-8b, or a config.json), randomly initialised",
    ShapeModelConfig
);

#[typetag::serde(name = "shape")]
impl ModelConfig for ShapeModelConfig {
    fn build(&self, device: Device) -> rlvr_core::Result<Box<dyn Policy>> {
        if self.chunk < 1 {
            return Err(CoreError::invalid(
                "model.chunk",
                self.chunk,
                "must be >= 1",
            ));
        }
        let text = self.config_text()?;
        let model = HfModel::fresh(&text, device, self.seed)?;
        let chars = CharTokenizer::new(&self.alphabet);
        let vocab = model.model.config().vocab_size;
        if chars.vocab_size() > vocab {
            return Err(CoreError::invalid(
                "model.alphabet",
                &self.alphabet,
                format!("needs {} ids, the model has {vocab}", chars.vocab_size()),
            ));
        }
        let plan = update_plan(
            self.chunk,
            self.keep_logits_mib,
            self.checkpointing,
            self.save_attention,
            self.keep_projections_mib,
            self.keep_in_gradient_memory,
        )?;
        Ok(Box::new(configure_policy(
            HfPolicy::new(model, CharTokenizer::PAD),
            device,
            plan,
            self.mixed_precision,
            self.batch_invariant,
            self.packed_generation,
            &self.adapters,
        )?))
    }

    fn codec(&self) -> rlvr_core::Result<Box<dyn rlvr_core::TextCodec>> {
        Ok(Box::new(CharTokenizer::new(&self.alphabet)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hf_config::HfConfig;

    #[test]
    fn every_shape_parses_with_its_published_sizes() {
        for (name, text) in SHAPES {
            let cfg = HfConfig::from_json(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(cfg.num_heads % cfg.num_kv_heads == 0, "{name}");
        }
        let q = HfConfig::from_json(find("qwen2.5-0.5b").unwrap()).unwrap();
        assert_eq!(
            (
                q.hidden_size,
                q.num_layers,
                q.num_heads,
                q.num_kv_heads,
                q.vocab_size
            ),
            (896, 24, 14, 2, 151936)
        );
    }
}
