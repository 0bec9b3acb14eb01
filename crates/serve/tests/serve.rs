//! `rlvr serve` over HTTP: 64 concurrent `/generate` clients each get what offline generation
//! with the same seed and streams gives (ids exactly, log-probs within 1e-4, the bar of the
//! cached-vs-uncached generation tests: other rows in the batch change f32 sums; bit for bit with
//! `--batch-invariant`), `/v1/completions`
//! agrees with `/generate`, weights load from disk with their version, bad requests get 400 with
//! a message, and a full queue answers 503.

use rlvr_core::SamplingConfig;
use rlvr_models::generate::generate;
use rlvr_models::HfModel;
use rlvr_serve::{start, ServeOptions, Server};
use serde_json::{json, Value};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/qwen2-tiny")
}

fn server(max_running: usize, max_queue: usize) -> Server {
    server_with(max_running, max_queue, false)
}

fn server_with(max_running: usize, max_queue: usize, batch_invariant: bool) -> Server {
    start(ServeOptions {
        model: fixture(),
        host: "127.0.0.1".into(),
        port: 0,
        device: Device::Cpu,
        max_running,
        max_queue,
        kind: Kind::Float,
        batch_invariant,
    })
    .unwrap()
}

fn post(url: &str, body: &Value) -> Result<Value, (u16, String)> {
    match ureq::post(url).send_json(body) {
        Ok(r) => Ok(r.into_json().unwrap()),
        Err(ureq::Error::Status(code, r)) => Err((code, r.into_string().unwrap_or_default())),
        Err(e) => panic!("{url}: {e}"),
    }
}

type Samples = Vec<(Vec<i64>, Vec<f64>)>;

/// Offline: `n` samples of `prompt` from streams `stream..stream + n` of `seed`.
fn offline(m: &HfModel, prompt: &[i64], n: usize, seed: u64, stream: u64) -> Samples {
    let ids: Vec<i64> = (0..n).flat_map(|_| prompt.iter().copied()).collect();
    let ids = Tensor::from_slice(&ids).view([n as i64, prompt.len() as i64]);
    let mask = ids.ones_like();
    let cfg = SamplingConfig {
        temperature: 1.0,
        top_p: 1.0,
        top_k: 0,
        max_new_tokens: 24,
        seed,
        first_stream: stream,
    };
    let g = generate(&m.model, &ids, &mask, &cfg, &[7], 0).unwrap();
    (0..n as i64)
        .map(|r| {
            let len = g.mask.get(r).sum(Kind::Float).double_value(&[]) as i64;
            let t = Vec::<i64>::try_from(g.tokens.get(r).narrow(0, 0, len)).unwrap();
            let l = Vec::<f64>::try_from(g.logp.get(r).narrow(0, 0, len).to_kind(Kind::Double))
                .unwrap();
            (t, l)
        })
        .collect()
}

/// Client `c`'s prompt (3–9 tokens), seed and first stream.
fn request(c: usize) -> (Vec<i64>, u64, u64) {
    let prompt: Vec<i64> = (0..(3 + c % 7))
        .map(|j| ((c * 31 + j * 17) % 500) as i64 + 10)
        .collect();
    (prompt, 1000 + c as u64, (c * 2) as u64)
}

#[test]
fn sixty_four_concurrent_clients_get_what_offline_generation_gives() {
    concurrent_clients(false, 1e-4);
}

#[test]
fn batch_invariant_clients_get_offline_log_probs_bit_for_bit() {
    concurrent_clients(true, 0.0);
}

/// 64 concurrent clients against a server (batch-invariant or not) and offline generation of
/// the same model, the same way: ids equal, log-probs within `tolerance`.
fn concurrent_clients(invariant: bool, tolerance: f64) {
    let s = server_with(512, 4096, invariant);
    let url = format!("{}/generate", s.url());
    let answers: Vec<Value> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..64)
            .map(|c| {
                let url = url.clone();
                sc.spawn(move || {
                    let (prompt, seed, stream) = request(c);
                    let body = json!({"input_ids": prompt, "return_logprob": true,
                        "sampling_params": {"max_new_tokens": 24, "n": 2, "sampling_seed": seed,
                            "rlvr_stream": stream, "stop_token_ids": [7], "ignore_eos": true}});
                    post(&url, &body).unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut m = HfModel::load(&fixture(), Device::Cpu, Kind::Float).unwrap();
    m.model.set_batch_invariant(invariant).unwrap();
    let mut stops = 0;
    for (c, a) in answers.iter().enumerate() {
        let (prompt, seed, stream) = request(c);
        let want = offline(&m, &prompt, 2, seed, stream);
        let got = a.as_array().expect("n = 2 answers a list");
        assert_eq!(got.len(), 2);
        for (g, (ids, lps)) in got.iter().zip(&want) {
            let out: Vec<i64> = serde_json::from_value(g["output_ids"].clone()).unwrap();
            assert_eq!(&out, ids, "client {c}");
            let lp = g["meta_info"]["output_token_logprobs"].as_array().unwrap();
            assert_eq!(lp.len(), out.len());
            for ((e, w), id) in lp.iter().zip(lps).zip(&out) {
                let x = e[0].as_f64().unwrap();
                assert!((x - w).abs() <= tolerance, "client {c}: {x} vs {w}");
                assert_eq!(e[1].as_i64(), Some(*id));
            }
            if g["meta_info"]["finish_reason"]["type"] == "stop" {
                stops += 1;
                assert_eq!(g["meta_info"]["finish_reason"]["matched"], 7);
            }
        }
    }
    assert!(stops > 0, "some samples should stop at the stop token");
    // The OpenAI endpoint serves the same samples.
    let (prompt, seed, stream) = request(5);
    let body = json!({"prompt": prompt, "max_tokens": 24, "n": 2, "seed": seed,
        "rlvr_stream": stream, "logprobs": 0, "stop_token_ids": [7], "ignore_eos": true,
        "return_tokens_as_token_ids": true});
    let a = post(&format!("{}/v1/completions", s.url()), &body).unwrap();
    let want = offline(&m, &prompt, 2, seed, stream);
    for (choice, (ids, _)) in a["choices"].as_array().unwrap().iter().zip(&want) {
        let names: Vec<String> = ids.iter().map(|t| format!("token_id:{t}")).collect();
        assert_eq!(choice["logprobs"]["tokens"], json!(names));
        assert_eq!(choice["token_ids"], json!(ids));
    }
    s.stop().unwrap();
}

#[test]
fn weights_load_from_disk_with_their_version_and_bad_requests_get_400() {
    let s = server(64, 64);
    let base = s.url();
    // New weights: the fixture's, scaled; the answers change and the version is reported.
    let tmp = tempfile::tempdir().unwrap();
    let m = HfModel::load(&fixture(), Device::Cpu, Kind::Float).unwrap();
    tch::no_grad(|| {
        for (_, mut v) in m.vs.variables() {
            let _ = v.g_mul_scalar_(1.5);
        }
    });
    m.save(tmp.path()).unwrap();
    let greedy = json!({"input_ids": [11, 12, 13], "sampling_params": {"temperature": 0,
        "max_new_tokens": 8}, "return_logprob": true});
    let before = post(&format!("{base}/generate"), &greedy).unwrap();
    let r = post(
        &format!("{base}/update_weights_from_disk"),
        &json!({"model_path": tmp.path(), "weight_version": "7"}),
    )
    .unwrap();
    assert_eq!(r["success"], true, "{r}");
    let after = post(&format!("{base}/generate"), &greedy).unwrap();
    assert_eq!(after["meta_info"]["weight_version"], "7");
    assert_ne!(
        before["meta_info"]["output_token_logprobs"],
        after["meta_info"]["output_token_logprobs"]
    );
    let info: Value = ureq::get(&format!("{base}/get_model_info"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(info["weight_version"], "7");
    assert_eq!(info["engine"], "rlvr");
    // A folder of another architecture is refused and the loaded weights stay.
    let wrong = tempfile::tempdir().unwrap();
    let other = HfModel::load(&fixture().join("../llama-tiny"), Device::Cpu, Kind::Float).unwrap();
    other.save(wrong.path()).unwrap();
    let e = post(
        &format!("{base}/update_weights_from_disk"),
        &json!({"model_path": wrong.path()}),
    )
    .unwrap_err();
    assert_eq!(e.0, 400, "{}", e.1);
    let again = post(&format!("{base}/generate"), &greedy).unwrap();
    assert_eq!(again["output_ids"], after["output_ids"]);
    // Text prompts go through the folder's tokenizer, and the text comes back decoded.
    let t = post(
        &format!("{base}/generate"),
        &json!({"text": "1 + 1 =", "sampling_params": {"temperature": 0, "max_new_tokens": 4}}),
    )
    .unwrap();
    let n = t["output_ids"].as_array().unwrap().len();
    assert!((1..=4).contains(&n), "{t}");
    assert!(t["text"].is_string());
    // Bad requests: each a 400 naming what is wrong.
    for (body, needle) in [
        (
            json!({"input_ids": [1, 2], "sampling_params": {"temperature": -1}}),
            "temperature",
        ),
        (json!({"input_ids": [1, 99999]}), "outside the vocabulary"),
        (json!({"input_ids": []}), "empty"),
        (json!({"text": "a", "input_ids": [1]}), "exactly one"),
        (
            json!({"input_ids": [1], "sampling_params": {"n": 0}}),
            "n = 0",
        ),
        (
            json!({"input_ids": [1], "sampling_params": {"max_new_tokens": 600}}),
            "context",
        ),
        (
            json!({"input_ids": [1], "sampling_params": {"frequency_penalty": 0.5}}),
            "frequency_penalty",
        ),
        (
            json!({"input_ids": [1], "sampling_params": {"stop": ["\n"]}}),
            "stop strings",
        ),
        (
            json!({"input_ids": [1], "sampling_params": {"tempreature": 1}}),
            "unknown field",
        ),
        (json!({"input_ids": [1], "stream": true}), "streaming"),
    ] {
        let e = post(&format!("{base}/generate"), &body).unwrap_err();
        assert_eq!(e.0, 400, "{body}: {}", e.1);
        assert!(e.1.contains(needle), "{body}: {}", e.1);
    }
    s.stop().unwrap();
}

#[test]
fn a_full_queue_answers_503() {
    let s = server(2, 2);
    let url = format!("{}/generate", s.url());
    let codes: Vec<u16> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..16)
            .map(|c| {
                let url = url.clone();
                sc.spawn(move || {
                    let body = json!({"input_ids": [10 + c, 11, 12], "sampling_params":
                        {"max_new_tokens": 200, "ignore_eos": true, "sampling_seed": 1}});
                    match post(&url, &body) {
                        Ok(_) => 200,
                        Err((code, text)) => {
                            assert!(code != 503 || text.contains("--max-queue"), "{text}");
                            code
                        }
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(codes.contains(&503), "{codes:?}");
    assert!(codes.contains(&200), "{codes:?}");
    assert!(codes.iter().all(|c| *c == 200 || *c == 503), "{codes:?}");
    s.stop().unwrap();
}

#[test]
fn a_peft_adapter_loads_applies_to_named_requests_and_unloads() {
    let s = server(64, 64);
    let base = s.url();
    let adapter = fixture().join("../lora/qwen2-tiny-r4-all-linear");
    let greedy = |lora: Option<&str>| {
        let mut body = json!({"input_ids": [11, 12, 13], "return_logprob": true,
            "sampling_params": {"temperature": 0, "max_new_tokens": 6}});
        if let Some(l) = lora {
            body["lora_path"] = json!(l);
        }
        post(&format!("{base}/generate"), &body)
    };
    let plain = greedy(None).unwrap();
    let e = greedy(Some("policy")).unwrap_err();
    assert!(e.1.contains("no LoRA adapter is loaded"), "{}", e.1);
    let r = post(
        &format!("{base}/load_lora_adapter"),
        &json!({"lora_name": "policy", "lora_path": adapter}),
    )
    .unwrap();
    assert_eq!(r["success"], true, "{r}");
    // While loaded it applies to every request, which must name it.
    let e = greedy(None).unwrap_err();
    assert!(e.1.contains("name it"), "{}", e.1);
    let adapted = greedy(Some("policy")).unwrap();
    assert_ne!(
        plain["meta_info"]["output_token_logprobs"],
        adapted["meta_info"]["output_token_logprobs"]
    );
    // The served adapter equals the model with the adapter attached in process.
    let mut m = HfModel::load(&fixture(), Device::Cpu, Kind::Float).unwrap();
    let spec = rlvr_models::lora::read_adapter_config(&adapter)
        .unwrap()
        .spec()
        .unwrap();
    m.attach_adapters(&spec, Kind::Float).unwrap();
    rlvr_models::lora::load_adapter(&mut m.vs, &adapter).unwrap();
    let ids = Tensor::from_slice(&[11i64, 12, 13]).view([1, 3]);
    let cfg = SamplingConfig {
        temperature: 0.0,
        max_new_tokens: 6,
        ..Default::default()
    };
    let g = generate(&m.model, &ids, &ids.ones_like(), &cfg, &[], 0).unwrap();
    let want = Vec::<i64>::try_from(g.tokens.view([-1])).unwrap();
    assert_eq!(adapted["output_ids"], json!(want));
    // Unloaded: the base model again.
    let r = post(
        &format!("{base}/unload_lora_adapter"),
        &json!({"lora_name": "policy"}),
    )
    .unwrap();
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(greedy(None).unwrap()["output_ids"], plain["output_ids"]);
    s.stop().unwrap();
}

#[test]
fn paused_in_place_a_weight_update_lands_between_decode_steps() {
    // SGLang's partial-rollout flow: /pause_generation (in_place), /update_weights_from_disk,
    // /continue_generation. The running samples keep their tokens so far (from the old weights)
    // and continue on the new ones; each token's version says which.
    let s = server(512, 4096);
    let base = s.url().to_string();
    let original = tempfile::tempdir().unwrap();
    let scaled = tempfile::tempdir().unwrap();
    let m = HfModel::load(&fixture(), Device::Cpu, Kind::Float).unwrap();
    m.save(original.path()).unwrap();
    tch::no_grad(|| {
        for (_, mut v) in m.vs.variables() {
            let _ = v.g_mul_scalar_(1.5);
        }
    });
    m.save(scaled.path()).unwrap();
    let load = |dir: &std::path::Path, version: &str| {
        let r = post(
            &format!("{base}/update_weights_from_disk"),
            &json!({"model_path": dir, "weight_version": version}),
        )
        .unwrap();
        assert_eq!(r["success"], true, "{r}");
    };
    let body = json!({"input_ids": [11, 12, 13], "return_logprob": true, "sampling_params":
        {"max_new_tokens": 400, "n": 4, "ignore_eos": true, "sampling_seed": 5}});
    let e = post(
        &format!("{base}/pause_generation"),
        &json!({"mode": "abort"}),
    )
    .unwrap_err();
    assert_eq!(e.0, 400, "{}", e.1);
    assert!(e.1.contains("in_place"), "{}", e.1);
    let mut mixed = false;
    for attempt in 1..=5u64 {
        load(original.path(), "0");
        let reference = post(&format!("{base}/generate"), &body).unwrap();
        let url = format!("{base}/generate");
        let pending = std::thread::spawn({
            let body = body.clone();
            move || post(&url, &body).unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(30 * attempt));
        let p = post(
            &format!("{base}/pause_generation"),
            &json!({"mode": "in_place"}),
        )
        .unwrap();
        assert_eq!(p["success"], true, "{p}");
        // Paused: the update loads at once, with samples still running.
        load(scaled.path(), "1");
        let c = post(&format!("{base}/continue_generation"), &json!({})).unwrap();
        assert_eq!(c["success"], true, "{c}");
        let answer = pending.join().unwrap();
        for (a, r) in answer
            .as_array()
            .unwrap()
            .iter()
            .zip(reference.as_array().unwrap())
        {
            let versions: Vec<&str> = a["meta_info"]["output_token_weight_versions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(versions.len(), 400);
            let old = versions.iter().take_while(|v| **v == "0").count();
            assert!(
                versions[old..].iter().all(|v| *v == "1"),
                "versions go 0 then 1: {versions:?}"
            );
            assert_eq!(a["meta_info"]["weight_version"], versions[0]);
            // The tokens of the old weights are those an uninterrupted request draws.
            let (ids, ref_ids) = (
                a["output_ids"].as_array().unwrap(),
                r["output_ids"].as_array().unwrap(),
            );
            assert_eq!(ids[..old], ref_ids[..old]);
            eprintln!("attempt {attempt}: {old} tokens from the old weights");
            mixed |= old > 0 && old < 400;
        }
        if mixed {
            break;
        }
    }
    assert!(mixed, "no update landed mid-generation in 5 attempts");
}
