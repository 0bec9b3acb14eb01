//! The memory-bounded update (docs/performance.md): run the decoder to hidden states, compute the
//! response statistics and the loss's gradient through the LM head chunk by chunk (core's
//! [`backward_through_stats`]: never `[tokens, vocab]` at once), then backpropagate the
//! hidden-state gradient through the decoder once. With activation checkpointing only each
//! layer's input is kept; backward recomputes one layer at a time.

use crate::error::Result;
use crate::rollout_record::RolloutRecord;
use crate::stats_grad::{backward_through_stats, ChunkedLogits};
use crate::transformer::{positions_from_mask, Frame, SavedAttention, Transformer};
use rlvr_core::{NoHooks, ParamPart, SequenceBatch, ShardHooks, StatsNeeds, TokenStats};
use tch::{Kind, Tensor};

/// How the update trades memory for time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdatePlan {
    /// Response tokens per LM-head chunk.
    pub chunk: i64,
    /// Keep only decoder-layer inputs and recompute each layer in backward.
    pub checkpoint: bool,
    /// LM-head logits kept from the statistics pass for the gradient pass (bytes, besides the last
    /// chunk's), instead of computed again: memory traded for one of the head's three matmuls.
    pub keep_logits_bytes: i64,
    /// With checkpointing, keep each layer's attention output, log-sum-exp and post-attention
    /// residual where the layer allows it ([`Transformer::saves_attention`]: CPU, f32), so its
    /// recomputation skips the attention kernel and the output projection
    /// (`model.save_attention`).
    pub save_attention: bool,
    /// With the attention kept, also keep the outputs of the q/k/v, gate and up projections of
    /// as many layers (last to first) as fit in these bytes, so that their backward runs none
    /// of those products again (`model.keep_projections_mib`): memory traded for five of the
    /// layer's seven matmuls (the ones the recomputation still ran).
    pub keep_projection_bytes: i64,
    /// Besides those budgets, keep logits and projection outputs in the memory the decoder
    /// layers' gradients will take later in the same update, where none of them exists yet (the
    /// first micro-batch after an optimizer step released them: [`kept_budgets`]), where they do
    /// not raise the update's live memory above its end (`model.keep_in_gradient_memory`).
    pub keep_in_gradient_memory: bool,
}

/// The default [`UpdatePlan::keep_logits_bytes`] (`model.keep_logits_mib = 0`): only the last
/// chunk's logits, still in memory, are reused; the others are recomputed. Measured at the
/// Qwen2.5-0.5B shape (docs/performance.md): keeping one more chunk (512 MiB) saved no time
/// measurable at 2 × 1024 or 2 × 2048 tokens and raised the peak by 0.8 GiB at 2 × 1024.
pub const DEFAULT_KEEP_LOGITS_BYTES: i64 = 0;

/// The default of [`UpdatePlan::keep_in_gradient_memory`] (`model.keep_in_gradient_memory =
/// true`).
pub const DEFAULT_KEEP_IN_GRADIENT_MEMORY: bool = true;

/// The default of [`UpdatePlan::save_attention`] (`model.save_attention = true`).
pub const DEFAULT_SAVE_ATTENTION: bool = true;

/// The default [`UpdatePlan::keep_projection_bytes`] (`model.keep_projections_mib = 0`): every
/// layer's projections are recomputed, the least memory. Keeping them costs
/// `(heads + 2 · kv_heads) · head_dim + 2 · intermediate` f32 per token and layer (43.5 KB at
/// the Qwen2.5-0.5B shape: 1.1 GiB for its 24 layers at 1,120 tokens).
pub const DEFAULT_KEEP_PROJECTION_BYTES: i64 = 0;

impl UpdatePlan {
    /// A plan with chunks of `chunk` tokens, checkpointing on or off, and the default logits kept.
    pub fn new(chunk: i64, checkpoint: bool) -> UpdatePlan {
        UpdatePlan {
            chunk,
            checkpoint,
            keep_logits_bytes: DEFAULT_KEEP_LOGITS_BYTES,
            save_attention: DEFAULT_SAVE_ATTENTION,
            keep_projection_bytes: DEFAULT_KEEP_PROJECTION_BYTES,
            keep_in_gradient_memory: DEFAULT_KEEP_IN_GRADIENT_MEMORY,
        }
    }
}

/// What one update keeps for its backward instead of computing it again ([`kept_budgets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptBudgets {
    /// Bytes of LM-head logits kept from the statistics pass besides the last chunk's.
    pub logits_bytes: i64,
    /// Per decoder layer, whether its forward keeps its projections' outputs.
    pub projection_layers: Vec<bool>,
    /// Of those, what the memory of the layers' pending gradients holds, bytes.
    pub in_gradient_memory: i64,
}

/// The budgets of an update of `b` sequences of `l` tokens, `t` of them responses, whose layer
/// `i` keeps its attention where `layer(i).0` and can keep its projections where `layer(i).1`:
/// the plan's own (`keep_logits_bytes`, `keep_projection_bytes`) plus, with
/// [`UpdatePlan::keep_in_gradient_memory`] and where `room_applies` (one process's own
/// gradients, with checkpointing), the memory the layers' backward will need later and that
/// is free until then. During the LM head the forward's keeps are live (each layer's input,
/// its kept attention and the budgets' logits and projections); by the end of the layers'
/// backward they are freed and the layers' gradients, which do not exist yet
/// ([`Transformer::pending_layer_gradient_bytes`]), are allocated in their place. The
/// difference goes first to the head's logits (all freed before any layer's gradient is
/// made), then to the projections of the last layers, whose backward runs first and frees
/// each as that layer's gradients come; so the live memory stays below the backward's end (the
/// measured peak, which also holds what the heap keeps, rose by up to 0.4 GiB at the 0.5B shape:
/// docs/performance.md). Projections
/// are kept for whole layers, the last ones first, where the layer can keep them.
pub fn kept_budgets(
    model: &Transformer,
    plan: &UpdatePlan,
    (b, l, t): (i64, i64, i64),
    room_applies: bool,
    layer: &dyn Fn(usize) -> (bool, bool),
) -> KeptBudgets {
    let n = model.num_layers();
    let vocab = model.head_weight().size()[0];
    let chunk = head_chunk(plan.chunk, vocab);
    let kept_logits =
        |bytes: i64| crate::stats_grad::kept_logits_bytes(b * t, chunk, vocab, bytes.max(0));
    let per_layer = b * l * model.kept_projection_bytes_per_token();
    let mut projection_layers = vec![false; n];
    let take_layers = |budget: i64, layers: &mut Vec<bool>| {
        let mut budget = budget;
        for i in (0..n).rev() {
            if !layers[i] && budget >= per_layer && layer(i).1 {
                layers[i] = true;
                budget -= per_layer;
            }
        }
    };
    let logits_bytes = kept_logits(plan.keep_logits_bytes);
    take_layers(plan.keep_projection_bytes.max(0), &mut projection_layers);
    let count = |layers: &[bool]| layers.iter().filter(|&&k| k).count() as i64;
    let explicit = logits_bytes + count(&projection_layers) * per_layer;
    let room = if plan.keep_in_gradient_memory && room_applies {
        let forward: i64 = (0..n)
            .map(|i| b * l * model.checkpointed_bytes_per_token(layer(i).0))
            .sum();
        (model.pending_layer_gradient_bytes() - forward - explicit).max(0)
    } else {
        0
    };
    // Whole chunks, as the statistics pass keeps them.
    let logits_room = kept_logits(logits_bytes.saturating_add(room)) - logits_bytes;
    let before = count(&projection_layers);
    take_layers(room - logits_room, &mut projection_layers);
    let projections_room = (count(&projection_layers) - before) * per_layer;
    KeptBudgets {
        logits_bytes: logits_bytes + logits_room,
        projection_layers,
        in_gradient_memory: logits_room + projections_room,
    }
}

/// The LM head over flat hidden states `[N, H]`. Its backward is written out, with no graph over
/// the vocabulary: for logits `z = h Wᵀ` with gradient `g`, `∂h = g W` (collected per chunk) and
/// `∂W = gᵀ h`, added in place into the weight's gradient (no `[V, H]` temporary in f32).
struct Head<'a> {
    model: &'a Transformer,
    hidden: &'a Tensor,
    /// `∂L/∂h`, `[N, H]` f32.
    grad_hidden: Tensor,
    /// The weight's `.grad` (defined beforehand), when the weight is trained.
    grad_weight: Option<Tensor>,
    /// Whether any gradient arrived (a loss without a graph sends none).
    touched: std::cell::Cell<bool>,
}

impl ChunkedLogits for Head<'_> {
    fn rows(&self) -> i64 {
        self.hidden.size()[0]
    }

    fn logits(&self, start: i64, len: i64) -> rlvr_core::Result<Tensor> {
        let _guard = tch::no_grad_guard();
        Ok(self.model.logits(&self.hidden.f_narrow(0, start, len)?)?)
    }

    fn backward(
        &self,
        start: i64,
        len: i64,
        held: Option<Tensor>,
        grad_of: &mut dyn FnMut(Tensor, bool) -> rlvr_core::Result<Tensor>,
    ) -> rlvr_core::Result<()> {
        let _guard = tch::no_grad_guard();
        let h = self.hidden.f_narrow(0, start, len)?;
        let logits = match held {
            Some(logits) => logits,
            None => self.model.logits(&h)?,
        };
        let kind = logits.kind();
        // The logits are this chunk's alone: the gradient is written over them.
        let g = grad_of(logits, true)?.f_to_kind(kind)?;
        let w = self.model.head_weight().f_to_kind(kind)?;
        let dh = g.f_matmul(&w)?;
        self.grad_hidden
            .f_narrow(0, start, len)?
            .f_copy_(&dh.f_to_kind(Kind::Float)?)?;
        if let Some(wg) = &self.grad_weight {
            let mut wg = wg.shallow_clone();
            let h = h.f_to_kind(kind)?;
            if wg.kind() == kind {
                let _ = wg.f_addmm_(&g.f_tr()?, &h)?;
            } else {
                let _ = wg.f_add_(&g.f_tr()?.f_matmul(&h)?)?;
            }
        }
        self.touched.set(true);
        Ok(())
    }
}

/// Tokens per LM-head chunk for a vocabulary: the configured chunk, lowered so one chunk's f32
/// logits stay within 512 MiB.
fn head_chunk(chunk: i64, vocab: i64) -> i64 {
    chunk.min((1 << 27) / vocab.max(1)).max(1)
}

/// The `.grad` of a trained parameter, made defined (zeros) if no backward has reached it yet, so
/// gradients can be added into it in place; `None` for a frozen one.
fn trained_grad(param: &Tensor) -> std::result::Result<Option<Tensor>, tch::TchError> {
    if !param.requires_grad() {
        return Ok(None);
    }
    if !param.grad().defined() {
        // One zero-gradient backward through a one-row slice allocates the full zero gradient.
        pull(
            &param.f_narrow(0, 0, 1)?,
            &param.f_narrow(0, 0, 1)?.f_zeros_like()?,
        )?;
    }
    Ok(Some(param.grad()))
}

/// The embedding's backward written out: the gradient `g` `[B, L, H]` of the embedded tokens is
/// added row by row into the weight's `.grad` (`index_add_`), without the `[V, H]` zero-filled
/// temporary autograd's embedding backward builds before accumulating it.
fn embedding_backward(model: &Transformer, ids: &Tensor, g: &Tensor) -> Result<()> {
    if let Some(mut wg) = trained_grad(model.embed_weight())? {
        let h = wg.size()[1];
        let _guard = tch::no_grad_guard();
        let _ = wg.f_index_add_(
            0,
            &ids.f_reshape([-1])?,
            &g.f_reshape([-1, h])?.f_to_kind(wg.kind())?,
        )?;
    }
    Ok(())
}

/// Backpropagates `grad` (same shape as `output`) from `output` into the leaves of its graph.
fn pull(output: &Tensor, grad: &Tensor) -> std::result::Result<(), tch::TchError> {
    pull_all(vec![output.shallow_clone()], vec![grad.shallow_clone()])
}

/// Backpropagates `grads[i]` from `outputs[i]` in one backward pass (through what the outputs'
/// graphs share, once), consuming both: each is freed once the graph is done with it.
fn pull_all(outputs: Vec<Tensor>, grads: Vec<Tensor>) -> std::result::Result<(), tch::TchError> {
    rlvr_kernels::backward(outputs, grads).map_err(|e| tch::TchError::Torch(e.to_string()))
}

/// Backpropagates `grad`, the gradient of decoder layer `i`'s output, into the layer's parameters
/// and its input `x` (a leaf), recomputing the layer from `x` (activation checkpointing). The
/// recomputation stops before the down projection, whose output backward does not need
/// (`y = mid + act Wᵀ`: `∂mid = g`, `∂act = g W`, `∂W = gᵀ act` — the products autograd
/// runs for a linear layer, [`linear_backward`]): one of the layer's seven matmuls, about 30% of
/// its weights, is not run again (Megatron-LM's selective recomputation rests on the same
/// observation, Korthikanti et al. 2022, arXiv 2205.05198). A down projection with a bias, an
/// adapter or another precision is recomputed whole.
fn recomputed_layer_backward(
    model: &Transformer,
    i: usize,
    x: &Tensor,
    frame: &Frame,
    grad: &Tensor,
) -> Result<()> {
    let Some(weight) = model.plain_down_weight(i) else {
        return Ok(pull(&model.layer(i, x, frame, None)?, grad)?);
    };
    let (mid, act) = model.layer_parts(i, x, frame, None)?;
    let grad_act = linear_backward(weight, &act, grad)?;
    // `act` and its gradient go with the call: freed as soon as the MLP's backward has used
    // them, as autograd frees the intermediate gradients of a whole recomputation.
    Ok(pull_all(
        vec![mid, act],
        vec![grad.shallow_clone(), grad_act],
    )?)
}

/// The backward of a plain linear projection `y = a Wᵀ` (no bias) written out: adds
/// `∂W = gᵀ a` into the weight's gradient (when it is trained; by the product's accumulation,
/// `addmm_`) and returns `∂a = g W` — the products autograd runs for a linear layer.
fn linear_backward(weight: &Tensor, a: &Tensor, grad: &Tensor) -> Result<Tensor> {
    let (out, inner) = (weight.size()[0], weight.size()[1]);
    // Defined before the no-grad scope: defining it runs a (tiny) backward.
    let weight_grad = trained_grad(weight)?;
    let _guard = tch::no_grad_guard();
    // In the projection's precision, as autograd casts the gradient reaching a bf16
    // product from an f32 residual stream.
    let g = grad.f_to_kind(weight.kind())?.f_reshape([-1, out])?;
    if let Some(mut wg) = weight_grad {
        let a = a.f_detach()?.f_reshape([-1, inner])?;
        if wg.kind() == a.kind() {
            // Accumulated by the product itself (`C += gᵀ a`): no `[out, in]` temporary
            // written, read and added.
            let _ = wg.f_addmm_(&g.f_tr()?, &a)?;
        } else {
            let _ = wg.f_add_(&a.f_tr()?.f_mm(&g)?.f_tr()?)?;
        }
    }
    let mut shape = a.size();
    if let Some(last) = shape.last_mut() {
        *last = inner;
    }
    Ok(g.f_mm(weight)?.f_view(shape.as_slice())?)
}

/// The MLP's backward from the kept post-attention residual `mid` (a leaf): `y = mid + act W_downᵀ`
/// with `act = silu(gate) · up` — the down projection's backward written out, the SwiGLU
/// gate's by the one-pass kernel; `gate` and `up` are the forward's when it kept them
/// ([`SavedAttention::gate_up`]: only the norm is recomputed and the two projections' backward is
/// written out, `∂n = ∂gate W_gate + ∂up W_up`), else recomputed from `mid` with their graph.
/// Leaves `∂L/∂mid` less the residual's `grad` in `mid.grad()`.
fn mlp_backward(
    model: &Transformer,
    i: usize,
    mid: &Tensor,
    kept: Option<(Tensor, Tensor)>,
    w_down: &Tensor,
    grad: &Tensor,
) -> Result<()> {
    let (gate, up) = match &kept {
        Some((gate, up)) => (gate.shallow_clone(), up.shallow_clone()),
        None => model.mlp_gate_up(i, mid)?,
    };
    let act = {
        let _guard = tch::no_grad_guard();
        rlvr_kernels::swiglu(&gate, &up)?
    };
    let grad_act = linear_backward(w_down, &act, grad)?;
    drop(act);
    let (grad_gate, grad_up) = rlvr_kernels::swiglu_backward(&grad_act, &gate, &up)?;
    drop(grad_act);
    if kept.is_none() {
        return Ok(pull_all(vec![gate, up], vec![grad_gate, grad_up])?);
    }
    drop((kept, gate, up));
    let Some((w_gate, w_up)) = model.plain_gate_up_weights(i) else {
        return Err(rlvr_core::CoreError::Shape(format!(
            "layer {i} kept its MLP's gate and up but they are not plain projections"
        ))
        .into());
    };
    let n = model.mlp_norm(i, mid)?;
    let grad_n = linear_backward(w_gate, &n, &grad_gate)?;
    drop(grad_gate);
    let grad_n = grad_n.f_add(&linear_backward(w_up, &n, &grad_up)?)?;
    drop(grad_up);
    Ok(pull(&n, &grad_n)?)
}

/// Backpropagates `grad`, the gradient of decoder layer `i`'s output, into the layer's parameters
/// and its input `x` (a leaf) from what the layer's forward kept ([`SavedAttention`]): the MLP's
/// backward from the kept post-attention residual ([`mlp_backward`]), the output projection's
/// written out ([`linear_backward`]), the attention kernel's backward on the kept output and
/// log-sum-exp with q/k/v recomputed from `x` — the kernel's forward and the output projection
/// are not run again. Returns the gradient of `x`.
fn saved_layer_backward(
    model: &Transformer,
    i: usize,
    x: &Tensor,
    mut saved: SavedAttention,
    frame: &Frame,
    grad: &Tensor,
) -> Result<Tensor> {
    let (Some(w_down), Some(w_o)) = (model.plain_down_weight(i), model.plain_o_weight(i)) else {
        return Err(rlvr_core::CoreError::Shape(format!(
            "layer {i} kept its attention but has no plain output or down projection"
        ))
        .into());
    };
    // 1. The MLP from the kept residual: y = mid + act W_downᵀ, so ∂mid = g + (MLP's backward).
    let mid = saved.mid.f_detach()?.set_requires_grad(true);
    mlp_backward(model, i, &mid, saved.gate_up.take(), w_down, grad)?;
    let grad_mid = mid.grad().f_add(grad)?;
    drop(mid);
    // 2. The output projection: mid = x + out W_oᵀ, out `[B, heads, l, d]` flattened per token.
    let size = saved.out.size();
    let (b, nh, l, hd) = (size[0], size[1], size[2], size[3]);
    let flat = saved.out.f_transpose(1, 2)?.f_reshape([b, l, nh * hd])?;
    let grad_out = linear_backward(w_o, &flat, &grad_mid)?
        .f_view([b, l, nh, hd])?
        .f_transpose(1, 2)?
        .f_contiguous()?;
    drop(flat);
    // 3. The attention kernel, on q/k/v with their graph: rotated again from the kept
    // projections (whose backward is then written out), or recomputed from `x`.
    let leaf = |t: Tensor| -> Result<Tensor> { Ok(t.f_detach()?.set_requires_grad(true)) };
    let leaves = match saved.qkv.take() {
        Some((q, k, v)) => Some([leaf(q)?, leaf(k)?, leaf(v)?]),
        None => None,
    };
    let (q, k, v) = match &leaves {
        Some([q, k, v]) => model.rotated_operands_repeated(
            i,
            (q.shallow_clone(), k.shallow_clone(), v.shallow_clone()),
            frame,
        )?,
        None => model.attention_operands_repeated(i, x, frame)?,
    };
    let (dq, dk, dv) = {
        let _guard = tch::no_grad_guard();
        model.attention_backward(&grad_out, (&q, &k, &v), &saved, frame)?
    };
    drop((saved, grad_out));
    pull_all(vec![q, k, v], vec![dq, dk, dv])?;
    if let Some(outputs) = leaves {
        qkv_backward(model, i, x, outputs)?;
    }
    Ok(x.grad().f_add(&grad_mid)?)
}

/// The backward of layer `i`'s q, k and v projections from the gradients of their kept outputs
/// (`.grad()` of the leaves `outputs`), written out: the input norm `n` of `x` recomputed with
/// its graph, each projection's weight (and bias: the gradient summed over tokens) gradient
/// added, and `∂n = Σ ∂out W` pulled back into `x`.
fn qkv_backward(model: &Transformer, i: usize, x: &Tensor, outputs: [Tensor; 3]) -> Result<()> {
    let Some(parts) = model.qkv_weights(i) else {
        return Err(rlvr_core::CoreError::Shape(format!(
            "layer {i} kept its q/k/v projections but they have adapters or another precision"
        ))
        .into());
    };
    let n = model.attention_norm(i, x)?;
    let mut grad_n: Option<Tensor> = None;
    for ((weight, bias), out) in parts.into_iter().zip(outputs) {
        let g = out.grad();
        if !g.defined() {
            continue;
        }
        if let Some(mut bg) = bias.map(trained_grad).transpose()?.flatten() {
            let _guard = tch::no_grad_guard();
            let rows = g.f_reshape([-1, weight.size()[0]])?;
            let _ = bg.f_add_(&rows.f_sum_dim_intlist(0, false, bg.kind())?)?;
        }
        let d = linear_backward(weight, &n, &g)?;
        grad_n = Some(match grad_n {
            Some(acc) => acc.f_add(&d)?,
            None => d,
        });
    }
    if let Some(g) = grad_n {
        pull(&n, &g)?;
    }
    Ok(())
}

/// Computes `loss_of(stats)` for the response tokens of `batch` (statistics `[B, L − P]`) and
/// accumulates its gradient into the model's parameters. Returns the loss value.
pub fn response_loss_backward(
    model: &Transformer,
    batch: &SequenceBatch,
    needs: &StatsNeeds,
    plan: UpdatePlan,
    loss_of: &mut dyn FnMut(&TokenStats) -> rlvr_core::Result<Tensor>,
) -> Result<f64> {
    sharded_loss_backward(model, batch, needs, plan, &NoHooks, loss_of)
}

/// [`response_loss_backward`] with `hooks` called around each part's use (ZeRO-2/3: gather a
/// layer before its forward and again before its recomputation, reduce its gradients right
/// after its backward). Active hooks imply activation checkpointing, and every rank makes the
/// same calls in the same order whatever its data.
pub fn sharded_loss_backward(
    model: &Transformer,
    batch: &SequenceBatch,
    needs: &StatsNeeds,
    plan: UpdatePlan,
    hooks: &dyn ShardHooks,
    loss_of: &mut dyn FnMut(&TokenStats) -> rlvr_core::Result<Tensor>,
) -> Result<f64> {
    loss_backward_from(model, batch, needs, plan, hooks, None, loss_of)
}

/// [`response_loss_backward`] for a batch the model generated at its current weights, starting
/// from the generation's record ([`crate::rollout_record`]) instead of a forward through the
/// decoder: `rows` (i64) are the record's rows of the batch's rows, whose columns are the
/// generation's (the same prompt width). Each layer's backward is the one of a layer that kept
/// its attention and projections, reading them from the record.
pub fn recorded_loss_backward(
    model: &Transformer,
    batch: &SequenceBatch,
    record: &mut RolloutRecord,
    rows: &Tensor,
    needs: &StatsNeeds,
    plan: UpdatePlan,
    loss_of: &mut dyn FnMut(&TokenStats) -> rlvr_core::Result<Tensor>,
) -> Result<f64> {
    let l = batch.input_ids.size()[1];
    if batch.prompt_len != record.prompt_len()
        || l > record.capacity()
        || rows.size() != [batch.input_ids.size()[0]]
    {
        return Err(rlvr_core::CoreError::Shape(format!(
            "a batch of {:?} with prompts {} wide does not fit a generation's record of {} \
             columns with prompts {} wide ({:?} rows given)",
            batch.input_ids.size(),
            batch.prompt_len,
            record.capacity(),
            record.prompt_len(),
            rows.size()
        ))
        .into());
    }
    loss_backward_from(
        model,
        batch,
        needs,
        plan,
        &NoHooks,
        Some((record, rows)),
        loss_of,
    )
}

/// The update of [`sharded_loss_backward`], its layer inputs and kept tensors from its own
/// forward or, with `recorded`, from a generation's record (rows given).
fn loss_backward_from(
    model: &Transformer,
    batch: &SequenceBatch,
    needs: &StatsNeeds,
    plan: UpdatePlan,
    hooks: &dyn ShardHooks,
    mut recorded: Option<(&mut RolloutRecord, &Tensor)>,
    loss_of: &mut dyn FnMut(&TokenStats) -> rlvr_core::Result<Tensor>,
) -> Result<f64> {
    let size = batch.input_ids.size();
    let (b, l) = (size[0], size[1]);
    let p = batch.prompt_len;
    if p < 1 || p >= l {
        return Err(rlvr_core::CoreError::Shape(format!(
            "prompt_len {p} must be in [1, {l}) for sequences of length {l}"
        ))
        .into());
    }
    let checkpoint = plan.checkpoint || hooks.active() || recorded.is_some();
    let head_part = if model.has_untied_head() {
        ParamPart::Head
    } else {
        ParamPart::Embedding
    };
    let t = l - p;
    let positions = positions_from_mask(&batch.attention_mask)?;
    let frame = model.frame(&positions, &batch.attention_mask, 0)?;
    // 1. The residual stream, with its whole graph or keeping only layer inputs.
    let mut inputs = Vec::new();
    // What each layer's forward kept for a backward without its attention ([`SavedAttention`]).
    let mut saved: Vec<Option<SavedAttention>> = Vec::new();
    let n = model.num_layers();
    // The part after layer i in the forward order.
    let after = |i: usize| {
        if i + 1 < n {
            ParamPart::Layer(i + 1)
        } else {
            ParamPart::Rest
        }
    };
    // The logits kept for the gradient pass: the plan's, or with checkpointing what
    // [`kept_budgets`] gives them.
    let mut keep_logits = plan.keep_logits_bytes;
    let last = if let Some((record, rows)) = recorded.as_mut() {
        record.take_last(rows, l)?.set_requires_grad(true)
    } else if checkpoint {
        let _guard = tch::no_grad_guard();
        hooks.gather(ParamPart::Embedding)?;
        hooks.prefetch(if n > 0 {
            ParamPart::Layer(0)
        } else {
            ParamPart::Rest
        })?;
        let mut x = model.embed(&batch.input_ids)?;
        hooks.release(ParamPart::Embedding)?;
        let room_applies = !hooks.active();
        let budgets = kept_budgets(model, &plan, (b, l, t), room_applies, &|i| {
            let saves = plan.save_attention && model.saves_attention(i, &x);
            (saves, saves && model.keeps_projections(i))
        });
        tracing::debug!(?budgets, "the update's kept logits and projections");
        for i in 0..n {
            inputs.push(x.shallow_clone());
            hooks.gather(ParamPart::Layer(i))?;
            hooks.prefetch(after(i))?;
            if plan.save_attention && model.saves_attention(i, &x) {
                let keep = budgets.projection_layers[i];
                let (y, kept) = model.layer_saving(i, &x, &frame, keep)?;
                saved.push(Some(kept));
                x = y;
            } else {
                saved.push(None);
                x = model.layer(i, &x, &frame, None)?;
            }
            hooks.release(ParamPart::Layer(i))?;
        }
        keep_logits = budgets.logits_bytes;
        x.f_detach()?.set_requires_grad(true)
    } else {
        let mut x = model.embed(&batch.input_ids)?;
        for i in 0..model.num_layers() {
            x = model.layer(i, &x, &frame, None)?;
        }
        x
    };
    hooks.gather(ParamPart::Rest)?;
    hooks.prefetch(head_part)?;
    let hidden = model
        .final_norm(&last)?
        .f_narrow(1, p - 1, t)?
        .f_reshape([b * t, -1])?;
    // 2. Statistics and the loss gradient through the LM head, chunk by chunk.
    let flat = hidden.f_detach()?;
    let targets = batch.input_ids.f_narrow(1, p, t)?.f_reshape([b * t])?;
    hooks.gather(head_part)?;
    if checkpoint && n > 0 {
        hooks.prefetch(ParamPart::Layer(n - 1))?;
    }
    hooks.zero_grads(head_part)?;
    let weight = model.head_weight();
    let head = Head {
        model,
        hidden: &flat,
        grad_hidden: flat.f_zeros_like()?.f_to_kind(Kind::Float)?,
        grad_weight: trained_grad(weight)?,
        touched: std::cell::Cell::new(false),
    };
    let chunk = head_chunk(plan.chunk, weight.size()[0]);
    let value =
        backward_through_stats(&head, &targets, &[b, t], needs, chunk, keep_logits, loss_of)?;
    hooks.release(head_part)?;
    if head_part == ParamPart::Head {
        hooks.reduce_grads(ParamPart::Head)?;
    }
    if !head.touched.get() && !hooks.active() {
        return Ok(value);
    }
    // 3. Back through the final norm (and, without checkpointing, the whole decoder).
    hooks.zero_grads(ParamPart::Rest)?;
    pull(&hidden, &head.grad_hidden.f_to_kind(hidden.kind())?)?;
    hooks.reduce_grads(ParamPart::Rest)?;
    hooks.release(ParamPart::Rest)?;
    if checkpoint {
        let mut g = last.grad();
        for i in (0..model.num_layers()).rev() {
            let (x, kept) = match recorded.as_mut() {
                Some((record, rows)) => {
                    let (x, kept) = record.take_layer(i, rows, l)?;
                    (x, Some(kept))
                }
                None => (
                    inputs[i].shallow_clone(),
                    saved.get_mut(i).and_then(Option::take),
                ),
            };
            let x = x.f_detach()?.set_requires_grad(true);
            hooks.gather(ParamPart::Layer(i))?;
            if i > 0 {
                hooks.prefetch(ParamPart::Layer(i - 1))?;
            }
            hooks.zero_grads(ParamPart::Layer(i))?;
            g = match kept {
                Some(kept) => saved_layer_backward(model, i, &x, kept, &frame, &g)?,
                None => {
                    recomputed_layer_backward(model, i, &x, &frame, &g)?;
                    x.grad()
                }
            };
            hooks.reduce_grads(ParamPart::Layer(i))?;
            hooks.release(ParamPart::Layer(i))?;
        }
        if head_part == ParamPart::Head {
            hooks.zero_grads(ParamPart::Embedding)?;
        }
        embedding_backward(model, &batch.input_ids, &g)?;
        hooks.reduce_grads(ParamPart::Embedding)?;
    }
    Ok(value)
}
