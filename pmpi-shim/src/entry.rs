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
//! A second kind (the Fortran symbols `mpi_send_`, `MPI_SEND`, ..., each
//! forwarding to the library's own Fortran twin) is another such macro: it
//! chooses the exported name, the twin and the slot, says what success is
//! (`*ierr == MPI_SUCCESS` rather than the return value) and gives the
//! bytes as an expression over the converted handles; the body stays the
//! one below (see the test `a_second_kind_of_entry_point_shares_the_body`).

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
