//! Token statistics (chunked vs naive), sampling properties, tokenizers, and the small policies.

use proptest::prelude::*;
use rlvr_core::{
    token_stats_from_logits, Policy, SamplingConfig, SequenceBatch, StatsNeeds, TextCodec,
};
use rlvr_models::sampling::{filtered_logprobs, Sampler};
use rlvr_models::token_stats::response_stats;
use rlvr_models::tokenizer::{CharTokenizer, HfTokenizer, Message};
use rlvr_models::{HfModel, TabularPolicy};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn zero_grads(vs: &tch::nn::VarStore) {
    for mut v in vs.trainable_variables() {
        v.zero_grad();
    }
}

fn all_needs() -> StatsNeeds {
    StatsNeeds {
        entropy: true,
        entropy_grad: true,
        topk: 3,
        top1: true,
        reference: false,
    }
}

#[test]
fn chunked_statistics_equal_a_naive_full_log_softmax_values_and_gradients() {
    let m = HfModel::load(&dir("llama-tiny"), Device::Cpu, Kind::Float).unwrap();
    tch::manual_seed(3);
    let (b, p, t) = (3, 5, 7);
    let ids = Tensor::randint(512, [b, p + t], (Kind::Int64, Device::Cpu));
    let mask = Tensor::ones([b, p + t], (Kind::Int64, Device::Cpu));
    let _ = mask.narrow(1, 0, 2).get(0).fill_(0); // a left-padded row
    let batch = SequenceBatch {
        input_ids: ids.shallow_clone(),
        attention_mask: mask.shallow_clone(),
        prompt_len: p,
    };
    for chunk in [1, 4, 1000] {
        zero_grads(&m.vs);
        let s = response_stats(&m.model, &batch, &all_needs(), chunk).unwrap();
        let loss = s.logp.sum(Kind::Float)
            + s.topk_logp.as_ref().unwrap().sum(Kind::Float) * 0.5
            + s.entropy.as_ref().unwrap().sum(Kind::Float) * 0.3;
        loss.backward();
        let grads_chunked: Vec<Tensor> =
            m.vs.trainable_variables()
                .iter()
                .map(|v| v.grad().copy())
                .collect();
        zero_grads(&m.vs);
        // Naive: full logits, one log-softmax over everything.
        let logits = m
            .model
            .forward_logits(&ids, &mask)
            .unwrap()
            .narrow(1, p - 1, t);
        let naive = token_stats_from_logits(&logits, &ids.narrow(1, p, t), &all_needs()).unwrap();
        assert!(
            s.logp.allclose(&naive.logp, 1e-5, 1e-6, false),
            "chunk {chunk}: logp"
        );
        assert!(s.entropy.as_ref().unwrap().allclose(
            naive.entropy.as_ref().unwrap(),
            1e-5,
            1e-6,
            false
        ));
        assert!(s
            .topk_ids
            .as_ref()
            .unwrap()
            .equal(naive.topk_ids.as_ref().unwrap()));
        assert!(s
            .is_top1
            .as_ref()
            .unwrap()
            .equal(naive.is_top1.as_ref().unwrap()));
        let loss = naive.logp.sum(Kind::Float)
            + naive.topk_logp.as_ref().unwrap().sum(Kind::Float) * 0.5
            + naive.entropy.as_ref().unwrap().sum(Kind::Float) * 0.3;
        loss.backward();
        for (gc, v) in grads_chunked.iter().zip(m.vs.trainable_variables()) {
            let d = (gc - v.grad()).abs().max().double_value(&[]);
            let scale = v.grad().abs().max().double_value(&[]);
            assert!(
                d <= 1e-4 * scale + 1e-5,
                "chunk {chunk}: gradient diff {d} scale {scale}"
            );
        }
    }
}

#[test]
fn tokenizer_reproduces_the_fixture_ids_and_chat_template() {
    let tok = HfTokenizer::from_dir(&dir("qwen2-tiny")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir("qwen2-tiny").join("reference.json")).unwrap(),
    )
    .unwrap();
    let r: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir("qwen2-tiny").join("reference.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    for (i, prompt) in reference["prompts"].as_array().unwrap().iter().enumerate() {
        let prompt = prompt.as_str().unwrap();
        let ids = tok.encode(prompt).unwrap();
        let row = r["input_ids"].get(i as i64);
        let real = row.masked_select(&r["attention_mask"].get(i as i64).gt(0));
        assert_eq!(
            ids,
            Vec::<i64>::try_from(&real).unwrap(),
            "prompt {i} tokenises as transformers did"
        );
        assert_eq!(tok.decode(&ids).unwrap(), prompt);
    }
    let text = tok
        .apply_chat_template(
            &[Message {
                role: "user".into(),
                content: "What is 1+1?".into(),
            }],
            true,
        )
        .unwrap();
    assert_eq!(
        text,
        "<|im_start|>user\nWhat is 1+1?<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(tok.stop_tokens().len(), 1);
    assert_eq!(tok.encode("<|im_end|>").unwrap(), tok.stop_tokens());
}

#[test]
fn char_tokenizer_round_trips_and_rejects_unknown_characters() {
    let tok = CharTokenizer::new("0123456789+-*=() ");
    let ids = tok.encode("12+3=15").unwrap();
    assert!(ids.iter().all(|&i| i >= 2));
    assert_eq!(tok.decode(&ids).unwrap(), "12+3=15");
    assert!(tok.encode("x").unwrap_err().to_string().contains("'x'"));
    assert_eq!(tok.vocab_size(), 19);
}

fn hf_policy() -> rlvr_models::HfPolicy {
    rlvr_models::HfPolicy {
        chunk: 16,
        ..rlvr_models::HfPolicy::new(
            HfModel::load(&dir("qwen2-tiny"), Device::Cpu, Kind::Float).unwrap(),
            0,
        )
    }
}

#[test]
fn generation_is_seeded_and_temperature_zero_is_greedy() {
    let policy = hf_policy();
    let r: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir("qwen2-tiny").join("reference.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let sampling = SamplingConfig {
        temperature: 1.0,
        top_p: 0.9,
        top_k: 50,
        max_new_tokens: 8,
        seed: 11,
        first_stream: 0,
    };
    let a = policy
        .generate(&r["input_ids"], &r["attention_mask"], &sampling, &[])
        .unwrap();
    let b = policy
        .generate(&r["input_ids"], &r["attention_mask"], &sampling, &[])
        .unwrap();
    assert!(a.tokens.equal(&b.tokens), "same seed, same samples");
    let c = policy
        .generate(
            &r["input_ids"],
            &r["attention_mask"],
            &SamplingConfig {
                seed: 12,
                ..sampling.clone()
            },
            &[],
        )
        .unwrap();
    assert!(!a.tokens.equal(&c.tokens), "another seed, other samples");
    let greedy = policy
        .generate(
            &r["input_ids"],
            &r["attention_mask"],
            &SamplingConfig {
                temperature: 0.0,
                ..sampling
            },
            &[],
        )
        .unwrap();
    let p = r["input_ids"].size()[1];
    assert!(
        greedy
            .tokens
            .equal(&r["expected_greedy_ids"].narrow(1, p, 8)),
        "temperature 0 = transformers' greedy"
    );
}

#[test]
fn generation_stops_at_stop_tokens_and_pads() {
    let policy = hf_policy();
    let r: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir("qwen2-tiny").join("reference.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let p = r["input_ids"].size()[1];
    let first = r["expected_greedy_ids"].get(0).int64_value(&[p + 2]);
    let sampling = SamplingConfig {
        temperature: 0.0,
        max_new_tokens: 8,
        ..Default::default()
    };
    let g = policy
        .generate(&r["input_ids"], &r["attention_mask"], &sampling, &[first])
        .unwrap();
    assert_eq!(g.finish[0], rlvr_core::FinishReason::Stop);
    assert_eq!(
        g.mask.get(0).sum(Kind::Float).double_value(&[]),
        3.0,
        "row 0 ends with the stop token"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Top-k and top-p never sample outside the kept set, whatever the seed.
    #[test]
    fn top_k_and_top_p_stay_inside_the_kept_set(seed in 0u64..1_000_000, top_k in 1i64..6, top_p in 0.05f64..1.0, temp in 0.3f64..2.0) {
        tch::manual_seed(seed as i64);
        let logits = Tensor::randn([4, 12], (Kind::Float, Device::Cpu)) * 2.0;
        let cfg = SamplingConfig { temperature: temp, top_p, top_k, max_new_tokens: 1, seed, first_stream: 0 };
        let lp = filtered_logprobs(&logits, &cfg).unwrap();
        let (ids, _) = Sampler::new(seed).sample(&lp).unwrap();
        let scaled = &logits / temp;
        let (sorted, order) = scaled.sort(-1, true);
        let probs = sorted.softmax(-1, Kind::Float);
        for (row, &id) in ids.iter().enumerate() {
            let order: Vec<i64> = Vec::try_from(order.get(row as i64)).unwrap();
            let rank = order.iter().position(|&o| o == id).unwrap() as i64;
            prop_assert!(rank < top_k, "outside top-k: rank {}", rank);
            // Mass strictly before this token (in the top-k-renormalised distribution) is < top_p.
            let kept: Vec<f64> = Vec::try_from(probs.get(row as i64).narrow(0, 0, top_k).to_kind(Kind::Double)).unwrap();
            let total: f64 = kept.iter().sum();
            let before: f64 = kept[..rank as usize].iter().sum::<f64>() / total;
            prop_assert!(before < top_p + 1e-6, "outside top-p: mass before {} >= {}", before, top_p);
        }
    }
}

#[test]
fn tabular_policy_statistics_and_sampling() {
    let mut policy = TabularPolicy::new(4, 3, Device::Cpu).unwrap();
    let sampling = SamplingConfig {
        temperature: 1.0,
        max_new_tokens: 3,
        seed: 5,
        ..Default::default()
    };
    let prompts = Tensor::zeros([64, 1], (Kind::Int64, Device::Cpu));
    let g = policy
        .generate(&prompts, &prompts.ones_like(), &sampling, &[])
        .unwrap();
    assert_eq!(g.tokens.size(), vec![64, 3]);
    let g2 = policy
        .generate(&prompts, &prompts.ones_like(), &sampling, &[])
        .unwrap();
    assert!(g.tokens.equal(&g2.tokens));
    // Uniform start: every log-prob is log(1/4).
    let batch = SequenceBatch {
        input_ids: Tensor::cat(&[&prompts, &g.tokens], 1),
        attention_mask: Tensor::ones([64, 4], (Kind::Int64, Device::Cpu)),
        prompt_len: 1,
    };
    let s = policy.token_stats(&batch, &all_needs()).unwrap();
    assert!(s.logp.allclose(
        &Tensor::full([64, 3], (0.25f64).ln(), (Kind::Float, Device::Cpu)),
        1e-6,
        1e-6,
        false
    ));
    // A gradient step on the state after "A" changes only that state's row.
    let loss = s
        .logp
        .narrow(1, 1, 1)
        .masked_select(&g.tokens.select(1, 0).eq(0).unsqueeze(1))
        .sum(Kind::Float);
    loss.backward();
    let grad = policy.var_store_mut().trainable_variables()[0].grad();
    let touched: Vec<i64> = Vec::try_from(
        grad.abs()
            .sum_dim_intlist(-1, false, Kind::Float)
            .gt(0.0)
            .nonzero()
            .reshape([-1]),
    )
    .unwrap();
    assert_eq!(touched, vec![1], "state index of prefix A is 1");
}

#[test]
fn bf16_weights_keep_f32_statistics_and_close_logits() {
    let f32m = HfModel::load(&dir("qwen3-tiny"), Device::Cpu, Kind::Float).unwrap();
    let bf16 = HfModel::load(&dir("qwen3-tiny"), Device::Cpu, Kind::BFloat16).unwrap();
    let r: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir("qwen3-tiny").join("reference.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let batch = SequenceBatch {
        input_ids: r["expected_greedy_ids"].shallow_clone(),
        attention_mask: Tensor::cat(
            &[
                &r["attention_mask"],
                &r["expected_greedy_ids"].narrow(1, 0, 8).ones_like(),
            ],
            1,
        ),
        prompt_len: r["input_ids"].size()[1],
    };
    let a = response_stats(&f32m.model, &batch, &all_needs(), 8).unwrap();
    let b = response_stats(&bf16.model, &batch, &all_needs(), 8).unwrap();
    assert_eq!(b.logp.kind(), Kind::Float, "log-softmax in f32");
    // bf16 keeps 8 bits of mantissa (relative precision 2^-8 ≈ 0.4%): log-probs move by a few
    // hundredths on average, and the most likely token rarely changes.
    let mean = (&a.logp - &b.logp)
        .abs()
        .mean(Kind::Double)
        .double_value(&[]);
    assert!(mean < 0.05, "mean |Δ log-prob| {mean}");
    let same_top1 = a
        .topk_ids
        .as_ref()
        .unwrap()
        .select(-1, 0)
        .eq_tensor(&b.topk_ids.as_ref().unwrap().select(-1, 0))
        .to_kind(Kind::Double)
        .mean(Kind::Double)
        .double_value(&[]);
    assert!(same_top1 >= 0.9, "argmax agreement {same_top1}");
    assert!(rlvr_models::device::parse_device("gpu").is_err());
    assert!(rlvr_models::device::parse_device("cpu").is_ok());
}
