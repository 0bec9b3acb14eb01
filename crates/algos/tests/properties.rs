//! Property tests: SimKO's mixed ratio and closed-form logit gradient (docs/design.md §3), pass@k
//! estimators against brute-force subset enumeration, and micro-batching invariance.

mod common;

use common::loss_from_toml;
use proptest::prelude::*;
use rlvr_algos::advantage::{passk::passk_group, pkpo::pkpo_group};
use rlvr_algos::loss::topk_mixture::{TopKMixture, TopKWeights};
use rlvr_core::{token_stats_from_logits, Aggregation, GlobalCounts, PolicyLoss};
use rlvr_tests::loss::LossBatch;
use tch::{Device, Kind, Tensor};

/// A random batch: logits [B,T,V], tokens, old log-probs near the current ones, group-wise 0/1
/// scores with GRPO-like advantages, and right padding.
struct Batch {
    logits: Tensor,
    loss: LossBatch,
}

fn batch(seed: i64, b: i64, t: i64, v: i64) -> Batch {
    tch::manual_seed(seed);
    let opts = (Kind::Float, Device::Cpu);
    let logits = Tensor::randn([b, t, v], opts) * 2.0;
    let probs = logits.softmax(-1, Kind::Float).reshape([b * t, v]);
    let tokens = probs.multinomial(1, true).reshape([b, t]);
    let logp = logits
        .log_softmax(-1, Kind::Float)
        .gather(-1, &tokens.unsqueeze(-1), false)
        .squeeze_dim(-1);
    let old_logp = &logp + Tensor::randn([b, t], opts) * 0.3;
    let scores = Tensor::randint(2, [b], (Kind::Int64, Device::Cpu)).to_kind(Kind::Float);
    let adv_row = (&scores - scores.mean(Kind::Float)) + 0.1;
    let lengths = Tensor::randint_low(1, t + 1, [b], (Kind::Int64, Device::Cpu));
    let mask = Tensor::arange(t, (Kind::Int64, Device::Cpu))
        .unsqueeze(0)
        .lt_tensor(&lengths.unsqueeze(1))
        .to_kind(Kind::Float);
    let adv = adv_row.unsqueeze(1) * &mask;
    Batch {
        logits,
        loss: LossBatch {
            old_logp,
            advantages: adv,
            mask,
            scores,
            tokens,
        },
    }
}

fn loss_grad(loss: &dyn PolicyLoss, bt: &Batch, agg: Aggregation, chunks: i64) -> Tensor {
    let logits = bt.logits.copy().set_requires_grad(true);
    let counts = GlobalCounts::of_mask(&bt.loss.mask).unwrap();
    let b = bt.loss.mask.size()[0];
    let per = (b + chunks - 1) / chunks;
    let full = &bt.loss;
    let mut start = 0;
    while start < b {
        let len = per.min(b - start);
        let part = full.rows(start, len);
        let stats =
            token_stats_from_logits(&logits.narrow(0, start, len), &part.tokens, &loss.needs())
                .unwrap();
        let out = loss.per_token_loss(&part.input(&stats)).unwrap();
        agg.reduce(&out.per_token, &part.mask, counts, 7.0)
            .unwrap()
            .backward();
        start += len;
    }
    logits.grad()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// (1 − αw)·r + αw·Σ ω_k sg(r/r_k)·r_k has the value r, for any weights.
    #[test]
    fn mixed_ratio_value_equals_r(seed in 0i64..10_000, k in 1usize..5, alpha in 0.0f64..1.0, softmax in any::<bool>()) {
        let bt = batch(seed, 4, 5, 8);
        let weights = if softmax { TopKWeights::Softmax } else { TopKWeights::Uniform };
        let mix = TopKMixture::new(k, alpha, weights).unwrap();
        let stats = token_stats_from_logits(&bt.logits, &bt.loss.tokens, &mix.needs()).unwrap();
        let r = (&stats.logp - &bt.loss.old_logp).exp();
        let mixed = mix.ratio(&r, stats.topk_logp.as_ref(), &bt.loss.mask).unwrap();
        prop_assert!(mixed.allclose(&r, 1e-6, 1e-7, false));
    }

    /// The autograd gradient w.r.t. each token's logits equals the closed form of docs/design.md §3:
    /// −A'·r·(ẽ − p)·1[not clipped] / N, ẽ = (1 − αcw)e_y + (αcw/K)Σ_k e_vk,
    /// A' = A·(1 + (λ − 1)·1[A<0]·1[y top-1]·w).
    #[test]
    fn logit_gradient_equals_closed_form(seed in 0i64..10_000, k in 1i64..5, alpha in 0.0f64..0.5, tau in 0.0f64..1.0, lambda in 1.0f64..1.5) {
        let bt = batch(seed, 6, 7, 9);
        let body = format!("type = \"simko\"\ntopk = {k}\nalpha = {alpha}\nlambda = {lambda}\n[gate]\ntype = \"entropy-quantile\"\ntau = {tau}\n");
        let loss = loss_from_toml(&body);
        let grad = loss_grad(loss.as_ref(), &bt, Aggregation::TokenMean, 1);

        // Closed form from the definitions, computed independently of the loss code.
        let v = bt.logits.size()[2];
        let p = bt.logits.softmax(-1, Kind::Float);
        let logp_all = bt.logits.log_softmax(-1, Kind::Float);
        let logp = logp_all.gather(-1, &bt.loss.tokens.unsqueeze(-1), false).squeeze_dim(-1);
        let r = (&logp - &bt.loss.old_logp).exp();
        let entropy = -(&p * &logp_all).sum_dim_intlist(-1, false, Kind::Float);
        let w = gate_reference(&entropy, &bt.loss.mask, tau);
        let c = bt.loss.scores.eq(1.0).to_kind(Kind::Float).unsqueeze(1);
        let (_, ids) = bt.logits.topk(k, -1, true, true);
        let top1 = ids.select(-1, 0).eq_tensor(&bt.loss.tokens).to_kind(Kind::Float);
        let e_y = bt.loss.tokens.one_hot(v).to_kind(Kind::Float);
        let e_topk = ids.one_hot(v).to_kind(Kind::Float).sum_dim_intlist(-2, false, Kind::Float);
        let acw = (&w * &c * alpha).unsqueeze(-1);
        let e_tilde = (acw.ones_like() - &acw) * &e_y + &acw / (k as f64) * e_topk;
        let negative = bt.loss.advantages.sum_dim_intlist(-1, true, Kind::Float).lt(0.0).to_kind(Kind::Float);
        let adv_p = &bt.loss.advantages * (&negative * &top1 * &w * (lambda - 1.0) + 1.0);
        let pg1 = -&adv_p * &r;
        let pg2 = -&adv_p * r.clamp(0.8, 1.2);
        let unclipped = pg2.le_tensor(&pg1).to_kind(Kind::Float);
        let n = bt.loss.mask.sum(Kind::Float);
        let coef = (-&adv_p * &r * unclipped * &bt.loss.mask / n).unsqueeze(-1);
        let expected = coef * (e_tilde - p);
        prop_assert!(grad.allclose(&expected, 1e-4, 1e-6, false), "max diff {}", (&grad - &expected).abs().max().double_value(&[]));
    }

    /// passk's R̄ and advantages equal brute-force enumeration of k-subsets:
    /// A_i = (E[max | S ∋ i] − E[max]) / sqrt(R̄(1 − R̄)).
    #[test]
    fn passk_matches_subset_enumeration(correct in proptest::collection::vec(any::<bool>(), 2..9), k_raw in 1usize..9) {
        let n = correct.len();
        let k = 1 + (k_raw - 1) % n;
        let (mean, with_i) = enumerate(&correct, k);
        let sigma = (mean * (1.0 - mean)).sqrt();
        let got = passk_group(&correct, k);
        for i in 0..n {
            let want = if sigma == 0.0 { 0.0 } else { (with_i[i] - mean) / sigma };
            prop_assert!((got[i] - want).abs() < 1e-12, "i={} got {} want {}", i, got[i], want);
        }
    }

    /// pkpo's transformed rewards equal enumeration: s_i = E[max | S ∋ i]; leave-one-out subtracts
    /// E[max] over k-subsets of the other responses.
    #[test]
    fn pkpo_matches_subset_enumeration(correct in proptest::collection::vec(any::<bool>(), 2..9), k_raw in 1usize..9) {
        let n = correct.len();
        let k = 1 + (k_raw - 1) % n;
        let (_, with_i) = enumerate(&correct, k);
        let plain = pkpo_group(&correct, k, false);
        for i in 0..n {
            prop_assert!((plain[i] - with_i[i]).abs() < 1e-12);
        }
        if n > k {
            let loo = pkpo_group(&correct, k, true);
            for i in 0..n {
                let others: Vec<bool> = correct.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, c)| *c).collect();
                let (base, _) = enumerate(&others, k);
                prop_assert!((loo[i] - (with_i[i] - base)).abs() < 1e-12);
            }
        }
    }
}

/// Mean of max over all k-subsets, and per element the mean over the k-subsets containing it.
fn enumerate(correct: &[bool], k: usize) -> (f64, Vec<f64>) {
    let n = correct.len();
    let (mut total, mut count) = (0.0, 0.0);
    let mut with_i = vec![(0.0, 0.0); n];
    for bits in 0u32..(1 << n) {
        if bits.count_ones() as usize != k {
            continue;
        }
        let best = (0..n).any(|j| bits & (1 << j) != 0 && correct[j]) as i32 as f64;
        total += best;
        count += 1.0;
        for (j, acc) in with_i.iter_mut().enumerate() {
            if bits & (1 << j) != 0 {
                acc.0 += best;
                acc.1 += 1.0;
            }
        }
    }
    (
        total / count,
        with_i.into_iter().map(|(s, c)| s / c).collect(),
    )
}

/// Per-response τ-quantile gate written directly from its definition (sorted valid entropies,
/// linear interpolation, strict comparison).
fn gate_reference(entropy: &Tensor, mask: &Tensor, tau: f64) -> Tensor {
    let (b, t) = (entropy.size()[0], entropy.size()[1]);
    let mut out = vec![0f32; (b * t) as usize];
    for r in 0..b {
        let mut vals: Vec<f64> = (0..t)
            .filter(|&j| mask.double_value(&[r, j]) > 0.0)
            .map(|j| entropy.double_value(&[r, j]))
            .collect();
        vals.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let pos = tau * (vals.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        let q = (vals[lo] + (pos - lo as f64) * (vals[hi] - vals[lo])) as f32;
        for j in 0..t {
            let h = entropy.double_value(&[r, j]) as f32;
            out[(r * t + j) as usize] = if mask.double_value(&[r, j]) > 0.0 && h > q {
                1.0
            } else {
                0.0
            };
        }
    }
    Tensor::from_slice(&out).reshape([b, t])
}

#[test]
fn micro_batching_never_changes_the_gradient() {
    common::link();
    let bt = batch(7, 8, 6, 10);
    for body in ["type = \"ppo-clip\"", "type = \"simko\"\nalpha = 0.3\nlambda = 1.3\n[gate]\ntype = \"entropy-quantile\"\ntau = 0.5"] {
        let loss = loss_from_toml(body);
        for agg in [Aggregation::TokenMean, Aggregation::SeqMeanTokenMean, Aggregation::SeqMeanTokenSum, Aggregation::Constant] {
            let whole = loss_grad(loss.as_ref(), &bt, agg, 1);
            assert!(whole.abs().sum(Kind::Double).double_value(&[]) > 0.0, "non-trivial gradient");
            for chunks in [2, 4] {
                let split = loss_grad(loss.as_ref(), &bt, agg, chunks);
                assert!(split.allclose(&whole, 1e-5, 1e-7, false), "{body} {agg:?} {chunks} chunks");
            }
        }
    }
}

/// The forking-token normaliser: with `gate_normalizer = "gated"` the token-mean of a gated
/// ppo-clip is Σ w·ℓ / Σ w over the valid tokens (the gated tokens' mean, as Wang et al. 2025's
/// verl code computes it by replacing the response mask with the entropy mask), where "valid"
/// divides the same sum by every valid token; written out here from the gate's own weights.
#[test]
fn the_gated_normaliser_averages_over_the_gated_tokens_only() {
    common::link();
    let bt = batch(11, 6, 8, 12);
    let gate = "[gate]\ntype = \"entropy-quantile\"\ntau = 0.8\nscope = \"batch\"";
    let valid = loss_from_toml(&format!("type = \"ppo-clip\"\n{gate}"));
    let gated = loss_from_toml(&format!(
        "type = \"ppo-clip\"\ngate_normalizer = \"gated\"\n{gate}"
    ));
    let stats = token_stats_from_logits(&bt.logits, &bt.loss.tokens, &gated.needs()).unwrap();
    let input = bt.loss.input(&stats);
    let out_valid = valid.per_token_loss(&input).unwrap();
    let out_gated = gated.per_token_loss(&input).unwrap();
    let w = &out_gated
        .metrics
        .iter()
        .find(|m| m.name == "gate_frac")
        .unwrap()
        .values;
    let mask = &bt.loss.mask;
    let counts = GlobalCounts::of_mask(mask).unwrap();
    let reduce = |x: &Tensor| {
        Aggregation::TokenMean
            .reduce(x, mask, counts, 1.0)
            .unwrap()
            .double_value(&[])
    };
    let gated_tokens = (w * mask).sum(Kind::Double).double_value(&[]);
    assert!(
        gated_tokens > 0.0 && gated_tokens < counts.tokens,
        "the gate passes some tokens"
    );
    // Σ w·ℓ over valid tokens: the valid-normalised loss times the valid tokens.
    let sum_wl = reduce(&out_valid.per_token) * counts.tokens;
    let want = sum_wl / gated_tokens;
    let got = reduce(&out_gated.per_token);
    assert!(
        (got - want).abs() <= 1e-6 * want.abs().max(1e-6),
        "{got} vs {want}"
    );
    assert!((reduce(&out_valid.per_token) - sum_wl / counts.tokens).abs() < 1e-9);
    // "gated" without a gate is refused.
    let cfg: Box<dyn rlvr_core::LossConfig> =
        toml::from_str("type = \"ppo-clip\"\ngate_normalizer = \"gated\"").unwrap();
    assert!(cfg.build().is_err());
}
