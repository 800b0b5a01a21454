//! The exported `MPI_*` entry points (an FFI module: `unsafe` allowed).
//!
//! Every entry point has the same body, written once in `counted!`:
//! enter (a thread-local load; a call made from inside another MPI call is
//! forwarded uncounted), read the cycle counter, call the twin, read the
//! counter again, compute the bytes, leave (three single-writer counter
//! updates), run the hook of `MPI_Init`/`MPI_Finalize`, return. A kind of
//! entry point is a macro that turns one line of a generated list into a
//! `counted!` invocation: `c_entry_points!` for the C functions of
//! `mpi.h`, forwarding to their `PMPI_*` twins.
//!
//! A call is counted once whatever the language: a Fortran routine that
//! goes through C `MPI_*` (MPICH's `mpif.h` binding) reaches the C
//! wrapper from inside the Fortran one, which counts it.
//!
//! The second kind, `fortran_entry_points!`, defines the Fortran symbols
//! (`mpi_send_`, `MPI_SEND`, `mpi_send_f08_`, ...), each forwarding to the
//! library's own Fortran twin: it chooses the exported name, the twin and
//! the slot (the C function's, so both languages count in one series),
//! says what success is (`*ierror == MPI_SUCCESS`, or no `ierror`) and
//! gives the bytes as the C rule over the converted Fortran arguments; the
//! body stays the one below.

use crate::counters::{Tls, TLS};
use crate::mpi::*;
use crate::pmpi::{Counts, Types};

/// This thread's state, with the call marked as started; `None` when the
/// call is made from inside another MPI call, or by a thread that is
/// exiting (it is then not counted).
#[inline(always)]
fn enter() -> Option<&'static Tls> {
    let t = TLS.try_with(|t| t as *const Tls).ok()?;
    // SAFETY: a thread-local without destructor lives as long as its thread,
    // and the reference is only used by this thread during this call.
    let t: &'static Tls = unsafe { &*t };
    if !t.enter() {
        return None;
    }
    Some(t)
}

/// One counted entry point: the body every kind of entry point shares.
///
/// - `symbol`: the exported name and C signature;
/// - `twin`: the function it forwards to, with the same signature;
/// - `slot`: the counter slot (index into `NAMES`);
/// - `hook`: the MPI function whose process hook runs after the call
///   (`MPI_Init`, `MPI_Finalize`, ...; any other name runs none);
/// - `|r| ok`: whether the call succeeded, given its result `r`;
/// - `bytes`: the bytes it moved (evaluated after the call, may use `r`).
macro_rules! counted {
    (
        symbol $sym:ident($($a:ident: $t:ty),*) $(-> $ret:ty)?,
        twin $twin:path,
        slot $idx:expr,
        hook $hook:ident,
        |$r:ident| ok $ok:expr,
        bytes $bytes:expr $(,)?
    ) => {
        /// Counts the call, then forwards it unchanged.
        ///
        /// # Safety
        ///
        /// As for the MPI function of this name: the arguments are passed
        /// to the MPI library as they are.
        #[no_mangle]
        #[allow(non_snake_case, unreachable_pub, clippy::too_many_arguments)]
        pub unsafe extern "C" fn $sym($($a: $t),*) $(-> $ret)? {
            // SAFETY (both calls): the twin has this function's C signature
            // and receives the caller's arguments unchanged.
            let Some(t) = $crate::entry::enter() else { return unsafe { $twin($($a),*) } };
            let t0 = $crate::cycles::now();
            let $r = unsafe { $twin($($a),*) };
            let t1 = $crate::cycles::now();
            let bytes = $bytes;
            t.leave($idx, t1.wrapping_sub(t0), bytes);
            after_call!($hook, $ok);
            $r
        }
    };
}

/// What runs after the call of a given MPI function, given whether it
/// succeeded: the push thread starts after the first successful
/// initialisation, and everything counted is pushed after finalisation.
macro_rules! after_call {
    (MPI_Init, $ok:expr) => {
        if $ok {
            crate::push::after_init();
        }
    };
    (MPI_Init_thread, $ok:expr) => {
        after_call!(MPI_Init, $ok)
    };
    (MPI_Session_init, $ok:expr) => {
        after_call!(MPI_Init, $ok)
    };
    (MPI_Finalize, $ok:expr) => {
        crate::push::after_finalize();
    };
    (MPI_Session_finalize, $ok:expr) => {
        after_call!(MPI_Finalize, $ok)
    };
    ($other:ident, $ok:expr) => {};
}

/// The bytes of a C call: its byte rule if it succeeded, else 0.
macro_rules! c_bytes {
    ($r:ident) => {
        0
    };
    ($r:ident, $rule:ident($($x:expr),*)) => {
        if $r == MPI_SUCCESS {
            crate::sizes::$rule($($x),*)
        } else {
            0
        }
    };
}

/// The C kind: `MPI_Send` forwards to `PMPI_Send` and returns its error code.
macro_rules! c_entry_points {
    ($($idx:literal $name:ident $twin:ident ($($a:ident: $t:ty),*) $(-> $ret:ty)? $(=> $rule:ident($($x:expr),*))?;)*) => {
        $(
            counted! {
                symbol $name($($a: $t),*) $(-> $ret)?,
                twin crate::pmpi::$twin,
                slot $idx,
                hook $name,
                |r| ok r == MPI_SUCCESS,
                bytes c_bytes!(r $(, $rule($($x),*))?),
            }
        )*
    };
}

crate::mpi::for_each_function!(c_entry_points);

/// Whether a Fortran call succeeded: through its `ierror` (always, for a
/// routine without one).
macro_rules! fortran_ok {
    () => {
        true
    };
    ($e:ident) => {
        unsafe { crate::fortran::succeeded($e) }
    };
}

/// The bytes of a Fortran call: its byte rule over the converted arguments
/// if it succeeded, else 0.
macro_rules! fortran_bytes {
    ($($e:ident)?;) => {
        0
    };
    ($e:ident; $rule:ident($($x:expr),*)) => {
        if fortran_ok!($e) {
            #[allow(unused_imports)]
            use crate::fortran::{fbuf_08, fbuf_h, fbuf_ts, fcomm, fcount, fint, ftype};
            // SAFETY: the call succeeded, so the arguments the rule reads
            // are the valid arguments MPI required.
            unsafe { crate::sizes::$rule($($x),*) }
        } else {
            0
        }
    };
}

/// The Fortran kind: `mpi_send_` (and every other form the libraries
/// export) forwards to the library's twin, error code through `ierror`.
macro_rules! fortran_entry_points {
    ($($idx:literal $slot:literal $series:ident $name:ident $twin:ident ($($a:ident),*) $(ierr $e:ident)? $(=> $rule:ident($($x:expr),*))?;)*) => {
        $(
            counted! {
                symbol $name($($a: usize),*) -> usize,
                twin crate::fortran::$twin,
                slot $slot,
                hook $series,
                |r| ok fortran_ok!($($e)?),
                bytes fortran_bytes!($($e)?; $($rule($($x),*))?),
            }
        )*
    };
}

crate::mpi::for_each_fortran_entry!(fortran_entry_points);

/// The Fortran MPI libraries whose entry points this shim wraps (file names
/// up to `.so`, separated by spaces), read by `tau_metric_proxy_run` to say
/// when a program uses a Fortran binding the shim has no wrappers for.
#[no_mangle]
#[used]
#[allow(non_upper_case_globals, unreachable_pub)]
pub static tau_pmpi_fortran_libraries: [u8; FORTRAN_LIBRARIES.len()] = FORTRAN_LIBRARIES;

#[cfg(test)]
mod tests {
    use core::ffi::c_int;

    use crate::counters::{totals, TEST_LOCK};

    const SLOT: usize = 1;

    /// Stands for a Fortran twin: error code through the last argument.
    unsafe extern "C" fn fake_twin(count: *const c_int, ierr: *mut c_int) {
        // SAFETY: the test passes valid pointers.
        unsafe { *ierr = if *count >= 0 { 0 } else { 1 } };
    }

    // Another symbol, another twin, success read through a pointer, bytes
    // computed from the converted arguments; the body is `counted!`'s.
    counted! {
        symbol tau_pmpi_test_entry_(count: *const c_int, ierr: *mut c_int),
        twin fake_twin,
        slot SLOT,
        hook MPI_Test_only,
        |r| ok unsafe { *ierr } == 0,
        bytes if unsafe { *ierr } == 0 { 3 * unsafe { *count } as u64 } else { 0 },
    }

    #[test]
    fn a_second_kind_of_entry_point_shares_the_body() {
        let _lock = TEST_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = totals()[SLOT];
        let mut ierr = -1;
        // SAFETY: valid pointers, as `fake_twin` needs.
        unsafe {
            tau_pmpi_test_entry_(&4, &mut ierr);
            assert_eq!(ierr, 0);
            tau_pmpi_test_entry_(&-1, &mut ierr);
            assert_eq!(ierr, 1);
        }
        let after = totals()[SLOT];
        assert_eq!(after.hits - before.hits, 2);
        assert_eq!(after.bytes - before.bytes, 12, "bytes of the successful call only");
        assert!(after.ticks >= before.ticks);
    }
}
