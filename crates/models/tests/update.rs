//! The memory-bounded update (chunked LM head with gradients, activation checkpointing, bf16
//! compute) gives the loss value and parameter gradients of plain autograd over the full graph.

mod common;
use common::*;

use rlvr_core::SequenceBatch;
use rlvr_models::backward::{kept_budgets, response_loss_backward, UpdatePlan};
use rlvr_models::token_stats::response_stats;
use tch::{Device, Kind, Tensor};

fn batch() -> (SequenceBatch, Tensor) {
    batch_padded(true)
}

/// Three sequences, with a left-padded prompt and a short response when `padded` (the attention
/// then takes a mask), else all of the same length (the kernels' causal rule).
fn batch_padded(padded: bool) -> (SequenceBatch, Tensor) {
    tch::manual_seed(5);
    let (b, p, t) = (3, 6, 9);
    let ids = Tensor::randint(512, [b, p + t], (Kind::Int64, Device::Cpu));
    let mask = Tensor::ones([b, p + t], (Kind::Int64, Device::Cpu));
    if padded {
        let _ = mask.get(0).narrow(0, 0, 3).fill_(0); // a left-padded prompt
        let _ = mask.get(2).narrow(0, p + 5, t - 5).fill_(0); // a short response
    }
    let rmask = mask.narrow(1, p, t).to_kind(Kind::Float);
    (
        SequenceBatch {
            input_ids: ids,
            attention_mask: mask,
            prompt_len: p,
        },
        rmask,
    )
}

#[test]
fn chunked_checkpointed_update_equals_full_autograd() {
    for name in ["llama-tiny", "qwen2-tiny", "qwen3-tiny"] {
        let m = model(name);
        let probe = Tensor::zeros(
            [1, 2, m.model.config().hidden_size],
            (Kind::Float, Device::Cpu),
        );
        // The attention-keeping recomputation is what runs with `save_attention` on these f32
        // CPU models (it is compared below against full autograd, not only against itself).
        assert!(m.model.saves_attention(0, &probe), "{name}");
        for padded in [true, false] {
            let (batch, rmask) = batch_padded(padded);
            let _ = grads(&m);
            let s = response_stats(&m.model, &batch, &needs(), 1 << 20).unwrap();
            let reference = loss(&s, &rmask);
            reference.backward();
            let want = grads(&m);
            let want_value = reference.double_value(&[]);
            // One layer's kept projections: the budget that keeps them in the first layer only.
            let size = batch.input_ids.size();
            let one_layer = size[0] * size[1] * m.model.kept_projection_bytes_per_token();
            assert!(m.model.keeps_projections(0), "{name}");
            {
                // What a kept layer hands its backward: the forward's own projections.
                let _guard = tch::no_grad_guard();
                let positions =
                    rlvr_models::transformer::positions_from_mask(&batch.attention_mask).unwrap();
                let frame = m.model.frame(&positions, &batch.attention_mask, 0).unwrap();
                let x = m.model.embed(&batch.input_ids).unwrap();
                for keep in [false, true] {
                    let (_, kept) = m.model.layer_saving(0, &x, &frame, keep).unwrap();
                    assert_eq!(kept.gate_up.is_some(), keep, "{name}");
                    assert_eq!(kept.qkv.is_some(), keep, "{name}");
                }
            }
            for (chunk, keep) in [(1, 0), (4, 0), (4, 4 << 10), (4, i64::MAX), (1000, 0)] {
                for (checkpoint, save_attention, keep_projection_bytes, in_gradient_memory) in [
                    (false, false, 0, false),
                    (true, false, 0, false),
                    (true, true, 0, false),
                    (true, true, one_layer, false),
                    (true, true, i64::MAX, false),
                    (false, false, 0, true),
                    (true, false, 0, true),
                    (true, true, 0, true),
                ] {
                    let plan = UpdatePlan {
                        chunk,
                        checkpoint,
                        keep_logits_bytes: keep,
                        save_attention,
                        keep_projection_bytes,
                        keep_in_gradient_memory: in_gradient_memory,
                    };
                    if in_gradient_memory {
                        // As after an optimizer step: no gradient exists, so the update keeps
                        // what the layers' gradients' memory holds (checked below).
                        release_grads(&m);
                    }
                    let value =
                        response_loss_backward(&m.model, &batch, &needs(), plan, &mut |s| {
                            Ok(loss(s, &rmask))
                        })
                        .unwrap();
                    let got = grads(&m);
                    assert!(
                        (value - want_value).abs() < 1e-5 * want_value.abs().max(1.0),
                        "{name} padded={padded} {plan:?}: loss {value} vs {want_value}"
                    );
                    let d = max_rel_diff(&want, &got);
                    assert!(
                        d < 1e-4,
                        "{name} padded={padded} {plan:?}: gradients differ by {d:e} (relative)"
                    );
                }
            }
        }
    }
}

#[test]
fn bf16_compute_keeps_f32_master_weights_and_gradients() {
    let mut m = model("qwen2-tiny");
    let (batch, rmask) = batch();
    let plan = UpdatePlan::new(4, true);
    let f32_value = response_loss_backward(&m.model, &batch, &needs(), plan, &mut |s| {
        Ok(loss(s, &rmask))
    })
    .unwrap();
    let f32_grads = grads(&m);
    // f32: the recomputation for backward skips the down projection (its weight is plain);
    // bf16 compute over f32 weights recomputes it whole.
    assert!(m.model.plain_down_weight(0).is_some());
    m.model.set_compute_kind(Some(Kind::BFloat16));
    assert!(m.model.plain_down_weight(0).is_none());
    let mut kinds = Vec::new();
    let value = response_loss_backward(&m.model, &batch, &needs(), plan, &mut |s| {
        kinds.push(s.logp.kind());
        kinds.push(s.entropy.as_ref().unwrap().kind());
        Ok(loss(s, &rmask))
    })
    .unwrap();
    assert_eq!(kinds, vec![Kind::Float, Kind::Float], "statistics stay f32");
    let bf16_grads = grads(&m);
    for (k, t) in m.vs.variables() {
        assert_eq!(t.kind(), Kind::Float, "{k}: master weights stay f32");
    }
    // bf16 keeps 8 mantissa bits: close to f32, not equal.
    assert!((value - f32_value).abs() < 0.05 * f32_value.abs().max(1.0));
    // The same gradient up to bf16 rounding noise: nearly parallel, and not identical (the
    // matmuls really ran in bf16).
    let flat = |g: &[(String, Tensor)]| {
        Tensor::cat(
            &g.iter().map(|(_, t)| t.reshape([-1])).collect::<Vec<_>>(),
            0,
        )
    };
    let (a, b) = (flat(&f32_grads), flat(&bf16_grads));
    let cos = (&a * &b).sum(Kind::Double).double_value(&[])
        / (a.norm().double_value(&[]) * b.norm().double_value(&[]));
    assert!(cos > 0.95, "bf16 and f32 gradients: cosine {cos}");
    assert!(
        !a.allclose(&b, 1e-6, 1e-6, false),
        "bf16 compute changed nothing"
    );
    // Generation runs in bf16 too.
    let g = rlvr_models::generate::generate(
        &m.model,
        &batch.input_ids.narrow(1, 0, 6),
        &batch.attention_mask.narrow(1, 0, 6),
        &rlvr_core::SamplingConfig {
            max_new_tokens: 4,
            ..Default::default()
        },
        &[],
        0,
    )
    .unwrap();
    assert_eq!(g.tokens.size(), vec![3, 4]);
    assert_eq!(g.logp.kind(), Kind::Float);
}

/// Hooks that record what a sharded update asks of them.
#[derive(Default)]
struct Recorder(std::cell::RefCell<Vec<(&'static str, rlvr_core::ParamPart)>>);

impl rlvr_core::ShardHooks for Recorder {
    fn gather(&self, part: rlvr_core::ParamPart) -> rlvr_core::Result<()> {
        self.0.borrow_mut().push(("gather", part));
        Ok(())
    }
    fn release(&self, part: rlvr_core::ParamPart) -> rlvr_core::Result<()> {
        self.0.borrow_mut().push(("release", part));
        Ok(())
    }
    fn zero_grads(&self, part: rlvr_core::ParamPart) -> rlvr_core::Result<()> {
        self.0.borrow_mut().push(("zero", part));
        Ok(())
    }
    fn reduce_grads(&self, part: rlvr_core::ParamPart) -> rlvr_core::Result<()> {
        self.0.borrow_mut().push(("reduce", part));
        Ok(())
    }
    fn prefetch(&self, part: rlvr_core::ParamPart) -> rlvr_core::Result<()> {
        self.0.borrow_mut().push(("prefetch", part));
        Ok(())
    }
}

/// The decoder's prefetch hints are exact: each names the part gathered next, every gather but
/// the first was hinted, and a part is released before it is gathered again.
#[test]
fn sharded_update_prefetches_exactly_the_part_gathered_next() {
    use rlvr_core::ParamPart;
    for name in ["llama-tiny", "qwen2-tiny", "qwen3-tiny"] {
        let m = model(name);
        let (batch, rmask) = batch();
        let hooks = Recorder::default();
        let plan = UpdatePlan {
            chunk: 4,
            checkpoint: true,
            keep_logits_bytes: 0,
            save_attention: true,
            keep_projection_bytes: i64::MAX,
            keep_in_gradient_memory: false,
        };
        rlvr_models::backward::sharded_loss_backward(
            &m.model,
            &batch,
            &needs(),
            plan,
            &hooks,
            &mut |s| Ok(loss(s, &rmask)),
        )
        .unwrap();
        let calls = hooks.0.into_inner();
        let gathers: Vec<ParamPart> = calls
            .iter()
            .filter(|c| c.0 == "gather")
            .map(|c| c.1)
            .collect();
        let hints: Vec<ParamPart> = calls
            .iter()
            .filter(|c| c.0 == "prefetch")
            .map(|c| c.1)
            .collect();
        assert_eq!(gathers[0], ParamPart::Embedding, "{name}");
        assert_eq!(hints, gathers[1..].to_vec(), "{name}: {calls:?}");
        // Each hint comes after the previous part's gather and before its own.
        let mut pending: Option<ParamPart> = None;
        let mut whole = std::collections::HashSet::new();
        let mut first = true;
        for (what, part) in &calls {
            match *what {
                "prefetch" => assert!(pending.replace(*part).is_none(), "{name}: {calls:?}"),
                "gather" if first => {
                    first = false;
                    assert!(pending.is_none(), "{name}: {calls:?}");
                    assert!(whole.insert(*part));
                }
                "gather" => {
                    assert_eq!(pending.take(), Some(*part), "{name}: {calls:?}");
                    assert!(whole.insert(*part), "{name}: {part:?} gathered twice");
                }
                "release" => assert!(whole.remove(part), "{name}: {part:?} released unheld"),
                _ => {}
            }
        }
        assert!(pending.is_none() && whole.is_empty(), "{name}: {calls:?}");
    }
}

/// What the update keeps for its backward: the plan's budgets, the projections of the last
/// layers first, and — in the first micro-batch after an optimizer step, when the layers'
/// gradients do not exist yet — as many more bytes as those gradients will take, LM-head logits
/// first (all but the last chunk's), then projections.
#[test]
fn the_update_keeps_logits_then_the_last_layers_projections_in_the_pending_gradients() {
    for name in ["llama-tiny", "qwen2-tiny", "qwen3-tiny"] {
        let m = model(name);
        let n = m.model.num_layers();
        let vocab = m.model.config().vocab_size;
        let (b, l, t) = (2i64, 40i64, 32i64);
        let per_layer = b * l * m.model.kept_projection_bytes_per_token();
        let all = |_: usize| (true, true);
        let off = UpdatePlan {
            keep_in_gradient_memory: false,
            ..UpdatePlan::new(4, true)
        };
        assert!(n >= 2, "{name}: {n} layers");
        // An explicit budget of one layer and a half keeps the last one.
        let one = UpdatePlan {
            keep_projection_bytes: 3 * per_layer / 2,
            keep_logits_bytes: 3 * 4 * vocab * 4,
            ..off
        };
        let kept = kept_budgets(&m.model, &one, (b, l, t), true, &all);
        let mut want = vec![false; n];
        want[n - 1] = true;
        assert_eq!(kept.projection_layers, want, "{name}");
        assert_eq!(kept.logits_bytes, 12 * vocab * 4, "{name}");
        assert_eq!(kept.in_gradient_memory, 0, "{name}");
        // A layer that cannot keep its projections is skipped, not counted.
        let kept = kept_budgets(&m.model, &one, (b, l, t), true, &|i| (true, i != n - 1));
        want.swap(n - 1, n - 2);
        assert_eq!(kept.projection_layers, want, "{name}");

        // No gradient yet: the layers' trained tensors' bytes, counted from the store.
        release_grads(&m);
        let pending = m.model.pending_layer_gradient_bytes();
        let layer_bytes: i64 =
            m.vs.variables()
                .iter()
                .filter(|(k, v)| k.contains(".layers.") && v.requires_grad())
                .map(|(_, v)| v.numel() as i64 * 4)
                .sum();
        assert_eq!(pending, layer_bytes, "{name}");
        let on = UpdatePlan::new(4, true);
        assert!(on.keep_in_gradient_memory, "the default");
        // What the forward keeps anyway: each layer's input, attention output, post-attention
        // residual and log-sum-exp per head, f32.
        let c = m.model.config();
        let forward =
            n as i64 * b * l * (2 * c.hidden_size + c.num_heads * c.head_dim + c.num_heads) * 4;
        let room = pending - forward;
        assert!(room > 0, "{name}: {pending} - {forward}");
        // Chunks of 4 of 64 response tokens: all but the last one's logits can be kept.
        let keepable = (b * t - 4) * vocab * 4;
        let kept = kept_budgets(&m.model, &on, (b, l, t), true, &all);
        // Whole chunks of 4 tokens.
        let logits = room.min(keepable) / (16 * vocab) * (16 * vocab);
        assert_eq!(kept.logits_bytes, logits, "{name}");
        let layers = (((room - logits) / per_layer) as usize).min(n);
        let mut want = vec![false; n];
        want[n - layers..].iter_mut().for_each(|k| *k = true);
        assert_eq!(kept.projection_layers, want, "{name}");
        assert_eq!(
            kept.in_gradient_memory,
            logits + layers as i64 * per_layer,
            "{name}"
        );
        // Not where the room does not apply (sharded hooks), nor with the switch off.
        for (plan, applies) in [(on, false), (off, true)] {
            let kept = kept_budgets(&m.model, &plan, (b, l, t), applies, &all);
            assert_eq!(kept.logits_bytes, 0, "{name}");
            assert_eq!(kept.projection_layers, vec![false; n], "{name}");
        }
        // Once the gradients exist (a later micro-batch), nothing more is kept.
        let (batch, rmask) = batch();
        response_loss_backward(&m.model, &batch, &needs(), on, &mut |s| Ok(loss(s, &rmask)))
            .unwrap();
        assert_eq!(m.model.pending_layer_gradient_bytes(), 0, "{name}");
        let kept = kept_budgets(&m.model, &on, (b, l, t), true, &all);
        assert_eq!(kept.logits_bytes, 0, "{name}");
        assert_eq!(kept.in_gradient_memory, 0, "{name}");
    }
}
