//! Named algorithm presets (docs/design.md §4): complete `[algo]` configurations that users start from
//! and override (`[algo] preset = "simko"` plus any field).

use crate::advantage::grpo::{GrpoConfig, GrpoScale};
use crate::advantage::outcome::{NsrConfig, PsrConfig, WReinforceConfig};
use crate::advantage::passk::PasskConfig;
use crate::advantage::pkpo::PkpoConfig;
use crate::advantage::reinforce_pp::ReinforcePpConfig;
use crate::advantage::rloo::RlooConfig;
use crate::gate::entropy_quantile::{EntropyQuantileConfig, GateScope};
use crate::loss::cov::{ClipCovConfig, KlCovConfig};
use crate::loss::entropy_adv::EntropyAdvConfig;
use crate::loss::ppo_clip::{GateNormalizer, PpoClipConfig};
use crate::loss::simko::SimkoConfig;
use crate::loss::surrogate::Surrogate;
use rlvr_core::{AdvantageConfig, Aggregation, AlgoConfig, LossConfig};

fn preset(
    name: &str,
    advantage: Box<dyn AdvantageConfig>,
    loss: Box<dyn LossConfig>,
) -> AlgoConfig {
    AlgoConfig {
        preset: Some(name.to_string()),
        aggregation: Aggregation::TokenMean,
        loss_normalizer: 1024.0,
        advantage,
        loss,
        shaping: None,
        filter: None,
        correction: None,
    }
}

fn grpo() -> Box<dyn AdvantageConfig> {
    Box::new(GrpoConfig::default())
}

fn ppo() -> Box<dyn LossConfig> {
    Box::new(PpoClipConfig::default())
}

rlvr_core::register!(
    preset,
    "grpo",
    "GRPO advantages + PPO-clip, token-mean (Shao et al. 2024)",
    || preset("grpo", grpo(), ppo())
);
rlvr_core::register!(
    preset,
    "dr-grpo",
    "Dr. GRPO: unscaled advantages, constant normaliser (Liu et al. 2025)",
    || AlgoConfig {
        aggregation: Aggregation::Constant,
        ..preset(
            "dr-grpo",
            Box::new(GrpoConfig {
                scale: GrpoScale::None,
                ..Default::default()
            }),
            ppo()
        )
    }
);
rlvr_core::register!(
    preset,
    "rloo",
    "RLOO leave-one-out advantages + PPO-clip (Ahmadian et al. 2024)",
    || preset("rloo", Box::new(RlooConfig::default()), ppo())
);
rlvr_core::register!(
    preset,
    "reinforce++",
    "REINFORCE++ whitened returns + PPO-clip (Hu 2025)",
    || preset("reinforce++", Box::new(ReinforcePpConfig::default()), ppo())
);
rlvr_core::register!(
    preset,
    "psr",
    "positive samples only, A = R (Zhu et al. 2025)",
    || preset("psr", Box::new(PsrConfig::default()), ppo())
);
rlvr_core::register!(
    preset,
    "nsr",
    "negative samples only, A = R − 1 (Zhu et al. 2025)",
    || preset("nsr", Box::new(NsrConfig::default()), ppo())
);
rlvr_core::register!(
    preset,
    "w-reinforce",
    "weighted REINFORCE, positive weight 0.1 (Zhu et al. 2025)",
    || preset("w-reinforce", Box::new(WReinforceConfig::default()), ppo())
);
rlvr_core::register!(
    preset,
    "passk",
    "pass@k training advantages + PPO-clip (Chen et al. 2025)",
    || preset("passk", Box::new(PasskConfig::default()), ppo())
);
rlvr_core::register!(
    preset,
    "pkpo",
    "PKPO pass@k reward transform + PPO-clip (Walder & Karkhanis 2025)",
    || preset("pkpo", Box::new(PkpoConfig::default()), ppo())
);
rlvr_core::register!(preset, "kl-cov", "GRPO + KL-Cov (Cui et al. 2025)", || {
    preset("kl-cov", grpo(), Box::new(KlCovConfig::default()))
});
rlvr_core::register!(
    preset,
    "clip-cov",
    "GRPO + Clip-Cov (Cui et al. 2025)",
    || preset("clip-cov", grpo(), Box::new(ClipCovConfig::default()))
);
rlvr_core::register!(
    preset,
    "entropy-adv",
    "GRPO + entropy-shaped advantages (Cheng et al. 2025)",
    || preset("entropy-adv", grpo(), Box::new(EntropyAdvConfig::default()))
);
rlvr_core::register!(
    preset,
    "forking-tokens",
    "GRPO, gradient only on the batch's top-20% entropy tokens (Wang et al. 2025)",
    || {
        let gate = EntropyQuantileConfig {
            tau: 0.8,
            scope: GateScope::Batch,
            strict: true,
        };
        // Averaged over the gated tokens, as the paper's verl code does.
        preset(
            "forking-tokens",
            grpo(),
            Box::new(PpoClipConfig {
                surrogate: Surrogate::default(),
                gate: Some(Box::new(gate)),
                gate_normalizer: GateNormalizer::Gated,
            }),
        )
    }
);
rlvr_core::register!(
    preset,
    "dapo-clip",
    "GRPO with clip-higher ε_high = 0.28 (DAPO, Yu et al. 2025)",
    || {
        let surrogate = Surrogate {
            clip_high: 0.28,
            ..Default::default()
        };
        preset(
            "dapo-clip",
            grpo(),
            Box::new(PpoClipConfig {
                surrogate,
                ..Default::default()
            }),
        )
    }
);
rlvr_core::register!(
    preset,
    "dapo",
    "DAPO: clip-higher 0.28, dynamic sampling, overlong shaping, token-mean (Yu et al. 2025)",
    || {
        let surrogate = Surrogate {
            clip_high: 0.28,
            ..Default::default()
        };
        AlgoConfig {
            shaping: Some(Box::new(crate::batch::overlong::OverlongConfig::default())),
            filter: Some(Box::new(
                crate::batch::dynamic_sampling::DynamicSamplingConfig::default(),
            )),
            ..preset(
                "dapo",
                grpo(),
                Box::new(PpoClipConfig {
                    surrogate,
                    ..Default::default()
                }),
            )
        }
    }
);
rlvr_core::register!(
    preset,
    "simko",
    "SimKO on GRPO: K=3, α=0.01, λ=1.1, τ=0.8, ε=0.2 (arXiv 2510.14807)",
    || preset("simko", grpo(), Box::new(SimkoConfig::default()))
);

rlvr_core::register!(
    preset,
    "casp",
    "CaSP, SimKO's name in the paper's revision (arXiv 2510.14807 v3): the same algorithm and defaults as `simko`",
    || preset("casp", grpo(), Box::new(SimkoConfig::default()))
);

/// A symbol for binaries to reference so this crate (and its registrations) is linked.
#[doc(hidden)]
pub fn link_anchor() {}
