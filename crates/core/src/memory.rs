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

/// Sets the process memory policy above (unless `THP_MEM_ALLOC_ENABLE` is already set, it is set
/// to 1). Call once at the start of a process, before threads or large tensors exist (the `rlvr`
/// binary does).
pub fn configure_process_memory() {
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
