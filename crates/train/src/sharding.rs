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
    /// Gradients reduce-scattered into the owners' slices as well (ZeRO-2).
    Gradients,
    /// Parameters sharded too, gathered layer by layer (ZeRO-3 / FSDP).
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

/// Elements of one all-gather piece (64 MiB of f32): the gather's buffers stay this size
/// whatever the tensor.
pub(crate) const PIECE: i64 = 16 << 20;

/// Every rank's slice of a tensor of `dest.numel()` elements (`local`: this rank's) written into
/// `dest` (flat, contiguous), in pieces of at most [`PIECE`] elements per rank.
pub fn gather_into(
    world: &dyn Collective,
    local: &Tensor,
    spec: ShardSpec,
    dest: &Tensor,
) -> Result<()> {
    gather_in_pieces(world, local, spec, dest.numel() as i64, Some(dest), PIECE)
}

/// The gather of [`gather_into`] for a tensor of `numel` elements; `dest: None` only takes
/// part (a rank that does not keep the result).
fn gather_in_pieces(
    world: &dyn Collective,
    local: &Tensor,
    spec: ShardSpec,
    numel: i64,
    dest: Option<&Tensor>,
    piece_len: i64,
) -> Result<()> {
    let per = spec.per_rank(numel);
    let mine = local.numel() as i64;
    let mut at = 0;
    while at < per {
        let c = piece_len.min(per - at);
        let piece = Tensor::zeros([c], (local.kind(), local.device()));
        let have = (mine - at).clamp(0, c);
        if have > 0 {
            piece.narrow(0, 0, have).copy_(&local.narrow(0, at, have));
        }
        let all = world.all_gather_tensor(&piece)?;
        let Some(dest) = dest else {
            at += c;
            continue;
        };
        for r in 0..spec.world as i64 {
            let start = r * per + at;
            let valid = (numel - start).clamp(0, c);
            if valid > 0 {
                dest.narrow(0, start, valid)
                    .copy_(&all.get(r).narrow(0, 0, valid).to_kind(dest.kind()));
            }
        }
        at += c;
    }
    Ok(())
}

/// Every rank's `local` slice gathered into a new flat tensor of `numel` elements on rank 0
/// (`None` on the others, which only take part).
pub fn gather_to_main(
    world: &dyn Collective,
    local: &Tensor,
    spec: ShardSpec,
    numel: i64,
) -> Result<Option<Tensor>> {
    let dest = world
        .is_main()
        .then(|| Tensor::zeros([numel], (local.kind(), local.device())));
    gather_in_pieces(world, local, spec, numel, dest.as_ref(), PIECE)?;
    Ok(dest)
}

/// After each rank updated its slices: every parameter made whole on every rank, gathered
/// straight into its storage.
pub fn gather_parameters(world: &dyn Collective, vs: &VarStore, spec: ShardSpec) -> Result<()> {
    let vars: Vec<Tensor> = named_vars(vs).into_iter().map(|(_, v)| v).collect();
    gather_whole(world, &vars, spec)
}

/// [`gather_parameters`] over a list of parameters.
pub(crate) fn gather_whole(world: &dyn Collective, vars: &[Tensor], spec: ShardSpec) -> Result<()> {
    let _guard = tch::no_grad_guard();
    for var in vars {
        // Each piece of the own slice is copied out before its all-gather, and written back
        // unchanged: reading and writing the same storage is safe.
        gather_into(world, &spec.slice(var), spec, &var.view([-1]))?;
    }
    Ok(())
}

/// Whether any rank holds a non-finite value in `local` (a global check).
pub fn any_rank(world: &dyn Collective, local: bool) -> Result<bool> {
    Ok(world.sum(&[f64::from(u8::from(local))])?[0] > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use tch::{Device, Kind};

    /// Rank `me` of a simulated group whose other ranks hold their slices of `full`: its
    /// all-gather returns what every rank would send for the piece at the current offset.
    struct Simulated {
        spec: ShardSpec,
        full: Tensor,
        piece: i64,
        calls: Cell<i64>,
    }

    impl Collective for Simulated {
        fn rank(&self) -> usize {
            self.spec.rank
        }
        fn world_size(&self) -> usize {
            self.spec.world
        }
        fn all_reduce_sum(&self, _: &mut Tensor) -> rlvr_dist::Result<()> {
            Ok(())
        }
        fn broadcast(&self, _: &mut Tensor, _: usize) -> rlvr_dist::Result<()> {
            Ok(())
        }
        fn all_gather(&self, local: &[f64]) -> rlvr_dist::Result<Vec<Vec<f64>>> {
            Ok(vec![local.to_vec()])
        }
        fn barrier(&self) -> rlvr_dist::Result<()> {
            Ok(())
        }
        fn all_gather_tensor(&self, local: &Tensor) -> rlvr_dist::Result<Tensor> {
            let numel = self.full.numel() as i64;
            let per = self.spec.per_rank(numel);
            let at = self.calls.get() * self.piece;
            self.calls.set(self.calls.get() + 1);
            let c = local.numel() as i64;
            let rows: Vec<Tensor> = (0..self.spec.world as i64)
                .map(|r| {
                    let row = Tensor::zeros([c], (Kind::Float, Device::Cpu));
                    let start = r * per + at;
                    let end = (r * per + per).min(numel);
                    let valid = (end - start).clamp(0, c);
                    if valid > 0 {
                        row.narrow(0, 0, valid)
                            .copy_(&self.full.narrow(0, start, valid));
                    }
                    row
                })
                .collect();
            // What this rank sent must be its own piece.
            assert!(
                local.equal(&rows[self.spec.rank]),
                "rank {} sent another piece",
                self.spec.rank
            );
            Ok(Tensor::stack(&rows, 0))
        }
    }

    #[test]
    fn pieces_of_every_rank_land_where_they_belong() {
        let full = Tensor::randn([100], (Kind::Float, Device::Cpu));
        for world in [1usize, 2, 3, 7] {
            for rank in 0..world {
                for piece in [1i64, 7, 16, 1000] {
                    let spec = ShardSpec { rank, world };
                    let sim = Simulated {
                        spec,
                        full: full.shallow_clone(),
                        piece,
                        calls: Cell::new(0),
                    };
                    let dest = Tensor::zeros([100], (Kind::Float, Device::Cpu));
                    let mine = spec.slice(&full);
                    gather_in_pieces(&sim, &mine, spec, 100, Some(&dest), piece).unwrap();
                    assert!(
                        dest.equal(&full),
                        "world {world}, rank {rank}, piece {piece}"
                    );
                }
            }
        }
    }
}
