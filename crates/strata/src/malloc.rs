//! How many malloc arenas a serving process uses (glibc only).
//!
//! glibc gives threads that allocate at the same moment arenas of their own, up to
//! eight per core, and memory freed into an arena is reused only by allocations from
//! that arena. A cold replay allocates row groups on the decode threads and frees them
//! on the runtime's workers, so freed memory piled up in arenas the next allocation did
//! not come from. Replaying 2 GiB on 2 cores (benches/, cold replay): peak RSS 777 MiB
//! with glibc's default, 524 MiB with one arena, at the same rate and CPU time; produce
//! throughput was within run-to-run noise.

/// Sets the arena limit to one per two cores, unless `MALLOC_ARENA_MAX` is set (glibc
/// has applied that already). Call before any other thread starts.
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let arenas = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
    set_arena_max(arenas);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_arena_max(arenas: usize) {
    let arenas = libc::c_int::try_from(arenas).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only changes a parameter of the allocator and is called
    // before the process has more than one thread.
    let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
    if ok != 1 {
        tracing::debug!(arenas, "mallopt(M_ARENA_MAX) refused");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_arenas: usize) {}
