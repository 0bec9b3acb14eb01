//! The request and response bodies of the served endpoints: SGLang's native API (`/generate`,
//! `/update_weights_from_disk`, …, as SGLang's `io_struct.py` names the fields) and OpenAI's
//! `/v1/completions` with vLLM's token-id extensions. Sampling fields rlvr does not implement are
//! accepted only at their no-op values, so a request is never served other than it asked.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A prompt as token ids or text, one or a batch.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompts {
    /// One prompt of token ids.
    Ids(Vec<i64>),
    /// A batch of prompts of token ids.
    IdBatch(Vec<Vec<i64>>),
    /// One text prompt.
    Text(String),
    /// A batch of text prompts.
    TextBatch(Vec<String>),
}

/// SGLang's `sampling_params` (the fields rlvr serves; the others only at their defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingParams {
    /// Softmax temperature (0 = greedy); SGLang's default 1.
    #[serde(default = "one")]
    pub temperature: f64,
    /// Nucleus mass; default 1.
    #[serde(default = "one")]
    pub top_p: f64,
    /// Most likely tokens kept; -1 or 0 = all (SGLang's default -1).
    #[serde(default)]
    pub top_k: i64,
    /// Tokens to generate at most; SGLang's default 128.
    #[serde(default = "default_max_new")]
    pub max_new_tokens: i64,
    /// Token ids that end a sample (kept as its last token).
    #[serde(default)]
    pub stop_token_ids: Vec<i64>,
    /// Samples per prompt.
    #[serde(default = "one_usize")]
    pub n: usize,
    /// Do not stop at the model's end-of-sequence token.
    #[serde(default)]
    pub ignore_eos: bool,
    /// Seed of the samples (SGLang's `sampling_seed`); absent = a fresh seed per request.
    pub sampling_seed: Option<u64>,
    /// rlvr: the random stream of sample 0 (sample `i` draws from `rlvr_stream + i`); with the
    /// seed it makes a served sample equal the in-process one.
    #[serde(default)]
    pub rlvr_stream: u64,
    /// Stop strings: only empty (use `stop_token_ids`).
    #[serde(default)]
    pub stop: Option<Value>,
    /// Accepted, no effect (detokenisation options).
    #[serde(default)]
    pub skip_special_tokens: Option<bool>,
    /// Accepted, no effect.
    #[serde(default)]
    pub spaces_between_special_tokens: Option<bool>,
    /// Accepted, no effect.
    #[serde(default)]
    pub no_stop_trim: Option<bool>,
    /// Only 0.
    #[serde(default)]
    pub min_new_tokens: i64,
    /// Only 0.
    #[serde(default)]
    pub frequency_penalty: f64,
    /// Only 0.
    #[serde(default)]
    pub presence_penalty: f64,
    /// Only 1.
    #[serde(default = "one")]
    pub repetition_penalty: f64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).unwrap_or_else(|_| unreachable!())
    }
}

fn one() -> f64 {
    1.0
}

fn one_usize() -> usize {
    1
}

fn default_max_new() -> i64 {
    128
}

/// `POST /generate` (SGLang `GenerateReqInput`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// Text prompt(s) (needs the model folder's tokenizer).
    pub text: Option<Prompts>,
    /// Token-id prompt(s).
    pub input_ids: Option<Prompts>,
    /// Sampling settings.
    #[serde(default)]
    pub sampling_params: SamplingParams,
    /// Return `meta_info.output_token_logprobs`.
    #[serde(default)]
    pub return_logprob: bool,
    /// The request's id, echoed in `meta_info.id`.
    pub rid: Option<Value>,
    /// Only false: streaming is not served.
    #[serde(default)]
    pub stream: bool,
    /// The LoRA adapter to generate with (its `lora_name`); required while one is loaded.
    pub lora_path: Option<String>,
}

/// SGLang's finish reason.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FinishReasonJson {
    /// Ended by a stop token.
    Stop {
        /// The token that ended it.
        matched: i64,
    },
    /// Reached `max_new_tokens`.
    Length {
        /// Tokens generated.
        length: usize,
    },
}

/// One sample's `meta_info`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetaInfo {
    /// The request id.
    pub id: Value,
    /// Why the sample ended.
    pub finish_reason: FinishReasonJson,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// The weights' version that generated it.
    pub weight_version: String,
    /// `[logprob, token_id, null]` per generated token, when asked for.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub output_token_logprobs: Option<Vec<(f64, i64, Option<String>)>>,
    /// rlvr's extension, with `output_token_logprobs`: the weight version of each generated
    /// token (they differ when the weights changed while the sample generated: partial
    /// rollouts).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub output_token_weight_versions: Option<Vec<String>>,
}

/// `POST /pause_generation`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseGeneration {
    /// SGLang's mode: only `in_place` is served.
    pub mode: Option<String>,
}

/// One sample of `POST /generate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerateOutput {
    /// The decoded text (empty when the model folder has no tokenizer); a final stop token is
    /// not part of it.
    pub text: String,
    /// Generated token ids, a final stop token included.
    pub output_ids: Vec<i64>,
    /// Ids, finish reason, log-probs, weight version.
    pub meta_info: MetaInfo,
}

/// `POST /update_weights_from_disk`.
#[derive(Debug, Clone, Deserialize)]
pub struct UpdateFromDisk {
    /// A HF folder with `*.safetensors` of the served architecture.
    pub model_path: String,
    /// The version the new weights are (`meta_info.weight_version` from then on).
    pub weight_version: Option<String>,
    /// Accepted (only "auto").
    pub load_format: Option<String>,
    /// Accepted, no effect (the server keeps no prefix cache across requests).
    pub flush_cache: Option<bool>,
    /// Accepted: running requests always finish on the old weights first.
    pub abort_all_requests: Option<bool>,
}

/// `POST /load_lora_adapter` (SGLang) and `POST /v1/load_lora_adapter` (vLLM).
#[derive(Debug, Clone, Deserialize)]
pub struct LoadLora {
    /// The name requests use (`lora_path` in `/generate`, `model` in `/v1/completions`).
    pub lora_name: String,
    /// A PEFT adapter folder (adapter_config.json + adapter_model.safetensors) for the served
    /// base model.
    pub lora_path: String,
    /// Accepted (vLLM): a loaded adapter of the same name is always replaced.
    pub load_inplace: Option<bool>,
}

/// `POST /unload_lora_adapter` (SGLang) and `POST /v1/unload_lora_adapter` (vLLM).
#[derive(Debug, Clone, Deserialize)]
pub struct UnloadLora {
    /// The adapter's name.
    pub lora_name: String,
}

/// `POST /init_weights_update_group` (SGLang `InitWeightsUpdateGroupReqInput`).
#[derive(Debug, Clone, Deserialize)]
pub struct InitGroup {
    /// The trainer's TCPStore host.
    pub master_address: String,
    /// The trainer's TCPStore port.
    pub master_port: u16,
    /// This server's rank in the group (the trainer is rank 0).
    pub rank_offset: usize,
    /// Ranks in the group (trainer + servers).
    pub world_size: usize,
    /// The store prefix of the group.
    pub group_name: String,
    /// "gloo" (CPU) or "nccl" (CUDA).
    #[serde(default = "default_backend")]
    pub backend: String,
}

fn default_backend() -> String {
    "gloo".into()
}

/// `POST /update_weights_from_distributed` (SGLang `UpdateWeightsFromDistributedReqInput`).
#[derive(Debug, Clone, Deserialize)]
pub struct UpdateFromDistributed {
    /// Parameter names, in the order the trainer broadcasts them.
    pub names: Vec<String>,
    /// Their dtypes ("float32", "bfloat16", "float16").
    pub dtypes: Vec<String>,
    /// Their shapes.
    pub shapes: Vec<Vec<i64>>,
    /// The group (from `/init_weights_update_group`).
    pub group_name: Option<String>,
    /// The version the new weights are.
    pub weight_version: Option<String>,
    /// Accepted, no effect.
    pub flush_cache: Option<bool>,
}

/// The answer of the weight endpoints (SGLang's shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Success {
    /// Whether it worked.
    pub success: bool,
    /// What happened.
    pub message: String,
}

/// `POST /v1/completions` (OpenAI, with vLLM's `top_k`, `seed`, `stop_token_ids`,
/// `return_tokens_as_token_ids`).
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// Echoed.
    #[serde(default)]
    pub model: Option<String>,
    /// Token ids, a batch of them, text or texts.
    pub prompt: Prompts,
    /// Tokens to generate at most; OpenAI's default 16.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: i64,
    /// Temperature; default 1.
    #[serde(default = "one")]
    pub temperature: f64,
    /// Nucleus mass; default 1.
    #[serde(default = "one")]
    pub top_p: f64,
    /// Most likely tokens kept (vLLM); -1 or 0 = all.
    #[serde(default)]
    pub top_k: i64,
    /// Samples per prompt.
    #[serde(default = "one_usize")]
    pub n: usize,
    /// Seed.
    pub seed: Option<u64>,
    /// Return the sampled tokens' log-probs (0 = only the sampled token; more is not served).
    pub logprobs: Option<u32>,
    /// Stop token ids (vLLM).
    #[serde(default)]
    pub stop_token_ids: Vec<i64>,
    /// Do not stop at end-of-sequence (vLLM).
    #[serde(default)]
    pub ignore_eos: bool,
    /// Name tokens as `token_id:N` (vLLM).
    #[serde(default)]
    pub return_tokens_as_token_ids: bool,
    /// rlvr: the random stream of sample 0.
    #[serde(default)]
    pub rlvr_stream: u64,
    /// Only false.
    #[serde(default)]
    pub stream: bool,
}

fn default_max_tokens() -> i64 {
    16
}

/// `GET /get_model_info`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The folder served.
    pub model_path: String,
    /// The tokenizer's folder, when it has one.
    pub tokenizer_path: Option<String>,
    /// Always true.
    pub is_generation: bool,
    /// The current weights' version.
    pub weight_version: String,
    /// "rlvr": clients may send rlvr's extensions (`rlvr_stream`).
    pub engine: String,
    /// Vocabulary size.
    pub vocab_size: i64,
    /// Context length.
    pub max_positions: i64,
    /// Samples generated together at most.
    pub max_running: usize,
    /// Whether generation is batch-invariant (`rlvr serve --batch-invariant`).
    #[serde(default)]
    pub batch_invariant: bool,
}
