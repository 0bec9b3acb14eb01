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

pub use c10d::{C10dGroup, Engine};
pub use collective::{Collective, Pending, Single};
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

/// Environment variable naming the engine: `gloo` (the default) or `nccl`.
pub const BACKEND_VAR: &str = "RLVR_DIST_BACKEND";
/// Environment variable with the path of the NCCL shim library (default: `librlvr_nccl.so`
/// next to the running program).
pub const NCCL_SHIM_VAR: &str = "RLVR_NCCL_SHIM";

/// The engine [`BACKEND_VAR`] asks for, if it is set (`nccl` works on `cuda:LOCAL_RANK`).
pub fn engine_from_env(env: &WorldEnv) -> Result<Option<Engine>> {
    let Ok(name) = std::env::var(BACKEND_VAR) else {
        return Ok(None);
    };
    match name.trim() {
        "gloo" => Ok(Some(Engine::Gloo)),
        "nccl" => {
            let library = match std::env::var_os(NCCL_SHIM_VAR) {
                Some(p) => std::path::PathBuf::from(p),
                None => std::env::current_exe()
                    .ok()
                    .and_then(|exe| exe.parent().map(|d| d.join("librlvr_nccl.so")))
                    .unwrap_or_else(|| "librlvr_nccl.so".into()),
            };
            Ok(Some(Engine::Nccl {
                device: env.local_rank,
                library,
            }))
        }
        other => Err(DistError::Environment(format!(
            "{BACKEND_VAR}={other:?}: expected gloo (CPU tensors, linked in) or nccl (CUDA, \
             needs the NCCL shim library, see docs/distributed.md)"
        ))),
    }
}

/// The process group of this process: [`Single`] when `env` has one rank and no `engine` is
/// asked for, else a c10d group (Gloo unless `engine` says otherwise) joined through the
/// TCPStore at `MASTER_ADDR:MASTER_PORT`. Every collective (and the rendezvous) fails after
/// `timeout` instead of hanging when a peer dies or stops answering.
pub fn join(
    env: &WorldEnv,
    timeout: Duration,
    engine: Option<Engine>,
) -> Result<Box<dyn Collective>> {
    match engine {
        None if env.world_size <= 1 => Ok(Box::new(Single)),
        None => Ok(Box::new(C10dGroup::join(env, timeout, &Engine::Gloo)?)),
        Some(engine) => Ok(Box::new(C10dGroup::join(env, timeout, &engine)?)),
    }
}
