//! `[algo.correction]` in the trainer: the weights are computed from the rollout engine's and the
//! trainer's log-probs at experience time (≈ 1 for the in-process engine, whose log-probs match
//! the trainer's), and they multiply the per-token loss: doubling every weight doubles the loss
//! and the gradient norm of the same update.

mod common;

use common::small_config;
use rlvr_train::Trainer;
use tch::Kind;

fn trainer(dir: &std::path::Path) -> Trainer {
    Trainer::new(small_config(&[("algo.correction.type", "tis".into())]), dir).unwrap()
}

#[test]
fn correction_weights_come_from_the_two_log_probs_and_scale_the_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = trainer(&tmp.path().join("a"));
    let mut b = trainer(&tmp.path().join("b"));
    let (mut ea, m) = a.make_experience().unwrap();
    let (mut eb, _) = b.make_experience().unwrap();
    // In process the engine's log-probs are the trainer's up to f32 rounding: weights ≈ 1.
    let w = ea.is_weights.as_ref().expect("TIS weights");
    let mask = ea.responses.mask.to_kind(Kind::Double);
    let off = ((w.to_kind(Kind::Double) - 1.0) * &mask)
        .abs()
        .max()
        .double_value(&[]);
    assert!(off < 1e-4, "weights off 1 by {off}");
    assert!((m.value("rollout/is_weight_mean") - 1.0).abs() < 1e-4);
    assert!(m.value("rollout/logp_diff_max") < 1e-4);
    // Weights 1 and 2 on the same experience: the loss and gradient double.
    ea.is_weights = Some(ea.responses.mask.shallow_clone());
    eb.is_weights = Some(&eb.responses.mask * 2.0);
    let tc = a.cfg.train.clone();
    let single = rlvr_train::distributed::Single;
    let ua = a
        .actor
        .update(a.session.policy.as_ref(), &ea, &tc, 0, a.lr(), &single)
        .unwrap();
    let ub = b
        .actor
        .update(b.session.policy.as_ref(), &eb, &tc, 0, b.lr(), &single)
        .unwrap();
    let (la, lb) = (ua.value("actor/loss"), ub.value("actor/loss"));
    assert!(la.abs() > 1e-6, "a non-zero loss to compare: {la}");
    assert!(
        (lb - 2.0 * la).abs() <= 1e-5 * la.abs().max(1.0),
        "{lb} vs 2 × {la}"
    );
    let (ga, gb) = (ua.value("actor/grad_norm"), ub.value("actor/grad_norm"));
    assert!(
        (gb - 2.0 * ga).abs() <= 1e-4 * ga.max(1e-6),
        "{gb} vs 2 × {ga}"
    );
}
