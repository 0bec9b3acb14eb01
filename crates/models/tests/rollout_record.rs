//! The update from a generation's record (`rlvr_models::rollout_record`) samples what plain
//! generation samples and gives the loss and gradients of the update that runs its own forward
//! (itself checked against full autograd in `update.rs`), up to float rounding.

mod common;
use common::*;

use rlvr_core::{SamplingConfig, SequenceBatch};
use rlvr_models::backward::{recorded_loss_backward, response_loss_backward, UpdatePlan};
use rlvr_models::generate::{generate, generate_recording};
use rlvr_models::rollout_record::RolloutRecord;
use tch::{Device, Kind, Tensor};

/// Prompts of different lengths (left padding), two of them equal (one prefill for both).
fn prompts() -> Vec<Vec<i64>> {
    vec![
        vec![5, 17, 301, 44, 9, 12],
        vec![88, 3],
        vec![5, 17, 301, 44, 9, 12],
        vec![400, 401, 402, 7],
    ]
}

fn sampling() -> SamplingConfig {
    SamplingConfig {
        temperature: 1.0,
        max_new_tokens: 9,
        seed: 11,
        ..SamplingConfig::default()
    }
}

#[test]
fn recorded_generation_samples_the_same_and_its_update_equals_the_recomputed_one() {
    for name in ["llama-tiny", "qwen2-tiny", "qwen3-tiny"] {
        for packed in [true, false] {
            let mut m = model(name);
            m.model.set_packed_generation(packed);
            let (ids, mask) = left_pad(&prompts());
            let cfg = sampling();
            // A quarter of the vocabulary stops a response: rows end at different steps.
            let stop: Vec<i64> = (0..128).collect();
            let plain = generate(&m.model, &ids, &mask, &cfg, &stop, 0).unwrap();
            let record = || {
                let (gen, record) =
                    generate_recording(&m.model, &ids, &mask, &cfg, &stop, 0, u64::MAX).unwrap();
                (gen, record.expect("an f32 CPU model records"))
            };
            let (gen, _) = record();
            assert!(plain.tokens.equal(&gen.tokens), "{name}: other samples");
            assert!(plain.logp.equal(&gen.logp), "{name}: other log-probs");
            let lengths =
                Vec::<f32>::try_from(gen.mask.sum_dim_intlist(1, false, Kind::Float)).unwrap();
            assert!(
                lengths.iter().any(|&n| n < 9.0) && lengths.iter().any(|&n| n > 1.0),
                "{name}: the rows should end at different steps: {lengths:?}"
            );
            let p = ids.size()[1];
            let full = SequenceBatch {
                input_ids: Tensor::cat(&[&ids, &gen.tokens], 1),
                attention_mask: Tensor::cat(&[&mask, &gen.mask.to_kind(Kind::Int64)], 1),
                prompt_len: p,
            };
            // The whole batch, and some of its rows in another order (a shuffled micro-batch).
            for rows in [vec![0i64, 1, 2, 3], vec![3, 0, 2]] {
                let (_, mut record) = record();
                let idx = Tensor::from_slice(&rows);
                let batch = SequenceBatch {
                    input_ids: full.input_ids.index_select(0, &idx),
                    attention_mask: full.attention_mask.index_select(0, &idx),
                    prompt_len: p,
                };
                let rmask = gen.mask.index_select(0, &idx);
                let plan = UpdatePlan {
                    chunk: 4,
                    checkpoint: true,
                    keep_logits_bytes: 0,
                    save_attention: true,
                    keep_projection_bytes: i64::MAX,
                    keep_in_gradient_memory: false,
                };
                let _ = grads(&m);
                let want_value =
                    response_loss_backward(&m.model, &batch, &needs(), plan, &mut |s| {
                        Ok(loss(s, &rmask))
                    })
                    .unwrap();
                let want = grads(&m);
                let value = recorded_loss_backward(
                    &m.model,
                    &batch,
                    &mut record,
                    &idx,
                    &needs(),
                    plan,
                    &mut |s| Ok(loss(s, &rmask)),
                )
                .unwrap();
                let got = grads(&m);
                if rows.len() == 4 {
                    // Every row read: the record is spent (and its memory freed).
                    let again = recorded_loss_backward(
                        &m.model,
                        &batch,
                        &mut record,
                        &idx,
                        &needs(),
                        plan,
                        &mut |s| Ok(loss(s, &rmask)),
                    )
                    .unwrap_err();
                    assert!(again.to_string().contains("one update step"), "{again}");
                    let _ = grads(&m);
                }
                assert!(
                    (value - want_value).abs() < 1e-5 * want_value.abs().max(1.0),
                    "{name} packed={packed} rows {rows:?}: loss {value} vs {want_value}"
                );
                let d = max_rel_diff(&want, &got);
                assert!(
                    d < 1e-4,
                    "{name} packed={packed} rows {rows:?}: gradients differ by {d:e}"
                );
                assert!(got
                    .iter()
                    .any(|(_, g)| g.abs().max().double_value(&[]) > 0.0));
            }
        }
    }
}

#[test]
fn a_record_over_budget_or_a_batch_in_other_columns_is_refused() {
    let m = model("qwen2-tiny");
    let (ids, mask) = left_pad(&prompts());
    let cfg = sampling();
    let need = RolloutRecord::bytes(&m.model, 4, ids.size()[1] + cfg.max_new_tokens);
    let (gen, none) =
        generate_recording(&m.model, &ids, &mask, &cfg, &[], 0, (need - 1) as u64).unwrap();
    assert!(none.is_none(), "a record over its budget is not taken");
    let plain = generate(&m.model, &ids, &mask, &cfg, &[], 0).unwrap();
    assert!(plain.tokens.equal(&gen.tokens));
    let (gen, record) =
        generate_recording(&m.model, &ids, &mask, &cfg, &[], 0, need as u64).unwrap();
    let mut record = record.expect("exactly the budget");
    // The same sequences with one more column of prompt padding: other columns.
    let pad = Tensor::zeros([4, 1], (Kind::Int64, Device::Cpu));
    let batch = SequenceBatch {
        input_ids: Tensor::cat(&[&pad, &ids, &gen.tokens], 1),
        attention_mask: Tensor::cat(&[&pad, &mask, &gen.mask.to_kind(Kind::Int64)], 1),
        prompt_len: ids.size()[1] + 1,
    };
    let rows = Tensor::from_slice(&[0i64, 1, 2, 3]);
    let err = recorded_loss_backward(
        &m.model,
        &batch,
        &mut record,
        &rows,
        &needs(),
        UpdatePlan::new(4, true),
        &mut |s| Ok(s.logp.sum(Kind::Float)),
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
}
