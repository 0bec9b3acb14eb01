//! The Gloo process group of libtorch's c10d, through the C shim in `shim/c10d.cpp`.

use crate::{Collective, DistError, Result, WorldEnv};
use std::ffi::{c_char, c_int, c_longlong, c_void, CStr, CString};
use std::time::Duration;
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn rlvr_c10d_new(
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: c_longlong,
        bind_kind: c_int,
        bind: *const c_char,
        error: *mut *mut c_char,
    ) -> *mut c_void;
    fn rlvr_c10d_free(group: *mut c_void);
    fn rlvr_c10d_free_message(message: *mut c_char);
    fn rlvr_c10d_all_reduce_sum(
        group: *mut c_void,
        tensor: *mut C_tensor,
        error: *mut *mut c_char,
    ) -> c_int;
    fn rlvr_c10d_broadcast(
        group: *mut c_void,
        tensor: *mut C_tensor,
        root: c_int,
        error: *mut *mut c_char,
    ) -> c_int;
    fn rlvr_c10d_all_gather(
        group: *mut c_void,
        output: *mut C_tensor,
        input: *mut C_tensor,
        error: *mut *mut c_char,
    ) -> c_int;
    fn rlvr_c10d_barrier(group: *mut c_void, error: *mut *mut c_char) -> c_int;
}

/// Takes the shim's error message (if any) and frees it.
fn take_message(error: *mut c_char) -> String {
    if error.is_null() {
        return "unknown error".into();
    }
    // SAFETY: the shim returns a NUL-terminated malloc'd copy, freed here exactly once.
    let text = unsafe { CStr::from_ptr(error) }
        .to_string_lossy()
        .into_owned();
    unsafe { rlvr_c10d_free_message(error) };
    text
}

/// This rank's member of a c10d Gloo process group.
pub struct C10dGroup {
    group: *mut c_void,
    rank: usize,
    world: usize,
}

impl C10dGroup {
    /// Joins the group described by `env` (rank 0 serves the rendezvous store). Gloo binds to
    /// the loopback address for a single-node job, to `GLOO_SOCKET_IFNAME` when set (as
    /// torch.distributed does), else to this machine's host name.
    pub fn join(env: &WorldEnv, timeout: Duration) -> Result<C10dGroup> {
        let fail = |message: String| DistError::Engine {
            rank: env.rank,
            world: env.world_size,
            what: format!(
                "rendezvous at {}:{} (MASTER_ADDR:MASTER_PORT)",
                env.master_addr, env.master_port
            ),
            message,
        };
        let cstr = |s: &str| CString::new(s).map_err(|_| fail(format!("{s:?} holds a NUL byte")));
        let host = cstr(&env.master_addr)?;
        let (kind, bind) = match std::env::var("GLOO_SOCKET_IFNAME") {
            Ok(ifname) if !ifname.is_empty() => (1, cstr(&ifname)?),
            _ if env.is_loopback() => (0, cstr("127.0.0.1")?),
            _ => (2, cstr("")?),
        };
        let mut error: *mut c_char = std::ptr::null_mut();
        // SAFETY: the strings outlive the call; the shim copies what it keeps.
        let group = unsafe {
            rlvr_c10d_new(
                host.as_ptr(),
                c_int::from(env.master_port),
                env.rank as c_int,
                env.world_size as c_int,
                timeout.as_millis().min(i64::MAX as u128) as c_longlong,
                kind,
                bind.as_ptr(),
                &mut error,
            )
        };
        if group.is_null() {
            return Err(fail(take_message(error)));
        }
        Ok(C10dGroup {
            group,
            rank: env.rank,
            world: env.world_size,
        })
    }

    fn check(&self, what: &str, status: c_int, error: *mut c_char) -> Result<()> {
        if status == 0 {
            return Ok(());
        }
        Err(DistError::Engine {
            rank: self.rank,
            world: self.world,
            what: what.into(),
            message: take_message(error),
        })
    }

    fn check_input(what: &str, t: &Tensor) -> Result<()> {
        if t.device() != Device::Cpu || !t.is_contiguous() {
            return Err(DistError::Input(format!(
                "{what}: the tensor must be a contiguous CPU tensor (got {:?})",
                t.device()
            )));
        }
        Ok(())
    }
}

impl Drop for C10dGroup {
    fn drop(&mut self) {
        // SAFETY: `group` came from rlvr_c10d_new and is freed once.
        unsafe { rlvr_c10d_free(self.group) };
    }
}

impl Collective for C10dGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce_sum(&self, buf: &mut Tensor) -> Result<()> {
        Self::check_input("all-reduce", buf)?;
        let mut error = std::ptr::null_mut();
        // SAFETY: `buf` is a live tensor; the shim blocks until the collective finished.
        let status = unsafe { rlvr_c10d_all_reduce_sum(self.group, buf.as_mut_ptr(), &mut error) };
        self.check("all-reduce", status, error)
    }

    fn broadcast(&self, buf: &mut Tensor, root: usize) -> Result<()> {
        Self::check_input("broadcast", buf)?;
        let mut error = std::ptr::null_mut();
        // SAFETY: as in all_reduce_sum.
        let status =
            unsafe { rlvr_c10d_broadcast(self.group, buf.as_mut_ptr(), root as c_int, &mut error) };
        self.check("broadcast", status, error)
    }

    fn all_gather(&self, local: &[f64]) -> Result<Vec<Vec<f64>>> {
        let gather = |input: &mut Tensor| -> Result<Tensor> {
            let n = input.size()[0];
            let mut out = Tensor::zeros([self.world as i64, n], (Kind::Double, Device::Cpu));
            let mut error = std::ptr::null_mut();
            // SAFETY: both tensors are live, contiguous CPU f64 tensors of matching sizes.
            let status = unsafe {
                rlvr_c10d_all_gather(self.group, out.as_mut_ptr(), input.as_mut_ptr(), &mut error)
            };
            self.check("all-gather", status, error)?;
            Ok(out)
        };
        // Lengths first, then every vector padded to the longest.
        let lengths = gather(&mut Tensor::from_slice(&[local.len() as f64]))?;
        let lengths = Vec::<f64>::try_from(lengths.reshape([-1]))
            .map_err(|e| DistError::Input(e.to_string()))?;
        let longest = lengths.iter().fold(0.0f64, |a, &b| a.max(b)) as usize;
        let mut padded = local.to_vec();
        padded.resize(longest.max(1), 0.0);
        let all = gather(&mut Tensor::from_slice(&padded))?;
        let rows = Vec::<Vec<f64>>::try_from(all).map_err(|e| DistError::Input(e.to_string()))?;
        Ok(rows
            .into_iter()
            .zip(lengths)
            .map(|(mut row, n)| {
                row.truncate(n as usize);
                row
            })
            .collect())
    }

    fn barrier(&self) -> Result<()> {
        let mut error = std::ptr::null_mut();
        // SAFETY: the group is live.
        let status = unsafe { rlvr_c10d_barrier(self.group, &mut error) };
        self.check("barrier", status, error)
    }
}
