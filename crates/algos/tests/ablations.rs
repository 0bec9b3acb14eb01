//! The paper's ablations (arXiv 2510.14807, §5) are configurations: each row is built from TOML
//! and checked for a property that tells it apart.

mod common;

use common::{algo_from_toml, load};
use rlvr_core::{Aggregation, Algorithm, TokenStats};
use rlvr_tests::loss::LossBatch;
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// Gradients w.r.t. log-prob and top-K log-probs on the first SimKO fixture (B ≠ T), plus the
/// fraction of tokens whose advantage the top-1 penalty scaled and the gate fraction.
struct Probe {
    grad_logp: Tensor,
    grad_topk: Tensor,
    penalized: f64,
    gated: f64,
}

fn fixture() -> HashMap<String, Tensor> {
    load("simko_k5_tau01_offpolicy.safetensors")
}

fn probe(algo: &Algorithm, f: &HashMap<String, Tensor>) -> Probe {
    let needs = algo.loss.needs();
    let logp = f["log_prob"].copy().set_requires_grad(true);
    let topk = f["logits"]
        .log_softmax(-1, Kind::Float)
        .topk(5, -1, true, true)
        .0
        .set_requires_grad(true);
    let k = needs.topk as i64;
    let stats = TokenStats {
        logp: logp.shallow_clone(),
        entropy: Some(f["entropy"].shallow_clone()),
        topk_logp: if k > 0 {
            Some(topk.narrow(-1, 0, k))
        } else {
            None
        },
        topk_ids: None,
        is_top1: Some(f["max_token"].shallow_clone()),
    };
    let batch = LossBatch::from_fixture(f);
    let (mask, counts) = (&batch.mask, batch.counts());
    let out = algo.loss.per_token_loss(&batch.input(&stats)).unwrap();
    Aggregation::TokenMean
        .reduce(&out.per_token, mask, counts, 1.0)
        .unwrap()
        .backward();
    let metric = |name: &str| {
        out.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| (&m.values * mask).sum(Kind::Double).double_value(&[]) / counts.tokens)
            .unwrap_or(0.0)
    };
    let grad_topk = if topk.grad().defined() {
        topk.grad()
    } else {
        topk.zeros_like()
    };
    Probe {
        grad_logp: logp.grad(),
        grad_topk,
        penalized: metric("top1_penalized"),
        gated: metric("gate_frac"),
    }
}

fn simko(extra: &str) -> Probe {
    let algo = algo_from_toml(&format!("preset = \"simko\"\n{extra}"))
        .build()
        .unwrap();
    probe(&algo, &fixture())
}

fn grpo() -> Probe {
    probe(
        &algo_from_toml("preset = \"grpo\"").build().unwrap(),
        &fixture(),
    )
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    a.allclose(b, 1e-6, 1e-9, false)
}

#[test]
fn alpha_zero_without_negative_part_or_tau_one_is_grpo_exactly() {
    let g = grpo();
    let off = simko("[loss]\nalpha = 0.0\nlambda = 1.0");
    assert!(
        same(&off.grad_logp, &g.grad_logp),
        "α = 0, λ = 1 gives the GRPO gradient"
    );
    let tau1 = simko("[loss.gate]\ntau = 1.0");
    assert!(
        same(&tau1.grad_logp, &g.grad_logp),
        "τ = 1 gates nothing: GRPO gradient"
    );
    assert_eq!(tau1.gated, 0.0);
    assert!(
        !same(&simko("").grad_logp, &g.grad_logp),
        "the default SimKO differs from GRPO"
    );
}

#[test]
fn alpha_sweep_scales_the_sampled_token_share() {
    let mut previous = None;
    for alpha in [0.0, 0.01, 0.02, 0.05, 0.1] {
        let p = simko(&format!("[loss]\nalpha = {alpha}\nlambda = 1.0"));
        let topk_mass = p.grad_topk.abs().sum(Kind::Double).double_value(&[]);
        if alpha == 0.0 {
            assert_eq!(topk_mass, 0.0, "α = 0: no gradient to the top-K");
        } else {
            assert!(topk_mass > 0.0);
            if let Some(prev) = previous {
                assert!(topk_mass > prev, "more top-K gradient as α grows");
            }
            previous = Some(topk_mass);
        }
    }
}

#[test]
fn tau_sweep_gates_fewer_tokens_as_tau_grows() {
    let mut last = f64::INFINITY;
    for tau in [0.0, 0.4, 0.6, 0.8, 1.0] {
        let p = simko(&format!("[loss.gate]\ntau = {tau}"));
        assert!(
            p.gated < last || (p.gated == 0.0 && last == 0.0),
            "τ = {tau}: {} after {last}",
            p.gated
        );
        assert!(
            p.gated <= 1.0 - tau + 0.15,
            "τ = {tau} gates about the top {}%",
            (1.0 - tau) * 100.0
        );
        last = p.gated;
    }
    assert_eq!(last, 0.0, "τ = 1 gates nothing");
}

#[test]
fn k_sweep_spreads_over_k_candidates() {
    for k in 1..=5i64 {
        let algo = algo_from_toml(&format!(
            "preset = \"simko\"\n[loss]\ntopk = {k}\nalpha = 0.1"
        ))
        .build()
        .unwrap();
        assert_eq!(algo.loss.needs().topk, k as usize);
        let p = probe(&algo, &fixture());
        let per_col = p
            .grad_topk
            .abs()
            .sum_dim_intlist([0, 1].as_slice(), false, Kind::Double);
        for col in 0..5 {
            let v = per_col.double_value(&[col]);
            assert_eq!(v > 0.0, col < k, "K = {k}: column {col} gradient {v}");
        }
    }
}

#[test]
fn without_positive_or_negative_part() {
    let no_pos = simko("[loss]\nalpha = 0.0");
    assert_eq!(
        no_pos.grad_topk.abs().sum(Kind::Double).double_value(&[]),
        0.0,
        "no positive part: top-K untouched"
    );
    assert!(no_pos.penalized > 0.0, "negative part still acts");
    let no_neg = simko("[loss]\nlambda = 1.0");
    assert_eq!(
        no_neg.penalized, 0.0,
        "no negative part: no advantage scaled"
    );
    assert!(no_neg.grad_topk.abs().sum(Kind::Double).double_value(&[]) > 0.0);
}

#[test]
fn softmax_weights_differ_from_uniform() {
    let uni = simko("[loss]\nalpha = 0.1");
    let soft = simko("[loss]\nalpha = 0.1\ntopk_weights = \"softmax\"");
    // Uniform: equal gradient on each of the K candidates of a token; softmax: rank 1 gets more.
    let cols = |p: &Probe| {
        p.grad_topk
            .abs()
            .sum_dim_intlist([0, 1].as_slice(), false, Kind::Double)
    };
    let (u, s) = (cols(&uni), cols(&soft));
    assert!((u.double_value(&[0]) - u.double_value(&[2])).abs() < 1e-9);
    assert!(s.double_value(&[0]) > s.double_value(&[2]) * 1.01);
}

#[test]
fn penalty_modes_and_other_estimators_are_configs() {
    let on_ratio = simko("[loss]\npenalty_on = \"ratio\"");
    let on_adv = simko("");
    assert!(on_ratio.penalized > 0.0 && on_adv.penalized > 0.0);
    assert!(
        !same(&on_ratio.grad_logp, &grpo().grad_logp),
        "ratio mode acts"
    );
    // SimKO on RLOO advantages, and the top-1 penalty alone on GRPO.
    let rloo = algo_from_toml("preset = \"simko\"\n[advantage]\ntype = \"rloo\"");
    assert_eq!(
        rloo.to_table().unwrap()["advantage"]["type"].as_str(),
        Some("rloo")
    );
    rloo.build().unwrap();
    let penalty_only = simko("[loss]\nalpha = 0.0\nlambda = 1.1");
    assert!(penalty_only.penalized > 0.0);
}
