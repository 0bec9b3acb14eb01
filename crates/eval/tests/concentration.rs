//! Concentration diagnostics against a direct f64 computation from logits.

use rlvr_core::{token_stats_from_logits, StatsNeeds};
use rlvr_eval::ConcentrationAccumulator;
use tch::{Kind, Tensor};

/// Log-softmax of one row in f64.
fn log_softmax(row: &[f64]) -> Vec<f64> {
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let z = row.iter().map(|x| (x - m).exp()).sum::<f64>().ln() + m;
    row.iter().map(|x| x - z).collect()
}

#[test]
fn matches_direct_computation_over_masked_tokens() {
    tch::manual_seed(3);
    let (b, t, v) = (3i64, 7i64, 11i64);
    let logits = Tensor::randn([b, t, v], (Kind::Float, tch::Device::Cpu)) * 2.5;
    let targets = Tensor::randint(v, [b, t], (Kind::Int64, tch::Device::Cpu));
    let mask_rows: Vec<f32> = (0..b * t)
        .map(|i| f32::from(i % t < [7, 3, 5][(i / t) as usize]))
        .collect();
    let mask = Tensor::from_slice(&mask_rows).reshape([b, t]);
    let needs = StatsNeeds {
        entropy: true,
        topk: 5,
        ..Default::default()
    };
    let stats = token_stats_from_logits(&logits, &targets, &needs).unwrap();
    // Two batches through the accumulator: split the rows.
    let mut acc = ConcentrationAccumulator::default();
    for (lo, len) in [(0, 1), (1, 2)] {
        let part = rlvr_core::TokenStats {
            logp: stats.logp.narrow(0, lo, len),
            entropy: stats.entropy.as_ref().map(|e| e.narrow(0, lo, len)),
            topk_logp: stats.topk_logp.as_ref().map(|e| e.narrow(0, lo, len)),
            topk_ids: None,
            is_top1: None,
        };
        acc.add(&part, &mask.narrow(0, lo, len)).unwrap();
    }
    let got = acc.finish();

    let flat: Vec<f32> = Vec::try_from(logits.to_kind(Kind::Float).reshape([-1])).unwrap();
    let tg: Vec<i64> = Vec::try_from(targets.reshape([-1])).unwrap();
    let (mut lam, mut prob) = (vec![0.0; 5], vec![0.0; 5]);
    let (mut sampled, mut ent, mut n) = (0.0, 0.0, 0.0);
    let mut entropies = Vec::new();
    for i in 0..(b * t) as usize {
        if mask_rows[i] == 0.0 {
            continue;
        }
        let row: Vec<f64> = flat[i * v as usize..(i + 1) * v as usize]
            .iter()
            .map(|&x| x as f64)
            .collect();
        let mut lp = log_softmax(&row);
        sampled += lp[tg[i] as usize];
        let h: f64 = -lp.iter().map(|l| l.exp() * l).sum::<f64>();
        ent += h;
        entropies.push(h);
        lp.sort_by(|a, b| b.partial_cmp(a).unwrap());
        for r in 0..5 {
            lam[r] += lp[r];
            prob[r] += lp[r].exp();
        }
        n += 1.0;
    }
    assert_eq!(got.tokens, n as u64);
    for r in 0..5 {
        assert!((got.lambda[r] - lam[r] / n).abs() < 1e-5, "Λ({})", r + 1);
        assert!(
            (got.rank_prob[r] - prob[r] / n).abs() < 1e-6,
            "p(rank {})",
            r + 1
        );
    }
    assert!(
        got.lambda.windows(2).all(|w| w[0] >= w[1]),
        "Λ is non-increasing in n"
    );
    assert!((got.sampled_logp - sampled / n).abs() < 1e-5);
    assert!((got.entropy_mean - ent / n).abs() < 1e-5);
    // Histogram: every token counted once, in the bin of its entropy.
    assert_eq!(got.entropy_hist.counts.iter().sum::<u64>(), n as u64);
    assert_eq!(
        got.entropy_hist.edges.len(),
        got.entropy_hist.counts.len() + 1
    );
    for h in entropies {
        let bin = got
            .entropy_hist
            .edges
            .windows(2)
            .position(|w| h >= w[0] && h < w[1])
            .unwrap();
        assert!(
            got.entropy_hist.counts[bin] > 0,
            "entropy {h} not in its bin"
        );
    }
    let d = got.entropy_hist.density();
    assert!((d.iter().sum::<f64>() - 1.0).abs() < 1e-12);
}

#[test]
fn missing_statistics_are_an_error() {
    let stats = rlvr_core::TokenStats {
        logp: Tensor::zeros([1, 2], (Kind::Float, tch::Device::Cpu)),
        entropy: None,
        topk_logp: None,
        topk_ids: None,
        is_top1: None,
    };
    let mut acc = ConcentrationAccumulator::default();
    let e = acc
        .add(
            &stats,
            &Tensor::ones([1, 2], (Kind::Float, tch::Device::Cpu)),
        )
        .unwrap_err();
    assert!(e.to_string().contains("top-k"), "{e}");
}

/// Two ranks' accumulators merged through their sums give what one accumulator over both
/// batches gives (data-parallel evaluation).
#[test]
fn sums_of_two_accumulators_merge_into_one() {
    tch::manual_seed(5);
    let (b, t, v) = (4i64, 6i64, 9i64);
    let logits = Tensor::randn([b, t, v], (Kind::Float, tch::Device::Cpu));
    let targets = Tensor::randint(v, [b, t], (Kind::Int64, tch::Device::Cpu));
    let mask = Tensor::ones([b, t], (Kind::Float, tch::Device::Cpu));
    let needs = StatsNeeds {
        entropy: true,
        topk: 3,
        ..Default::default()
    };
    let stats = token_stats_from_logits(&logits, &targets, &needs).unwrap();
    let part = |lo: i64, len: i64| rlvr_core::TokenStats {
        logp: stats.logp.narrow(0, lo, len),
        entropy: stats.entropy.as_ref().map(|e| e.narrow(0, lo, len)),
        topk_logp: stats.topk_logp.as_ref().map(|e| e.narrow(0, lo, len)),
        topk_ids: None,
        is_top1: None,
    };
    let mut whole = ConcentrationAccumulator::default();
    whole.add(&part(0, b), &mask).unwrap();
    let (mut a, mut c) = (
        ConcentrationAccumulator::default(),
        ConcentrationAccumulator::default(),
    );
    a.add(&part(0, 1), &mask.narrow(0, 0, 1)).unwrap();
    c.add(&part(1, 3), &mask.narrow(0, 1, 3)).unwrap();
    let mut merged = ConcentrationAccumulator::default();
    merged.add_sums(&a.to_sums()).unwrap();
    merged.add_sums(&c.to_sums()).unwrap();
    let (w, m) = (whole.finish(), merged.finish());
    assert_eq!(w.tokens, m.tokens);
    assert_eq!(w.entropy_hist.counts, m.entropy_hist.counts);
    for (x, y) in w
        .lambda
        .iter()
        .zip(&m.lambda)
        .chain(w.rank_prob.iter().zip(&m.rank_prob))
    {
        assert!((x - y).abs() < 1e-9, "{x} vs {y}");
    }
    assert!((w.entropy_mean - m.entropy_mean).abs() < 1e-9);
    assert!(merged.add_sums(&[1.0, 2.0]).is_err());
}
