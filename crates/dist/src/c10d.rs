//! The Gloo process group of libtorch's c10d, through the C shim in `shim/c10d.cpp`.

use crate::{Collective, DistError, Pending, Result, WorldEnv};
use std::ffi::{c_char, c_int, c_longlong, c_void, CStr, CString};
use std::time::Duration;
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

type NewFn = unsafe extern "C" fn(
    host: *const c_char,
    port: c_int,
    rank: c_int,
    world: c_int,
    timeout_ms: c_longlong,
    bind_kind: c_int,
    bind: *const c_char,
    device: c_int,
    prefix: *const c_char,
    error: *mut *mut c_char,
) -> *mut c_void;
type FreeFn = unsafe extern "C" fn(group: *mut c_void);
type FreeMessageFn = unsafe extern "C" fn(message: *mut c_char);
type AllReduceFn = unsafe extern "C" fn(
    group: *mut c_void,
    tensor: *mut C_tensor,
    error: *mut *mut c_char,
) -> c_int;
type BroadcastFn = unsafe extern "C" fn(
    group: *mut c_void,
    tensor: *mut C_tensor,
    root: c_int,
    error: *mut *mut c_char,
) -> c_int;
type AllGatherFn = unsafe extern "C" fn(
    group: *mut c_void,
    output: *mut C_tensor,
    input: *mut C_tensor,
    error: *mut *mut c_char,
) -> c_int;
type ReduceScatterFn = unsafe extern "C" fn(
    group: *mut c_void,
    output: *mut C_tensor,
    input: *mut C_tensor,
    error: *mut *mut c_char,
) -> c_int;
type AllGatherStartFn = unsafe extern "C" fn(
    group: *mut c_void,
    output: *mut C_tensor,
    input: *mut C_tensor,
    work: *mut *mut c_void,
    error: *mut *mut c_char,
) -> c_int;
type WorkWaitFn =
    unsafe extern "C" fn(group: *mut c_void, work: *mut c_void, error: *mut *mut c_char) -> c_int;
type WorkFreeFn = unsafe extern "C" fn(work: *mut c_void);
type BarrierFn = unsafe extern "C" fn(group: *mut c_void, error: *mut *mut c_char) -> c_int;
type ProbeFn = unsafe extern "C" fn(
    group: *mut c_void,
    stale_ms: c_longlong,
    wait_ms: c_longlong,
    error: *mut *mut c_char,
) -> c_int;

extern "C" {
    fn rlvr_c10d_new(
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: c_longlong,
        bind_kind: c_int,
        bind: *const c_char,
        device: c_int,
        prefix: *const c_char,
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
    fn rlvr_c10d_reduce_scatter_sum(
        group: *mut c_void,
        output: *mut C_tensor,
        input: *mut C_tensor,
        error: *mut *mut c_char,
    ) -> c_int;
    fn rlvr_c10d_all_gather_start(
        group: *mut c_void,
        output: *mut C_tensor,
        input: *mut C_tensor,
        work: *mut *mut c_void,
        error: *mut *mut c_char,
    ) -> c_int;
    fn rlvr_c10d_work_wait(group: *mut c_void, work: *mut c_void, error: *mut *mut c_char)
        -> c_int;
    fn rlvr_c10d_work_free(work: *mut c_void);
    fn rlvr_c10d_barrier(group: *mut c_void, error: *mut *mut c_char) -> c_int;
    fn rlvr_c10d_probe(
        group: *mut c_void,
        stale_ms: c_longlong,
        wait_ms: c_longlong,
        error: *mut *mut c_char,
    ) -> c_int;
}

/// The shim's functions: the Gloo build linked in, or the NCCL build loaded from a library.
#[derive(Clone, Copy)]
struct Api {
    new: NewFn,
    free: FreeFn,
    free_message: FreeMessageFn,
    all_reduce_sum: AllReduceFn,
    broadcast: BroadcastFn,
    all_gather: AllGatherFn,
    reduce_scatter_sum: ReduceScatterFn,
    all_gather_start: AllGatherStartFn,
    work_wait: WorkWaitFn,
    work_free: WorkFreeFn,
    barrier: BarrierFn,
    probe: ProbeFn,
}

const GLOO: Api = Api {
    new: rlvr_c10d_new,
    free: rlvr_c10d_free,
    free_message: rlvr_c10d_free_message,
    all_reduce_sum: rlvr_c10d_all_reduce_sum,
    broadcast: rlvr_c10d_broadcast,
    all_gather: rlvr_c10d_all_gather,
    reduce_scatter_sum: rlvr_c10d_reduce_scatter_sum,
    all_gather_start: rlvr_c10d_all_gather_start,
    work_wait: rlvr_c10d_work_wait,
    work_free: rlvr_c10d_work_free,
    barrier: rlvr_c10d_barrier,
    probe: rlvr_c10d_probe,
};

/// The NCCL build of the shim (`scripts/build-nccl-shim.sh`), loaded once from `path`; the
/// library stays loaded for the life of the process.
fn nccl_api(path: &std::path::Path) -> std::result::Result<Api, String> {
    static LOADED: std::sync::OnceLock<std::result::Result<Api, String>> =
        std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            // SAFETY: loading runs the library's initialisers (libtorch_cuda's, already loaded
            // by this process); the symbols are looked up with the types the shim defines.
            unsafe {
                let lib = libloading::Library::new(path)
                    .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
                let lib: &'static libloading::Library = Box::leak(Box::new(lib));
                macro_rules! sym {
                    ($name:literal) => {
                        *lib.get($name)
                            .map_err(|e| format!("{}: {e}", path.display()))?
                    };
                }
                Ok(Api {
                    new: sym!(b"rlvr_nccl_new\0"),
                    free: sym!(b"rlvr_nccl_free\0"),
                    free_message: sym!(b"rlvr_nccl_free_message\0"),
                    all_reduce_sum: sym!(b"rlvr_nccl_all_reduce_sum\0"),
                    broadcast: sym!(b"rlvr_nccl_broadcast\0"),
                    all_gather: sym!(b"rlvr_nccl_all_gather\0"),
                    reduce_scatter_sum: sym!(b"rlvr_nccl_reduce_scatter_sum\0"),
                    all_gather_start: sym!(b"rlvr_nccl_all_gather_start\0"),
                    work_wait: sym!(b"rlvr_nccl_work_wait\0"),
                    work_free: sym!(b"rlvr_nccl_work_free\0"),
                    barrier: sym!(b"rlvr_nccl_barrier\0"),
                    probe: sym!(b"rlvr_nccl_probe\0"),
                })
            }
        })
        .clone()
}

/// Which process group to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// c10d's ProcessGroupGloo (CPU tensors; linked into rlvr).
    Gloo,
    /// c10d's ProcessGroupNCCL on CUDA device `device`, from the NCCL shim library at `library`.
    Nccl {
        /// CUDA device index of this rank.
        device: usize,
        /// Path of `librlvr_nccl.so`.
        library: std::path::PathBuf,
    },
}

/// Takes the shim's error message (if any) and frees it.
fn take_message(api: &Api, error: *mut c_char) -> String {
    if error.is_null() {
        return "unknown error".into();
    }
    // SAFETY: the shim returns a NUL-terminated malloc'd copy, freed here exactly once.
    let text = unsafe { CStr::from_ptr(error) }
        .to_string_lossy()
        .into_owned();
    unsafe { (api.free_message)(error) };
    // c10 errors append a C++ backtrace ("Exception raised from …", "frame #N: …"): keep the
    // message itself.
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error")
        .to_string()
}

/// This rank's member of a c10d process group (Gloo or NCCL).
pub struct C10dGroup {
    api: Api,
    group: *mut c_void,
    rank: usize,
    world: usize,
    /// Where the engine wants its tensors (CPU for Gloo, the rank's GPU for NCCL).
    device: Device,
}

impl C10dGroup {
    /// Joins the group described by `env` (rank 0 serves the rendezvous store). Gloo binds to
    /// the loopback address for a single-node job, to `GLOO_SOCKET_IFNAME` when set (as
    /// torch.distributed does), else to this machine's host name.
    pub fn join(env: &WorldEnv, timeout: Duration, engine: &Engine) -> Result<C10dGroup> {
        C10dGroup::join_prefixed(env, timeout, engine, "")
    }

    /// [`C10dGroup::join`] with the group's store keys under `prefix` (torch's
    /// `PrefixStore(prefix, store)`; a weight-update group named `prefix`).
    pub fn join_prefixed(
        env: &WorldEnv,
        timeout: Duration,
        engine: &Engine,
        prefix: &str,
    ) -> Result<C10dGroup> {
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
        let prefix = cstr(prefix)?;
        let (kind, bind) = match std::env::var("GLOO_SOCKET_IFNAME") {
            Ok(ifname) if !ifname.is_empty() => (1, cstr(&ifname)?),
            _ if env.is_loopback() => (0, cstr("127.0.0.1")?),
            _ => (2, cstr("")?),
        };
        let (api, device) = match engine {
            Engine::Gloo => (GLOO, Device::Cpu),
            Engine::Nccl { device, library } => {
                let api = nccl_api(library).map_err(|e| {
                    DistError::Environment(format!(
                        "RLVR_DIST_BACKEND=nccl: {e}; build the NCCL shim on the CUDA machine with \
                         scripts/build-nccl-shim.sh and put it next to rlvr or name it in \
                         RLVR_NCCL_SHIM (docs/distributed.md)"
                    ))
                })?;
                (api, Device::Cuda(*device))
            }
        };
        let device_index = match device {
            Device::Cuda(i) => i as c_int,
            _ => -1,
        };
        let mut error: *mut c_char = std::ptr::null_mut();
        // SAFETY: the strings outlive the call; the shim copies what it keeps.
        let group = unsafe {
            (api.new)(
                host.as_ptr(),
                c_int::from(env.master_port),
                env.rank as c_int,
                env.world_size as c_int,
                timeout.as_millis().min(i64::MAX as u128) as c_longlong,
                kind,
                bind.as_ptr(),
                device_index,
                prefix.as_ptr(),
                &mut error,
            )
        };
        if group.is_null() {
            return Err(fail(take_message(&api, error)));
        }
        Ok(C10dGroup {
            api,
            group,
            rank: env.rank,
            world: env.world_size,
            device,
        })
    }

    fn check(&self, what: &str, status: c_int, error: *mut c_char) -> Result<()> {
        if status == 0 {
            return Ok(());
        }
        let mut message = take_message(&self.api, error);
        if let Some(stopped) = self.probe() {
            message = format!("{stopped}; the engine said: {message}");
        }
        Err(DistError::Engine {
            rank: self.rank,
            world: self.world,
            what: what.into(),
            message,
        })
    }

    /// After a failed collective, which ranks stopped: every rank writes a heartbeat into the
    /// rendezvous store each second; a rank silent for 3 s (waiting up to 5 s for one to become
    /// so) is named. `None` when every rank still beats.
    fn probe(&self) -> Option<String> {
        let mut error = std::ptr::null_mut();
        // SAFETY: the group is live; the shim returns an owned message on failure.
        let status = unsafe { (self.api.probe)(self.group, 3_000, 5_000, &mut error) };
        (status != 0).then(|| take_message(&self.api, error))
    }

    /// Runs `op` on `buf` moved to the engine's device (and contiguous), then copies the result
    /// back into `buf` when it was moved.
    fn on_device(
        &self,
        buf: &mut Tensor,
        op: impl FnOnce(&mut Tensor) -> Result<()>,
    ) -> Result<()> {
        if buf.device() == self.device && buf.is_contiguous() {
            return op(buf);
        }
        let mut tmp = buf.to_device(self.device).contiguous();
        op(&mut tmp)?;
        buf.copy_(&tmp);
        Ok(())
    }
}

// SAFETY: the group is a heap object of libtorch's c10d (store, backend, heartbeat thread) that
// any thread may call; rlvr never calls one group from two threads at once (callers own it or
// hold it behind a mutex), which is all c10d asks.
unsafe impl Send for C10dGroup {}

impl Drop for C10dGroup {
    fn drop(&mut self) {
        // SAFETY: `group` came from this api's `new` and is freed once.
        unsafe { (self.api.free)(self.group) };
    }
}

impl C10dGroup {
    /// An all-gather's buffers: `local` contiguous on the engine's device, and the output,
    /// one row of `local`'s shape per rank.
    fn gather_buffers(&self, local: &Tensor) -> (Tensor, Tensor) {
        let input = local.contiguous().to_device(self.device);
        let mut shape = vec![self.world as i64];
        shape.extend(local.size());
        let out = Tensor::zeros(&shape, (local.kind(), self.device));
        (input, out)
    }
}

/// An all-gather in flight on the engine ([`Collective::all_gather_tensor_start`]).
struct StartedGather<'a> {
    group: &'a C10dGroup,
    /// The shim's handle; null once waited for.
    work: *mut c_void,
    out: Tensor,
    home: Device,
}

impl Pending for StartedGather<'_> {
    fn wait(mut self: Box<Self>) -> Result<Tensor> {
        let work = std::mem::replace(&mut self.work, std::ptr::null_mut());
        let mut error = std::ptr::null_mut();
        // SAFETY: `work` came from this group's `all_gather_start` and is consumed here once.
        let status = unsafe { (self.group.api.work_wait)(self.group.group, work, &mut error) };
        self.group.check("all-gather", status, error)?;
        Ok(self.out.to_device(self.home))
    }
}

impl Drop for StartedGather<'_> {
    fn drop(&mut self) {
        if !self.work.is_null() {
            // SAFETY: a handle not waited for is freed once; the engine completes the
            // collective on its own (every rank started it).
            unsafe { (self.group.api.work_free)(self.work) };
        }
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
        self.on_device(buf, |t| {
            let mut error = std::ptr::null_mut();
            // SAFETY: `t` is a live tensor; the shim waits until the collective finished.
            let status =
                unsafe { (self.api.all_reduce_sum)(self.group, t.as_mut_ptr(), &mut error) };
            self.check("all-reduce", status, error)
        })
    }

    fn all_gather_tensor(&self, local: &Tensor) -> Result<Tensor> {
        let (mut input, mut out) = self.gather_buffers(local);
        let mut error = std::ptr::null_mut();
        // SAFETY: both tensors are live and contiguous, of one kind, on the engine's device;
        // `out` has one row of `input`'s shape per rank.
        let status = unsafe {
            (self.api.all_gather)(self.group, out.as_mut_ptr(), input.as_mut_ptr(), &mut error)
        };
        self.check("all-gather", status, error)?;
        Ok(out.to_device(local.device()))
    }

    fn all_gather_tensor_start<'a>(&'a self, local: &Tensor) -> Result<Box<dyn Pending + 'a>> {
        let (mut input, mut out) = self.gather_buffers(local);
        let mut work = std::ptr::null_mut();
        let mut error = std::ptr::null_mut();
        // SAFETY: as in `all_gather_tensor`; the started collective holds its own references
        // to both tensors until it is waited for or freed (by `StartedGather`).
        let status = unsafe {
            (self.api.all_gather_start)(
                self.group,
                out.as_mut_ptr(),
                input.as_mut_ptr(),
                &mut work,
                &mut error,
            )
        };
        self.check("all-gather", status, error)?;
        Ok(Box::new(StartedGather {
            group: self,
            work,
            out,
            home: local.device(),
        }))
    }

    fn reduce_scatter_tensor(&self, input: &Tensor) -> Result<Tensor> {
        let shape = input.size();
        if shape.first() != Some(&(self.world as i64)) {
            return Err(DistError::Input(format!(
                "reduce-scatter: the input's first dimension must be the world size {}, got {shape:?}",
                self.world
            )));
        }
        let home = input.device();
        // Flat, as c10d cuts it: rank r's part is elements [r n, (r + 1) n).
        let mut input = input.contiguous().to_device(self.device).view([-1]);
        let n = shape[1..].iter().product::<i64>();
        let mut out = Tensor::zeros([n], (input.kind(), self.device));
        let mut error = std::ptr::null_mut();
        // SAFETY: both tensors are live and contiguous, of one kind, on the engine's device;
        // `input` holds `out`'s elements once per rank.
        let status = unsafe {
            (self.api.reduce_scatter_sum)(
                self.group,
                out.as_mut_ptr(),
                input.as_mut_ptr(),
                &mut error,
            )
        };
        self.check("reduce-scatter", status, error)?;
        Ok(out.view(&shape[1..]).to_device(home))
    }

    fn broadcast(&self, buf: &mut Tensor, root: usize) -> Result<()> {
        self.on_device(buf, |t| {
            let mut error = std::ptr::null_mut();
            // SAFETY: as in all_reduce_sum.
            let status = unsafe {
                (self.api.broadcast)(self.group, t.as_mut_ptr(), root as c_int, &mut error)
            };
            self.check("broadcast", status, error)
        })
    }

    fn all_gather(&self, local: &[f64]) -> Result<Vec<Vec<f64>>> {
        let gather = |input: Tensor| -> Result<Tensor> {
            let mut input = input.to_device(self.device);
            let n = input.size()[0];
            let mut out = Tensor::zeros([self.world as i64, n], (Kind::Double, self.device));
            let mut error = std::ptr::null_mut();
            // SAFETY: both tensors are live, contiguous f64 tensors of matching sizes on the
            // engine's device.
            let status = unsafe {
                (self.api.all_gather)(self.group, out.as_mut_ptr(), input.as_mut_ptr(), &mut error)
            };
            self.check("all-gather", status, error)?;
            Ok(out.to_device(Device::Cpu))
        };
        // Lengths first, then every vector padded to the longest.
        let lengths = gather(Tensor::from_slice(&[local.len() as f64]))?;
        let lengths = Vec::<f64>::try_from(lengths.reshape([-1]))
            .map_err(|e| DistError::Input(e.to_string()))?;
        let longest = lengths.iter().fold(0.0f64, |a, &b| a.max(b)) as usize;
        let mut padded = local.to_vec();
        padded.resize(longest.max(1), 0.0);
        let all = gather(Tensor::from_slice(&padded))?;
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
        let status = unsafe { (self.api.barrier)(self.group, &mut error) };
        self.check("barrier", status, error)
    }
}
