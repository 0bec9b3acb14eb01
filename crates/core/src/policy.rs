//! The policy contract: a model that generates responses and reports token statistics.

use crate::describe::Describe;
use crate::error::Result;
use crate::stats::{StatsNeeds, TokenStats};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{nn::VarStore, Device, Tensor};

/// A batch of prompt + response sequences for teacher-forced statistics.
///
/// Prompts are left-padded to a common width `prompt_len`; responses follow, right-padded. Row `b`
/// at position `t ≥ prompt_len` holds response token `t - prompt_len`.
#[derive(Debug)]
pub struct SequenceBatch {
    /// Token ids `[B, L]` i64.
    pub input_ids: Tensor,
    /// 1 for real tokens (prompt or response), 0 for padding, `[B, L]`.
    pub attention_mask: Tensor,
    /// Width of the (left-padded) prompt block.
    pub prompt_len: i64,
}

/// How responses are sampled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingConfig {
    /// Softmax temperature; 0 means greedy.
    pub temperature: f64,
    /// Nucleus mass kept (1.0 keeps everything).
    pub top_p: f64,
    /// Number of most likely tokens kept (0 keeps everything).
    pub top_k: i64,
    /// Maximum number of generated tokens per response.
    pub max_new_tokens: i64,
    /// Seed of the sampler; equal seeds give equal samples.
    pub seed: u64,
    /// Random stream of the first row: row `r` samples from stream `first_stream + r` of
    /// `seed`, so a data-parallel rank holding rows `first_stream..` of a global batch draws what
    /// one process holding the whole batch would.
    #[serde(default)]
    pub first_stream: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: 64,
            seed: 0,
            first_stream: 0,
        }
    }
}

/// Why a response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FinishReason {
    /// A stop token was produced (it is part of the response).
    Stop,
    /// `max_new_tokens` was reached.
    Length,
}

/// Sampled responses, right-padded.
#[derive(Debug)]
pub struct Generation {
    /// Response token ids `[B, T]` i64 (pad where `mask` is 0).
    pub tokens: Tensor,
    /// 1 for generated tokens, `[B, T]` f32.
    pub mask: Tensor,
    /// Log-prob of each sampled token under the sampling distribution, `[B, T]` f32.
    pub logp: Tensor,
    /// One per row.
    pub finish: Vec<FinishReason>,
    /// What the policy kept of the generating forward passes, when asked to
    /// ([`Policy::generate_recorded`]).
    pub record: Option<ForwardRecord>,
}

/// Activations a policy kept while it generated a batch (opaque to everything but that policy),
/// with the row of the record that each row of the batch it travels with came from. An update
/// at the weights that generated the batch can start from them instead of running its forward
/// ([`Policy::backward_loss_recorded`]). Selecting rows shares the activations.
#[derive(Clone)]
pub struct ForwardRecord {
    data: std::sync::Arc<std::sync::Mutex<Box<dyn std::any::Any + Send>>>,
    rows: Vec<i64>,
}

impl std::fmt::Debug for ForwardRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardRecord")
            .field("rows", &self.rows.len())
            .finish()
    }
}

impl ForwardRecord {
    /// A record of `rows` rows, row `i` of the batch being row `i` of `data`.
    pub fn new(data: Box<dyn std::any::Any + Send>, rows: i64) -> ForwardRecord {
        ForwardRecord {
            data: std::sync::Arc::new(std::sync::Mutex::new(data)),
            rows: (0..rows.max(0)).collect(),
        }
    }

    /// The record of the batch's rows `idx` (an i64 index tensor), in that order.
    pub fn select(&self, idx: &Tensor) -> Result<ForwardRecord> {
        let idx = Vec::<i64>::try_from(idx.f_to_device(Device::Cpu)?)?;
        let rows = idx
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.rows.get(i).copied())
                    .ok_or_else(|| {
                        crate::CoreError::Shape(format!(
                            "row {i} of a recorded batch of {} rows",
                            self.rows.len()
                        ))
                    })
            })
            .collect::<Result<Vec<i64>>>()?;
        Ok(ForwardRecord {
            data: self.data.clone(),
            rows,
        })
    }

    /// The record's row of each row of the batch.
    pub fn rows(&self) -> &[i64] {
        &self.rows
    }

    /// `f` on the recorded activations (which it may release as it reads them).
    pub fn with_data<R>(&self, f: impl FnOnce(&mut (dyn std::any::Any + Send)) -> R) -> R {
        let mut guard = match self.data.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(guard.as_mut())
    }
}

/// A trainable policy over token sequences.
pub trait Policy: Send {
    /// Vocabulary size.
    fn vocab_size(&self) -> i64;
    /// Positions the model can attend over (prompt + response), when it has a limit.
    fn max_positions(&self) -> Option<i64> {
        None
    }
    /// Device the parameters live on.
    fn device(&self) -> Device;
    /// Statistics of the response tokens of `batch` (`[B, L - prompt_len]`). Gradients flow when the
    /// caller has not disabled them.
    fn token_stats(&self, batch: &SequenceBatch, needs: &StatsNeeds) -> Result<TokenStats>;
    /// Computes the statistics of `batch`, the scalar `loss_of(stats)`, and accumulates its
    /// gradient into the parameters; returns the loss value. The default holds the whole graph;
    /// decoders override it to bound memory (chunked statistics, activation checkpointing).
    fn backward_loss(
        &self,
        batch: &SequenceBatch,
        needs: &StatsNeeds,
        loss_of: &mut dyn FnMut(&TokenStats) -> Result<Tensor>,
    ) -> Result<f64> {
        let stats = self.token_stats(batch, needs)?;
        let loss = loss_of(&stats)?;
        let value = loss.f_double_value(&[])?;
        if loss.requires_grad() {
            loss.f_backward()?;
        }
        Ok(value)
    }
    /// [`Policy::backward_loss`] with the parameters sharded over data-parallel ranks (ZeRO-2/3):
    /// `hooks` gathers each part before it is used and reduces its gradients once its backward
    /// is done. Only policies for which [`Policy::supports_sharding`] holds implement it.
    fn backward_loss_sharded(
        &self,
        _batch: &SequenceBatch,
        _needs: &StatsNeeds,
        _hooks: &dyn crate::shard::ShardHooks,
        _loss_of: &mut dyn FnMut(&TokenStats) -> Result<Tensor>,
    ) -> Result<f64> {
        Err(crate::CoreError::Input(
            "this policy cannot train with sharded gradients or parameters".into(),
        ))
    }
    /// Whether [`Policy::backward_loss_sharded`] is implemented (decoders).
    fn supports_sharding(&self) -> bool {
        false
    }
    /// The trainable parameters (by name) that every computation reads only through a cast to
    /// one lower-precision kind, and that kind: with bf16 mixed precision a decoder's projection
    /// weights and biases, whose matmuls run in bf16 over f32 master weights. A copy of such a
    /// parameter in that kind computes exactly what the f32 one does, so a sharded run gathers
    /// them so (half the bytes). `None` (the default): every parameter is read as stored.
    fn compute_copies(&self) -> Option<(tch::Kind, Vec<String>)> {
        None
    }
    /// Samples one response per row of the left-padded prompts `[B, P]`.
    fn generate(
        &self,
        prompt_ids: &Tensor,
        prompt_mask: &Tensor,
        sampling: &SamplingConfig,
        stop_tokens: &[i64],
    ) -> Result<Generation>;
    /// [`Policy::generate`], keeping in [`Generation::record`] what an update at these weights
    /// needs of the forward passes, when that takes at most `budget_bytes`
    /// ([`Policy::backward_loss_recorded`]). The default records nothing.
    fn generate_recorded(
        &self,
        prompt_ids: &Tensor,
        prompt_mask: &Tensor,
        sampling: &SamplingConfig,
        stop_tokens: &[i64],
        budget_bytes: u64,
    ) -> Result<Generation> {
        let _ = budget_bytes;
        self.generate(prompt_ids, prompt_mask, sampling, stop_tokens)
    }
    /// [`Policy::backward_loss`] for a batch generated by [`Policy::generate_recorded`] at the
    /// current weights (the caller's duty: no optimizer step since), its prompts and responses
    /// in the generation's columns: the policy may start from `record` instead of running the
    /// forward again. The default runs [`Policy::backward_loss`].
    fn backward_loss_recorded(
        &self,
        batch: &SequenceBatch,
        record: &ForwardRecord,
        needs: &StatsNeeds,
        loss_of: &mut dyn FnMut(&TokenStats) -> Result<Tensor>,
    ) -> Result<f64> {
        let _ = record;
        self.backward_loss(batch, needs, loss_of)
    }
    /// The trainable parameters.
    fn var_store(&self) -> &VarStore;
    /// The trainable parameters, mutably (optimiser, loading).
    fn var_store_mut(&mut self) -> &mut VarStore;
    /// Writes the policy to a folder in its native layout (HF for transformers; a PEFT adapter
    /// folder when only adapters are trained).
    fn save(&self, dir: &Path) -> Result<()>;
    /// The tensor files [`Policy::save`] writes and the parameters each holds, when a writer may
    /// stream the tensors into them itself (a checkpoint of sharded parameters); `None` when
    /// `save` must see the whole parameters (an adapter folder).
    fn tensor_files(&self) -> Option<Vec<(String, Vec<String>)>> {
        None
    }
    /// Reads back what [`Policy::save`] wrote into the parameters (shapes and names checked).
    fn load(&mut self, dir: &Path) -> Result<()>;
    /// Refuses, before anything is allocated, generating `rows` responses of up to `positions`
    /// positions together when that cannot fit the device's memory (a CPU's: the kernel would
    /// kill the process instead of failing an allocation). Nothing to check by default.
    fn check_generation_fits(&self, _rows: i64, _positions: i64) -> Result<()> {
        Ok(())
    }
    /// Folds trained adapters into the weights (LoRA's merge): afterwards [`Policy::save`] writes
    /// a plain model. Nothing to do for a policy without adapters.
    fn merge_adapters(&mut self) -> Result<()> {
        Ok(())
    }
    /// Whether the policy trains adapters over frozen base weights (LoRA): the base is then the
    /// reference policy ([`Policy::base_token_stats`]), without a second copy of the weights.
    fn has_frozen_base(&self) -> bool {
        false
    }
    /// Whether passes outside the update are batch-invariant (a token's log-prob the same bit
    /// for bit in any batch, padding or cache): the trainer then keeps its old-policy pass,
    /// whose log-probs are the ones a sampler's are compared with.
    fn batch_invariant(&self) -> bool {
        false
    }
    /// Whether generation may hold a packed copy of the weights (rlvr_models'
    /// `model.packed_generation`: faster CPU rollouts for a copy of the weights' size); sharded
    /// runs switch it off, their point being memory. Nothing to switch by default.
    fn set_packed_generation(&mut self, _on: bool) {}
    /// Statistics of `batch` under the frozen base model (see [`Policy::has_frozen_base`]).
    fn base_token_stats(&self, _batch: &SequenceBatch, _needs: &StatsNeeds) -> Result<TokenStats> {
        Err(crate::CoreError::Input(
            "this policy has no frozen base model to serve as the reference".into(),
        ))
    }
}

/// Text ↔ token ids.
pub trait TextCodec: Send + Sync {
    /// Encodes text (no special tokens added).
    fn encode(&self, text: &str) -> Result<Vec<i64>>;
    /// Decodes ids, skipping special tokens.
    fn decode(&self, ids: &[i64]) -> Result<String>;
    /// Ids that end a response.
    fn stop_tokens(&self) -> Vec<i64>;
    /// Id used for padding.
    fn pad_token(&self) -> i64;
    /// The prompt text the policy sees for `problem`: its prompt as it is; a chat model's codec
    /// renders the whole conversation through its chat template instead.
    fn render_prompt(&self, problem: &crate::Problem) -> Result<String> {
        Ok(problem.prompt.clone())
    }
}

/// Serialisable, tagged configuration of a model (`type = "tiny-char"`, `type = "hf"`).
#[typetag::serde(tag = "type")]
pub trait ModelConfig: Describe + Send + Sync {
    /// Validates and constructs the policy on `device`.
    fn build(&self, device: tch::Device) -> Result<Box<dyn Policy>>;
    /// The text codec (tokenizer) that goes with this model.
    fn codec(&self) -> Result<Box<dyn TextCodec>>;
    /// The files the model is built from, if any (a Hugging Face folder, an initial checkpoint).
    fn files(&self) -> Option<std::path::PathBuf> {
        None
    }
    /// The same model built from the Hugging Face folder `dir` (a run checkpoint's `model/`)
    /// instead of [`ModelConfig::files`], when it can be: how a run resumes after its model's
    /// files are gone.
    fn with_weights_from(&self, _dir: &Path) -> Option<Box<dyn ModelConfig>> {
        None
    }
    /// What the model is, for people: a Hugging Face folder's path, else the registered name.
    fn source(&self) -> String {
        self.typetag_name().to_string()
    }
}
