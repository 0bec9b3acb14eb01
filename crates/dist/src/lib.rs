//! Data-parallel training for rlvr on an existing collective engine: libtorch's c10d (the engine of
//! `torch.distributed`), reached through a small C++ shim (`shim/c10d.cpp`): a `TCPStore`
//! rendezvous and a Gloo process group. Everything the trainer needs goes through the
//! [`Collective`] interface, so another backend (NCCL, MPI) is one more implementation of it.
//!
//! - [`WorldEnv`]: the torchrun variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`,
//!   `MASTER_PORT`) that `torchrun`, `srun` wrappers and Kubernetes jobs set, read and checked.
//! - [`join`]: the process group of this rank ([`Single`] when the world has one rank).
//! - [`launch`]: `rlvr train --nproc N`, N local ranks of the same binary.

mod c10d;
mod collective;
mod env;
pub mod launch;

pub use c10d::C10dGroup;
pub use collective::{Collective, Single};
pub use env::WorldEnv;

use std::time::Duration;

/// A failed collective or rendezvous, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// The torchrun variables are missing or inconsistent.
    #[error("{0}")]
    Environment(String),
    /// The engine reported an error (a peer died, a timeout, a refused connection).
    #[error("rank {rank} of {world}: {what} failed: {message}")]
    Engine {
        /// This rank.
        rank: usize,
        /// Ranks in the group.
        world: usize,
        /// The operation ("all-reduce", "rendezvous", ...).
        what: String,
        /// The engine's message.
        message: String,
    },
    /// A tensor handed to a collective is not usable (wrong kind or device).
    #[error("{0}")]
    Input(String),
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, DistError>;

/// The process group of this process: [`Single`] when `env` has one rank, else a Gloo group
/// joined through the TCPStore at `MASTER_ADDR:MASTER_PORT`. Every collective (and the
/// rendezvous) fails after `timeout` instead of hanging when a peer dies or stops answering.
pub fn join(env: &WorldEnv, timeout: Duration) -> Result<Box<dyn Collective>> {
    if env.world_size <= 1 {
        return Ok(Box::new(Single));
    }
    Ok(Box::new(C10dGroup::join(env, timeout)?))
}
