//! Hugging Face `config.json` of the Llama / Qwen2 / Qwen3 family, parsed from either layout
//! (top-level `rope_theta` + `rope_scaling`, or the newer `rope_parameters`) into a validated
//! runtime configuration (as candle-transformers does).

use crate::error::{ModelError, Result};
use serde::Deserialize;
use std::path::Path;

/// Which architecture of the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `LlamaForCausalLM`: optional attention bias (`attention_bias`).
    Llama,
    /// `Qwen2ForCausalLM`: q/k/v projections with bias.
    Qwen2,
    /// `Qwen3ForCausalLM`: RMS norms on queries and keys per head, explicit head_dim.
    Qwen3,
}

/// Rotary position scaling.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain rotary positions.
    Default,
    /// Llama 3 frequency-dependent scaling (transformers `_compute_llama3_parameters`).
    Llama3 {
        /// Overall factor.
        factor: f64,
        /// Low-frequency factor.
        low_freq_factor: f64,
        /// High-frequency factor.
        high_freq_factor: f64,
        /// Context length of the original training.
        original_max_position_embeddings: f64,
    },
}

/// The validated runtime configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct HfConfig {
    /// Architecture.
    pub arch: Arch,
    /// Vocabulary size.
    pub vocab_size: i64,
    /// Hidden size.
    pub hidden_size: i64,
    /// MLP inner size.
    pub intermediate_size: i64,
    /// Number of decoder layers.
    pub num_layers: i64,
    /// Query heads.
    pub num_heads: i64,
    /// Key/value heads (grouped-query attention).
    pub num_kv_heads: i64,
    /// Size of one head.
    pub head_dim: i64,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary base θ.
    pub rope_theta: f64,
    /// Rotary scaling.
    pub rope_scaling: RopeScaling,
    /// Bias on q/k/v projections.
    pub qkv_bias: bool,
    /// Bias on the output projection.
    pub o_bias: bool,
    /// Bias on the MLP projections.
    pub mlp_bias: bool,
    /// LM head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Longest supported position.
    pub max_position_embeddings: i64,
}

#[derive(Debug, Deserialize)]
struct RawRope {
    rope_theta: Option<f64>,
    rope_type: Option<String>,
    #[serde(rename = "type")]
    type_: Option<String>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    architectures: Option<Vec<String>>,
    vocab_size: i64,
    hidden_size: i64,
    intermediate_size: i64,
    num_hidden_layers: i64,
    num_attention_heads: i64,
    num_key_value_heads: Option<i64>,
    head_dim: Option<i64>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<RawRope>,
    rope_parameters: Option<RawRope>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    tie_word_embeddings: Option<bool>,
    max_position_embeddings: Option<i64>,
    hidden_act: Option<String>,
}

impl HfConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<HfConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_json(&text).map_err(|e| e.in_file(path))
    }

    /// Parses and validates the JSON text of a `config.json`.
    pub fn from_json(text: &str) -> Result<HfConfig> {
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| ModelError::Config(e.to_string()))?;
        let model_type = raw.model_type.clone().unwrap_or_default();
        let arch = match model_type.as_str() {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            other => {
                let archs = raw.architectures.clone().unwrap_or_default().join(", ");
                return Err(ModelError::Unsupported(format!(
                    "model_type `{other}` ({archs}); supported: llama, qwen2, qwen3"
                )));
            }
        };
        if let Some(act) = &raw.hidden_act {
            if act != "silu" {
                return Err(ModelError::Unsupported(format!(
                    "hidden_act `{act}`; supported: silu"
                )));
            }
        }
        let rope = raw.rope_parameters.as_ref().or(raw.rope_scaling.as_ref());
        let rope_theta = raw
            .rope_theta
            .or_else(|| rope.and_then(|r| r.rope_theta))
            .unwrap_or(10000.0);
        let rope_type = rope
            .and_then(|r| r.rope_type.clone().or_else(|| r.type_.clone()))
            .unwrap_or_else(|| "default".into());
        let rope_scaling = match (rope_type.as_str(), rope) {
            ("default", _) | (_, None) => RopeScaling::Default,
            ("llama3", Some(r)) => RopeScaling::Llama3 {
                factor: r
                    .factor
                    .ok_or_else(|| ModelError::Config("llama3 rope needs `factor`".into()))?,
                low_freq_factor: r.low_freq_factor.unwrap_or(1.0),
                high_freq_factor: r.high_freq_factor.unwrap_or(4.0),
                original_max_position_embeddings: r
                    .original_max_position_embeddings
                    .unwrap_or(8192.0),
            },
            (other, _) => {
                return Err(ModelError::Unsupported(format!(
                    "rope type `{other}`; supported: default, llama3"
                )));
            }
        };
        let num_kv_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        let head_dim = raw
            .head_dim
            .unwrap_or(raw.hidden_size / raw.num_attention_heads.max(1));
        let cfg = HfConfig {
            arch,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_layers: raw.num_hidden_layers,
            num_heads: raw.num_attention_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            qkv_bias: match arch {
                Arch::Qwen2 => true,
                _ => raw.attention_bias.unwrap_or(false),
            },
            o_bias: matches!(arch, Arch::Llama) && raw.attention_bias.unwrap_or(false),
            mlp_bias: raw.mlp_bias.unwrap_or(false),
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(4096),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The number of parameters this configuration describes (the variables the decoder
    /// creates), computed without allocating any.
    pub fn parameter_count(&self) -> i128 {
        let (v, h, i) = (
            self.vocab_size as i128,
            self.hidden_size as i128,
            self.intermediate_size as i128,
        );
        let (q, kv) = (
            (self.num_heads * self.head_dim) as i128,
            (self.num_kv_heads * self.head_dim) as i128,
        );
        let bias = |on: bool, n: i128| if on { n } else { 0 };
        let attention = h * q
            + 2 * h * kv
            + q * h
            + bias(self.qkv_bias, q + 2 * kv)
            + bias(self.o_bias, h)
            + bias(matches!(self.arch, Arch::Qwen3), 2 * self.head_dim as i128);
        let mlp = 3 * h * i + bias(self.mlp_bias, 2 * i + h);
        let layer = attention + mlp + 2 * h;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + head + h + self.num_layers as i128 * layer
    }

    fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_layers),
            ("num_attention_heads", self.num_heads),
            ("num_key_value_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
        ];
        for (name, v) in positive {
            if v <= 0 {
                return Err(ModelError::Config(format!("{name} = {v} must be > 0")));
            }
        }
        let floats = [
            ("rms_norm_eps", self.rms_norm_eps),
            ("rope_theta", self.rope_theta),
        ];
        for (name, v) in floats {
            if !(v.is_finite() && v > 0.0) {
                return Err(ModelError::Config(format!(
                    "{name} = {v} must be a finite number > 0"
                )));
            }
        }
        if self.max_position_embeddings <= 0 {
            return Err(ModelError::Config(format!(
                "max_position_embeddings = {} must be > 0",
                self.max_position_embeddings
            )));
        }
        if let RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } = self.rope_scaling
        {
            let all = [
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            ];
            if !all.iter().all(|v| v.is_finite() && *v > 0.0) || high_freq_factor <= low_freq_factor
            {
                return Err(ModelError::Config(format!(
                    "llama3 rope_scaling needs finite factors > 0 and high_freq_factor > \
                     low_freq_factor, got factor {factor}, low_freq_factor {low_freq_factor}, \
                     high_freq_factor {high_freq_factor}, original_max_position_embeddings \
                     {original_max_position_embeddings}"
                )));
            }
        }
        if self.num_heads % self.num_kv_heads != 0 {
            return Err(ModelError::Config(format!(
                "num_attention_heads {} must be a multiple of num_key_value_heads {}",
                self.num_heads, self.num_kv_heads
            )));
        }
        if self.head_dim % 2 != 0 {
            return Err(ModelError::Config(format!(
                "head_dim {} must be even for rotary positions",
                self.head_dim
            )));
        }
        Ok(())
    }
}
