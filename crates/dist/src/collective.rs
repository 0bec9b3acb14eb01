//! The collectives rlvr's trainer uses, and the one-rank implementation.

use crate::Result;
use tch::Tensor;

/// A group of ranks that run the same program in lock step: every rank calls the same
/// collectives in the same order. Tensors are CPU tensors.
pub trait Collective {
    /// This rank, `0..world_size()`.
    fn rank(&self) -> usize;
    /// Ranks in the group.
    fn world_size(&self) -> usize;
    /// Sums the contiguous CPU tensor `buf` over all ranks, in place (every rank ends with the
    /// same sum).
    fn all_reduce_sum(&self, buf: &mut Tensor) -> Result<()>;
    /// Copies rank `root`'s `buf` into every rank's `buf` (same shape and kind everywhere).
    fn broadcast(&self, buf: &mut Tensor, root: usize) -> Result<()>;
    /// Every rank's `local` (lengths may differ), in rank order.
    fn all_gather(&self, local: &[f64]) -> Result<Vec<Vec<f64>>>;
    /// Returns once every rank called it.
    fn barrier(&self) -> Result<()>;
    /// Every rank's `local` (the same shape and kind on every rank) stacked in rank order:
    /// `[world_size, ..local's shape]`, on `local`'s device (c10d's all-gather; the sharded
    /// optimizer's parameter and moment slices).
    fn all_gather_tensor(&self, local: &Tensor) -> Result<Tensor>;

    /// [`Collective::all_gather_tensor`] started and not waited for: the engine moves the data
    /// while the caller computes (a prefetch); [`Pending::wait`] returns the result. Every rank
    /// starts the same collectives in the same order, and may call others before waiting.
    /// This default, for engines without asynchronous collectives, gathers now.
    fn all_gather_tensor_start<'a>(&'a self, local: &Tensor) -> Result<Box<dyn Pending + 'a>> {
        Ok(Box::new(Ready(self.all_gather_tensor(local)?)))
    }

    /// Sums `input` `[world_size, n]` over the ranks and returns this rank's row `[n]`, on
    /// `input`'s device (a reduce-scatter: the sharded gradients' reduction). The c10d engines
    /// run c10d's `_reduce_scatter_base` (NCCL's ncclReduceScatter, Gloo's reduce-scatter); this
    /// default, for other engines, all-reduces the whole buffer and keeps this rank's row.
    fn reduce_scatter_tensor(&self, input: &Tensor) -> Result<Tensor> {
        let mut buf = input.contiguous().copy();
        self.all_reduce_sum(&mut buf)?;
        Ok(buf.get(self.rank() as i64))
    }

    /// Whether this is the one-rank [`Single`] (no engine: every collective is the identity and
    /// callers may skip them). A c10d group of one rank is not single: its collectives run.
    fn is_single(&self) -> bool {
        false
    }

    /// Whether this is rank 0 (the rank that writes the run folder).
    fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// Sums a few numbers over the ranks (through [`Collective::all_reduce_sum`] on f64).
    fn sum(&self, values: &[f64]) -> Result<Vec<f64>> {
        if self.is_single() {
            return Ok(values.to_vec());
        }
        let mut t = Tensor::from_slice(values);
        self.all_reduce_sum(&mut t)?;
        Vec::<f64>::try_from(&t).map_err(|e| crate::DistError::Input(e.to_string()))
    }
}

/// A collective started by [`Collective::all_gather_tensor_start`]; dropped without waiting,
/// it still completes on the engine.
pub trait Pending {
    /// Waits until the collective completed; its result.
    fn wait(self: Box<Self>) -> Result<Tensor>;
}

/// A collective that already completed.
struct Ready(Tensor);

impl Pending for Ready {
    fn wait(self: Box<Self>) -> Result<Tensor> {
        Ok(self.0)
    }
}

/// The group of one rank: every collective is the identity.
pub struct Single;

impl Collective for Single {
    fn is_single(&self) -> bool {
        true
    }
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _buf: &mut Tensor) -> Result<()> {
        Ok(())
    }
    fn broadcast(&self, _buf: &mut Tensor, _root: usize) -> Result<()> {
        Ok(())
    }
    fn all_gather(&self, local: &[f64]) -> Result<Vec<Vec<f64>>> {
        Ok(vec![local.to_vec()])
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn all_gather_tensor(&self, local: &Tensor) -> Result<Tensor> {
        Ok(local.unsqueeze(0))
    }
}
