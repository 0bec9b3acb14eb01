//! Optimizer-state sharding across data-parallel ranks (`train.sharding = "optimizer"`, ZeRO
//! stage 1: Rajbhandari et al. 2020; docs/distributed.md). Every rank keeps the whole model and
//! its all-reduced gradients, but the AdamW moments of only its slice of each parameter: the
//! flattened parameter is cut into `world` slices of ⌈numel / world⌉ elements (the last ones
//! shorter or empty), rank `r` owning slice `r`. Each rank updates its slices; an all-gather per
//! parameter then gives every rank the whole updated parameter. AdamW is element-wise, so this
//! is the unsharded update element for element.

use crate::error::Result;
use crate::optim::named_vars;
use rlvr_dist::Collective;
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Tensor};

/// How the model state is divided among the data-parallel ranks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sharding {
    /// Every rank holds everything (plain data parallelism).
    #[default]
    None,
    /// Each rank holds the AdamW moments of its slice of every parameter (ZeRO-1).
    Optimizer,
    /// Gradients reduce-scattered into the owners' slices as well (ZeRO-2): not built yet.
    Gradients,
    /// Parameters sharded too, gathered layer by layer (ZeRO-3 / FSDP): not built yet.
    Full,
}

/// The part of every parameter one rank's optimizer owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSpec {
    /// This rank.
    pub rank: usize,
    /// Ranks.
    pub world: usize,
}

impl ShardSpec {
    /// Elements per slice of a parameter of `numel` elements: ⌈numel / world⌉.
    pub fn per_rank(&self, numel: i64) -> i64 {
        let w = self.world.max(1) as i64;
        (numel + w - 1) / w
    }

    /// The owned slice `[start, start + len)` of a parameter of `numel` elements.
    pub fn range(&self, numel: i64) -> (i64, i64) {
        let per = self.per_rank(numel);
        let start = (per * self.rank as i64).min(numel);
        (start, (start + per).min(numel) - start)
    }

    /// This rank's slice of `t`, flattened (a view).
    pub fn slice(&self, t: &Tensor) -> Tensor {
        let (start, len) = self.range(t.numel() as i64);
        t.view([-1]).narrow(0, start, len)
    }
}

/// Every rank's `local` slice (at most `per` elements, zero-padded) gathered and joined into
/// `numel` elements of `kind`, flat.
pub fn gather_slices(
    world: &dyn Collective,
    local: &Tensor,
    per: i64,
    numel: i64,
) -> Result<Tensor> {
    let padded = Tensor::zeros([per], (local.kind(), local.device()));
    if local.numel() > 0 {
        padded.narrow(0, 0, local.numel() as i64).copy_(local);
    }
    let all = world.all_gather_tensor(&padded)?;
    Ok(all.reshape([-1]).narrow(0, 0, numel))
}

/// After each rank updated its slices: every parameter made whole on every rank.
pub fn gather_parameters(world: &dyn Collective, vs: &VarStore, spec: ShardSpec) -> Result<()> {
    let _guard = tch::no_grad_guard();
    for (_, var) in named_vars(vs) {
        let numel = var.numel() as i64;
        let whole = gather_slices(world, &spec.slice(&var), spec.per_rank(numel), numel)?;
        var.view([-1]).copy_(&whole.to_kind(var.kind()));
    }
    Ok(())
}

/// Whether any rank holds a non-finite value in `local` (a global check).
pub fn any_rank(world: &dyn Collective, local: bool) -> Result<bool> {
    Ok(world.sum(&[f64::from(u8::from(local))])?[0] > 0.0)
}
