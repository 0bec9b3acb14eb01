//! One decoder implementation for the Llama / Qwen2 / Qwen3 family (docs/design.md §6): RMSNorm, rotary
//! positions (f32 tables, `rope_theta`, llama3 scaling), grouped-query attention, SwiGLU, Qwen2 q/k/v
//! bias, Qwen3 per-head q/k norms, tied or untied embeddings. Follows transformers'
//! `modeling_llama.py` / `modeling_qwen2.py` / `modeling_qwen3.py` (eager attention).
//!
//! Positions are per row (left-padded batches). The KV cache lives outside the model
//! ([`KvCache`]), so one model generates with a cache and trains without one. Hidden states and
//! the LM head are separate so token statistics can be computed in chunks.

use crate::error::Result;
use crate::hf_config::{Arch, ModelConfig, RopeScaling};
use tch::nn::{Init, Path as VsPath};
use tch::{Kind, Tensor};

/// A linear layer `y = x Wᵀ + b` with HF parameter names (`weight`, `bias`).
#[derive(Debug)]
struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    fn new(p: VsPath, input: i64, output: i64, bias: bool) -> Linear {
        let bound = 1.0 / (input as f64).sqrt();
        let weight = p.var(
            "weight",
            &[output, input],
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        );
        let bias = bias.then(|| p.var("bias", &[output], Init::Const(0.0)));
        Linear { weight, bias }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.weight, self.bias.as_ref())?)
    }
}

/// RMSNorm computed in f32 (transformers `LlamaRMSNorm`).
fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let kind = x.kind();
    let xf = x.f_to_kind(Kind::Float)?;
    let var = xf
        .f_pow_tensor_scalar(2)?
        .f_mean_dim(-1, true, Kind::Float)?;
    let normed = xf
        .f_mul(&var.f_add_scalar(eps)?.f_rsqrt()?)?
        .f_to_kind(kind)?;
    Ok(weight.f_mul(&normed)?)
}

#[derive(Debug)]
struct Layer {
    input_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    post_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// Per-layer keys and values of the tokens seen so far, `[B, kv_heads, len, head_dim]`.
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> KvCache {
        KvCache::default()
    }

    /// Number of cached positions.
    pub fn len(&self) -> i64 {
        self.layers.first().map(|(k, _)| k.size()[2]).unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The decoder.
#[derive(Debug)]
pub struct Transformer {
    cfg: ModelConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Option<Tensor>,
    inv_freq: Tensor,
}

/// Rotary inverse frequencies in f32 (transformers `_compute_default_rope_parameters` and
/// `_compute_llama3_parameters`).
pub fn inv_freq(cfg: &ModelConfig) -> Result<Tensor> {
    let dim = cfg.head_dim;
    let exponents = Tensor::f_arange_start_step(0, dim, 2, (Kind::Int64, tch::Device::Cpu))?
        .f_to_kind(Kind::Float)?
        .f_div_scalar(dim as f64)?;
    let base = Tensor::from(cfg.rope_theta as f32);
    let inv = base.f_pow(&exponents)?.f_reciprocal()?;
    match cfg.rope_scaling {
        RopeScaling::Default => Ok(inv),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: old,
        } => {
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            let wavelen = inv
                .f_reciprocal()?
                .f_mul_scalar(2.0 * std::f64::consts::PI)?;
            let scaled = inv.f_div_scalar(factor)?;
            let llama = scaled.f_where_self(&wavelen.f_gt(low_wavelen)?, &inv)?;
            let smooth = wavelen
                .f_reciprocal()?
                .f_mul_scalar(old)?
                .f_sub_scalar(low_freq_factor)?
                .f_div_scalar(high_freq_factor - low_freq_factor)?;
            let smoothed = smooth
                .f_neg()?
                .f_add_scalar(1.0)?
                .f_mul(&llama.f_div_scalar(factor)?)?
                .f_add(&smooth.f_mul(&llama)?)?;
            let medium = wavelen
                .f_lt(high_wavelen)?
                .f_logical_not()?
                .f_logical_and(&wavelen.f_gt(low_wavelen)?.f_logical_not()?)?;
            Ok(smoothed.f_where_self(&medium, &llama)?)
        }
    }
}

fn rotate_half(x: &Tensor) -> Result<Tensor> {
    let half = x.size().last().copied().unwrap_or(0) / 2;
    let x1 = x.f_narrow(-1, 0, half)?;
    let x2 = x.f_narrow(-1, half, half)?;
    Ok(Tensor::f_cat(&[x2.f_neg()?, x1], -1)?)
}

impl Transformer {
    /// Creates the parameters under `root` with HF names (randomly initialised).
    pub fn new(root: &VsPath, cfg: &ModelConfig) -> Result<Transformer> {
        let m = root / "model";
        let h = cfg.hidden_size;
        let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let embed = (&m / "embed_tokens").var(
            "weight",
            &[cfg.vocab_size, h],
            Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        );
        let mut layers = Vec::new();
        for i in 0..cfg.num_layers {
            let l = &m / "layers" / i;
            let attn = &l / "self_attn";
            let mlp = &l / "mlp";
            let qwen3 = cfg.arch == Arch::Qwen3;
            layers.push(Layer {
                input_norm: (&l / "input_layernorm").var("weight", &[h], Init::Const(1.0)),
                q: Linear::new(&attn / "q_proj", h, nh * hd, cfg.qkv_bias),
                k: Linear::new(&attn / "k_proj", h, nkv * hd, cfg.qkv_bias),
                v: Linear::new(&attn / "v_proj", h, nkv * hd, cfg.qkv_bias),
                o: Linear::new(&attn / "o_proj", nh * hd, h, cfg.o_bias),
                q_norm: qwen3.then(|| (&attn / "q_norm").var("weight", &[hd], Init::Const(1.0))),
                k_norm: qwen3.then(|| (&attn / "k_norm").var("weight", &[hd], Init::Const(1.0))),
                post_norm: (&l / "post_attention_layernorm").var("weight", &[h], Init::Const(1.0)),
                gate: Linear::new(&mlp / "gate_proj", h, cfg.intermediate_size, cfg.mlp_bias),
                up: Linear::new(&mlp / "up_proj", h, cfg.intermediate_size, cfg.mlp_bias),
                down: Linear::new(&mlp / "down_proj", cfg.intermediate_size, h, cfg.mlp_bias),
            });
        }
        let norm = (&m / "norm").var("weight", &[h], Init::Const(1.0));
        let lm_head = (!cfg.tie_word_embeddings).then(|| {
            (root / "lm_head").var(
                "weight",
                &[cfg.vocab_size, h],
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )
        });
        let inv_freq = inv_freq(cfg)?.f_to_device(root.device())?;
        Ok(Transformer {
            cfg: cfg.clone(),
            embed,
            layers,
            norm,
            lm_head,
            inv_freq,
        })
    }

    /// The runtime configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Final-norm hidden states `[B, l, H]` of `input_ids` `[B, l]` at `positions` `[B, l]`.
    /// `key_mask` `[B, past + l]` marks real tokens (1) among the cached and new ones; with a
    /// cache, the new keys and values are appended to it.
    pub fn forward_hidden(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        key_mask: &Tensor,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let (b, l) = (input_ids.size()[0], input_ids.size()[1]);
        let past = cache.as_ref().map(|c| c.len()).unwrap_or(0);
        let mut x = Tensor::f_embedding(&self.embed, input_ids, -1, false, false)?;
        // Rotary tables for these positions, f32.
        let freqs = positions
            .f_to_kind(Kind::Float)?
            .f_unsqueeze(-1)?
            .f_mul(&self.inv_freq.f_view([1, 1, -1])?)?;
        let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?;
        let cos = emb.f_cos()?.f_unsqueeze(1)?.f_to_kind(x.kind())?;
        let sin = emb.f_sin()?.f_unsqueeze(1)?.f_to_kind(x.kind())?;
        // Allowed keys: real tokens at or before each query (absolute index past + i).
        let q_idx = Tensor::f_arange(l, (Kind::Int64, x.device()))?
            .f_add_scalar(past)?
            .f_view([1, 1, l, 1])?;
        let k_idx =
            Tensor::f_arange(past + l, (Kind::Int64, x.device()))?.f_view([1, 1, 1, past + l])?;
        let causal = k_idx.f_le_tensor(&q_idx)?;
        let real = key_mask.f_gt(0)?.f_view([b, 1, 1, past + l])?;
        let blocked = causal.f_logical_and(&real)?.f_logical_not()?;
        let (nh, nkv, hd) = (self.cfg.num_heads, self.cfg.num_kv_heads, self.cfg.head_dim);
        let scale = (hd as f64).powf(-0.5);
        if let Some(c) = cache.as_deref_mut() {
            if c.layers.is_empty() {
                c.layers = Vec::with_capacity(self.layers.len());
            }
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let hn = rms_norm(&x, &layer.input_norm, self.cfg.rms_norm_eps)?;
            let mut q = layer.q.forward(&hn)?.f_view([b, l, nh, hd])?;
            let mut k = layer.k.forward(&hn)?.f_view([b, l, nkv, hd])?;
            let v = layer
                .v
                .forward(&hn)?
                .f_view([b, l, nkv, hd])?
                .f_transpose(1, 2)?;
            if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                q = rms_norm(&q, qn, self.cfg.rms_norm_eps)?;
                k = rms_norm(&k, kn, self.cfg.rms_norm_eps)?;
            }
            let q = q.f_transpose(1, 2)?;
            let k = k.f_transpose(1, 2)?;
            let q = q.f_mul(&cos)?.f_add(&rotate_half(&q)?.f_mul(&sin)?)?;
            let mut k = k.f_mul(&cos)?.f_add(&rotate_half(&k)?.f_mul(&sin)?)?;
            let mut v = v;
            if let Some(c) = cache.as_deref_mut() {
                if let Some((ck, cv)) = c.layers.get(i) {
                    k = Tensor::f_cat(&[ck, &k], 2)?;
                    v = Tensor::f_cat(&[cv, &v], 2)?;
                }
                if i < c.layers.len() {
                    c.layers[i] = (k.shallow_clone(), v.shallow_clone());
                } else {
                    c.layers.push((k.shallow_clone(), v.shallow_clone()));
                }
            }
            let rep = nh / nkv;
            let (k, v) = if rep > 1 {
                (
                    k.f_repeat_interleave_self_int(rep, 1, None)?,
                    v.f_repeat_interleave_self_int(rep, 1, None)?,
                )
            } else {
                (k, v)
            };
            let scores = q.f_matmul(&k.f_transpose(-2, -1)?)?.f_mul_scalar(scale)?;
            let scores = scores
                .f_to_kind(Kind::Float)?
                .f_masked_fill(&blocked, f64::from(f32::MIN))?;
            let attn = scores.f_softmax(-1, Kind::Float)?.f_to_kind(q.kind())?;
            let out = attn
                .f_matmul(&v)?
                .f_transpose(1, 2)?
                .f_reshape([b, l, nh * hd])?;
            x = x.f_add(&layer.o.forward(&out)?)?;
            let hn = rms_norm(&x, &layer.post_norm, self.cfg.rms_norm_eps)?;
            let mlp = layer.down.forward(
                &layer
                    .gate
                    .forward(&hn)?
                    .f_silu()?
                    .f_mul(&layer.up.forward(&hn)?)?,
            )?;
            x = x.f_add(&mlp)?;
        }
        rms_norm(&x, &self.norm, self.cfg.rms_norm_eps)
    }

    /// Logits `[..., V]` of hidden states `[..., H]` (the LM head, tied or not).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let w = self.lm_head.as_ref().unwrap_or(&self.embed);
        Ok(hidden.f_matmul(&w.f_tr()?)?)
    }

    /// Teacher-forced logits of a left-padded batch, positions = cumsum(mask) − 1.
    pub fn forward_logits(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let positions = positions_from_mask(attention_mask)?;
        let hidden = self.forward_hidden(input_ids, &positions, attention_mask, None)?;
        self.logits(&hidden)
    }
}

/// cumsum(mask) − 1 clamped at 0, per row (positions of a left-padded batch).
pub fn positions_from_mask(mask: &Tensor) -> Result<Tensor> {
    Ok(mask
        .f_to_kind(Kind::Int64)?
        .f_cumsum(-1, Kind::Int64)?
        .f_sub_scalar(1)?
        .f_clamp_min(0)?)
}
