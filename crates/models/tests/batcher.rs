//! Continuous batching samples exactly what the definition does — re-run each sequence without a
//! cache at every step and sample sample `i` of a request from stream `first_stream + i` — even
//! when requests join the running batch at different decode steps, with other sampling settings,
//! and rows finish and leave in between.

mod common;
use common::*;

use rlvr_core::{FinishReason, SamplingConfig};
use rlvr_models::batcher::{BatchRequest, Batcher, FinishedSample};
use rlvr_models::sampling::{filtered_logprobs, sample_with_uniforms, RowStream};
use rlvr_models::HfModel;
use std::collections::BTreeMap;
use tch::{Device, Tensor};

/// One sample by the definition: the whole sequence through the model at every step.
fn naive_sample(m: &HfModel, r: &BatchRequest, index: usize) -> FinishedSample {
    let _g = tch::no_grad_guard();
    let mut stream = RowStream::new(r.sampling.seed, r.sampling.first_stream + index as u64);
    let (mut tokens, mut logprobs) = (Vec::new(), Vec::new());
    let mut finish = FinishReason::Length;
    for _ in 0..r.sampling.max_new_tokens {
        let seq: Vec<i64> = r.prompt.iter().chain(&tokens).copied().collect();
        let ids = Tensor::from_slice(&seq).view([1, -1]);
        let mask = ids.ones_like();
        let logits = m.model.forward_logits(&ids, &mask).unwrap().select(1, -1);
        let lp = filtered_logprobs(&logits, &r.sampling).unwrap();
        let (id, l) = sample_with_uniforms(&lp, &[stream.uniform()]).unwrap();
        tokens.push(id[0]);
        logprobs.push(l[0]);
        if r.stop.contains(&id[0]) {
            finish = FinishReason::Stop;
            break;
        }
    }
    FinishedSample {
        ticket: r.ticket,
        index,
        tokens,
        logprobs,
        finish,
    }
}

fn request(ticket: u64, prompt: Vec<i64>, n: usize, seed: u64, top_k: i64) -> BatchRequest {
    BatchRequest {
        ticket,
        prompt,
        n,
        sampling: SamplingConfig {
            temperature: 1.0,
            top_p: if top_k > 0 { 0.9 } else { 1.0 },
            top_k,
            max_new_tokens: 16,
            seed,
            first_stream: 10 * ticket,
        },
        stop: (0..40).collect(),
    }
}

#[test]
fn requests_joining_between_decode_steps_sample_what_the_definition_samples() {
    for name in ["qwen2-tiny", "llama-tiny"] {
        let m = model(name);
        let requests = [
            request(0, vec![5, 17, 42, 99, 7], 4, 3, 0),
            request(1, vec![300, 12, 9], 3, 3, 50),
            request(2, vec![64, 65, 66, 67, 68, 69, 70, 71, 72], 2, 11, 0),
            request(3, vec![8], 2, 3, 0),
        ];
        // Request 0 alone for three steps; 1 and 2 join; 3 joins four steps later.
        let joins: BTreeMap<usize, Vec<usize>> =
            [(0, vec![0]), (3, vec![1, 2]), (7, vec![3])].into();
        let mut b = Batcher::new();
        let mut got: Vec<FinishedSample> = Vec::new();
        let mut step = 0;
        let mut max_rows = 0;
        while step < 200 {
            if let Some(js) = joins.get(&step) {
                let reqs = js.iter().map(|&j| requests[j].clone()).collect();
                got.extend(b.admit(&m.model, Device::Cpu, reqs).unwrap());
            }
            max_rows = max_rows.max(b.rows());
            got.extend(b.step(&m.model, Device::Cpu).unwrap());
            step += 1;
            if b.is_idle() && step > 7 {
                break;
            }
        }
        assert!(
            max_rows >= 9,
            "{name}: requests should overlap ({max_rows} rows)"
        );
        let total: usize = requests.iter().map(|r| r.n).sum();
        assert_eq!(got.len(), total, "{name}: every sample finishes once");
        got.sort_by_key(|s| (s.ticket, s.index));
        let mut finishes = Vec::new();
        for s in &got {
            let want = naive_sample(&m, &requests[s.ticket as usize], s.index);
            assert_eq!(
                s.tokens, want.tokens,
                "{name} request {} sample {}",
                s.ticket, s.index
            );
            assert_eq!(s.finish, want.finish);
            for (x, y) in s.logprobs.iter().zip(&want.logprobs) {
                assert!((x - y).abs() < 1e-4, "{name}: log-prob {x} vs {y}");
            }
            finishes.push(s.finish);
        }
        assert!(finishes.contains(&FinishReason::Stop) && finishes.contains(&FinishReason::Length));
    }
}

#[test]
fn empty_prompts_are_refused_and_zero_token_requests_finish_at_once() {
    let m = model("qwen2-tiny");
    let mut b = Batcher::new();
    let mut r = request(0, vec![], 1, 0, 0);
    assert!(b.admit(&m.model, Device::Cpu, vec![r.clone()]).is_err());
    r.prompt = vec![4, 5];
    r.sampling.max_new_tokens = 0;
    let done = b.admit(&m.model, Device::Cpu, vec![r]).unwrap();
    assert_eq!(done.len(), 1);
    assert!(done[0].tokens.is_empty() && b.is_idle());
}
