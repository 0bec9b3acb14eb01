//! The torchrun environment: the variables `torchrun` (and the `--nproc` launcher, `srun`
//! wrappers, Kubernetes PyTorchJobs) set for each rank.

use crate::{DistError, Result};

/// Names of the variables, in the order they are explained.
pub const VARIABLES: [&str; 5] = [
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
];

/// Where this process sits in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldEnv {
    /// Global rank, `0..world_size`.
    pub rank: usize,
    /// Number of ranks.
    pub world_size: usize,
    /// Rank on this machine (picks the GPU: `cuda:LOCAL_RANK`).
    pub local_rank: usize,
    /// Address of rank 0's rendezvous store.
    pub master_addr: String,
    /// Port of rank 0's rendezvous store.
    pub master_port: u16,
}

impl WorldEnv {
    /// One process alone.
    pub fn single() -> WorldEnv {
        WorldEnv {
            rank: 0,
            world_size: 1,
            local_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port: 0,
        }
    }

    /// Reads the process environment (see [`WorldEnv::from_lookup`]).
    pub fn from_env() -> Result<WorldEnv> {
        WorldEnv::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the torchrun variables through `var`: none set (or `WORLD_SIZE=1`) is one process;
    /// with `WORLD_SIZE` > 1 all five must be set and consistent.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<WorldEnv> {
        let bad = |msg: String| {
            DistError::Environment(format!(
                "{msg} (a distributed run needs {} set for every rank, as torchrun sets them)",
                VARIABLES.join(", ")
            ))
        };
        let number =
            |name: &str| -> Result<Option<usize>> {
                match var(name) {
                    None => Ok(None),
                    Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
                        bad(format!("{name}={v:?} is not a non-negative whole number"))
                    }),
                }
            };
        let world_size = number("WORLD_SIZE")?;
        let rank = number("RANK")?;
        let Some(world_size) = world_size.filter(|&w| w > 1) else {
            if let Some(r) = rank.filter(|&r| r > 0) {
                return Err(bad(format!("RANK={r} but WORLD_SIZE is not above 1")));
            }
            if world_size == Some(0) {
                return Err(bad("WORLD_SIZE=0".into()));
            }
            let mut env = WorldEnv::single();
            env.local_rank = number("LOCAL_RANK")?.unwrap_or(0);
            return Ok(env);
        };
        let missing: Vec<&str> = VARIABLES
            .iter()
            .copied()
            .filter(|name| var(name).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(bad(format!(
                "WORLD_SIZE={world_size} but {} {} not set",
                missing.join(", "),
                if missing.len() == 1 { "is" } else { "are" }
            )));
        }
        let rank = rank.unwrap_or(0);
        if rank >= world_size {
            return Err(bad(format!(
                "RANK={rank} is not below WORLD_SIZE={world_size}"
            )));
        }
        let local_rank = number("LOCAL_RANK")?.unwrap_or(0);
        let master_addr = var("MASTER_ADDR").unwrap_or_default().trim().to_string();
        if master_addr.is_empty() {
            return Err(bad("MASTER_ADDR is empty".into()));
        }
        let port = var("MASTER_PORT").unwrap_or_default();
        let master_port = port
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| bad(format!("MASTER_PORT={port:?} is not a port (1-65535)")))?;
        Ok(WorldEnv {
            rank,
            world_size,
            local_rank,
            master_addr,
            master_port,
        })
    }

    /// Whether rank 0's store is on this machine's loopback interface (a single-node job).
    pub fn is_loopback(&self) -> bool {
        self.master_addr == "localhost"
            || self
                .master_addr
                .parse::<std::net::IpAddr>()
                .is_ok_and(|a| a.is_loopback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<WorldEnv> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        WorldEnv::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn no_variables_is_one_process() {
        assert_eq!(env(&[]).unwrap(), WorldEnv::single());
        assert_eq!(env(&[("WORLD_SIZE", "1")]).unwrap().world_size, 1);
    }

    #[test]
    fn full_torchrun_set_is_read() {
        let w = env(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "29500"),
        ])
        .unwrap();
        assert_eq!(
            w,
            WorldEnv {
                rank: 3,
                world_size: 8,
                local_rank: 1,
                master_addr: "node0".into(),
                master_port: 29500
            }
        );
        assert!(!w.is_loopback());
    }

    #[test]
    fn errors_name_the_variable() {
        let e = env(&[("WORLD_SIZE", "2"), ("RANK", "0")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("LOCAL_RANK, MASTER_ADDR, MASTER_PORT are not set"),
            "{e}"
        );
        let full = |rank: &str, port: &str| {
            env(&[
                ("RANK", rank),
                ("WORLD_SIZE", "2"),
                ("LOCAL_RANK", "0"),
                ("MASTER_ADDR", "127.0.0.1"),
                ("MASTER_PORT", port),
            ])
        };
        assert!(full("2", "1")
            .unwrap_err()
            .to_string()
            .contains("RANK=2 is not below WORLD_SIZE=2"));
        assert!(full("0", "x")
            .unwrap_err()
            .to_string()
            .contains("MASTER_PORT=\"x\""));
        assert!(full("a", "1")
            .unwrap_err()
            .to_string()
            .contains("RANK=\"a\""));
        assert!(full("1", "29500").unwrap().is_loopback());
        assert!(env(&[("RANK", "1")])
            .unwrap_err()
            .to_string()
            .contains("WORLD_SIZE"));
    }
}
