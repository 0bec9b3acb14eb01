//! The memory planner (`rlvr plan`, docs/distributed.md): per-rank bytes by component of
//! training a model shape with rlvr's update path — f32 master weights, gradients and AdamW
//! moments (divided by `train.sharding`), the decoder-layer inputs kept for activation
//! checkpointing, one layer's recomputed activations, the LM head's kept logits and chunk, the
//! rollout's KV cache, collective buffers and the runtime — and whether the peak fits a device.
//!
//! It models what the code allocates (chunk sizes from `rlvr_models::backward`, the kept logits
//! of `model.keep_logits_mib`, 64 MiB all-reduce buckets, the sharded optimizer's per-tensor all-gather) and is checked
//! against measured peaks on a CPU (docs/distributed.md gives each prediction's error).

use crate::sharding::Sharding;
use rlvr_models::hf_config::HfConfig;

/// Bytes of one GiB.
pub const GIB: f64 = (1u64 << 30) as f64;

/// Gradient all-reduce bucket (`crate::distributed`).
const BUCKET: f64 = (64u64 << 20) as f64;
/// The process's own footprint: libtorch, tokenizer, problems, buffers (CPU, measured idle).
const RUNTIME: f64 = 0.45 * GIB;

/// What to plan for.
#[derive(Debug, Clone)]
pub struct PlanInput {
    /// The model's shape.
    pub config: HfConfig,
    /// Prompt tokens per response.
    pub prompt_tokens: i64,
    /// Response tokens per response.
    pub response_tokens: i64,
    /// Responses per forward/backward (`train.micro_batch_size`, or fewer per rank).
    pub micro_batch: i64,
    /// Responses each rank generates together (its share of a step's rollout).
    pub rollout_rows: i64,
    /// Data-parallel ranks.
    pub ranks: i64,
    /// `train.sharding`.
    pub sharding: Sharding,
    /// bf16 activations and KV cache (`model.mixed_precision = "bf16"` on CUDA); f32 otherwise.
    pub bf16: bool,
    /// Rollouts multiply weights packed for generation (`model.packed_generation` on a CPU, not
    /// under `gradients` or `full` sharding): a copy of the projections and the LM head during
    /// the rollout.
    pub packed_generation: bool,
    /// Tokens per LM-head chunk (`model.chunk`, default 1024).
    pub chunk: i64,
    /// LM-head logits kept for the gradient pass, bytes (`model.keep_logits_mib`; default
    /// `rlvr_models::backward::DEFAULT_KEEP_LOGITS_BYTES`).
    pub keep_logits_bytes: i64,
    /// Each layer's attention output, log-sum-exp and post-attention residual kept for the
    /// recomputation (`model.save_attention`, which applies on a CPU in f32).
    pub save_attention: bool,
    /// Projection outputs (q/k/v, gate, up) kept for the backward, bytes
    /// (`model.keep_projections_mib`, with `save_attention`, on a CPU in f32): whole layers while
    /// they fit.
    pub keep_projection_bytes: i64,
    /// `model.keep_in_gradient_memory`: one process's first micro-batch after each optimizer
    /// step keeps more logits and projections in the memory the layers' gradients take later
    /// (counted as a component, not added to the peak: the update's sum already holds the
    /// gradients during the head phase).
    pub keep_in_gradient_memory: bool,
    /// `train.rollout_activations_mib` in bytes: the rollout records its forward passes for the
    /// update (CPU, f32, not under `gradients` or `full` sharding) when the whole rollout's
    /// record fits; assumes one on-policy step per batch, where the update reads it.
    pub rollout_record_bytes: i64,
    /// Device memory per rank, bytes.
    pub device_bytes: f64,
}

/// One component of a rank's memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// What it is.
    pub name: &'static str,
    /// Bytes per rank.
    pub bytes: f64,
    /// When it is held.
    pub phase: &'static str,
}

/// A rank's predicted memory.
#[derive(Debug, Clone)]
pub struct MemoryPlan {
    /// Parameters of the model.
    pub parameters: f64,
    /// The components.
    pub components: Vec<Component>,
    /// Peak of the update phase.
    pub update_peak: f64,
    /// Peak of the rollout phase.
    pub rollout_peak: f64,
    /// Peak of the optimizer step (parameters gathered when sharded).
    pub optimizer_peak: f64,
    /// The largest of the three.
    pub peak: f64,
    /// Whether `peak` fits the device.
    pub fits: bool,
}

/// A [`Component`].
fn part(name: &'static str, bytes: f64, phase: &'static str) -> Component {
    Component { name, bytes, phase }
}

/// Parameters of one decoder layer.
fn layer_parameters(c: &HfConfig) -> f64 {
    let (h, i) = (c.hidden_size as f64, c.intermediate_size as f64);
    let q = (c.num_heads * c.head_dim) as f64;
    let kv = (c.num_kv_heads * c.head_dim) as f64;
    h * (q + 2.0 * kv) + q * h + 3.0 * h * i + 2.0 * h
}

/// The rollout's own buffers: its KV cache and one step's logits, and the weights packed for
/// generation (rlvr_models' `Transformer::pack_for_generation`: every projection and the LM head,
/// f32, on a CPU).
fn rollout_buffers(input: &PlanInput, t: f64, act: f64, projections: f64) -> (f64, f64) {
    let c = &input.config;
    let (h, v, layers) = (
        c.hidden_size as f64,
        c.vocab_size as f64,
        c.num_layers as f64,
    );
    let rows = input.rollout_rows.max(1) as f64;
    let kv = (c.num_kv_heads * c.head_dim) as f64;
    let cache = rows * t * layers * 2.0 * kv * act + rows * v * 4.0;
    // The trainer switches packing off under `gradients` and `full` sharding.
    let sharded = input.sharding as u8 >= Sharding::Gradients as u8;
    let packed = if input.packed_generation && !sharded {
        4.0 * (projections + v * h)
    } else {
        0.0
    };
    (cache, packed)
}

/// The largest part's whole gradient during its backward (the tied embedding's from the head to
/// the end) under `gradients`; under `full` its gathered weight besides it (a layer's as bf16
/// compute copies with bf16) and the next layer's gather in flight (prefetched: the gathered
/// buffer and this rank's slice sent). Nothing unsharded.
fn part_transient(input: &PlanInput, full: bool, gradients: bool) -> f64 {
    let c = &input.config;
    let (v, h, layer) = (
        c.vocab_size as f64,
        c.hidden_size as f64,
        layer_parameters(c),
    );
    let gathered = if input.bf16 { 2.0 } else { 4.0 };
    if full {
        let prefetched = gathered * layer * (1.0 + 1.0 / input.ranks.max(1) as f64);
        (8.0 * v * h).max((gathered + 4.0) * layer) + prefetched
    } else if gradients {
        4.0 * (v * h).max(layer)
    } else {
        0.0
    }
}

/// What the checkpointed update's forward keeps besides each layer's input, for `tokens` tokens
/// per micro-batch: with `model.save_attention` (f32 on a CPU) each layer's attention output,
/// post-attention residual and log-sum-exp per head; with `model.keep_projections_mib` also the
/// q/k/v, gate and up outputs of as many whole layers as the budget holds. Bytes of each.
fn kept_for_backward(input: &PlanInput, tokens: f64) -> (f64, f64) {
    if !input.save_attention || input.bf16 {
        return (0.0, 0.0);
    }
    let c = &input.config;
    let layers = c.num_layers as f64;
    let attention = layers * tokens * (2 * c.hidden_size + c.num_heads) as f64 * 4.0;
    let width = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim + 2 * c.intermediate_size;
    let per_layer = tokens * width as f64 * 4.0;
    let projections = (input.keep_projection_bytes as f64 / per_layer)
        .floor()
        .min(layers)
        * per_layer;
    (attention, projections)
}

/// The rollout's record of its forward passes (`rlvr_models::rollout_record`), bytes: each
/// layer's input, q/k/v, attention output and log-sum-exp, post-attention residual, gate and up,
/// and the final residual stream, f32, for every rollout row and position; 0 when it is not
/// taken (off, bf16, sharded gradients, or over its budget).
fn rollout_record(input: &PlanInput, t: f64) -> f64 {
    let c = &input.config;
    let sharded = input.sharding as u8 >= Sharding::Gradients as u8 && input.ranks > 1;
    if input.rollout_record_bytes <= 0 || input.bf16 || sharded {
        return 0.0;
    }
    let (q, kv) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    let width = 2 * c.hidden_size + 2 * q + 2 * kv + c.num_heads + 2 * c.intermediate_size;
    let per_token = (c.num_layers * width + c.hidden_size) as f64 * 4.0;
    let bytes = per_token * input.rollout_rows.max(1) as f64 * t;
    if bytes <= input.rollout_record_bytes as f64 {
        bytes
    } else {
        0.0
    }
}

/// Tokens per LM-head chunk (rlvr_models' `head_chunk`): `model.chunk`, lowered so that one
/// chunk's f32 logits stay within 512 MiB.
fn head_chunk_tokens(input: &PlanInput, v: f64) -> f64 {
    (input.chunk as f64)
        .min(((1u64 << 27) as f64 / v).floor())
        .max(1.0)
}

/// The update's LM-head phase for `responses` response tokens of `tokens`: one chunk's f32
/// logits (its gradient is written over them), the logits kept besides it, and the final hidden
/// states.
fn head_bytes(input: &PlanInput, responses: f64, tokens: f64) -> f64 {
    let (h, v) = (
        input.config.hidden_size as f64,
        input.config.vocab_size as f64,
    );
    let chunk = head_chunk_tokens(input, v);
    let head_chunk = chunk.min(responses) * v * 4.0;
    let kept = (input.keep_logits_bytes as f64).min((responses - chunk).max(0.0) * v * 4.0);
    head_chunk + kept + tokens * h * 4.0
}

/// What one process's update keeps besides its budgets in the memory the decoder layers'
/// gradients take later (`model.keep_in_gradient_memory`, rlvr_models' `kept_budgets`): the
/// logits of all LM-head chunks but the last, then whole layers' projections (CPU, f32), within
/// the layers' gradient bytes less what the forward keeps for the backward (layer inputs, kept
/// attention, the budgets' logits and projections). 0 with more ranks (their gradients outlive the step), with the
/// rollout's record, or with the switch off.
fn kept_in_gradient_memory(input: &PlanInput, b: f64, response: f64, t: f64) -> f64 {
    let c = &input.config;
    if !input.keep_in_gradient_memory || input.ranks > 1 || rollout_record(input, t) > 0.0 {
        return 0.0;
    }
    let v = c.vocab_size as f64;
    let chunk = head_chunk_tokens(input, v);
    // Whole chunks, as the statistics pass keeps them.
    let kept_logits = |bytes: f64| {
        rlvr_models::stats_grad::kept_logits_bytes(
            (b * response) as i64,
            chunk as i64,
            c.vocab_size,
            bytes.min(i64::MAX as f64) as i64,
        ) as f64
    };
    let explicit_logits = kept_logits(input.keep_logits_bytes as f64);
    let (attention, explicit) = kept_for_backward(input, b * t);
    // The layers' gradients less what the forward keeps until their backward anyway.
    let inputs = (c.num_layers * c.hidden_size) as f64 * b * t * 4.0;
    let room = (4.0 * c.num_layers as f64 * layer_parameters(c)
        - inputs
        - attention
        - explicit
        - explicit_logits)
        .max(0.0);
    let logits = kept_logits(explicit_logits + room) - explicit_logits;
    let width = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim + 2 * c.intermediate_size;
    let per_layer = b * t * width as f64 * 4.0;
    let projections = if input.save_attention && !input.bf16 {
        let left = (c.num_layers as f64 * per_layer - explicit).max(0.0);
        (((room - logits) / per_layer).floor().max(0.0) * per_layer).min(left)
    } else {
        0.0
    };
    logits + projections
}

/// [`kept_in_gradient_memory`] as a component: held in the head phase, not added to the peak.
fn kept_in_gradients(input: &PlanInput, b: f64, response: f64, t: f64) -> Component {
    let bytes = kept_in_gradient_memory(input, b, response, t);
    part(
        "kept in the gradients' memory",
        bytes,
        "update (head; not in the peak)",
    )
}

/// What the update's backward reads besides the head for micro-batches of `b` sequences of `t`
/// tokens: the rollout's record, or its own forward's checkpointed layer inputs, kept attention
/// and kept projections (the record replaces the three). Bytes of each, in that order.
fn update_inputs(input: &PlanInput, b: f64, t: f64, act: f64) -> (f64, f64, f64, f64) {
    let record = rollout_record(input, t);
    if record > 0.0 {
        return (record, 0.0, 0.0, 0.0);
    }
    let c = &input.config;
    let checkpoints = (c.num_layers * c.hidden_size) as f64 * b * t * act;
    let (attention, projections) = kept_for_backward(input, b * t);
    (0.0, checkpoints, attention, projections)
}

/// Predicts one rank's memory for `input`.
pub fn plan(input: &PlanInput) -> MemoryPlan {
    let c = &input.config;
    let p = c.parameter_count() as f64;
    let n = input.ranks.max(1) as f64;
    let act = if input.bf16 { 2.0 } else { 4.0 };
    let (h, i, v) = (
        c.hidden_size as f64,
        c.intermediate_size as f64,
        c.vocab_size as f64,
    );
    let layers = c.num_layers as f64;
    let b = input.micro_batch.max(1) as f64;
    let response = input.response_tokens.max(0) as f64;
    let t = (input.prompt_tokens + input.response_tokens).max(1) as f64;
    let largest = (v * h).max(layer_parameters(c) / 3.0);
    let sharded = |level: Sharding| input.ranks > 1 && input.sharding as u8 >= level as u8;

    // Under `full` the update holds the master slices and one gathered part at a time; the
    // rollout phase holds the whole model besides them (crate::param_shards), with bf16 the
    // decoder layers' projections as bf16 compute copies (Policy::compute_copies).
    let projections = layers * (layer_parameters(c) - 2.0 * h);
    let compute_copy = if input.bf16 {
        2.0 * projections + 4.0 * (p - projections)
    } else {
        4.0 * p
    };
    let (weights, weights_rollout) = if sharded(Sharding::Full) {
        (4.0 * p / n, compute_copy + 4.0 * p / n)
    } else {
        (4.0 * p, 4.0 * p)
    };
    // `gradients`/`full`: slices during the update only, freed after the optimizer step; one
    // process releases its whole gradients after the step too (crate::actor); otherwise whole
    // gradients kept between steps.
    let (gradients, gradients_rollout) = if sharded(Sharding::Gradients) {
        (4.0 * p / n, 0.0)
    } else if input.ranks <= 1 {
        (4.0 * p, 0.0)
    } else {
        (4.0 * p, 4.0 * p)
    };
    let transient = part_transient(input, sharded(Sharding::Full), sharded(Sharding::Gradients));
    let moments = if sharded(Sharding::Optimizer) {
        8.0 * p / n
    } else {
        8.0 * p
    };
    let (record, checkpoints, kept_attention, kept_projections) = update_inputs(input, b, t, act);
    // One layer recomputed with its autograd graph: norms, q/k/v/o, residuals, the gated MLP's
    // three projections and product, and GQA's keys and values repeated to every head.
    let heads = (c.num_heads * c.head_dim) as f64;
    let layer = b * t * (10.0 * h + 6.0 * i + 2.0 * heads) * act;
    let head = head_bytes(input, b * response, b * t);
    let (cache, packed) = rollout_buffers(input, t, act, projections);
    let all_reduce = if input.ranks > 1 { 2.0 * BUCKET } else { 0.0 };
    // The sharded optimizer's all-gather: a piece of at most 16M elements from each rank, and
    // the piece sent (`crate::sharding::gather_into`).
    let gather = if sharded(Sharding::Optimizer) && !sharded(Sharding::Full) {
        (n + 1.0) * (16.0 * 1024.0 * 1024.0f64).min((largest / n).ceil()) * 4.0
    } else {
        0.0
    };
    let state = weights + gradients + moments + RUNTIME;
    let update_peak = state
        + transient
        + checkpoints
        + kept_attention
        + kept_projections
        + record
        + layer.max(head)
        + all_reduce;
    let rollout_peak =
        weights_rollout + gradients_rollout + moments + RUNTIME + cache + packed + record;
    // The gathered tensors come on top of the update's high-water mark: the heap the update
    // fragmented is not reused for them (measured, docs/distributed.md).
    let optimizer_peak = update_peak + gather;
    let peak = update_peak.max(rollout_peak).max(optimizer_peak);
    let components = vec![
        part("weights (f32 master)", weights, "update"),
        part("weights during rollouts", weights_rollout, "rollout"),
        part("gradients (f32)", gradients, "update"),
        part(
            "gradients between steps",
            gradients_rollout,
            "rollout (kept by ranks > 1 unless sharded)",
        ),
        part("largest part gathered / its gradient", transient, "update"),
        part("AdamW moments (f32)", moments, "always"),
        part("checkpointed layer inputs", checkpoints, "update"),
        part("kept attention outputs (CPU)", kept_attention, "update"),
        part("kept projections (CPU)", kept_projections, "update"),
        part(
            "rollout's recorded forward passes (CPU)",
            record,
            "rollout and update",
        ),
        part("one layer recomputed", layer, "update (backward)"),
        part("LM head: logits chunk + kept logits", head, "update (head)"),
        kept_in_gradients(input, b, response, t),
        part("rollout KV cache + logits", cache, "rollout"),
        part("weights packed for generation (CPU)", packed, "rollout"),
        part(
            "collective buffers",
            all_reduce + gather,
            "update / optimizer step",
        ),
        part("runtime (libtorch, data)", RUNTIME, "always"),
    ];
    MemoryPlan {
        parameters: p,
        components,
        update_peak,
        rollout_peak,
        optimizer_peak,
        peak,
        fits: peak <= input.device_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(sharding: Sharding, ranks: i64) -> PlanInput {
        let text = rlvr_models::shapes::find("qwen2.5-7b").unwrap_or_default();
        PlanInput {
            config: HfConfig::from_json(text).unwrap(),
            prompt_tokens: 256,
            response_tokens: 1024,
            micro_batch: 1,
            rollout_rows: 8,
            ranks,
            sharding,
            bf16: true,
            packed_generation: false,
            chunk: 1024,
            keep_logits_bytes: rlvr_models::backward::DEFAULT_KEEP_LOGITS_BYTES,
            save_attention: rlvr_models::backward::DEFAULT_SAVE_ATTENTION,
            keep_projection_bytes: rlvr_models::backward::DEFAULT_KEEP_PROJECTION_BYTES,
            keep_in_gradient_memory: rlvr_models::backward::DEFAULT_KEEP_IN_GRADIENT_MEMORY,
            rollout_record_bytes: 0,
            device_bytes: 80e9,
        }
    }

    #[test]
    fn kept_attention_counts_two_hidden_vectors_and_a_log_sum_exp_per_head_in_f32_only() {
        let kept = |bf16: bool, save_attention: bool| {
            let p = plan(&PlanInput {
                bf16,
                save_attention,
                ..input(Sharding::None, 1)
            });
            let part = p
                .components
                .iter()
                .find(|c| c.name == "kept attention outputs (CPU)")
                .map(|c| c.bytes);
            (part, p.update_peak)
        };
        let (on, peak_on) = kept(false, true);
        let (off, peak_off) = kept(false, false);
        // qwen2.5-7b: 28 layers, hidden 3584, 28 heads; 1 × (256 + 1024) tokens.
        let want = 28.0 * 1280.0 * (2.0 * 3584.0 + 28.0) * 4.0;
        assert_eq!(on, Some(want));
        assert_eq!(off, Some(0.0));
        assert_eq!(peak_on - peak_off, want);
        assert_eq!(kept(true, true).0, Some(0.0));
    }

    #[test]
    fn the_rollouts_record_counts_every_layer_and_position_of_the_rollout_and_replaces_the_kept_tensors(
    ) {
        // qwen2.5-7b: 28 layers, hidden 3584, 28 heads and 4 kv heads of 128, intermediate
        // 18944; 8 rollout rows of 256 + 1024 positions.
        let width = 2.0 * 3584.0 + 2.0 * 28.0 * 128.0 + 2.0 * 4.0 * 128.0 + 28.0 + 2.0 * 18944.0;
        let want = (28.0 * width + 3584.0) * 4.0 * 8.0 * 1280.0;
        let with = |budget: f64, bf16: bool| {
            plan(&PlanInput {
                bf16,
                save_attention: true,
                rollout_record_bytes: budget as i64,
                ..input(Sharding::None, 1)
            })
        };
        let (on, off) = (with(want, false), with(0.0, false));
        assert_eq!(of(&on, "rollout's recorded forward passes (CPU)"), want);
        assert_eq!(of(&off, "rollout's recorded forward passes (CPU)"), 0.0);
        assert!((on.rollout_peak - off.rollout_peak - want).abs() <= 1.0);
        // The update reads the record instead of keeping its own forward's tensors.
        for kept in ["checkpointed layer inputs", "kept attention outputs (CPU)"] {
            assert_eq!(of(&on, kept), 0.0, "{kept}");
            assert!(of(&off, kept) > 0.0, "{kept}");
        }
        // Over its budget, or in bf16, no record is taken.
        assert_eq!(
            of(
                &with(want - 1.0, false),
                "rollout's recorded forward passes (CPU)"
            ),
            0.0
        );
        assert_eq!(
            of(&with(want, true), "rollout's recorded forward passes (CPU)"),
            0.0
        );
    }

    #[test]
    fn kept_projections_count_whole_layers_of_q_k_v_gate_and_up_within_the_budget() {
        // qwen2.5-7b: 28 heads and 4 kv heads of 128, intermediate 18944; 1 × (256 + 1024)
        // tokens: one layer's q, k, v, gate and up.
        let per_layer = 1280.0 * ((28.0 + 8.0) * 128.0 + 2.0 * 18944.0) * 4.0;
        let kept = |bf16: bool, keep_projection_bytes: i64| {
            let p = plan(&PlanInput {
                bf16,
                keep_projection_bytes,
                ..input(Sharding::None, 1)
            });
            p.components
                .iter()
                .find(|c| c.name == "kept projections (CPU)")
                .map(|c| c.bytes)
        };
        assert_eq!(kept(false, 0), Some(0.0));
        assert_eq!(kept(false, (2.5 * per_layer) as i64), Some(2.0 * per_layer));
        // Never more than the model's 28 layers.
        assert_eq!(kept(false, i64::MAX), Some(28.0 * per_layer));
        assert_eq!(kept(true, i64::MAX), Some(0.0));
    }

    #[test]
    fn model_state_is_sixteen_bytes_per_parameter_divided_as_zero_divides_it() {
        let state = |plan: &MemoryPlan| -> f64 {
            let of = |name: &str| {
                plan.components
                    .iter()
                    .find(|c| c.name == name)
                    .map_or(f64::NAN, |c| c.bytes)
            };
            (of("weights (f32 master)") + of("gradients (f32)") + of("AdamW moments (f32)"))
                / plan.parameters
        };
        let none = plan(&input(Sharding::None, 8));
        assert!((state(&none) - 16.0).abs() < 1e-9);
        let zero1 = plan(&input(Sharding::Optimizer, 8));
        assert!((state(&zero1) - (8.0 + 1.0)).abs() < 1e-9);
        let zero2 = plan(&input(Sharding::Gradients, 8));
        assert!((state(&zero2) - (4.0 + 12.0 / 8.0)).abs() < 1e-9);
        let zero3 = plan(&input(Sharding::Full, 8));
        assert!((state(&zero3) - 16.0 / 8.0).abs() < 1e-9);
        // One rank: nothing to divide.
        assert!((state(&plan(&input(Sharding::Full, 1))) - 16.0).abs() < 1e-9);
        // A 7.6B model: unsharded cannot fit 80 GB; optimizer sharding over 8 ranks can.
        assert!(!none.fits);
        assert!(zero1.fits, "{:.1} GB", zero1.peak / 1e9);
    }

    fn of(plan: &MemoryPlan, name: &str) -> f64 {
        plan.components
            .iter()
            .find(|c| c.name == name)
            .map_or(f64::NAN, |c| c.bytes)
    }

    #[test]
    fn full_sharding_rollouts_hold_bf16_copies_of_the_projections() {
        // Qwen2.5-7B: 28 layers of q/k/v/o and gate/up/down projections, 3584 × (3584 + 2 ×
        // 512) + 3584² + 3 × 3584 × 18944 = 233,046,016 each (6.53e9 in all, bf16 copies);
        // embedding, untied head, norms and biases (1.09e9) gathered in f32; the master slices.
        let full = plan(&input(Sharding::Full, 8));
        let projections = 28.0 * 233_046_016.0;
        let want =
            2.0 * projections + 4.0 * (full.parameters - projections) + 4.0 * full.parameters / 8.0;
        let got = of(&full, "weights during rollouts");
        assert!((got - want).abs() <= 1e-3 * want, "{got} vs {want}");
        // f32 compute (a CPU run) gathers every parameter in f32.
        let f32_full = plan(&PlanInput {
            bf16: false,
            ..input(Sharding::Full, 8)
        });
        let got = of(&f32_full, "weights during rollouts");
        assert!((got - 4.5 * full.parameters).abs() <= 1e-6 * got);
    }

    #[test]
    fn packed_generation_adds_the_projections_and_head_to_the_rollout_peak() {
        let plain = plan(&PlanInput {
            bf16: false,
            ..input(Sharding::None, 1)
        });
        let packed = plan(&PlanInput {
            bf16: false,
            packed_generation: true,
            ..input(Sharding::None, 1)
        });
        let c = &input(Sharding::None, 1).config;
        let (h, v) = (c.hidden_size as f64, c.vocab_size as f64);
        let layer = (c.num_heads * c.head_dim) as f64 * h * 2.0
            + 2.0 * (c.num_kv_heads * c.head_dim) as f64 * h
            + 3.0 * h * c.intermediate_size as f64;
        let want = 4.0 * (c.num_layers as f64 * layer + v * h);
        assert_eq!(of(&plain, "weights packed for generation (CPU)"), 0.0);
        let got = of(&packed, "weights packed for generation (CPU)");
        assert!((got - want).abs() <= 1e-3 * want, "{got} vs {want}");
        assert!((packed.rollout_peak - plain.rollout_peak - got).abs() <= 1.0);
        // Sharded runs do not pack (the trainer switches it off).
        let sharded = plan(&PlanInput {
            bf16: false,
            packed_generation: true,
            ..input(Sharding::Full, 3)
        });
        assert_eq!(of(&sharded, "weights packed for generation (CPU)"), 0.0);
    }

    #[test]
    fn one_process_keeps_logits_then_projections_in_the_layers_gradients_without_a_higher_peak() {
        let name = "kept in the gradients' memory";
        let text = rlvr_models::shapes::find("qwen2.5-0.5b").unwrap_or_default();
        let cpu = |keep: bool, ranks: i64, response_tokens: i64| {
            plan(&PlanInput {
                config: HfConfig::from_json(text).unwrap(),
                prompt_tokens: 32,
                response_tokens,
                micro_batch: 2,
                bf16: false,
                keep_in_gradient_memory: keep,
                ..input(Sharding::None, ranks)
            })
        };
        let c = HfConfig::from_json(text).unwrap();
        // The layers' gradients less each layer's input, attention output, post-attention
        // residual and log-sum-exp per head (f32) of 2 × (32 + 512) tokens.
        let kept = |t: f64| 24.0 * 2.0 * t * (3 * 896 + 14) as f64 * 4.0;
        let gradients = 4.0 * c.num_layers as f64 * layer_parameters(&c);
        let room = gradients - kept(544.0);
        let v = c.vocab_size as f64;
        let per_layer = |t: f64| {
            2.0 * t
                * ((c.num_heads + 2 * c.num_kv_heads) * c.head_dim + 2 * c.intermediate_size) as f64
                * 4.0
        };
        // 2 × 512 response tokens in chunks of 883 at most: two of 512, the first one kept
        // (311 MB of the 1.1 GB), then as many whole layers' projections as the rest holds.
        let logits = 512.0 * v * 4.0;
        let layers = ((room - logits) / per_layer(544.0)).floor().min(24.0);
        let want = logits + layers * per_layer(544.0);
        let got = of(&cpu(true, 1, 512), name);
        assert!((got - want).abs() <= 1.0, "{got} vs {want}");
        assert!(got <= room);
        // 2 × 1024: chunks of 682, 683 and 683 tokens, the first two kept (830 MB of the
        // 0.88 GB), no whole layer's projections (92 MB) in the rest; 2 × 4096: the forward's
        // keeps exceed the gradients.
        let got = of(&cpu(true, 1, 1024), name);
        assert_eq!(got, (682.0 + 683.0) * v * 4.0);
        assert!(gradients - kept(1056.0) - got < per_layer(1056.0));
        assert_eq!(of(&cpu(true, 1, 4096), name), 0.0);
        // 2 × 2048: 0.35 GB, less than one chunk of 819 tokens' logits (0.5 GB): one layer's
        // projections (0.18 GB).
        assert_eq!(of(&cpu(true, 1, 2048), name), per_layer(2080.0));
        // Not added to the peak; nothing with more ranks or with the switch off.
        assert_eq!(cpu(true, 1, 512).peak, cpu(false, 1, 512).peak);
        assert_eq!(of(&cpu(true, 2, 512), name), 0.0);
        assert_eq!(of(&cpu(false, 1, 512), name), 0.0);
    }
}
