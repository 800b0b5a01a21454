//! The cycle counter read at each end of a counted call (an FFI module: `unsafe` allowed).
//!
//! On x86-64 it is `rdtsc`, converted to nanoseconds by the push thread
//! (see `clock`); elsewhere the monotonic clock, already in nanoseconds.

/// Reads the counter.
#[inline(always)]
pub(crate) fn now() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc is available on every x86_64 CPU.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid pointer; CLOCK_MONOTONIC is served by the vDSO.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
    }
}

/// Whether [`now`] counts nanoseconds already (no calibration needed).
pub(crate) const TICKS_ARE_NS: bool = cfg!(not(target_arch = "x86_64"));
