//! The fast generation path (preallocated cache, one prefill per distinct prompt, finished rows
//! leaving the batch) samples exactly what a plain loop does: re-run the whole sequence without a
//! cache at every step and sample each unfinished row from its own stream.

mod common;
use common::*;

use rlvr_core::{FinishReason, SamplingConfig};
use rlvr_models::generate::generate;
use rlvr_models::sampling::{filtered_logprobs, Sampler};
use rlvr_models::HfModel;
use tch::{Device, Kind, Tensor};

type Sampled = (Vec<Vec<i64>>, Vec<Vec<f64>>, Vec<FinishReason>);

/// The definition: no cache, no sharing, no compaction.
fn naive(m: &HfModel, prompts: &[Vec<i64>], cfg: &SamplingConfig, stop: &[i64]) -> Sampled {
    let _g = tch::no_grad_guard();
    let n = prompts.len();
    let mut sampler = Sampler::new(cfg.seed);
    let (mut toks, mut lps) = (vec![Vec::new(); n], vec![Vec::new(); n]);
    let mut finish = vec![FinishReason::Length; n];
    let mut done = vec![false; n];
    for _ in 0..cfg.max_new_tokens {
        let rows: Vec<usize> = (0..n).filter(|&r| !done[r]).collect();
        if rows.is_empty() {
            break;
        }
        let seqs: Vec<Vec<i64>> = rows
            .iter()
            .map(|&r| prompts[r].iter().chain(&toks[r]).copied().collect())
            .collect();
        let (ids, mask) = left_pad(&seqs);
        let logits = m.model.forward_logits(&ids, &mask).unwrap().select(1, -1);
        let lp = filtered_logprobs(&logits, cfg).unwrap();
        let (ids, chosen) = sampler.sample_rows(&lp, &rows).unwrap();
        for (j, &r) in rows.iter().enumerate() {
            toks[r].push(ids[j]);
            lps[r].push(chosen[j]);
            if stop.contains(&ids[j]) {
                done[r] = true;
                finish[r] = FinishReason::Stop;
            }
        }
    }
    (toks, lps, finish)
}

fn fast(m: &HfModel, prompts: &[Vec<i64>], cfg: &SamplingConfig, stop: &[i64]) -> Sampled {
    let (ids, mask) = left_pad(prompts);
    let g = generate(&m.model, &ids, &mask, cfg, stop, 0).unwrap();
    let mut toks = Vec::new();
    let mut lps = Vec::new();
    for r in 0..prompts.len() as i64 {
        let len = g.mask.get(r).sum(Kind::Float).double_value(&[]) as i64;
        toks.push(Vec::<i64>::try_from(g.tokens.get(r).narrow(0, 0, len)).unwrap());
        lps.push(
            Vec::<f64>::try_from(g.logp.get(r).narrow(0, 0, len).to_kind(Kind::Double)).unwrap(),
        );
    }
    (toks, lps, g.finish)
}

#[test]
fn fast_generation_samples_exactly_what_a_plain_uncached_loop_samples() {
    for name in ["llama-tiny", "qwen2-tiny", "qwen3-tiny"] {
        let m = model(name);
        // Two prompts of different lengths, four samples each, interleaved with a third prompt
        // that appears once: rows share prefixes, finish at different steps and leave the batch.
        let a = vec![5, 17, 42, 99, 7];
        let b = vec![300, 12, 9];
        let c = vec![64, 65, 66, 67, 68, 69, 70];
        let prompts = vec![
            a.clone(),
            a.clone(),
            a.clone(),
            a.clone(),
            b.clone(),
            b.clone(),
            b.clone(),
            b.clone(),
            c,
        ];
        let stop: Vec<i64> = (0..40).collect();
        for (seed, top_p, top_k) in [(1, 1.0, 0), (7, 0.9, 50)] {
            let cfg = SamplingConfig {
                temperature: 1.0,
                top_p,
                top_k,
                max_new_tokens: 20,
                seed,
                first_stream: 0,
            };
            let (t1, l1, f1) = naive(&m, &prompts, &cfg, &stop);
            let (t2, l2, f2) = fast(&m, &prompts, &cfg, &stop);
            assert_eq!(t1, t2, "{name} seed {seed}: tokens");
            assert_eq!(f1, f2, "{name} seed {seed}: finish reasons");
            for (x, y) in l1.iter().flatten().zip(l2.iter().flatten()) {
                assert!((x - y).abs() < 1e-4, "{name}: log-prob {x} vs {y}");
            }
            let lens: std::collections::BTreeSet<usize> = t1.iter().map(Vec::len).collect();
            assert!(
                lens.len() >= 3,
                "{name}: rows should end at different steps: {lens:?}"
            );
            assert!(f1.contains(&FinishReason::Stop) && f1.contains(&FinishReason::Length));
        }
    }
}

#[test]
fn each_row_samples_from_its_own_stream() {
    // Row r's draws depend on (seed, r) only: sampling rows {0, 2} of a batch gives what
    // rows 0 and 2 get when all three are sampled.
    tch::manual_seed(0);
    let lp = Tensor::randn([3, 50], (Kind::Float, Device::Cpu)).log_softmax(-1, Kind::Float);
    let mut all = Sampler::new(9);
    let mut some = Sampler::new(9);
    for _ in 0..20 {
        let (ids, _) = all.sample(&lp).unwrap();
        let (sub, _) = some
            .sample_rows(
                &lp.index_select(0, &Tensor::from_slice(&[0i64, 2])),
                &[0, 2],
            )
            .unwrap();
        assert_eq!(sub, vec![ids[0], ids[2]]);
    }
}

#[test]
fn a_sampler_starting_at_a_later_stream_draws_the_later_rows() {
    // A data-parallel rank holding rows 2.. of a global batch (first_stream = 2) draws what
    // those rows draw when one sampler holds the whole batch.
    tch::manual_seed(1);
    let lp = Tensor::randn([4, 50], (Kind::Float, Device::Cpu)).log_softmax(-1, Kind::Float);
    let mut whole = Sampler::new(5);
    let mut tail = Sampler::from_stream(5, 2);
    for _ in 0..20 {
        let (ids, _) = whole.sample(&lp).unwrap();
        let (sub, _) = tail.sample(&lp.narrow(0, 2, 2)).unwrap();
        assert_eq!(sub, ids[2..].to_vec());
    }
}

#[test]
fn unpadded_batches_take_the_mask_free_kernels_with_the_same_logits() {
    // The same rows alone (no padding: causal kernel, no mask) and next to a left-padded row
    // (explicit mask): equal logits, also for cached one-token steps.
    let _g = tch::no_grad_guard();
    for name in ["llama-tiny", "qwen3-tiny"] {
        let m = model(name);
        let rows = vec![vec![5i64, 9, 13, 200, 7, 8], vec![1, 2, 3, 4, 5, 6]];
        let (ids, mask) = left_pad(&rows);
        let alone = m.model.forward_logits(&ids, &mask).unwrap();
        let mut with_pad = rows.clone();
        with_pad.push(vec![42, 43]);
        let (ids_p, mask_p) = left_pad(&with_pad);
        let padded = m
            .model
            .forward_logits(&ids_p, &mask_p)
            .unwrap()
            .narrow(0, 0, 2);
        let d = (&alone - &padded).abs().max().double_value(&[]);
        assert!(d < 1e-4, "{name}: {d}");
        let cfg = SamplingConfig {
            temperature: 0.0,
            max_new_tokens: 5,
            ..Default::default()
        };
        let a = generate(&m.model, &ids, &mask, &cfg, &[], 0).unwrap();
        let b = generate(&m.model, &ids_p, &mask_p, &cfg, &[], 0).unwrap();
        assert!(
            a.tokens.equal(&b.tokens.narrow(0, 0, 2)),
            "{name}: greedy continuations"
        );
    }
}

#[test]
fn packed_weights_give_the_plain_logits_and_leave_with_their_guard() {
    let mut m = model("qwen2-tiny");
    let (ids, mask) = left_pad(&[vec![5, 17, 42, 99, 7], vec![300, 12, 9]]);
    let plain = {
        let _g = tch::no_grad_guard();
        m.model.forward_logits(&ids, &mask).unwrap()
    };
    {
        let pack = m.model.pack_for_generation(2).unwrap();
        let packed = m.model.forward_logits(&ids, &mask).unwrap();
        assert!(
            !packed.requires_grad(),
            "the guard's passes run without gradients"
        );
        let diff = (&packed - &plain).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "packed logits differ by {diff}");
        drop(pack);
    }
    // After the guard the plain products run again, bit for bit (no stale pack is used).
    let after = {
        let _g = tch::no_grad_guard();
        m.model.forward_logits(&ids, &mask).unwrap()
    };
    assert!(after.equal(&plain));
    // Switched off, the guard packs nothing.
    assert!(m.model.generation_pack_bytes() > 0);
    m.model.set_packed_generation(false);
    assert_eq!(m.model.generation_pack_bytes(), 0);
    let _pack = m.model.pack_for_generation(2).unwrap();
    assert!(m.model.forward_logits(&ids, &mask).unwrap().equal(&plain));
}
