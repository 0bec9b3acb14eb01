//! The example plugin's loss and gate, registered from outside rlvr: their registrations are
//! consistent (checked with `rlvr_core::testing::check_registrations`) and they compute what they
//! say. The binary that runs rlvr's CLI with them is tested in `examples/plugin-cli`.

#[test]
fn plugin_registrations_are_consistent() {
    rlvr_plugin_example::link();
    rlvr_algos::presets::link_anchor();
    let problems = rlvr_core::testing::check_registrations();
    assert!(problems.is_empty(), "{problems:#?}");
    let losses = rlvr_core::registry::names(rlvr_core::ComponentKind::Loss);
    assert!(losses.contains(&"vanilla-pg"), "{losses:?}");
}

#[test]
fn plugin_pieces_compute_what_they_say() {
    use rlvr_core::{GateInput, LossConfig, StatsNeeds, TokenStats};
    use rlvr_tests::loss::LossBatch;
    use tch::{Kind, Tensor};
    rlvr_plugin_example::link();
    let cfg: Box<dyn LossConfig> =
        toml::from_str("type = \"vanilla-pg\"\n[gate]\ntype = \"first-tokens\"\nn = 2\n").unwrap();
    let loss = cfg.build().unwrap();
    assert_eq!(loss.needs(), StatsNeeds::default());
    let logp = Tensor::from_slice(&[-1.0f32, -2.0, -3.0, -4.0]).view([1, 4]);
    let stats = TokenStats {
        logp,
        entropy: None,
        topk_logp: None,
        topk_ids: None,
        is_top1: None,
    };
    let mask = Tensor::ones([1, 4], (Kind::Float, tch::Device::Cpu));
    let batch = LossBatch {
        old_logp: mask.zeros_like(),
        advantages: Tensor::full([1, 4], 2.0, (Kind::Float, tch::Device::Cpu)),
        mask: mask.shallow_clone(),
        scores: Tensor::ones([1], (Kind::Float, tch::Device::Cpu)),
        tokens: mask.zeros_like().to_kind(Kind::Int64),
    };
    let (tokens, input) = (&batch.tokens, batch.input(&stats));
    let out = loss.per_token_loss(&input).unwrap();
    let values = Vec::<f32>::try_from(out.per_token.reshape([-1])).unwrap();
    assert_eq!(values, vec![2.0, 4.0, 0.0, 0.0]);
    let _ = GateInput {
        stats: &stats,
        mask: &mask,
        tokens,
        truncated: None,
    };
}
