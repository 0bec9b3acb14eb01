//! Golden tests against the official SimKO/verl code (fixtures in tests/fixtures/reference).

mod common;

use common::{assert_close, load, loss_from_toml, manifest};
use rlvr_core::{
    token_stats_from_logits, AdvantageConfig, AdvantageInput, Aggregation, GlobalCounts,
    PolicyLoss, StatsNeeds, TokenStats,
};
use rlvr_tests::loss::LossBatch;
use tch::{Kind, Tensor};

const REL: f64 = 1e-5;
const ABS: f64 = 1e-6;

/// Token-mean loss, clip fraction and approximate KL of `loss` on a fixture's inputs.
fn run_loss(
    loss: &dyn PolicyLoss,
    f: &std::collections::HashMap<String, Tensor>,
    stats: &TokenStats,
) -> (Tensor, f64, f64) {
    let batch = LossBatch::from_fixture(f);
    let out = loss.per_token_loss(&batch.input(stats)).expect("loss runs");
    let total = Aggregation::TokenMean
        .reduce(&out.per_token, &batch.mask, batch.counts(), 1.0)
        .unwrap();
    (
        total,
        batch.metric_mean(&out, "clipfrac"),
        batch.metric_mean(&out, "ppo_kl"),
    )
}

fn simko_toml(case: &serde_json::Value) -> String {
    format!(
        "type = \"simko\"\ntopk = {}\nalpha = {}\nlambda = {}\nclip_low = {}\nclip_high = {}\n[gate]\ntype = \"entropy-quantile\"\ntau = {}\n",
        case["K"], case["mix_topk_coef"], case["top1_penalty"], case["cliprange"], case["cliprange"], case["tau"]
    )
}

/// The official `compute_policy_loss_simko` decides "correct" with
/// `if correct_idx.size(0) == T: correct_mask = correct_idx.unsqueeze(0).expand(B, -1)`, so when
/// the batch size B equals the response length T it applies response b's correctness to column b
/// of every response instead of to row b. rlvr applies it per response, as the paper defines.
/// For such fixtures this returns 1 where the two readings agree (elements comparable with the
/// official gradients) and 0 elsewhere; for B ≠ T it is all ones.
fn quirk_free(f: &std::collections::HashMap<String, Tensor>) -> Tensor {
    let mask = &f["mask"];
    let (b, t) = (mask.size()[0], mask.size()[1]);
    if b != t {
        return mask.ones_like();
    }
    let correct = f["scores"].eq(1.0).to_kind(Kind::Float);
    correct
        .unsqueeze(1)
        .eq_tensor(&correct.unsqueeze(0))
        .to_kind(Kind::Float)
}

/// The official code's reading (column-wise correctness when B = T, row-wise otherwise),
/// assembled from rlvr's public SimKO pieces: reproduces the fixture exactly, so the fixture checks the pieces even
/// where rlvr's own (per-response) reading differs.
fn official_reading_loss(
    f: &std::collections::HashMap<String, Tensor>,
    stats: &TokenStats,
    case: &serde_json::Value,
) -> Tensor {
    use rlvr_algos::gate::entropy_quantile::EntropyQuantileConfig;
    use rlvr_algos::loss::{
        surrogate::Surrogate,
        top1_penalty::{PenaltyOn, Top1Penalty},
        topk_mixture::{TopKMixture, TopKWeights},
    };
    use rlvr_core::{GateInput, TokenGate};
    let mask = &f["mask"];
    let eps = case["cliprange"].as_f64().unwrap();
    let gate = EntropyQuantileConfig {
        tau: case["tau"].as_f64().unwrap(),
        ..Default::default()
    };
    let w = gate
        .weights(&GateInput {
            stats,
            mask,
            tokens: &f["tokens"],
            truncated: None,
        })
        .unwrap();
    let correct = f["scores"].eq(1.0).to_kind(Kind::Float);
    let (b, t) = (mask.size()[0], mask.size()[1]);
    let correct = if b == t {
        correct.unsqueeze(0)
    } else {
        correct.unsqueeze(1)
    };
    let active = &w * correct * mask;
    let mixture = TopKMixture::new(
        case["K"].as_u64().unwrap() as usize,
        case["mix_topk_coef"].as_f64().unwrap(),
        TopKWeights::Uniform,
    )
    .unwrap();
    let r = (&stats.logp - &f["old_log_prob"]).exp();
    let ratio = mixture
        .ratio(&r, stats.topk_logp.as_ref(), &active)
        .unwrap();
    let penalty =
        Top1Penalty::new(case["top1_penalty"].as_f64().unwrap(), PenaltyOn::Advantage).unwrap();
    let adv = &f["advantages"]
        * penalty
            .factor(&f["advantages"], stats.is_top1.as_ref(), &w)
            .unwrap();
    let surrogate = Surrogate {
        clip_low: eps,
        clip_high: eps,
        ..Default::default()
    };
    let batch = LossBatch {
        advantages: adv.shallow_clone(),
        ..LossBatch::from_fixture(f)
    };
    let out = surrogate.loss(&ratio, &adv, &batch.input(stats)).unwrap();
    Aggregation::TokenMean
        .reduce(
            &out.per_token,
            mask,
            GlobalCounts::of_mask(mask).unwrap(),
            1.0,
        )
        .unwrap()
}

/// The gradient of a leaf, or zeros when it took no part in the loss.
fn grad_or_zero(t: &Tensor) -> Tensor {
    let g = t.grad();
    if g.defined() {
        g
    } else {
        t.zeros_like()
    }
}

/// Leaf copies of the fixture's log-prob statistics, requiring gradients.
fn leaf_stats(f: &std::collections::HashMap<String, Tensor>) -> (TokenStats, Tensor, Tensor) {
    let logp = f["log_prob"].copy().set_requires_grad(true);
    let topk = f["topk_log_probs"].copy().set_requires_grad(true);
    let stats = TokenStats {
        logp: logp.shallow_clone(),
        entropy: Some(f["entropy"].shallow_clone()),
        topk_logp: Some(topk.shallow_clone()),
        topk_ids: None,
        is_top1: Some(f["max_token"].shallow_clone()),
    };
    (stats, logp, topk)
}

#[test]
fn simko_matches_official_code_on_logprob_inputs() {
    let cases = manifest("policy_loss");
    assert!(cases.len() >= 5, "all policy_loss fixtures present");
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let f = load(case["file"].as_str().unwrap());
        let keep = quirk_free(&f);
        let (stats, logp, topk) = leaf_stats(&f);
        let loss = loss_from_toml(&simko_toml(&case));
        let (total, clipfrac, ppo_kl) = run_loss(loss.as_ref(), &f, &stats);
        // Values: the mixed ratio equals r, so the loss agrees even under the B = T reading.
        assert_close(
            &total,
            &f["expected.simko_loss"],
            REL,
            ABS,
            &format!("{name}: simko loss"),
        );
        assert_close(
            &Tensor::from(clipfrac),
            &f["expected.simko_clipfrac"],
            REL,
            ABS,
            &format!("{name}: clipfrac"),
        );
        assert_close(
            &Tensor::from(ppo_kl),
            &f["expected.ppo_kl"],
            REL,
            ABS,
            &format!("{name}: ppo_kl"),
        );
        total.backward();
        let g = &f["expected.simko_grad_log_prob"];
        assert_close(
            &(logp.grad() * &keep),
            &(g * &keep),
            REL,
            ABS,
            &format!("{name}: d/d log_prob"),
        );
        let gk = &f["expected.simko_grad_topk_log_probs"];
        let keep_k = keep.unsqueeze(-1);
        assert_close(
            &(grad_or_zero(&topk) * &keep_k),
            &(gk * &keep_k),
            REL,
            ABS,
            &format!("{name}: d/d topk"),
        );

        // The official reading, assembled from the same pieces, matches every element.
        let (stats, logp, topk) = leaf_stats(&f);
        let total = official_reading_loss(&f, &stats, &case);
        assert_close(
            &total,
            &f["expected.simko_loss"],
            REL,
            ABS,
            &format!("{name}: official reading loss"),
        );
        total.backward();
        assert_close(
            &logp.grad(),
            g,
            REL,
            ABS,
            &format!("{name}: official reading d/d log_prob"),
        );
        assert_close(
            &grad_or_zero(&topk),
            gk,
            REL,
            ABS,
            &format!("{name}: official reading d/d topk"),
        );
    }
}

#[test]
fn the_b_equals_t_fixture_differs_only_where_the_official_reading_does() {
    let f = load("simko_k3_tau08.safetensors");
    let keep = quirk_free(&f);
    let differing = (keep.ones_like() - &keep) * &f["mask"];
    assert!(
        differing.sum(Kind::Double).double_value(&[]) > 0.0,
        "the B = T case exercises the quirk"
    );
}

#[test]
fn simko_matches_official_gradient_through_logits() {
    for case in manifest("policy_loss") {
        let name = case["name"].as_str().unwrap();
        let f = load(case["file"].as_str().unwrap());
        let keep = quirk_free(&f).unsqueeze(-1);
        let logits = f["logits"].copy().set_requires_grad(true);
        let loss = loss_from_toml(&simko_toml(&case));
        let stats = token_stats_from_logits(&logits, &f["tokens"], &loss.needs()).unwrap();
        // The statistics derived by core agree with the fixture's own.
        assert_close(
            &stats.logp,
            &f["log_prob"],
            REL,
            ABS,
            &format!("{name}: log_prob from logits"),
        );
        assert_close(
            stats.entropy.as_ref().unwrap(),
            &f["entropy"],
            REL,
            ABS,
            &format!("{name}: entropy from logits"),
        );
        assert!(
            stats.is_top1.as_ref().unwrap().equal(&f["max_token"]),
            "{name}: top-1 flags"
        );
        let (total, _, _) = run_loss(loss.as_ref(), &f, &stats);
        assert_close(
            &total,
            &f["expected.simko_loss"],
            REL,
            ABS,
            &format!("{name}: simko loss via logits"),
        );
        total.backward();
        let g = &f["expected.simko_grad_logits"];
        assert_close(
            &(logits.grad() * &keep),
            &(g * &keep),
            REL,
            ABS,
            &format!("{name}: d/d logits"),
        );

        let logits = f["logits"].copy().set_requires_grad(true);
        let stats = token_stats_from_logits(&logits, &f["tokens"], &loss.needs()).unwrap();
        official_reading_loss(&f, &stats, &case).backward();
        assert_close(
            &logits.grad(),
            g,
            REL,
            ABS,
            &format!("{name}: official reading d/d logits"),
        );
    }
}

#[test]
fn grpo_loss_matches_official_code() {
    for case in manifest("policy_loss") {
        let name = case["name"].as_str().unwrap();
        let f = load(case["file"].as_str().unwrap());
        let logp = f["log_prob"].copy().set_requires_grad(true);
        let stats = TokenStats {
            logp: logp.shallow_clone(),
            entropy: None,
            topk_logp: None,
            topk_ids: None,
            is_top1: None,
        };
        let eps = case["cliprange"].as_f64().unwrap();
        let loss = loss_from_toml(&format!(
            "type = \"ppo-clip\"\nclip_low = {eps}\nclip_high = {eps}\n"
        ));
        assert_eq!(
            loss.needs(),
            StatsNeeds::default(),
            "plain PPO needs nothing extra"
        );
        let (total, clipfrac, _) = run_loss(loss.as_ref(), &f, &stats);
        assert_close(
            &total,
            &f["expected.grpo_loss"],
            REL,
            ABS,
            &format!("{name}: grpo loss"),
        );
        assert_close(
            &Tensor::from(clipfrac),
            &f["expected.grpo_clipfrac"],
            REL,
            ABS,
            &format!("{name}: grpo clipfrac"),
        );
        total.backward();
        assert_close(
            &logp.grad(),
            &f["expected.grpo_grad_log_prob"],
            REL,
            ABS,
            &format!("{name}: grpo grad"),
        );
    }
}

#[test]
fn advantages_match_official_code() {
    let cases = manifest("advantage");
    assert!(cases.len() >= 2);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let f = load(case["file"].as_str().unwrap());
        let input = AdvantageInput {
            scores: &f["scores"],
            token_level_scores: &f["token_level_scores"],
            mask: &f["mask"],
            group: &f["group"],
        };
        for (toml_type, key) in [
            ("grpo", "grpo"),
            ("rloo", "rloo"),
            ("reinforce++", "reinforce_pp"),
            ("psr", "psr"),
            ("nsr", "nsr"),
            ("w-reinforce", "w_reinforce"),
        ] {
            let cfg: Box<dyn AdvantageConfig> =
                toml::from_str(&format!("type = \"{toml_type}\"")).unwrap();
            let adv = cfg.build().unwrap().compute(&input).unwrap();
            assert_close(
                &adv,
                &f[&format!("expected.{key}")],
                REL,
                ABS,
                &format!("{name}: {toml_type}"),
            );
        }
    }
}
