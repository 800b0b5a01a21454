//! `PMPI_*` lookup and the MPI queries the byte rules need (an FFI module: `unsafe` allowed).
//!
//! The shim never links against `PMPI_*`: each one is looked up with
//! `dlsym` on first use, so the library also loads (and does nothing) in a
//! program without MPI, and in an interpreter that loads MPI later. Each
//! wrapped function has a twin here, `PMPI_Send` for `MPI_Send`, with the
//! same C signature, expanded from the generated list; the first lookup
//! checks that the MPI found is the one the shim was built for.

use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::mpi::*;

/// Defines the `PMPI_*` twin of every function of the generated list.
macro_rules! pmpi_twins {
    ($($idx:literal $name:ident $twin:ident ($($a:ident: $t:ty),*) $(-> $ret:ty)? $(=> $rule:ident($($x:expr),*))?;)*) => {
        $(
            /// Calls the MPI library's own definition of the function,
            /// looked up on first use.
            ///
            /// # Safety
            ///
            /// As for the MPI function: valid arguments for its C prototype.
            #[inline(always)]
            #[allow(non_snake_case, clippy::too_many_arguments)]
            pub(crate) unsafe fn $twin($($a: $t),*) $(-> $ret)? {
                type F = unsafe extern "C" fn($($t),*) $(-> $ret)?;
                const NAME: &CStr = c_name(concat!(stringify!($twin), "\0"));
                // SAFETY: `real` returns the library's definition of `NAME`,
                // whose C prototype in `mpi.h` is the one `F` spells.
                let f = unsafe { core::mem::transmute::<*mut c_void, F>(real($idx, NAME)) };
                // SAFETY: the caller's arguments, of the prototype's types.
                unsafe { f($($a),*) }
            }
        )*
    };
}

/// A symbol name as a C string, checked at compile time.
const fn c_name(s: &'static str) -> &'static CStr {
    match CStr::from_bytes_with_nul(s.as_bytes()) {
        Ok(c) => c,
        Err(_) => panic!("not a C symbol name"),
    }
}

/// The library's definition of each wrapped function, once looked up.
static REAL: [AtomicPtr<c_void>; NFUNCS] = [const { AtomicPtr::new(core::ptr::null_mut()) }; NFUNCS];

crate::mpi::for_each_function!(pmpi_twins);

// ------------------------------------------------------------ lookup

static MPI_LIBS_HINT: &str = "libmpi";

#[inline(always)]
fn real(idx: usize, name: &CStr) -> *mut c_void {
    let p = REAL[idx].load(Ordering::Relaxed);
    if p.is_null() {
        resolve(idx, name)
    } else {
        p
    }
}

#[cold]
#[inline(never)]
fn resolve(idx: usize, name: &CStr) -> *mut c_void {
    let p = lookup(name);
    REAL[idx].store(p, Ordering::Relaxed);
    p
}

/// The MPI library's definition of `name` (a `PMPI_*` function or a
/// Fortran twin), checked to come from the MPI this shim was built for;
/// aborts with one line when there is none.
pub(crate) fn lookup(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with a valid C string.
    let mut p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    if p.is_null() {
        p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    }
    if p.is_null() {
        p = find_in_loaded_mpi(name);
    }
    if p.is_null() {
        let msg = format!(
            "tau_pmpi: {} not found: this program does not use the {IMPL} MPI library this shim was built for\n",
            name.to_string_lossy()
        );
        // SAFETY: plain write of a valid buffer to stderr before aborting.
        unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
        std::process::abort();
    }
    CHECKED.call_once(|| check_implementation(p, name));
    p
}

/// Set once the library defining the first `PMPI_*` looked up was checked.
static CHECKED: std::sync::Once = std::sync::Once::new();

/// Symbol that only Open MPI defines: `MPI_COMM_WORLD` is `&ompi_mpi_comm_world`
/// in its ABI. MPICH and its ABI-compatible derivatives have integer
/// handles and no such object.
const OPEN_MPI_MARKER: &CStr = c"ompi_mpi_comm_world";

/// Aborts with one clear line if the library defining `p` is not the MPI
/// this shim was built for: the wrappers' handle types and constants come
/// from the build's `mpi.h`, so forwarding a call to another MPI (e.g. an
/// Open MPI program given the MPICH shim) would truncate its handles and
/// crash somewhere inside the MPI library, or compute wrong results.
fn check_implementation(p: *mut c_void, name: &CStr) {
    let built_for_open_mpi = match IMPL {
        "openmpi" => true,
        "mpich" => false,
        _ => return,
    };
    // SAFETY: dladdr fills a local struct; the file name it returns stays
    // valid while the library is loaded, which it is (it defines `p`).
    let lib = unsafe {
        let mut info: libc::Dl_info = core::mem::zeroed();
        if libc::dladdr(p, &mut info) == 0 || info.dli_fname.is_null() {
            return;
        }
        CStr::from_ptr(info.dli_fname).to_owned()
    };
    // SAFETY: RTLD_NOLOAD only returns an already loaded object; dlsym
    // with a valid C string.
    let is_open_mpi = unsafe {
        let h = libc::dlopen(lib.as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_LAZY);
        if h.is_null() {
            return;
        }
        let found = !libc::dlsym(h, OPEN_MPI_MARKER.as_ptr()).is_null();
        libc::dlclose(h);
        found
    };
    if is_open_mpi == built_for_open_mpi {
        return;
    }
    let (built, found) = if built_for_open_mpi { ("Open MPI", "not Open MPI") } else { ("MPICH", "Open MPI") };
    let msg = format!(
        "tau_pmpi: this shim was built for {built} but {} comes from {}, which is {found}: aborting, \
         as its MPI calls cannot be forwarded (preload the shim built for the program's MPI)\n",
        name.to_string_lossy(),
        lib.to_string_lossy(),
    );
    // SAFETY: plain write of a valid buffer to stderr before aborting.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
    std::process::abort();
}

/// Looks the symbol up in an MPI library loaded privately (e.g. by a Python
/// extension module opened with `RTLD_LOCAL`), which `RTLD_NEXT` cannot see.
fn find_in_loaded_mpi(name: &CStr) -> *mut c_void {
    unsafe extern "C" fn collect(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: called by dl_iterate_phdr with valid pointers; data is the Vec below.
        unsafe {
            let libs = &mut *(data as *mut Vec<std::ffi::CString>);
            let n = (*info).dlpi_name;
            if !n.is_null() {
                let s = CStr::from_ptr(n);
                let file = s.to_bytes().rsplit(|b| *b == b'/').next().unwrap_or_default();
                if file.starts_with(MPI_LIBS_HINT.as_bytes()) {
                    libs.push(s.to_owned());
                }
            }
        }
        0
    }
    let mut libs: Vec<std::ffi::CString> = Vec::new();
    // SAFETY: the callback only reads the info it is given.
    unsafe { libc::dl_iterate_phdr(Some(collect), (&mut libs as *mut Vec<std::ffi::CString>).cast()) };
    for lib in libs {
        // SAFETY: RTLD_NOLOAD only returns an already loaded object.
        unsafe {
            let h = libc::dlopen(lib.as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_LAZY);
            if h.is_null() {
                continue;
            }
            let p = libc::dlsym(h, name.as_ptr());
            libc::dlclose(h);
            if !p.is_null() {
                return p;
            }
        }
    }
    core::ptr::null_mut()
}

// ------------------------------------------------------------ queries for the byte rules

/// A count array argument: `int[]` or `MPI_Count[]` (large-count variants).
#[derive(Clone, Copy)]
pub(crate) enum Counts {
    Int(*const c_int),
    // Only large-count (`_c`) functions have these: not every `mpi.h` does.
    #[allow(dead_code)]
    Wide(*const i64),
}

impl Counts {
    /// Sum of the first `n` counts (0 for a null array).
    pub(crate) fn sum(self, n: i64) -> i64 {
        (0..n.max(0)).fold(0i64, |acc, i| acc.saturating_add(self.get(i)))
    }

    pub(crate) fn get(self, i: i64) -> i64 {
        if i < 0 {
            return 0;
        }
        // SAFETY: MPI requires the array to hold one entry per peer; the
        // callers only index significant arrays within the peer count.
        unsafe {
            match self {
                Counts::Int(p) if !p.is_null() => *p.add(i as usize) as i64,
                Counts::Wide(p) if !p.is_null() => *p.add(i as usize),
                _ => 0,
            }
        }
    }
}

/// A datatype array argument (`MPI_Alltoallw` and friends): C handles, or
/// Fortran handles (an `MPI_Fint` each, converted one by one).
#[derive(Clone, Copy)]
pub(crate) enum Types {
    C(*const MPI_Datatype),
    // Only Fortran entry points with a datatype array have these.
    #[allow(dead_code)]
    Fortran(*const Fint),
}

impl Types {
    pub(crate) fn get(self, i: i64) -> Option<MPI_Datatype> {
        if i < 0 {
            return None;
        }
        // SAFETY: as for `Counts::get`.
        unsafe {
            match self {
                Types::C(p) if !p.is_null() => Some(*p.add(i as usize)),
                Types::Fortran(p) if !p.is_null() => Some(type_f2c(*p.add(i as usize))),
                _ => None,
            }
        }
    }
}

// ------------------------------------------------------------ Fortran handles

/// A C handle type, made from a Fortran handle: by the implementation's
/// `PMPI_*_f2c` for pointer handles (Open MPI), as the same integer for
/// integer handles (MPICH, whose `MPI_*_f2c` are casts).
pub(crate) trait FromFint: Sized {
    fn from_fint(f: Fint, f2c: &F2c) -> Self;
}

/// A `PMPI_*_f2c` converter, looked up on first use.
pub(crate) struct F2c(&'static CStr, AtomicPtr<c_void>);

impl FromFint for *mut c_void {
    fn from_fint(f: Fint, f2c: &F2c) -> Self {
        let mut p = f2c.1.load(Ordering::Relaxed);
        if p.is_null() {
            p = lookup(f2c.0);
            f2c.1.store(p, Ordering::Relaxed);
        }
        // SAFETY: `PMPI_*_f2c` takes an `MPI_Fint` and returns the C handle.
        unsafe { core::mem::transmute::<*mut c_void, unsafe extern "C" fn(Fint) -> *mut c_void>(p)(f) }
    }
}

impl FromFint for c_int {
    fn from_fint(f: Fint, _: &F2c) -> Self {
        f as c_int
    }
}

static TYPE_F2C: F2c = F2c(c"PMPI_Type_f2c", AtomicPtr::new(core::ptr::null_mut()));
static COMM_F2C: F2c = F2c(c"PMPI_Comm_f2c", AtomicPtr::new(core::ptr::null_mut()));

/// The C datatype of a Fortran one.
pub(crate) fn type_f2c(f: Fint) -> MPI_Datatype {
    MPI_Datatype::from_fint(f, &TYPE_F2C)
}

/// The C communicator of a Fortran one.
pub(crate) fn comm_f2c(f: Fint) -> MPI_Comm {
    MPI_Comm::from_fint(f, &COMM_F2C)
}

/// Size in bytes of one element of `dt` (0 when MPI refuses to say).
pub(crate) fn type_size(dt: MPI_Datatype) -> u64 {
    let mut s: MPI_Count = 0;
    // SAFETY: forwards to the MPI library with a valid out pointer.
    let rc = unsafe { PMPI_Type_size_x(dt, (&mut s as *mut MPI_Count).cast()) };
    if rc == MPI_SUCCESS && s > 0 {
        s as u64
    } else {
        0
    }
}

fn int_query(f: impl FnOnce(*mut c_void) -> c_int) -> i64 {
    let mut v: c_int = 0;
    if f((&mut v as *mut c_int).cast()) == MPI_SUCCESS {
        v as i64
    } else {
        0
    }
}

pub(crate) fn comm_size(c: MPI_Comm) -> i64 {
    // SAFETY: forwards to the MPI library with a valid out pointer.
    int_query(|p| unsafe { PMPI_Comm_size(c, p) })
}

pub(crate) fn comm_rank(c: MPI_Comm) -> i64 {
    // SAFETY: as above.
    int_query(|p| unsafe { PMPI_Comm_rank(c, p) })
}

pub(crate) fn is_inter(c: MPI_Comm) -> bool {
    // SAFETY: as above.
    int_query(|p| unsafe { PMPI_Comm_test_inter(c, p) }) != 0
}

pub(crate) fn remote_size(c: MPI_Comm) -> i64 {
    // SAFETY: as above.
    int_query(|p| unsafe { PMPI_Comm_remote_size(c, p) })
}

/// In- and out-degree of a communicator with a process topology.
pub(crate) fn neighbors(c: MPI_Comm) -> (i64, i64) {
    // SAFETY: forwards to the MPI library with valid out pointers.
    unsafe {
        let topo = int_query(|p| PMPI_Topo_test(c, p)) as c_int;
        if topo == MPI_CART {
            let d = int_query(|p| PMPI_Cartdim_get(c, p));
            (2 * d, 2 * d)
        } else if topo == MPI_GRAPH {
            let rank = comm_rank(c) as c_int;
            let d = int_query(|p| PMPI_Graph_neighbors_count(c, rank, p));
            (d, d)
        } else if topo == MPI_DIST_GRAPH {
            let (mut i, mut o, mut w): (c_int, c_int, c_int) = (0, 0, 0);
            let rc = PMPI_Dist_graph_neighbors_count(
                c,
                (&mut i as *mut c_int).cast(),
                (&mut o as *mut c_int).cast(),
                (&mut w as *mut c_int).cast(),
            );
            if rc == MPI_SUCCESS {
                (i as i64, o as i64)
            } else {
                (0, 0)
            }
        } else {
            (0, 0)
        }
    }
}

pub(crate) fn is_in_place(buf: *mut c_void) -> bool {
    buf as usize == MPI_IN_PLACE
}
