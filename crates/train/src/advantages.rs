//! The advantage phase of an RL step (verl's `compute_advantage`): token-level scores from the
//! verifier's scores, then the run's [`AdvantageEstimator`] — over the whole batch in one process,
//! and over the all-gathered global batch on a data-parallel rank, so estimators with batch-wide
//! statistics give what one process gives.

use crate::distributed::RowShare;
use crate::error::Result;
use crate::rollout::Responses;
use rlvr_core::{AdvantageEstimator, AdvantageInput};
use rlvr_dist::Collective;
use tch::{Device, Kind, Tensor};

/// Token-level scores: each response's score on its last valid token (verl's
/// `token_level_scores`).
pub fn token_level_scores(scores: &Tensor, mask: &Tensor) -> Tensor {
    let lengths = mask.sum_dim_intlist(-1, false, Kind::Int64);
    let last = (&lengths - 1).clamp_min(0).unsqueeze(1);
    mask.zeros_like().scatter(1, &last, &scores.unsqueeze(1)) * mask
}

/// Per-token advantages `[B, T]` of `responses` (0 on padding) and where those rows sit in the
/// step's global batch. `first_group` is the global index of the responses' first prompt group
/// (0 in one process).
pub fn compute_advantages(
    world: &dyn Collective,
    estimator: &dyn AdvantageEstimator,
    responses: &Responses,
    first_group: usize,
) -> Result<(Tensor, RowShare)> {
    let r = responses;
    if !world.is_single() {
        return global_advantages(world, estimator, &r.scores, &r.mask, &r.group, first_group);
    }
    let tls = token_level_scores(&r.scores, &r.mask);
    let advantages = estimator.compute(&AdvantageInput {
        scores: &r.scores,
        token_level_scores: &tls,
        mask: &r.mask,
        group: &r.group,
    })?;
    Ok((advantages, RowShare::whole(r.len())))
}

/// Advantages of the rank's responses computed over the global batch, so estimators with
/// batch-wide statistics (REINFORCE++'s whitening, GRPO's batch mode) give what one process
/// gives. Each rank contributes its scores, response lengths and global group ids (a few numbers
/// per response); every rank rebuilds the global inputs, runs the estimator and keeps its rows.
/// Responses are left-aligned, so a length determines its mask row.
fn global_advantages(
    world: &dyn Collective,
    estimator: &dyn AdvantageEstimator,
    scores: &Tensor,
    mask: &Tensor,
    group: &Tensor,
    first_group: usize,
) -> Result<(Tensor, RowShare)> {
    let b = mask.size()[0];
    let device = mask.device();
    let lengths = mask
        .sum_dim_intlist(-1, false, Kind::Double)
        .to_device(Device::Cpu);
    let mut local: Vec<f64> = Vec::with_capacity(3 * b as usize);
    local.extend(Vec::<f64>::try_from(
        scores.to_kind(Kind::Double).to_device(Device::Cpu),
    )?);
    local.extend(Vec::<f64>::try_from(&lengths)?);
    local.extend(
        Vec::<f64>::try_from(group.to_kind(Kind::Double).to_device(Device::Cpu))?
            .into_iter()
            .map(|g| g + first_group as f64),
    );
    let all = world.all_gather(&local)?;
    let mut offset = 0i64;
    let (mut g_scores, mut g_lengths, mut g_groups) = (Vec::new(), Vec::new(), Vec::new());
    for (rank, part) in all.iter().enumerate() {
        let n = part.len() / 3;
        if rank < world.rank() {
            offset += n as i64;
        }
        g_scores.extend(part[..n].iter().map(|&x| x as f32));
        g_lengths.extend(part[n..2 * n].iter().map(|&x| x as i64));
        g_groups.extend(part[2 * n..].iter().map(|&x| x as i64));
    }
    let total = g_scores.len() as i64;
    let width = g_lengths.iter().copied().max().unwrap_or(0).max(1);
    let g_mask = Tensor::arange(width, (Kind::Int64, device))
        .unsqueeze(0)
        .lt_tensor(
            &Tensor::from_slice(&g_lengths)
                .to_device(device)
                .unsqueeze(1),
        )
        .to_kind(mask.kind());
    let g_scores = Tensor::from_slice(&g_scores)
        .to_device(device)
        .to_kind(scores.kind());
    let g_group = Tensor::from_slice(&g_groups).to_device(device);
    let tls = token_level_scores(&g_scores, &g_mask);
    let g_adv = estimator.compute(&AdvantageInput {
        scores: &g_scores,
        token_level_scores: &tls,
        mask: &g_mask,
        group: &g_group,
    })?;
    let mine = g_adv.narrow(0, offset, b);
    let t = mask.size()[1];
    let out = Tensor::zeros([b, t], (g_adv.kind(), device));
    let w = t.min(width);
    out.narrow(1, 0, w).copy_(&mine.narrow(1, 0, w));
    Ok((out * mask, RowShare { offset, total }))
}
