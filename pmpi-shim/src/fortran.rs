//! The Fortran twins and the readers of Fortran arguments (an FFI module: `unsafe` allowed).
//!
//! Each Fortran entry point of the generated list forwards to its twin,
//! the library's own Fortran routine (`pmpi_send_` for `mpi_send_`,
//! MPICH's `pmpir_send_f08ts_` for `mpi_send_f08ts_`), looked up with
//! `dlsym` on first use like the `PMPI_*` functions. Every argument is
//! forwarded as a `usize`: Fortran passes everything by reference (or a
//! hidden string length), so this is the exact ABI of every entry point
//! wrapped (none takes a floating-point value or returns one).
//!
//! The byte rules read the arguments through the functions below: integers
//! through their pointer, handles converted to C (`pmpi::type_f2c`,
//! `pmpi::comm_f2c`), and buffers compared with the binding's own
//! `MPI_IN_PLACE` (each binding has its sentinel, found by symbol).

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::mpi::*;

/// Defines the twin of every Fortran entry point of the generated list.
macro_rules! fortran_twins {
    ($($idx:literal $slot:literal $series:ident $name:ident $twin:ident ($($a:ident),*) $(ierr $e:ident)? $(=> $rule:ident($($x:expr),*))?;)*) => {
        $(
            /// Calls the library's own Fortran routine, looked up on first use.
            ///
            /// # Safety
            ///
            /// As for the Fortran routine: the caller's arguments.
            #[inline(always)]
            #[allow(non_snake_case, clippy::too_many_arguments)]
            pub(crate) unsafe fn $twin($($a: usize),*) -> usize {
                type F = unsafe extern "C" fn($($a: usize),*) -> usize;
                // SAFETY: `twin` returns the library's routine of that name,
                // which takes these arguments by reference (see the module docs).
                let f = unsafe { core::mem::transmute::<*mut c_void, F>(twin($idx, concat!(stringify!($twin), "\0"))) };
                // SAFETY: the caller's arguments, unchanged.
                unsafe { f($($a),*) }
            }
        )*
    };
}

/// The library's routine behind each Fortran entry point, once looked up.
static REAL: [AtomicPtr<c_void>; NFORTRAN] = [const { AtomicPtr::new(core::ptr::null_mut()) }; NFORTRAN];

crate::mpi::for_each_fortran_entry!(fortran_twins);

#[inline(always)]
fn twin(idx: usize, name: &'static str) -> *mut c_void {
    let p = REAL[idx].load(Ordering::Relaxed);
    if p.is_null() {
        resolve(idx, name)
    } else {
        p
    }
}

#[cold]
#[inline(never)]
fn resolve(idx: usize, name: &'static str) -> *mut c_void {
    let name = core::ffi::CStr::from_bytes_with_nul(name.as_bytes()).unwrap_or(c"?");
    let p = crate::pmpi::lookup(name);
    REAL[idx].store(p, Ordering::Relaxed);
    p
}

// ------------------------------------------------------------ arguments

/// Whether the call succeeded: `*ierror == MPI_SUCCESS`, or no `ierror`
/// was given (`mpi_f08`'s optional argument: an error then went to the
/// error handler).
///
/// # Safety
///
/// `ierr` is the caller's `ierror` argument (NULL or valid).
#[inline(always)]
pub(crate) unsafe fn succeeded(ierr: usize) -> bool {
    // SAFETY: as documented.
    ierr == 0 || unsafe { *(ierr as *const Fint) } as c_int == MPI_SUCCESS
}

// Fortran count arrays are read as `MPI_Fint` arrays through the C
// `int` reader of `Counts`: the two must be the same integer.
const _: () = assert!(core::mem::size_of::<Fint>() == core::mem::size_of::<c_int>());

/// An `INTEGER` argument.
///
/// # Safety
///
/// `a` points to an `INTEGER`, as MPI requires for this argument.
pub(crate) unsafe fn fint(a: usize) -> i64 {
    // SAFETY: as documented.
    unsafe { *(a as *const Fint) as i64 }
}

/// An `INTEGER(KIND=MPI_COUNT_KIND)` argument (MPICH's `_large_` forms).
///
/// # Safety
///
/// `a` points to one.
#[allow(dead_code)]
pub(crate) unsafe fn fcount(a: usize) -> i64 {
    const _: () = assert!(core::mem::size_of::<MPI_Count>() == 8);
    // SAFETY: as documented (an 8-byte integer, checked above).
    unsafe { *(a as *const i64) }
}

/// A datatype argument (`INTEGER` or `TYPE(MPI_Datatype)`, one `MPI_Fint`).
///
/// # Safety
///
/// `a` points to a Fortran datatype handle.
pub(crate) unsafe fn ftype(a: usize) -> MPI_Datatype {
    // SAFETY: as documented.
    crate::pmpi::type_f2c(unsafe { *(a as *const Fint) })
}

/// A communicator argument.
///
/// # Safety
///
/// `a` points to a Fortran communicator handle.
pub(crate) unsafe fn fcomm(a: usize) -> MPI_Comm {
    // SAFETY: as documented.
    crate::pmpi::comm_f2c(unsafe { *(a as *const Fint) })
}

/// The address of each binding's `MPI_IN_PLACE` symbol (`usize::MAX`: not
/// looked up yet; 0: none).
static IN_PLACE: [AtomicUsize; 2] = [AtomicUsize::new(usize::MAX), AtomicUsize::new(usize::MAX)];

/// The address that means `MPI_IN_PLACE` in binding `b` (0 for `mpif.h` /
/// `use mpi`, 1 for `use mpi_f08`), or 0 if it has none.
fn in_place(b: usize) -> usize {
    let mut sym = IN_PLACE[b].load(Ordering::Relaxed);
    if sym == usize::MAX {
        // The definition the libraries bind to: the program's own when it
        // uses the constant (a common block), else the library's.
        // SAFETY: dlsym with a valid C string.
        sym = FORTRAN_IN_PLACE[b]
            .map_or(0, |(name, _)| unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize);
        IN_PLACE[b].store(sym, Ordering::Relaxed);
    }
    match FORTRAN_IN_PLACE[b] {
        // A pointer variable, set by the library at its first Fortran call
        // (which has returned when the bytes are counted).
        // SAFETY: the symbol is a pointer-sized variable of the library.
        Some((_, true)) if sym != 0 => unsafe { *(sym as *const usize) },
        _ => sym,
    }
}

/// A buffer as C sees it: the binding's `MPI_IN_PLACE` becomes C's.
fn buffer(b: usize, addr: usize) -> *mut c_void {
    if addr != 0 && addr == in_place(b) {
        MPI_IN_PLACE as *mut c_void
    } else {
        addr as *mut c_void
    }
}

/// A choice buffer of `mpif.h` / `use mpi` (its address).
///
/// # Safety
///
/// None needed beyond the call's validity (the address is only compared).
pub(crate) unsafe fn fbuf_h(a: usize) -> *mut c_void {
    buffer(0, a)
}

/// A choice buffer of `use mpi_f08` passed by address.
///
/// # Safety
///
/// As for [`fbuf_h`].
#[allow(dead_code)] // Open MPI's `_f08_` forms only
pub(crate) unsafe fn fbuf_08(a: usize) -> *mut c_void {
    buffer(1, a)
}

/// A choice buffer of `use mpi_f08` passed as an array descriptor, whose
/// first word is the address.
///
/// # Safety
///
/// `a` points to the descriptor the compiler built for the call.
#[allow(dead_code)] // MPICH's `_f08ts_` forms only
pub(crate) unsafe fn fbuf_ts(a: usize) -> *mut c_void {
    // SAFETY: as documented.
    buffer(1, unsafe { *(a as *const usize) })
}
