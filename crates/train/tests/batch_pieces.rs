//! DAPO's batch pieces in a real step (arXiv 2503.14476): dynamic sampling trains only groups
//! whose scores differ, renumbered; the overlong shaping adds eq. 13's penalty to the scores that
//! reach the advantages.

mod common;

use common::small_config;
use rlvr_train::Trainer;

fn values(t: &tch::Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(tch::Kind::Double).to_device(tch::Device::Cpu)).unwrap()
}

#[test]
fn dynamic_sampling_trains_only_groups_whose_scores_differ() {
    let algo = toml::toml! { preset = "dapo" };
    let cfg = small_config(&[("algo", toml::Value::Table(algo))]);
    let tmp = tempfile::tempdir().unwrap();
    let t = Trainer::new(cfg, &tmp.path().join("run")).unwrap();
    // prompts_per_step = 4, oversample 2: eight prompts are sampled.
    assert_eq!(t.step_problems().len(), 8);
    let (exp, m) = t.make_experience().unwrap();
    let kept = m.value("rollout/kept_groups");
    assert!((0.0..=1.0).contains(&kept), "{kept}");
    let scores = values(&exp.responses.scores);
    let groups = values(&exp.responses.group);
    let k = scores.len() / 4;
    // The first four varied groups; fewer when fewer vary; the first four when none does.
    let varied = (kept * 8.0).round() as usize;
    let expected = if varied == 0 { 4 } else { varied.min(4) };
    assert_eq!(k, expected, "kept {kept}");
    assert_eq!(
        groups,
        (0..k).flat_map(|g| [g as f64; 4]).collect::<Vec<_>>(),
        "renumbered groups"
    );
    if varied > 0 {
        for g in 0..k {
            let s = &scores[4 * g..4 * g + 4];
            assert!(
                s.iter().any(|x| *x != s[0]),
                "group {g} has equal scores {s:?}"
            );
        }
    }
}

#[test]
fn overlong_shaping_adds_the_penalty_of_eq_13() {
    let algo = toml::toml! {
        preset = "grpo"
        [shaping]
        type = "overlong"
        buffer = 4
    };
    let cfg = small_config(&[
        ("algo", toml::Value::Table(algo)),
        ("train.max_new_tokens", 8.into()),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let t = Trainer::new(cfg, &tmp.path().join("run")).unwrap();
    let (exp, m) = t.make_experience().unwrap();
    let shaped = values(&exp.responses.scores);
    let lengths = values(
        &exp.responses
            .mask
            .sum_dim_intlist(-1, false, tch::Kind::Double),
    );
    // L_max = 8, L_cache = 4: no penalty up to 4 tokens, then (4 − |y|)/4.
    let penalty = |len: f64| if len <= 4.0 { 0.0 } else { (4.0 - len) / 4.0 };
    let mut total = 0.0;
    for (s, len) in shaped.iter().zip(&lengths) {
        let raw = s - penalty(*len);
        assert!(
            (raw - 0.0).abs() < 1e-6 || (raw - 1.0).abs() < 1e-6,
            "score {s} at length {len}: the verifier's 0/1 plus the penalty"
        );
        total += penalty(*len);
    }
    assert!(
        total < 0.0,
        "some responses are longer than 4 tokens: {lengths:?}"
    );
    let mean = total / shaped.len() as f64;
    assert!((m.value("reward/shaping") - mean).abs() < 1e-6);
    assert!(
        (m.value("reward/mean") - shaped.iter().sum::<f64>() / shaped.len() as f64).abs() < 1e-6
    );
}
