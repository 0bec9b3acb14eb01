//! Batch-invariant passes (`Transformer::set_batch_invariant`): the log-prob a cached decode step
//! samples a token with equals, bit for bit, the log-prob of the same token in a full-sequence
//! pass over a differently padded batch — the property `rlvr serve` and in-process generation
//! need for their log-probs to equal the trainer's — with LoRA adapters too.

mod common;
use common::*;

use rlvr_core::{FinishReason, SamplingConfig, SequenceBatch, StatsNeeds};
use rlvr_models::generate::generate;
use rlvr_models::lora;
use rlvr_models::policy::Adapters;
use rlvr_models::token_stats::response_stats;
use rlvr_models::HfModel;
use tch::{Device, Kind, Tensor};

/// Largest |generation log-prob − full-pass log-prob| over every sampled token, with the full
/// pass over the responses laid out as the trainer does (prompts left-padded to the longest,
/// responses right-padded), in another row order and next to other rows than in generation;
/// also the same against the trainer's own statistics pass (`response_stats`).
fn decode_vs_full(m: &HfModel) -> (f64, f64, usize) {
    // Prompts of different lengths, several samples each, and stop tokens so that rows finish
    // at different steps and the decode batch shrinks (compaction) to a few rows.
    let prompts: Vec<Vec<i64>> = vec![
        vec![5, 17, 42, 99, 7],
        vec![300, 12, 9],
        vec![64, 65, 66, 67, 68, 69, 70, 71, 72],
        vec![1, 2, 3, 4],
    ];
    let rows: Vec<Vec<i64>> = prompts
        .iter()
        .flat_map(|p| std::iter::repeat_n(p.clone(), 6))
        .collect();
    let (ids, mask) = left_pad(&rows);
    let cfg = SamplingConfig {
        temperature: 1.0,
        top_p: 1.0,
        top_k: 0,
        max_new_tokens: 40,
        seed: 11,
        ..SamplingConfig::default()
    };
    let stop: Vec<i64> = (0..6).collect();
    let g = generate(&m.model, &ids, &mask, &cfg, &stop, 0).unwrap();
    let stopped = g
        .finish
        .iter()
        .filter(|f| **f == FinishReason::Stop)
        .count();

    // The trainer's layout, rows reversed: prompt | response, one batch.
    let _ng = tch::no_grad_guard();
    let order = Tensor::arange(rows.len() as i64, (Kind::Int64, Device::Cpu)).flip([0]);
    let tokens = g.tokens.index_select(0, &order);
    let rmask = g.mask.index_select(0, &order);
    let lp_gen = g.logp.index_select(0, &order);
    let seq = Tensor::cat(&[&ids.index_select(0, &order), &tokens], 1);
    let smask = Tensor::cat(
        &[&mask.index_select(0, &order), &rmask.to_kind(Kind::Int64)],
        1,
    );
    let (p, t) = (ids.size()[1], tokens.size()[1]);
    let logits = m.model.forward_logits(&seq, &smask).unwrap();
    let lp_full = logits
        .narrow(1, p - 1, t)
        .log_softmax(-1, Kind::Float)
        .gather(-1, &tokens.unsqueeze(-1), false)
        .squeeze_dim(-1);
    let full = ((&lp_full - &lp_gen).abs() * &rmask)
        .max()
        .double_value(&[]);
    let batch = SequenceBatch {
        input_ids: seq,
        attention_mask: smask,
        prompt_len: p,
    };
    let stats = response_stats(&m.model, &batch, &StatsNeeds::default(), 64).unwrap();
    let trainer = ((&stats.logp - &lp_gen).abs() * &rmask)
        .max()
        .double_value(&[]);
    (full, trainer, stopped)
}

#[test]
fn a_decode_step_samples_with_the_full_pass_log_prob_bit_for_bit() {
    for name in ["qwen2-tiny", "llama-tiny", "qwen3-tiny"] {
        let mut m = model(name);
        // The default (fused) kernels: a cached decode step is a few f32 roundings off the full
        // pass (which is why this mode exists; and what makes this test able to fail).
        let (default_full, _, _) = decode_vs_full(&m);
        assert!(default_full > 0.0, "{name}: the default pass is exact here");
        m.model.set_batch_invariant(true).unwrap();
        let (full, trainer, stopped) = decode_vs_full(&m);
        assert!(
            stopped > 0 && stopped < 24,
            "{name}: {stopped} rows stopped early"
        );
        assert_eq!(
            full, 0.0,
            "{name}: decode vs full pass (default {default_full})"
        );
        // The trainer's statistics take log-sum-exp from their own kernel: rounding of lse only.
        assert!(
            trainer < 1e-6,
            "{name}: decode vs the trainer's pass {trainer}"
        );
    }
}

#[test]
fn a_decode_step_with_a_peft_adapter_is_bit_for_bit_too() {
    // A PEFT adapter on every linear layer (fixture made by PEFT 0.21): its two products per
    // layer run batch-invariantly as well.
    let mut m = model("qwen2-tiny");
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lora/qwen2-tiny-r4-all-linear");
    let adapters = Adapters {
        lora: None,
        adapter: dir.display().to_string(),
    };
    let (spec, dir) = adapters.resolve().unwrap().unwrap();
    m.attach_adapters(&spec, Kind::Float).unwrap();
    lora::load_adapter(&mut m.vs, &dir.unwrap()).unwrap();
    let (default_full, _, _) = decode_vs_full(&m);
    assert!(default_full > 0.0, "the default pass is exact here");
    m.model.set_batch_invariant(true).unwrap();
    let (full, trainer, _) = decode_vs_full(&m);
    assert_eq!(full, 0.0, "decode vs full pass (default {default_full})");
    assert!(trainer < 1e-6, "decode vs the trainer's pass {trainer}");
}

#[test]
fn batch_invariance_is_refused_where_it_is_not_built() {
    let mut m = model("qwen2-tiny");
    m.model.set_compute_kind(Some(Kind::BFloat16));
    let e = m.model.set_batch_invariant(true).unwrap_err().to_string();
    assert!(e.contains("f32 on the CPU"), "{e}");
}

#[test]
fn a_row_among_hundreds_on_several_threads_equals_the_row_alone() {
    // Hundreds of rows × 3 tokens: the MLP's [3·rows, 160] gate is large enough for libtorch to
    // split elementwise work between threads, and with an odd row count its SIMD body and scalar
    // tail meet inside a row (how `rlvr serve --batch-invariant` failed in one CI run: a served
    // log-prob 1 ulp off the offline one). A tail changes the bits of some inputs only, hence
    // many row counts.
    let mut m = model("qwen2-tiny");
    m.model.set_batch_invariant(true).unwrap();
    let _ng = tch::no_grad_guard();
    let before = tch::get_num_threads();
    let most = 261i64;
    let ids = Tensor::arange(most * 3, (Kind::Int64, Device::Cpu))
        .f_mul_scalar(37)
        .unwrap()
        .remainder(500)
        .view([most, 3]);
    let mask = ids.ones_like();
    let alone: Vec<Tensor> = (0..most)
        .map(|r| {
            m.model
                .forward_logits(&ids.narrow(0, r, 1), &mask.narrow(0, r, 1))
                .unwrap()
        })
        .collect();
    for threads in [2, 3, 4] {
        tch::set_num_threads(threads);
        for rows in (229..=most).step_by(4) {
            let batch = m
                .model
                .forward_logits(&ids.narrow(0, 0, rows), &mask.narrow(0, 0, rows))
                .unwrap();
            for (r, a) in alone.iter().enumerate().take(rows as usize) {
                assert!(
                    batch.narrow(0, r as i64, 1).equal(a),
                    "{threads} threads: row {r} of {rows}"
                );
            }
        }
    }
    tch::set_num_threads(before);
}
