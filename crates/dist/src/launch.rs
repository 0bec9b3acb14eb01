//! `rlvr train --nproc N`: N local ranks of the same program, each given the torchrun variables
//! (rank 0's rendezvous store on 127.0.0.1 at a free port). The ranks run in a process group of
//! their own, so a terminal's Ctrl-C reaches the launcher alone, which forwards SIGINT and
//! SIGTERM to every rank exactly once (a rank that got it twice would quit without its
//! checkpoint); a rank whose launcher dies gets SIGTERM. When one rank fails the launcher names it
//! and stops the others: they get `grace` to fail on their own (their next collective errors
//! out), then SIGTERM, then SIGKILL.

use crate::{DistError, Result};
use std::ffi::OsString;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a launched job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchOutcome {
    /// The process exit code to end with: 0, the first failed rank's code, or 128 + its signal.
    pub code: i32,
    /// What happened to the first rank that failed, e.g. "rank 1 of 2 was killed by signal 9".
    pub failure: Option<String>,
    /// The signal (SIGINT, SIGTERM) the launcher received and forwarded, if any: the job was
    /// asked to stop.
    pub interrupted: Option<i32>,
}

/// A rank's end in words, and the exit code that stands for it.
fn describe(rank: usize, world: usize, status: ExitStatus) -> (String, i32) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (
            format!("rank {rank} of {world} exited with status {code}"),
            code,
        ),
        (None, Some(sig)) => (
            format!("rank {rank} of {world} was killed by signal {sig}"),
            128 + sig,
        ),
        (None, None) => (format!("rank {rank} of {world} ended"), 1),
    }
}

/// A free TCP port on 127.0.0.1 for rank 0's store.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| {
        DistError::Environment(format!("no free local port for the rendezvous: {e}"))
    })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| DistError::Environment(format!("no free local port for the rendezvous: {e}")))
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a child's pid; a child that already ended is harmless (ESRCH).
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// Runs `program args` as `nproc` ranks on this machine and waits for all of them; see the
/// module documentation. `grace` is how long the other ranks may take to stop on their own after
/// one failed.
pub fn run_local(
    program: &std::path::Path,
    args: &[OsString],
    nproc: usize,
    grace: Duration,
) -> Result<LaunchOutcome> {
    if nproc == 0 {
        return Err(DistError::Environment("--nproc must be at least 1".into()));
    }
    let port = free_port()?;
    let forwarded = Arc::new(AtomicUsize::new(0));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let flag = Arc::clone(&forwarded);
        // SAFETY: the handler only stores into an atomic.
        unsafe {
            signal_hook::low_level::register(sig, move || {
                flag.store(sig as usize, Ordering::SeqCst)
            })
        }
        .map_err(|e| DistError::Environment(format!("cannot install signal handlers: {e}")))?;
    }
    let mut children: Vec<Option<Child>> = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(program);
        command.process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command
            .args(args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .spawn();
        match child {
            Ok(c) => children.push(Some(c)),
            Err(e) => {
                for c in children.iter_mut().flatten() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(DistError::Environment(format!(
                    "cannot start rank {rank} ({}): {e}",
                    program.display()
                )));
            }
        }
    }
    let mut outcome = LaunchOutcome {
        code: 0,
        failure: None,
        interrupted: None,
    };
    let mut failed_at: Option<Instant> = None;
    let mut terminated = false;
    let mut last_forwarded = 0;
    loop {
        let sig = forwarded.load(Ordering::SeqCst);
        if sig != 0 && sig != last_forwarded {
            last_forwarded = sig;
            for c in children.iter().flatten() {
                signal(c, sig as i32);
            }
        }
        for (rank, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            let status = match child.try_wait() {
                Ok(Some(status)) => status,
                Ok(None) => continue,
                Err(_) => continue,
            };
            *slot = None;
            if !status.success() && outcome.failure.is_none() {
                let (text, code) = describe(rank, nproc, status);
                // A rank that stopped because the job was interrupted is not the cause.
                if sig == 0 {
                    tracing::error!("{text}; stopping the other ranks");
                }
                outcome = LaunchOutcome {
                    code,
                    failure: Some(text),
                    interrupted: None,
                };
                failed_at = Some(Instant::now());
            }
        }
        if children.iter().all(Option::is_none) {
            outcome.interrupted = (last_forwarded != 0).then_some(last_forwarded as i32);
            return Ok(outcome);
        }
        if let Some(t) = failed_at {
            if !terminated && t.elapsed() >= grace {
                terminated = true;
                for c in children.iter().flatten() {
                    signal(c, libc::SIGTERM);
                }
            } else if terminated && t.elapsed() >= grace + Duration::from_secs(10) {
                for c in children.iter_mut().flatten() {
                    let _ = c.kill();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
