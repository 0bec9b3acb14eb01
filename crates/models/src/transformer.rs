//! One decoder implementation for the Llama / Qwen2 / Qwen3 family (docs/design.md §6): RMSNorm, rotary
//! positions (f32 tables, `rope_theta`, llama3 scaling), grouped-query attention, SwiGLU, Qwen2 q/k/v
//! bias, Qwen3 per-head q/k norms, tied or untied embeddings. Follows transformers'
//! `modeling_llama.py` / `modeling_qwen2.py` / `modeling_qwen3.py` (sdpa attention).
//!
//! Positions are per row (left-padded batches). Attention goes through libtorch's fused
//! `scaled_dot_product_attention` (GQA without repeated K/V). The KV cache lives outside the model
//! ([`KvCache`], preallocated), so one model generates with a cache and trains without one; layers
//! are callable one at a time for activation checkpointing. Hidden states and
//! the LM head are separate so token statistics can be computed in chunks.

use crate::error::Result;
use crate::hf_config::{Arch, HfConfig, RopeScaling};
use crate::lora::{Adapter, AdapterSpec, Module};
use rlvr_kernels::PackedLinear;
use std::cell::{Cell, RefCell};
use tch::nn::{Init, Path as VsPath};
use tch::{Device, Kind, Tensor};

/// A linear layer `y = x Wᵀ + b` with HF parameter names (`weight`, `bias`), optionally with a
/// LoRA adapter ([`crate::lora`]).
#[derive(Debug)]
struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    adapter: Option<Adapter>,
    /// The weight packed for generation ([`Transformer::pack_for_generation`]).
    packed: RefCell<Option<PackedLinear>>,
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
        Linear {
            weight,
            bias,
            adapter: None,
            packed: RefCell::new(None),
        }
    }

    /// `x Wᵀ + b` computed in `kind` (weights cast when they are stored in another precision:
    /// mixed precision keeps f32 master weights and runs the matmul in bf16), plus the adapter's
    /// term when `adapters` says so; in a batch-invariant pass (f32) every product is
    /// [`rlvr_kernels::invariant_linear`].
    fn forward(
        &self,
        x: &Tensor,
        kind: Kind,
        adapters: AdapterUse,
        invariant: bool,
    ) -> Result<Tensor> {
        let packed = self.packed.borrow();
        let base = if invariant {
            rlvr_kernels::invariant_linear(x, &self.weight, self.bias.as_ref())?
        } else if let (Some(p), Kind::Float) = (packed.as_ref(), x.kind()) {
            p.forward(x, self.bias.as_ref())?
        } else if self.weight.kind() == kind && x.kind() == kind {
            x.f_linear(&self.weight, self.bias.as_ref())?
        } else {
            let bias = self.bias.as_ref().map(|b| b.f_to_kind(kind)).transpose()?;
            x.f_to_kind(kind)?
                .f_linear(&self.weight.f_to_kind(kind)?, bias.as_ref())?
        };
        match (&self.adapter, adapters) {
            (Some(a), AdapterUse::On { training }) => {
                Ok(base.f_add(&a.delta(x, kind, training, invariant)?)?)
            }
            _ => Ok(base),
        }
    }
}

/// Whether the adapters take part in a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdapterUse {
    /// The base model alone (the frozen reference).
    Off,
    /// With adapters; `training` applies their dropout.
    On {
        /// An update's forward pass (dropout active).
        training: bool,
    },
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

impl Layer {
    fn linear(&self, module: Module) -> &Linear {
        match module {
            Module::Q => &self.q,
            Module::K => &self.k,
            Module::V => &self.v,
            Module::O => &self.o,
            Module::Gate => &self.gate,
            Module::Up => &self.up,
            Module::Down => &self.down,
        }
    }

    fn linear_mut(&mut self, module: Module) -> &mut Linear {
        match module {
            Module::Q => &mut self.q,
            Module::K => &mut self.k,
            Module::V => &mut self.v,
            Module::O => &mut self.o,
            Module::Gate => &mut self.gate,
            Module::Up => &mut self.up,
            Module::Down => &mut self.down,
        }
    }

    /// The layer's tensors that can train: its norms, and each projection's weight, bias and
    /// adapter.
    fn tensors(&self) -> Vec<&Tensor> {
        let mut out = vec![&self.input_norm, &self.post_norm];
        out.extend(self.q_norm.iter().chain(self.k_norm.iter()));
        for l in [
            &self.q, &self.k, &self.v, &self.o, &self.gate, &self.up, &self.down,
        ] {
            out.push(&l.weight);
            out.extend(l.bias.iter());
            if let Some(adapter) = &l.adapter {
                out.extend(adapter.tensors());
            }
        }
        out
    }
}

/// The old row of each row of a batch compacted to its live rows ([`KvCache::compact`]): live
/// rows below the new size stay; the dead ones there are filled, in order, by the live rows
/// beyond it.
pub fn compaction_order(alive: &[bool]) -> Vec<i64> {
    let n = alive.iter().filter(|&&a| a).count();
    let mut movers = (n..alive.len()).filter(|&j| alive[j]);
    (0..n)
        .map(|j| {
            if alive[j] {
                j as i64
            } else {
                // As many live rows lie beyond n as dead rows below it.
                movers.next().unwrap_or(j) as i64
            }
        })
        .collect()
}

/// Per-layer keys and values of the tokens seen so far, preallocated to a capacity and written in
/// place (`[B, kv_heads, capacity, head_dim]`), so a decode step never copies the cache. Rows can
/// be selected (finished rows leave the batch) or repeated (one prefill shared by n samples).
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    len: i64,
    capacity: i64,
}

impl KvCache {
    /// An empty cache that grows to what the first forward pass needs (and reallocates beyond it).
    pub fn new() -> KvCache {
        KvCache::default()
    }

    /// An empty cache preallocated to `capacity` positions (prompt + `max_new_tokens`).
    pub fn with_capacity(capacity: i64) -> KvCache {
        KvCache {
            capacity,
            ..KvCache::default()
        }
    }

    /// Number of cached positions.
    pub fn len(&self) -> i64 {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Allocated positions per row.
    pub fn capacity(&self) -> i64 {
        self.capacity
    }

    /// Keeps the rows `index` (i64 `[R]`, in that order, repeats allowed) of every layer: finished
    /// rows leave the batch, and a prefilled prompt is expanded to its samples.
    /// Only the cached positions are copied; the new buffers' later positions are left
    /// unwritten (nothing reads a position before `append` writes it).
    pub fn select_rows(&mut self, index: &Tensor) -> Result<()> {
        let rows = index.size()[0];
        for (k, v) in self.layers.iter_mut() {
            for t in [k, v] {
                let mut size = t.size();
                size[0] = rows;
                let new = Tensor::f_empty(size.as_slice(), (t.kind(), t.device()))?;
                if self.len > 0 {
                    new.f_narrow(2, 0, self.len)?
                        .f_copy_(&t.f_narrow(2, 0, self.len)?.f_index_select(0, index)?)?;
                }
                *t = new;
            }
        }
        Ok(())
    }

    /// Drops the rows whose `alive` entry is false, in place: the batch shrinks to its `R` live
    /// rows, and each dead row among the first `R` takes the cache of a live row from beyond
    /// them (the first such row fills the first hole), so only those rows' cached positions are
    /// copied — a few rows, where keeping the order would move nearly every row. Returns the old
    /// row of each new row (`[R]`), by which callers reorder their per-row state. The buffers
    /// stay allocated until the cache is dropped.
    pub fn compact(&mut self, alive: &[bool]) -> Result<Vec<i64>> {
        let order = compaction_order(alive);
        let n = order.len() as i64;
        let moved: Vec<(i64, i64)> = order
            .iter()
            .enumerate()
            .filter(|&(j, &from)| from != j as i64)
            .map(|(j, &from)| (from, j as i64))
            .collect();
        for (k, v) in self.layers.iter_mut() {
            for t in [k, v] {
                if self.len > 0 && !moved.is_empty() {
                    let device = t.device();
                    let from: Vec<i64> = moved.iter().map(|m| m.0).collect();
                    let to: Vec<i64> = moved.iter().map(|m| m.1).collect();
                    let from = Tensor::from_slice(&from).f_to_device(device)?;
                    let to = Tensor::from_slice(&to).f_to_device(device)?;
                    let mut cached = t.f_narrow(2, 0, self.len)?;
                    let rows = cached.f_index_select(0, &from)?;
                    let _ = cached.f_index_copy_(0, &to, &rows)?;
                }
                *t = t.f_narrow(0, 0, n)?;
            }
        }
        Ok(order)
    }

    /// Writes layer `i`'s new keys and values `[B, kv, l, hd]` after the cached positions and
    /// returns all keys and values so far (views of the buffer).
    fn append(&mut self, i: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let size = k.size();
        let (b, nkv, l, hd) = (size[0], size[1], size[2], size[3]);
        let need = self.len + l;
        if i == self.layers.len() {
            let cap = self.capacity.max(need);
            let opts = (k.kind(), k.device());
            self.layers.push((
                Tensor::f_zeros([b, nkv, cap, hd], opts)?,
                Tensor::f_zeros([b, nkv, cap, hd], opts)?,
            ));
        }
        let len = self.len;
        let (ck, cv) = &mut self.layers[i];
        if ck.size()[2] < need {
            // Past the preallocated capacity: grow geometrically, copying once.
            let cap = need.max(2 * ck.size()[2]);
            let grow = |old: &Tensor| -> Result<Tensor> {
                let new = Tensor::f_zeros([b, nkv, cap, hd], (old.kind(), old.device()))?;
                new.f_narrow(2, 0, len)?
                    .f_copy_(&old.f_narrow(2, 0, len)?)?;
                Ok(new)
            };
            *ck = grow(ck)?;
            *cv = grow(cv)?;
        }
        ck.f_narrow(2, len, l)?.f_copy_(k)?;
        cv.f_narrow(2, len, l)?.f_copy_(v)?;
        Ok((ck.f_narrow(2, 0, need)?, cv.f_narrow(2, 0, need)?))
    }

    /// The rows of `parts` stacked in order, each part's last `keep` cached positions placed
    /// right-aligned in the first `len` positions of a buffer of `capacity` (continuous batching:
    /// prefilled requests join a running batch). Positions left of a part's block are zero; the
    /// caller's key mask hides them.
    pub fn stack_right_aligned(
        parts: &[(&KvCache, i64)],
        len: i64,
        capacity: i64,
    ) -> Result<KvCache> {
        let parts: Vec<&(&KvCache, i64)> =
            parts.iter().filter(|(c, _)| !c.layers.is_empty()).collect();
        let Some((first, _)) = parts.first() else {
            return Ok(KvCache::with_capacity(capacity));
        };
        let rows: i64 = parts.iter().map(|(c, _)| c.layers[0].0.size()[0]).sum();
        let mut layers = Vec::with_capacity(first.layers.len());
        for i in 0..first.layers.len() {
            let size = first.layers[i].0.size();
            let (nkv, hd) = (size[1], size[3]);
            let opts = (first.layers[i].0.kind(), first.layers[i].0.device());
            let k = Tensor::f_zeros([rows, nkv, capacity, hd], opts)?;
            let v = Tensor::f_zeros([rows, nkv, capacity, hd], opts)?;
            let mut at = 0;
            for (part, keep) in &parts {
                let (pk, pv) = &part.layers[i];
                let b = pk.size()[0];
                let keep = (*keep).min(part.len).min(len);
                let from = part.len - keep;
                k.f_narrow(0, at, b)?
                    .f_narrow(2, len - keep, keep)?
                    .f_copy_(&pk.f_narrow(2, from, keep)?)?;
                v.f_narrow(0, at, b)?
                    .f_narrow(2, len - keep, keep)?
                    .f_copy_(&pv.f_narrow(2, from, keep)?)?;
                at += b;
            }
            layers.push((k, v));
        }
        Ok(KvCache {
            layers,
            len,
            capacity,
        })
    }

    /// Marks `l` more positions as cached (after every layer appended them).
    fn advance(&mut self, l: i64) {
        self.len += l;
        self.capacity = self
            .layers
            .first()
            .map(|(k, _)| k.size()[2])
            .unwrap_or(self.capacity);
    }
}

/// The decoder.
#[derive(Debug)]
pub struct Transformer {
    cfg: HfConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Option<Tensor>,
    /// The LM head's weight packed for generation ([`Transformer::pack_for_generation`]).
    head_packed: RefCell<Option<PackedLinear>>,
    inv_freq: Tensor,
    compute: Option<Kind>,
    /// Forward passes run without the adapters (the frozen base as reference policy).
    adapters_off: Cell<bool>,
    /// Forward passes are an update's (adapter dropout active).
    training: Cell<bool>,
    /// Passes without gradients are batch-invariant ([`Transformer::set_batch_invariant`]).
    batch_invariant: bool,
    /// Generation packs its weights ([`Transformer::pack_for_generation`]).
    packed_generation: bool,
}

/// Keeps a model's weights packed for generation ([`Transformer::pack_for_generation`]);
/// dropping it frees the packs. Passes run without gradients while it lives (a packed product
/// has none).
#[must_use = "the packs are freed when the guard is dropped"]
pub struct GenerationPack<'a> {
    model: &'a Transformer,
    _no_grad: tch::NoGradGuard,
}

impl Drop for GenerationPack<'_> {
    fn drop(&mut self) {
        self.model.unpack();
    }
}

/// What every layer of one forward pass shares: rotary tables and the attention mask.
#[derive(Debug)]
pub struct Frame {
    cos: Tensor,
    sin: Tensor,
    /// `[B, 1, l, past + l]`, true where a query may attend to a key; `None` when no key is
    /// padding, so the kernel's own causal rule (or none, for one new token) is exact.
    allowed: Option<Tensor>,
    /// Whether the kernel applies the causal rule itself (`allowed` is `None`, no cache).
    causal: bool,
    /// `allowed` as the additive mask (0 / −∞) the CPU flash kernel takes, made once.
    additive: std::cell::OnceCell<Tensor>,
}

impl Frame {
    /// The mask for [`Tensor::f_internal_scaled_dot_product_flash_attention_for_cpu`]: `None`
    /// without padding (the kernel's causal flag), else `allowed` as 0 / −∞ in `kind` — the
    /// conversion `scaled_dot_product_attention` makes of a boolean mask before calling it.
    fn flash_mask(&self, kind: Kind) -> Result<Option<&Tensor>> {
        let Some(allowed) = &self.allowed else {
            return Ok(None);
        };
        if self.additive.get().is_none() {
            let mask = Tensor::f_zeros(allowed.size(), (kind, allowed.device()))?
                .f_masked_fill(&allowed.f_logical_not()?, f64::NEG_INFINITY)?;
            let _ = self.additive.set(mask);
        }
        Ok(self.additive.get())
    }

    /// Which keys each query may see, `[B, l, keys]` bool contiguous (what the fused kernels
    /// derive themselves when `allowed` is `None`).
    fn allowed_keys(&self, b: i64, l: i64, keys: i64) -> Result<Tensor> {
        if let Some(a) = &self.allowed {
            return Ok(a.f_reshape([b, l, keys])?.f_contiguous()?);
        }
        let device = self.cos.device();
        let all = Tensor::f_ones([b, l, keys], (Kind::Bool, device))?;
        if !self.causal {
            return Ok(all);
        }
        Ok(all.f_tril(keys - l)?)
    }
}

/// What a decoder layer's forward keeps ([`Transformer::layer_saving`]) so that its backward
/// recomputes only the q/k/v projections and the MLP's gate and up: the attention kernel and the
/// output projection are not run again (their inputs and outputs are here; FlashAttention's
/// backward needs only the output and the log-sum-exp besides q, k, v — Dao et al. 2022,
/// arXiv 2205.14135, Algorithm 4). `2 · hidden + heads` floats per token, and
/// `(heads + 2 · kv_heads) · head_dim + 2 · intermediate` more where the projections are kept too
/// (`model.keep_projections_mib`).
#[derive(Debug)]
pub struct SavedAttention {
    /// The attention kernel's output `[B, heads, l, head_dim]`.
    pub out: Tensor,
    /// Its log-sum-exp per query, `[B, heads, l]`.
    pub lse: Tensor,
    /// The residual stream after attention, `x + out Woᵀ`, `[B, l, H]`.
    pub mid: Tensor,
    /// The MLP's gate and up projections `[B, l, intermediate]` each, where the forward kept
    /// them (`model.keep_projections_mib`): the backward then recomputes neither product, only
    /// the post-attention norm.
    pub gate_up: Option<(Tensor, Tensor)>,
    /// The attention's q, k and v projections (with their biases, before the per-head views and
    /// rotary embedding), kept with `gate_up`: the backward recomputes only the input norm and
    /// the rotary embedding.
    pub qkv: Option<(Tensor, Tensor, Tensor)>,
}

/// One decoder layer's activations for `l` tokens as [`Transformer::layer_recording`] returns
/// them: the layer's input, its q/k/v projections (before the per-head views and rotary
/// embedding), the attention output `[B, l, heads, head_dim]` and log-sum-exp `[B, l, heads]`,
/// the post-attention residual and the MLP's gate and up projections — what
/// [`SavedAttention`] holds with the projections kept, and the input.
#[derive(Debug)]
pub struct LayerActivations {
    /// The layer's input `[B, l, H]`.
    pub x: Tensor,
    /// The q projection `[B, l, heads · head_dim]`.
    pub q: Tensor,
    /// The k projection `[B, l, kv_heads · head_dim]`.
    pub k: Tensor,
    /// The v projection `[B, l, kv_heads · head_dim]`.
    pub v: Tensor,
    /// The attention output `[B, l, heads, head_dim]`.
    pub out: Tensor,
    /// The attention's log-sum-exp per query and head, `[B, l, heads]`.
    pub lse: Tensor,
    /// The residual stream after attention `[B, l, H]`.
    pub mid: Tensor,
    /// The MLP's gate projection `[B, l, intermediate]`.
    pub gate: Tensor,
    /// The MLP's up projection `[B, l, intermediate]`.
    pub up: Tensor,
}

/// Rotary inverse frequencies in f32 (transformers `_compute_default_rope_parameters` and
/// `_compute_llama3_parameters`).
pub fn inv_freq(cfg: &HfConfig) -> Result<Tensor> {
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
    pub fn new(root: &VsPath, cfg: &HfConfig) -> Result<Transformer> {
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
            head_packed: RefCell::new(None),
            inv_freq,
            compute: None,
            adapters_off: Cell::new(false),
            training: Cell::new(false),
            batch_invariant: false,
            packed_generation: true,
        })
    }

    /// Adds a LoRA adapter to each linear layer `spec` targets, its parameters created under
    /// `root` with PEFT's names (`….q_proj.lora_A.weight`, `….q_proj.lora_B.weight`).
    pub fn attach_adapters(&mut self, root: &VsPath, spec: &AdapterSpec) -> Result<()> {
        let m = root / "model";
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let l = &m / "layers" / i;
            for module in &spec.targets {
                let linear = layer.linear_mut(*module);
                let p = &l / module.parent() / module.name();
                let size = linear.weight.size();
                let stream = (i * Module::ALL.len() + *module as usize) as u64;
                linear.adapter = Some(Adapter::new(&p, size[1], size[0], spec, stream)?);
            }
        }
        Ok(())
    }

    /// Whether any layer carries an adapter.
    pub fn has_adapters(&self) -> bool {
        self.layers
            .iter()
            .any(|l| Module::ALL.iter().any(|m| l.linear(*m).adapter.is_some()))
    }

    /// Switches the adapters on or off for every later forward pass (a server that loads and
    /// unloads an adapter).
    pub fn set_adapters_enabled(&self, on: bool) {
        self.adapters_off.set(!on);
    }

    /// Runs `f` with the adapters switched off: the frozen base model's forward passes.
    pub fn without_adapters<T>(&self, f: impl FnOnce() -> T) -> T {
        let before = self.adapters_off.replace(true);
        let out = f();
        self.adapters_off.set(before);
        out
    }

    /// Makes every forward pass outside an update batch-invariant: a token's hidden state, logits
    /// and log-prob are then bit-identical whether it is computed in a full-sequence pass, a
    /// prefill or a cached decode step, among any other rows and with any padding — so a
    /// sampler's log-probs equal the trainer's recomputation exactly (SGLang's deterministic
    /// inference, vLLM's batch-invariant mode). Attention runs
    /// [`rlvr_kernels::invariant_attention`] (f64 sums in key order; slower than SDPA) and every
    /// matrix product [`rlvr_kernels::invariant_linear`] (a fixed summation order per element;
    /// slower than MKL), the MLP's gate [`rlvr_kernels::invariant_swiglu`]. f32 on the CPU only; updates
    /// (gradients) keep the fused kernels.
    pub fn set_batch_invariant(&mut self, on: bool) -> Result<()> {
        let device = self.embed.device();
        if on && (device != tch::Device::Cpu || self.compute_kind() != Kind::Float) {
            return Err(crate::error::ModelError::Unsupported(format!(
                "batch-invariant passes are built for f32 on the CPU; this model computes in \
                 {:?} on {device:?}",
                self.compute_kind()
            )));
        }
        self.batch_invariant = on;
        Ok(())
    }

    /// Whether forward passes outside updates are batch-invariant.
    pub fn batch_invariant(&self) -> bool {
        self.batch_invariant
    }

    /// Whether this pass over `x` is batch-invariant: asked for, not an update, no gradients.
    fn invariant_pass(&self, x: &Tensor) -> bool {
        self.batch_invariant && !self.training.get() && !x.requires_grad()
    }

    /// Whether generation packs the weights ([`Transformer::pack_for_generation`]; default on).
    pub fn set_packed_generation(&mut self, on: bool) {
        self.packed_generation = on;
    }

    /// Whether packing applies: switched on, f32 on a CPU whose libtorch has MKL, not
    /// batch-invariant (its passes run their own kernels).
    fn packs_for_generation(&self) -> bool {
        self.packed_generation
            && self.embed.device() == tch::Device::Cpu
            && self.compute_kind() == Kind::Float
            && !self.batch_invariant
            && PackedLinear::available()
    }

    /// Packs the weights every generated token multiplies — each layer's projections and the LM
    /// head — into MKL's GEMM layout, laid out for products of `rows` rows (the generation's
    /// batch), until the returned guard is dropped ([`PackedLinear`]: a plain product repacks its
    /// weight at every call; at a few rows that copy costs as much as the product). Where packing does not apply (see `set_packed_generation`; f32 on a CPU with MKL,
    /// not batch-invariant) the guard holds nothing. The packs are copies: the weights must not
    /// change while the guard lives (generation does not); gradients are off meanwhile.
    pub fn pack_for_generation(&self, rows: i64) -> Result<GenerationPack<'_>> {
        let guard = GenerationPack {
            model: self,
            _no_grad: tch::no_grad_guard(),
        };
        if !self.packs_for_generation() {
            return Ok(guard);
        }
        for layer in &self.layers {
            for module in Module::ALL {
                let linear = layer.linear(module);
                *linear.packed.borrow_mut() = PackedLinear::pack(&linear.weight, rows)?;
            }
        }
        *self.head_packed.borrow_mut() = PackedLinear::pack(self.head_weight(), rows)?;
        Ok(guard)
    }

    /// Bytes [`Transformer::pack_for_generation`] holds (0 where it packs nothing): about one f32
    /// copy of the projections and the LM head.
    pub fn generation_pack_bytes(&self) -> u128 {
        if !self.packs_for_generation() {
            return 0;
        }
        let bytes = |t: &Tensor| t.numel() as u128 * 4;
        let layers: u128 = self
            .layers
            .iter()
            .flat_map(|l| Module::ALL.map(|m| bytes(&l.linear(m).weight)))
            .sum();
        layers + bytes(self.head_weight())
    }

    fn unpack(&self) {
        for layer in &self.layers {
            for module in Module::ALL {
                layer.linear(module).packed.borrow_mut().take();
            }
        }
        self.head_packed.borrow_mut().take();
    }

    /// Runs `f` as an update's forward passes (adapter dropout active).
    pub fn training<T>(&self, f: impl FnOnce() -> T) -> T {
        let before = self.training.replace(true);
        let out = f();
        self.training.set(before);
        out
    }

    /// Folds every adapter into its base weight (`W ← W + s·B·A`, PEFT's `merge_and_unload`) and
    /// removes the adapters; their variables stay in the store (they are no longer used).
    pub fn merge_adapters(&mut self) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for layer in self.layers.iter_mut() {
            for module in Module::ALL {
                let linear = layer.linear_mut(module);
                if let Some(adapter) = linear.adapter.take() {
                    let delta = adapter.weight_delta()?;
                    let _ = linear
                        .weight
                        .f_add_(&delta.f_to_kind(linear.weight.kind())?)?;
                }
            }
        }
        Ok(())
    }

    fn adapter_use(&self) -> AdapterUse {
        if self.adapters_off.get() {
            AdapterUse::Off
        } else {
            AdapterUse::On {
                training: self.training.get(),
            }
        }
    }

    /// The runtime configuration.
    pub fn config(&self) -> &HfConfig {
        &self.cfg
    }

    /// Runs matmuls and attention in `kind` (bf16 mixed precision: weights stay in their stored
    /// precision, norms, residuals and log-softmax in f32); `None` computes in the weights' kind.
    pub fn set_compute_kind(&mut self, kind: Option<Kind>) {
        self.compute = kind;
    }

    /// The kind matmuls run in where it differs from the stored weights' (mixed precision).
    pub fn mixed_kind(&self) -> Option<Kind> {
        self.compute.filter(|&k| k != self.embed.kind())
    }

    /// The kind matmuls run in.
    pub fn compute_kind(&self) -> Kind {
        self.compute.unwrap_or(self.embed.kind())
    }

    /// Number of decoder layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Token embeddings `[B, l, H]` (the residual stream's input).
    pub fn embed(&self, input_ids: &Tensor) -> Result<Tensor> {
        Ok(Tensor::f_embedding(
            &self.embed,
            input_ids,
            -1,
            false,
            false,
        )?)
    }

    /// The rotary tables and attention mask of `l` new tokens at `positions` `[B, l]` after
    /// `past` cached ones; `key_mask` `[B, past + l]` marks real tokens (1).
    pub fn frame(&self, positions: &Tensor, key_mask: &Tensor, past: i64) -> Result<Frame> {
        let (b, l) = (positions.size()[0], positions.size()[1]);
        let device = positions.device();
        let kind = self.compute_kind();
        let freqs = positions
            .f_to_kind(Kind::Float)?
            .f_unsqueeze(-1)?
            .f_mul(&self.inv_freq.f_view([1, 1, -1])?)?;
        let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?;
        let cos = emb.f_cos()?.f_unsqueeze(1)?.f_to_kind(kind)?;
        let sin = emb.f_sin()?.f_unsqueeze(1)?.f_to_kind(kind)?;
        // Without padding the mask-free kernels are exact: causal for a fresh sequence, none for
        // one new token after the cache (it sees every key).
        let unpadded = key_mask.f_min()?.f_int64_value(&[])? > 0;
        if unpadded && (past == 0 || l == 1) {
            return Ok(Frame {
                cos,
                sin,
                allowed: None,
                causal: past == 0 && l > 1,
                additive: std::cell::OnceCell::new(),
            });
        }
        // Real keys at or before each query (absolute index past + i). A query may always see
        // itself, so a left-padding query never has an empty row (SDPA would return NaN there,
        // and NaN values times zero weights would reach real tokens).
        let q_idx = Tensor::f_arange(l, (Kind::Int64, device))?
            .f_add_scalar(past)?
            .f_view([1, 1, l, 1])?;
        let k_idx =
            Tensor::f_arange(past + l, (Kind::Int64, device))?.f_view([1, 1, 1, past + l])?;
        let real = key_mask.f_gt(0)?.f_view([b, 1, 1, past + l])?;
        let allowed = k_idx
            .f_le_tensor(&q_idx)?
            .f_logical_and(&real)?
            .f_logical_or(&k_idx.f_eq_tensor(&q_idx)?)?;
        Ok(Frame {
            cos,
            sin,
            allowed: Some(allowed),
            causal: false,
            additive: std::cell::OnceCell::new(),
        })
    }

    /// Decoder layer `i` on the residual stream `x` `[B, l, H]`; with a cache, the layer's new keys
    /// and values are written into it.
    pub fn layer(
        &self,
        i: usize,
        x: &Tensor,
        frame: &Frame,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let inv = self.invariant_pass(x);
        let (mid, act) = self.layer_parts(i, x, frame, cache)?;
        let down = &self.layers[i].down;
        let mlp = down.forward(&act, self.compute_kind(), self.adapter_use(), inv)?;
        Ok(mid.f_add(&mlp)?)
    }

    /// Decoder layer `i` up to its down projection: the residual stream after attention and the
    /// MLP's activation `silu(gate) · up`, whose down projection added to the first is the
    /// layer's output ([`Transformer::layer`]). Backward needs no more of the layer than these,
    /// so a recomputation for backward skips the down projection's product
    /// ([`Transformer::plain_down_weight`]).
    pub fn layer_parts(
        &self,
        i: usize,
        x: &Tensor,
        frame: &Frame,
        cache: Option<&mut KvCache>,
    ) -> Result<(Tensor, Tensor)> {
        let layer = &self.layers[i];
        let (b, l) = (x.size()[0], x.size()[1]);
        let (nh, nkv, hd) = (self.cfg.num_heads, self.cfg.num_kv_heads, self.cfg.head_dim);
        let kind = self.compute_kind();
        let ad = self.adapter_use();
        let inv = self.invariant_pass(x);
        let (q, k, v) = self.attention_operands(i, x, frame, cache)?;
        if inv {
            let allowed = frame.allowed_keys(b, l, k.size()[2])?;
            let out =
                rlvr_kernels::invariant_attention(&q, &k, &v, &allowed, (hd as f64).powf(-0.5))
                    .map_err(|e| rlvr_core::CoreError::Shape(e.to_string()))?;
            let out = out.f_transpose(1, 2)?.f_reshape([b, l, nh * hd])?;
            return self.mlp_input(layer, x, &out, kind, ad, inv);
        }
        // Fused attention (flash / memory-efficient kernels). On CUDA, GQA reads each K/V head
        // for its query group without repeated copies; libtorch's fused CPU kernel requires equal
        // head counts (with `enable_gqa` it falls back to the math path, which materialises
        // `[B, heads, l, past + l]` scores), so on a CPU K/V are repeated: O(L), not O(L²).
        // A one-token decode step keeps the math path (its scores are one row).
        let gqa = nh != nkv;
        if gqa && l == 1 && !q.device().is_cuda() {
            // A one-token decode step on a CPU: each K/V head's query group as `nh / nkv` query
            // rows against that head (what GQA means), so the cache is read once per group where
            // the math path's `enable_gqa` repeats it per query head.
            let rep = nh / nkv;
            let out = Tensor::f_scaled_dot_product_attention(
                &q.f_reshape([b, nkv, rep, hd])?,
                &k,
                &v,
                frame.allowed.as_ref(),
                0.0,
                false,
                (hd as f64).powf(-0.5),
                false,
            )?
            .f_reshape([b, l, nh * hd])?;
            return self.mlp_input(layer, x, &out, kind, ad, inv);
        }
        let (k, v, gqa) = if gqa && l > 1 && !q.device().is_cuda() {
            let rep = nh / nkv;
            (
                k.f_repeat_interleave_self_int(rep, 1, None)?,
                v.f_repeat_interleave_self_int(rep, 1, None)?,
                false,
            )
        } else {
            (k, v, gqa)
        };
        let out = Tensor::f_scaled_dot_product_attention(
            &q,
            &k,
            &v,
            frame.allowed.as_ref(),
            0.0,
            frame.causal,
            (hd as f64).powf(-0.5),
            gqa,
        )?
        .f_transpose(1, 2)?
        .f_reshape([b, l, nh * hd])?;
        self.mlp_input(layer, x, &out, kind, ad, inv)
    }

    /// The attention's queries `[B, heads, l, head_dim]` and keys and values
    /// `[B, kv_heads, past + l, head_dim]` of layer `layer` on `x`: input norm, projections, the
    /// Qwen3 q/k norms, rotary embedding; with a cache, the new keys and values are written into
    /// it and the cached ones returned with them.
    fn attention_operands(
        &self,
        i: usize,
        x: &Tensor,
        frame: &Frame,
        cache: Option<&mut KvCache>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let projections = self.qkv_projections(i, x)?;
        let (q, k, v) = self.rotated_operands(i, projections, frame)?;
        let (k, v) = match cache {
            Some(c) => c.append(i, &k, &v)?,
            None => (k, v),
        };
        Ok((q, k, v))
    }

    /// The attention's input norm of layer `i` on `x`.
    pub fn attention_norm(&self, i: usize, x: &Tensor) -> Result<Tensor> {
        rms_norm(x, &self.layers[i].input_norm, self.cfg.rms_norm_eps)
    }

    /// The q, k and v projections of layer `i` on `x` (after its input norm), `[B, l, heads ·
    /// head_dim]` and `[B, l, kv_heads · head_dim]` twice.
    fn qkv_projections(&self, i: usize, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let layer = &self.layers[i];
        let kind = self.compute_kind();
        let ad = self.adapter_use();
        let inv = self.invariant_pass(x);
        let hn = self.attention_norm(i, x)?;
        Ok((
            layer.q.forward(&hn, kind, ad, inv)?,
            layer.k.forward(&hn, kind, ad, inv)?,
            layer.v.forward(&hn, kind, ad, inv)?,
        ))
    }

    /// The attention's queries `[B, heads, l, head_dim]`, keys and values `[B, kv_heads, l,
    /// head_dim]` from layer `i`'s projections ([`Transformer::qkv_projections`]): per-head
    /// views, the Qwen3 q/k norms, rotary embedding.
    fn rotated_operands(
        &self,
        i: usize,
        (q, k, v): (Tensor, Tensor, Tensor),
        frame: &Frame,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let layer = &self.layers[i];
        let (b, l) = (q.size()[0], q.size()[1]);
        let (nh, nkv, hd) = (self.cfg.num_heads, self.cfg.num_kv_heads, self.cfg.head_dim);
        let kind = self.compute_kind();
        let eps = self.cfg.rms_norm_eps;
        let mut q = q.f_view([b, l, nh, hd])?;
        let mut k = k.f_view([b, l, nkv, hd])?;
        let v = v.f_view([b, l, nkv, hd])?.f_transpose(1, 2)?;
        if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
            q = rms_norm(&q, qn, eps)?.f_to_kind(kind)?;
            k = rms_norm(&k, kn, eps)?.f_to_kind(kind)?;
        }
        let q = q.f_transpose(1, 2)?;
        let k = k.f_transpose(1, 2)?;
        let q = q
            .f_mul(&frame.cos)?
            .f_add(&rotate_half(&q)?.f_mul(&frame.sin)?)?;
        let k = k
            .f_mul(&frame.cos)?
            .f_add(&rotate_half(&k)?.f_mul(&frame.sin)?)?;
        Ok((q, k, v))
    }

    /// A decoder layer after attention up to the down projection: output projection, residual,
    /// the MLP's activation (the pair [`Transformer::layer_parts`] returns).
    fn mlp_input(
        &self,
        layer: &Layer,
        x: &Tensor,
        out: &Tensor,
        kind: Kind,
        ad: AdapterUse,
        inv: bool,
    ) -> Result<(Tensor, Tensor)> {
        let x = x.f_add(&layer.o.forward(out, kind, ad, inv)?)?;
        let act = self.mlp_activation(layer, &x, kind, ad, inv)?;
        Ok((x, act))
    }

    /// The MLP's gate and up projections of the post-attention residual stream `mid`.
    fn gate_up(
        &self,
        layer: &Layer,
        mid: &Tensor,
        kind: Kind,
        ad: AdapterUse,
        inv: bool,
    ) -> Result<(Tensor, Tensor)> {
        let hn = rms_norm(mid, &layer.post_norm, self.cfg.rms_norm_eps)?;
        let gate = layer.gate.forward(&hn, kind, ad, inv)?;
        let up = layer.up.forward(&hn, kind, ad, inv)?;
        Ok((gate, up))
    }

    /// The MLP's activation `silu(gate) · up` of the post-attention residual stream `mid`.
    fn mlp_activation(
        &self,
        layer: &Layer,
        mid: &Tensor,
        kind: Kind,
        ad: AdapterUse,
        inv: bool,
    ) -> Result<Tensor> {
        let (gate, up) = self.gate_up(layer, mid, kind, ad, inv)?;
        Ok(if inv {
            rlvr_kernels::invariant_swiglu(&gate, &up)?
        } else {
            gate.f_silu()?.f_mul(&up)?
        })
    }

    /// Whether layer `i`'s forward on `x` can keep what [`SavedAttention`] holds, so that its
    /// recomputation for backward skips the attention kernel and the output projection: on a
    /// CPU (libtorch's flash kernel, whose backward takes the forward's output and log-sum-exp),
    /// in f32, with plain output and down projections ([`Transformer::plain_down_weight`]).
    pub fn saves_attention(&self, i: usize, x: &Tensor) -> bool {
        x.device() == Device::Cpu
            && x.kind() == Kind::Float
            && self.compute_kind() == Kind::Float
            && !self.invariant_pass(x)
            && self.plain_o_weight(i).is_some()
            && self.plain_down_weight(i).is_some()
    }

    /// Whether layer `i`'s forward can also keep its projections' outputs
    /// ([`SavedAttention::gate_up`], [`SavedAttention::qkv`]): gate and up plain, q, k and v
    /// without adapters in the compute kind, so that their backward can be written out
    /// ([`Transformer::plain_gate_up_weights`], [`Transformer::qkv_weights`]).
    pub fn keeps_projections(&self, i: usize) -> bool {
        self.plain_gate_up_weights(i).is_some() && self.qkv_weights(i).is_some()
    }

    /// Bytes of the gradients the decoder layers' backward will allocate: the trained layer
    /// tensors whose `.grad` is not defined yet (none is after an optimizer step released them,
    /// until the first backward after it). The update keeps logits and projection outputs in
    /// this much memory, which it needs later anyway (`model.keep_in_gradient_memory`).
    pub fn pending_layer_gradient_bytes(&self) -> i64 {
        self.layers
            .iter()
            .flat_map(Layer::tensors)
            .filter(|t| t.requires_grad() && !t.grad().defined())
            .map(|t| t.numel() as i64 * t.kind().elt_size_in_bytes() as i64)
            .sum()
    }

    /// Bytes one token takes in one layer of a checkpointed forward (f32): its input, and with
    /// `saves_attention` also the layer's attention output, post-attention residual and
    /// log-sum-exp per head ([`SavedAttention`]).
    pub fn checkpointed_bytes_per_token(&self, saves_attention: bool) -> i64 {
        let c = &self.cfg;
        let kept = if saves_attention {
            c.num_heads * c.head_dim + c.hidden_size + c.num_heads
        } else {
            0
        };
        (c.hidden_size + kept) * 4
    }

    /// Bytes one token's kept projections take in one layer (f32): q, k, v, gate and up.
    pub fn kept_projection_bytes_per_token(&self) -> i64 {
        let c = &self.cfg;
        ((c.num_heads + 2 * c.num_kv_heads) * c.head_dim + 2 * c.intermediate_size) * 4
    }

    /// Keys and values repeated to every query head (libtorch's fused CPU kernel needs equal
    /// head counts).
    fn repeated_kv(&self, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let (nh, nkv) = (self.cfg.num_heads, self.cfg.num_kv_heads);
        if nh == nkv {
            return Ok((k, v));
        }
        let rep = nh / nkv;
        Ok((
            k.f_repeat_interleave_self_int(rep, 1, None)?,
            v.f_repeat_interleave_self_int(rep, 1, None)?,
        ))
    }

    /// libtorch's CPU flash-attention kernel (what `scaled_dot_product_attention` dispatches to
    /// on a CPU) on queries `[B, heads, l, head_dim]` and keys and values of the K/V heads
    /// (repeated to every head here): the output `[B, heads, l, head_dim]` and the log-sum-exp
    /// per query `[B, heads, l]`.
    fn flash_attention(
        &self,
        q: &Tensor,
        k: Tensor,
        v: Tensor,
        frame: &Frame,
    ) -> Result<(Tensor, Tensor)> {
        let (k, v) = self.repeated_kv(k, v)?;
        Ok(
            Tensor::f_internal_scaled_dot_product_flash_attention_for_cpu(
                q,
                &k,
                &v,
                0.0,
                frame.causal,
                frame.flash_mask(self.compute_kind())?,
                (self.cfg.head_dim as f64).powf(-0.5),
            )?,
        )
    }

    /// Decoder layer `i` on `x` (as [`Transformer::layer`], no cache) keeping its attention
    /// output, log-sum-exp and post-attention residual ([`Transformer::saves_attention`] must
    /// hold), and the q/k/v, gate and up projections' outputs when `keep_projections` (and
    /// [`Transformer::keeps_projections`]), for the no-grad forward of a checkpointed update: the result
    /// has no graph (the SwiGLU gate is [`rlvr_kernels::swiglu`], one pass over memory). The
    /// attention kernel is the one `scaled_dot_product_attention` dispatches to on a CPU.
    pub fn layer_saving(
        &self,
        i: usize,
        x: &Tensor,
        frame: &Frame,
        keep_projections: bool,
    ) -> Result<(Tensor, SavedAttention)> {
        let layer = &self.layers[i];
        let (b, l) = (x.size()[0], x.size()[1]);
        let (nh, hd) = (self.cfg.num_heads, self.cfg.head_dim);
        let (kind, ad) = (self.compute_kind(), self.adapter_use());
        let keep = keep_projections && self.keeps_projections(i);
        let projections = self.qkv_projections(i, x)?;
        let qkv = keep.then(|| {
            (
                projections.0.shallow_clone(),
                projections.1.shallow_clone(),
                projections.2.shallow_clone(),
            )
        });
        let (q, k, v) = self.rotated_operands(i, projections, frame)?;
        let (out, lse) = self.flash_attention(&q, k, v, frame)?;
        let flat = out.f_transpose(1, 2)?.f_reshape([b, l, nh * hd])?;
        let mid = x.f_add(&layer.o.forward(&flat, kind, ad, false)?)?;
        let (gate, up) = self.gate_up(layer, &mid, kind, ad, false)?;
        let act = rlvr_kernels::swiglu(&gate, &up)?;
        let y = mid.f_add(&layer.down.forward(&act, kind, ad, false)?)?;
        let gate_up = keep.then_some((gate, up));
        Ok((
            y,
            SavedAttention {
                out,
                lse,
                mid,
                gate_up,
                qkv,
            },
        ))
    }

    /// Decoder layer `i` on `x` with `cache` (as [`Transformer::layer`] computes it, the same
    /// operations), also returning what a checkpointed update's backward reads of it
    /// ([`LayerActivations`]) — for an update that starts from a generation's forward passes
    /// (`crate::rollout_record`). A CPU f32 pass with plain projections only
    /// ([`Transformer::records_generation`]).
    pub fn layer_recording(
        &self,
        i: usize,
        x: &Tensor,
        frame: &Frame,
        cache: &mut KvCache,
    ) -> Result<(Tensor, LayerActivations)> {
        let layer = &self.layers[i];
        let (b, l) = (x.size()[0], x.size()[1]);
        let (nh, nkv, hd) = (self.cfg.num_heads, self.cfg.num_kv_heads, self.cfg.head_dim);
        let (kind, ad) = (self.compute_kind(), self.adapter_use());
        let scale = (hd as f64).powf(-0.5);
        let projections = self.qkv_projections(i, x)?;
        let kept = (
            projections.0.shallow_clone(),
            projections.1.shallow_clone(),
            projections.2.shallow_clone(),
        );
        let (q, k, v) = self.rotated_operands(i, projections, frame)?;
        let (k, v) = cache.append(i, &k, &v)?;
        // `out` `[B, l, heads, head_dim]`, `lse` `[B, l, heads]`.
        let (flat, out, lse) = if l == 1 {
            // The decode step of [`Transformer::layer_parts`] (each K/V head's query group as
            // rows against it), and the log-sum-exp of the same scores, which it does not return.
            let grouped = q.f_reshape([b, nkv, nh / nkv, hd])?;
            let flat = Tensor::f_scaled_dot_product_attention(
                &grouped,
                &k,
                &v,
                frame.allowed.as_ref(),
                0.0,
                false,
                scale,
                false,
            )?
            .f_reshape([b, l, nh * hd])?;
            let mut scores = grouped
                .f_matmul(&k.f_transpose(-2, -1)?)?
                .f_mul_scalar(scale)?;
            if let Some(allowed) = &frame.allowed {
                scores = scores.f_masked_fill(&allowed.f_logical_not()?, f64::NEG_INFINITY)?;
            }
            let lse = scores.f_logsumexp([-1], false)?.f_reshape([b, l, nh])?;
            let out = flat.f_view([b, l, nh, hd])?;
            (flat, out, lse)
        } else {
            // The prefill: the kernel of [`Transformer::layer_saving`], which returns both.
            let (out, lse) = self.flash_attention(&q, k, v, frame)?;
            let out = out.f_transpose(1, 2)?;
            let flat = out.f_reshape([b, l, nh * hd])?;
            (flat, out, lse.f_transpose(1, 2)?)
        };
        let mid = x.f_add(&layer.o.forward(&flat, kind, ad, false)?)?;
        let (gate, up) = self.gate_up(layer, &mid, kind, ad, false)?;
        let act = gate.f_silu()?.f_mul(&up)?;
        let y = mid.f_add(&layer.down.forward(&act, kind, ad, false)?)?;
        Ok((
            y,
            LayerActivations {
                x: x.shallow_clone(),
                q: kept.0,
                k: kept.1,
                v: kept.2,
                out,
                lse,
                mid,
                gate,
                up,
            },
        ))
    }

    /// Whether generation can record what an update needs ([`Transformer::layer_recording`]):
    /// f32 on a CPU, no batch-invariant passes, and every layer's backward written out from
    /// kept tensors ([`Transformer::keeps_projections`], plain output and down projections).
    pub fn records_generation(&self, device: Device) -> bool {
        device == Device::Cpu
            && self.compute_kind() == Kind::Float
            && !self.batch_invariant
            && (0..self.layers.len()).all(|i| {
                self.keeps_projections(i)
                    && self.plain_o_weight(i).is_some()
                    && self.plain_down_weight(i).is_some()
            })
    }

    /// [`Transformer::forward_hidden`] with a cache, handing each layer's
    /// [`LayerActivations`] to `sink` (layer index first) and returning the final residual
    /// stream (before the final norm) besides the hidden states.
    pub fn forward_hidden_recording(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        key_mask: &Tensor,
        cache: &mut KvCache,
        sink: &mut dyn FnMut(usize, LayerActivations) -> Result<()>,
    ) -> Result<(Tensor, Tensor)> {
        let frame = self.frame(positions, key_mask, cache.len())?;
        let mut x = self.embed(input_ids)?;
        for i in 0..self.layers.len() {
            let (y, acts) = self.layer_recording(i, &x, &frame, cache)?;
            sink(i, acts)?;
            x = y;
        }
        cache.advance(input_ids.size()[1]);
        Ok((self.final_norm(&x)?, x))
    }

    /// The attention kernel's operands from layer `i`'s kept projections
    /// ([`SavedAttention::qkv`]) with their graph (queries, and keys and values repeated to every
    /// head).
    pub fn rotated_operands_repeated(
        &self,
        i: usize,
        projections: (Tensor, Tensor, Tensor),
        frame: &Frame,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (q, k, v) = self.rotated_operands(i, projections, frame)?;
        let (k, v) = self.repeated_kv(k, v)?;
        Ok((q, k, v))
    }

    /// The attention kernel's operands of layer `i` on `x` with their graph (queries, and keys
    /// and values repeated to every head), for the backward of a [`Transformer::layer_saving`].
    pub fn attention_operands_repeated(
        &self,
        i: usize,
        x: &Tensor,
        frame: &Frame,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (q, k, v) = self.attention_operands(i, x, frame, None)?;
        let (k, v) = self.repeated_kv(k, v)?;
        Ok((q, k, v))
    }

    /// The attention kernel's backward: the gradients of `q`, `k`, `v` (as from
    /// [`Transformer::attention_operands_repeated`]) from `grad_out`, the gradient of
    /// `saved.out`.
    pub fn attention_backward(
        &self,
        grad_out: &Tensor,
        (q, k, v): (&Tensor, &Tensor, &Tensor),
        saved: &SavedAttention,
        frame: &Frame,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        Ok(
            Tensor::f_internal_scaled_dot_product_flash_attention_for_cpu_backward(
                grad_out,
                q,
                k,
                v,
                &saved.out,
                &saved.lse,
                0.0,
                frame.causal,
                frame.flash_mask(self.compute_kind())?,
                (self.cfg.head_dim as f64).powf(-0.5),
            )?,
        )
    }

    /// The MLP's gate and up projections of layer `i` from the post-attention residual stream
    /// `mid`, with their graph.
    pub fn mlp_gate_up(&self, i: usize, mid: &Tensor) -> Result<(Tensor, Tensor)> {
        let inv = self.invariant_pass(mid);
        self.gate_up(
            &self.layers[i],
            mid,
            self.compute_kind(),
            self.adapter_use(),
            inv,
        )
    }

    /// The MLP's input of layer `i`: the post-attention RMSNorm of the residual stream `mid`,
    /// with its graph.
    pub fn mlp_norm(&self, i: usize, mid: &Tensor) -> Result<Tensor> {
        rms_norm(mid, &self.layers[i].post_norm, self.cfg.rms_norm_eps)
    }

    /// Layer `i`'s gate and up projection weights when both are plain (as
    /// [`Transformer::plain_down_weight`]).
    pub fn plain_gate_up_weights(&self, i: usize) -> Option<(&Tensor, &Tensor)> {
        let layer = &self.layers[i];
        Some((self.plain(&layer.gate)?, self.plain(&layer.up)?))
    }

    /// Layer `i`'s q, k and v projections' weights and biases when none has an adapter and
    /// each weight is stored in the compute kind (their backward can then be written out).
    pub fn qkv_weights(&self, i: usize) -> Option<[(&Tensor, Option<&Tensor>); 3]> {
        let layer = &self.layers[i];
        let kind = self.compute_kind();
        Some([
            Self::unadapted(&layer.q, kind)?,
            Self::unadapted(&layer.k, kind)?,
            Self::unadapted(&layer.v, kind)?,
        ])
    }

    /// `linear`'s weight and bias when it has no adapter and its weight is stored in `kind`.
    fn unadapted(linear: &Linear, kind: Kind) -> Option<(&Tensor, Option<&Tensor>)> {
        (linear.adapter.is_none() && linear.weight.kind() == kind)
            .then_some((&linear.weight, linear.bias.as_ref()))
    }

    /// Layer `i`'s output-projection weight when the projection is a plain `out Wᵀ` in the
    /// compute precision (as [`Transformer::plain_down_weight`]).
    pub fn plain_o_weight(&self, i: usize) -> Option<&Tensor> {
        self.plain(&self.layers[i].o)
    }

    /// `linear`'s weight when it has no bias and no adapter and is stored in the compute kind.
    fn plain<'a>(&self, linear: &'a Linear) -> Option<&'a Tensor> {
        let plain = linear.bias.is_none()
            && linear.adapter.is_none()
            && linear.weight.kind() == self.compute_kind();
        plain.then_some(&linear.weight)
    }

    /// Layer `i`'s down-projection weight when the projection is a plain `act Wᵀ` in the compute
    /// precision (no bias, no adapter, stored in the compute kind), so that its backward can be
    /// written out: `∂act = g W`, `∂W = (actᵀ g)ᵀ`, autograd's own products for a linear layer.
    /// `None` otherwise.
    pub fn plain_down_weight(&self, i: usize) -> Option<&Tensor> {
        self.plain(&self.layers[i].down)
    }

    /// The final RMSNorm of the residual stream.
    pub fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        rms_norm(x, &self.norm, self.cfg.rms_norm_eps)
    }

    /// Final-norm hidden states `[B, l, H]` of `input_ids` `[B, l]` at `positions` `[B, l]`.
    /// `key_mask` `[B, past + l]` marks real tokens (1) among the cached and new ones; with a
    /// cache, the new keys and values are written into it.
    pub fn forward_hidden(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        key_mask: &Tensor,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let past = cache.as_ref().map(|c| c.len()).unwrap_or(0);
        let frame = self.frame(positions, key_mask, past)?;
        let mut x = self.embed(input_ids)?;
        for i in 0..self.layers.len() {
            x = self.layer(i, &x, &frame, cache.as_deref_mut())?;
        }
        if let Some(c) = cache {
            c.advance(input_ids.size()[1]);
        }
        self.final_norm(&x)
    }

    /// The token embedding's weight `[V, H]`.
    pub fn embed_weight(&self) -> &Tensor {
        &self.embed
    }

    /// Whether the LM head has its own weight (not tied to the embedding).
    pub fn has_untied_head(&self) -> bool {
        self.lm_head.is_some()
    }

    /// The LM head's weight `[V, H]` (the embedding's when tied).
    pub fn head_weight(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// Logits `[..., V]` of hidden states `[..., H]` (the LM head, tied or not).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        if self.invariant_pass(hidden) {
            return Ok(rlvr_kernels::invariant_linear(
                hidden,
                self.head_weight(),
                None,
            )?);
        }
        self.head(hidden)
    }

    fn head(&self, hidden: &Tensor) -> Result<Tensor> {
        let w = self.lm_head.as_ref().unwrap_or(&self.embed);
        if let (Some(p), Kind::Float) = (self.head_packed.borrow().as_ref(), hidden.kind()) {
            return Ok(p.forward(hidden, None)?);
        }
        let kind = self.compute_kind();
        if w.kind() == kind && hidden.kind() == kind {
            return Ok(hidden.f_matmul(&w.f_tr()?)?);
        }
        Ok(hidden
            .f_to_kind(kind)?
            .f_matmul(&w.f_to_kind(kind)?.f_tr()?)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_keeps_live_rows_in_place_and_fills_holes_from_the_end() {
        assert_eq!(compaction_order(&[true, true, true]), vec![0, 1, 2]);
        assert_eq!(
            compaction_order(&[true, false, true, false, true]),
            vec![0, 4, 2]
        );
        assert_eq!(compaction_order(&[false, false, true, true]), vec![2, 3]);
        assert_eq!(compaction_order(&[true, true, false, false]), vec![0, 1]);
        assert_eq!(
            compaction_order(&[false, true, false, true, true, true]),
            vec![4, 1, 5, 3]
        );
        assert!(compaction_order(&[false, false]).is_empty());
    }

    #[test]
    fn compacting_a_cache_moves_each_kept_rows_cached_positions() {
        // Six rows, two layers, positions 0..4 cached of a capacity of 7; every value names its
        // row, so a row moved to the wrong place or a position left behind shows.
        let (rows, len, cap) = (6i64, 4i64, 7i64);
        let base = Tensor::arange(rows, (Kind::Float, Device::Cpu)).view([rows, 1, 1, 1]);
        let filled = |offset: f64| {
            let t = base.expand([rows, 2, cap, 3], false).contiguous() + offset;
            let _ = t.narrow(2, len, cap - len).fill_(-1.0);
            t
        };
        let mut cache = KvCache {
            layers: vec![(filled(0.0), filled(100.0)), (filled(10.0), filled(110.0))],
            len,
            capacity: cap,
        };
        let alive = [false, true, true, false, true, true];
        let order = cache.compact(&alive).unwrap();
        assert_eq!(order, vec![4, 1, 2, 5]);
        for (l, (k, v)) in cache.layers.iter().enumerate() {
            assert_eq!(k.size(), [4, 2, cap, 3]);
            for (j, &from) in order.iter().enumerate() {
                for (t, offset) in [(k, 0.0), (v, 100.0)] {
                    let cached = t.get(j as i64).narrow(1, 0, len);
                    let want = from as f64 + offset + 10.0 * l as f64;
                    assert_eq!(cached.min().double_value(&[]), want, "layer {l} row {j}");
                    assert_eq!(cached.max().double_value(&[]), want, "layer {l} row {j}");
                }
            }
        }
        // Nothing dead: nothing moves.
        let order = cache.compact(&[true; 4]).unwrap();
        assert_eq!(order, vec![0, 1, 2, 3]);
        assert_eq!(cache.layers[0].0.size()[0], 4);
    }
}
