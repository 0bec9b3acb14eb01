//! Process memory policy (docs/performance.md). An update allocates and frees activation-sized
//! tensors (tens to hundreds of MB) thousands of times. glibc maps every block above its mmap
//! threshold (at most 32 MiB) on its own and unmaps it when freed, so each such tensor arrives as
//! fresh pages the kernel must fault in and zero: about a quarter of the 0.5B-shape update's CPU
//! time was system time. Here nothing is mapped on its own (`M_MMAP_MAX = 0`) and freed memory stays
//! in the heap for reuse up to 2 GiB (`M_TRIM_THRESHOLD`), so the update's working set is faulted
//! in once. Measured on the Qwen2.5-0.5B-shape update: 2 × 512 tokens 26.0 s → 21.5 s (system
//! time 25.4 s → 20.5 s, model set-up included); peak RSS 11.1 GB at 2 × 4096 (an earlier decoder
//! fragmented the heap to 15.2 GB under glibc's default policy, which is why large tensors were
//! mapped on their own before). Large libtorch tensors are also asked for transparent huge pages
//! (libtorch's `THP_MEM_ALLOC_ENABLE`: 2 MiB-aligned, `madvise(MADV_HUGEPAGE)`): one page fault per
//! 2 MiB instead of per 4 KiB.

/// Which policy the process runs: 0 glibc's own, 1 [`configure_process_memory`], 2
/// [`configure_sharded_memory`].
static POLICY: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Sets the process memory policy above (unless `THP_MEM_ALLOC_ENABLE` is already set, it is set
/// to 1). Call once at the start of a process, before threads or large tensors exist (the `rlvr`
/// binary does).
pub fn configure_process_memory() {
    POLICY.store(1, std::sync::atomic::Ordering::Relaxed);
    if std::env::var_os("THP_MEM_ALLOC_ENABLE").is_none() {
        // Read by libtorch at its first CPU allocation, which has not happened yet.
        std::env::set_var("THP_MEM_ALLOC_ENABLE", "1");
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator parameters; both values are valid for them.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
        }
    }
}

/// Returns the heap's free pages to the kernel (glibc's `malloc_trim`): under the policy above
/// freed memory stays resident, so a phase that frees gigabytes for good (a sharded model's
/// whole copy, `train.sharding = "full"`) calls this to let the next phase's peak be its own,
/// not the sum of both. A no-op elsewhere.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory the allocator owns.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The memory policy of a run that shards its model state (`train.sharding = "gradients"` or
/// `"full"`), where the peak matters more than the update's page faults: blocks of 1 MiB and
/// more (gathered parts, whole gradients, logits chunks, the whole model between updates) are
/// mapped on their own and returned to the kernel when freed, as glibc does by default but
/// without its moving threshold. Measured on the Qwen2.5-0.5B shape, 3 ranks, `full`, 2 × 128
/// response tokens per rank: under the policy of [`configure_process_memory`] the memory freed
/// between phases stayed resident and the step peaked at 6.2 GiB per rank, under this one at
/// 5.4 GiB (docs/distributed.md). Call before the model is allocated.
pub fn configure_sharded_memory() {
    POLICY.store(2, std::sync::atomic::Ordering::Relaxed);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: as in configure_process_memory; the values are within glibc's ranges.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_MMAP_MAX, 1 << 16);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
    }
}

/// Runs `allocate` with blocks of 1 MiB and more mapped on their own, for large tensors that
/// outlive the phase that allocates them (a rollout's record of its forward passes, read by the
/// update after it): in the heap of [`configure_process_memory`] such a block would sit between
/// the phases' working sets and keep both resident; mapped, it is returned to the kernel when
/// freed and the heap's phases reuse each other's memory as before. Under the other policies
/// large blocks are mapped anyway.
pub fn allocate_mapped<T>(allocate: impl FnOnce() -> T) -> T {
    let heap_only = POLICY.load(std::sync::atomic::Ordering::Relaxed) == 1;
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if heap_only {
        // SAFETY: as in configure_process_memory; the values are within glibc's ranges.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
            libc::mallopt(libc::M_MMAP_MAX, 1 << 16);
        }
    }
    let out = allocate();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if heap_only {
        // SAFETY: as above; blocks mapped meanwhile are still unmapped when freed.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0);
        }
    }
    let _ = heap_only;
    out
}
