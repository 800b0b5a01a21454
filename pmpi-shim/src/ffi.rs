//! The only module with `unsafe`: the generated `MPI_*` wrappers, `PMPI_*`
//! symbol resolution, thread-local state, the cycle counter, and the
//! process hooks (`atexit`, `pthread_atfork`, the exec family, signal mask of
//! the push thread).
//!
//! The shim never links against `PMPI_*`: each one is looked up with
//! `dlsym` on first use, so the library also loads (and does nothing) in a
//! program without MPI, and in an interpreter that loads MPI later.
#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals, unused_imports, dead_code, unreachable_pub)]
#![allow(clippy::missing_safety_doc, clippy::useless_transmute, clippy::unnecessary_cast)]

use core::ffi::{c_char, c_int, c_long, c_longlong, c_short, c_uchar, c_uint, c_ulong, c_ulonglong, c_ushort, c_void};
use std::cell::Cell;
use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::counters::Slab;

include!(concat!(env!("OUT_DIR"), "/wrappers.rs"));

// ------------------------------------------------------------ hot path

/// Per-thread state: nesting depth and this thread's counter slab.
struct Tls {
    depth: Cell<u32>,
    slab: Cell<Option<&'static Slab>>,
}

thread_local! {
    // Const-initialised and without destructor: access is a plain TLS load.
    static TLS: Tls = const { Tls { depth: Cell::new(0), slab: Cell::new(None) } };
}

/// Starts measuring a call, or `None` when this call is made from inside
/// another MPI call (it is then not counted, the outer call's time covers it).
#[inline(always)]
fn enter() -> Option<&'static Tls> {
    let t = TLS.try_with(|t| t as *const Tls).ok()?;
    // SAFETY: a thread-local without destructor lives as long as its thread,
    // and the reference is only used by this thread during this call.
    let t: &'static Tls = unsafe { &*t };
    if t.depth.get() != 0 {
        return None;
    }
    t.depth.set(1);
    Some(t)
}

#[inline(always)]
fn leave(t: &Tls, idx: usize, ticks: u64, bytes: u64) {
    let slab = match t.slab.get() {
        Some(s) => s,
        None => claim_slab(t),
    };
    slab.record(idx, ticks, bytes);
    t.depth.set(0);
}

/// Cycle counter read at each end of a call; converted to nanoseconds by
/// the push thread (see `clock`).
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

// ------------------------------------------------------------ slabs

/// Releases the thread's slab when the thread ends, so a later thread
/// reuses it instead of allocating one.
struct SlabRelease(Cell<Option<&'static Slab>>);

impl Drop for SlabRelease {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            let _ = TLS.try_with(|t| t.slab.set(None));
            s.release();
        }
    }
}

thread_local! {
    static RELEASE: SlabRelease = const { SlabRelease(Cell::new(None)) };
}

#[cold]
#[inline(never)]
fn claim_slab(t: &Tls) -> &'static Slab {
    let s = crate::counters::claim();
    t.slab.set(Some(s));
    // A thread that is already exiting keeps its slab for good.
    let _ = RELEASE.try_with(|r| r.0.set(Some(s)));
    s
}

static HEAD: AtomicPtr<Slab> = AtomicPtr::new(core::ptr::null_mut());

/// Adds a slab to the global list; slabs are never freed.
pub(crate) fn publish(s: &'static Slab) {
    let p = s as *const Slab as *mut Slab;
    let mut head = HEAD.load(Ordering::Acquire);
    loop {
        s.next.store(head, Ordering::Relaxed);
        match HEAD.compare_exchange_weak(head, p, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(h) => head = h,
        }
    }
}

/// Every slab ever published.
pub(crate) fn slabs() -> impl Iterator<Item = &'static Slab> {
    let mut p = HEAD.load(Ordering::Acquire);
    std::iter::from_fn(move || {
        // SAFETY: the list only holds leaked `&'static Slab`s.
        let s: &'static Slab = unsafe { p.as_ref()? };
        p = s.next.load(Ordering::Acquire);
        Some(s)
    })
}

/// The calling thread's slab, if it has one.
pub(crate) fn current_slab() -> Option<&'static Slab> {
    TLS.try_with(|t| t.slab.get()).ok().flatten()
}

// ------------------------------------------------------------ PMPI lookup

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
    REAL[idx].store(p, Ordering::Relaxed);
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

// ------------------------------------------------------------ size helpers

/// A count array argument: `int[]` or `MPI_Count[]` (large-count variants).
#[derive(Clone, Copy)]
pub(crate) enum Counts {
    Int(*const c_int),
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

/// A datatype array argument (`MPI_Alltoallw` and friends).
#[derive(Clone, Copy)]
pub(crate) struct Types(pub(crate) *const MPI_Datatype);

impl Types {
    pub(crate) fn get(self, i: i64) -> Option<MPI_Datatype> {
        if self.0.is_null() || i < 0 {
            return None;
        }
        // SAFETY: as for `Counts::get`.
        Some(unsafe { *self.0.add(i as usize) })
    }
}

/// Size in bytes of one element of `dt` (0 when MPI refuses to say).
pub(crate) fn type_size(dt: MPI_Datatype) -> u64 {
    let mut s: MPI_Count = 0;
    // SAFETY: forwards to the MPI library with a valid out pointer.
    let rc = unsafe { pMPI_Type_size_x(dt, (&mut s as *mut MPI_Count).cast()) };
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
    int_query(|p| unsafe { pMPI_Comm_size(c, p) })
}

pub(crate) fn comm_rank(c: MPI_Comm) -> i64 {
    // SAFETY: as above.
    int_query(|p| unsafe { pMPI_Comm_rank(c, p) })
}

pub(crate) fn is_inter(c: MPI_Comm) -> bool {
    // SAFETY: as above.
    int_query(|p| unsafe { pMPI_Comm_test_inter(c, p) }) != 0
}

pub(crate) fn remote_size(c: MPI_Comm) -> i64 {
    // SAFETY: as above.
    int_query(|p| unsafe { pMPI_Comm_remote_size(c, p) })
}

/// In- and out-degree of a communicator with a process topology.
pub(crate) fn neighbors(c: MPI_Comm) -> (i64, i64) {
    // SAFETY: forwards to the MPI library with valid out pointers.
    unsafe {
        let topo = int_query(|p| pMPI_Topo_test(c, p)) as c_int;
        if topo == MPI_CART {
            let d = int_query(|p| pMPI_Cartdim_get(c, p));
            (2 * d, 2 * d)
        } else if topo == MPI_GRAPH {
            let rank = comm_rank(c) as c_int;
            let d = int_query(|p| pMPI_Graph_neighbors_count(c, rank, p));
            (d, d)
        } else if topo == MPI_DIST_GRAPH {
            let (mut i, mut o, mut w): (c_int, c_int, c_int) = (0, 0, 0);
            let rc = pMPI_Dist_graph_neighbors_count(
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

// ------------------------------------------------------------ process hooks

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

/// Library constructor: only registers hooks; everything else waits for
/// the first MPI call, so a non-MPI program is not affected.
extern "C" fn init() {
    let _ = std::panic::catch_unwind(crate::push::at_load);
    // SAFETY: registering plain `extern "C"` callbacks.
    unsafe {
        libc::atexit(at_exit);
        libc::pthread_atfork(Some(before_fork), Some(after_fork_parent), Some(after_fork_child));
    }
}

extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(crate::push::at_exit);
}

extern "C" fn before_fork() {
    let _ = std::panic::catch_unwind(crate::push::before_fork);
}

extern "C" fn after_fork_parent() {
    let _ = std::panic::catch_unwind(crate::push::after_fork_parent);
}

extern "C" fn after_fork_child() {
    let _ = std::panic::catch_unwind(crate::push::after_fork_child);
}

/// Spawns a thread with every signal blocked, so the program's signal
/// handlers never run on it.
pub(crate) fn spawn_quiet(name: &str, f: impl FnOnce() + Send + 'static) -> bool {
    // SAFETY: sigset manipulation on local, initialised sets.
    unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let ok = std::thread::Builder::new().name(name.to_owned()).spawn(f).is_ok();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        ok
    }
}

// ------------------------------------------------------------ exec family

/// The exec functions interposed, in the order of [`EXEC_NAMES`].
#[derive(Clone, Copy)]
enum Exec {
    Execve,
    Execv,
    Execvp,
    Execvpe,
    Fexecve,
}

const EXEC_NAMES: [&CStr; 5] = [c"execve", c"execv", c"execvp", c"execvpe", c"fexecve"];

static EXEC_REAL: [AtomicPtr<c_void>; 5] = [const { AtomicPtr::new(core::ptr::null_mut()) }; 5];

type CArgs = *const *const c_char;

/// The C library's own exec function (the next definition after the shim).
fn next_exec(e: Exec) -> *mut c_void {
    let slot = &EXEC_REAL[e as usize];
    let mut p = slot.load(Ordering::Relaxed);
    if p.is_null() {
        // SAFETY: dlsym with a valid C string.
        p = unsafe { libc::dlsym(libc::RTLD_NEXT, EXEC_NAMES[e as usize].as_ptr()) };
        slot.store(p, Ordering::Relaxed);
    }
    p
}

/// What every exec function does before the real one: the counts of this
/// image are pushed now, since neither the push thread nor the exit hook
/// will run once the image is replaced. Never panics.
fn before_exec() {
    let _ = std::panic::catch_unwind(crate::push::before_exec);
}

/// Calls the real function, or fails with `ENOSYS` if the C library has none.
unsafe fn exec_next(e: Exec, path: *const c_char, fd: c_int, argv: CArgs, envp: CArgs) -> c_int {
    before_exec();
    let p = next_exec(e);
    if p.is_null() {
        // SAFETY: errno is a valid thread-local.
        unsafe { *libc::__errno_location() = libc::ENOSYS };
        return -1;
    }
    type PathArgv = unsafe extern "C" fn(*const c_char, CArgs) -> c_int;
    type PathArgvEnv = unsafe extern "C" fn(*const c_char, CArgs, CArgs) -> c_int;
    type FdArgvEnv = unsafe extern "C" fn(c_int, CArgs, CArgs) -> c_int;
    // SAFETY: `p` is the C library's definition of the function named by
    // `e`, whose C signature each arm states; the arguments are the
    // caller's, passed through unchanged.
    unsafe {
        match e {
            Exec::Execve | Exec::Execvpe => core::mem::transmute::<*mut c_void, PathArgvEnv>(p)(path, argv, envp),
            Exec::Execv | Exec::Execvp => core::mem::transmute::<*mut c_void, PathArgv>(p)(path, argv),
            Exec::Fexecve => core::mem::transmute::<*mut c_void, FdArgvEnv>(p)(fd, argv, envp),
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn execve(path: *const c_char, argv: CArgs, envp: CArgs) -> c_int {
    // SAFETY: forwards the caller's arguments.
    unsafe { exec_next(Exec::Execve, path, -1, argv, envp) }
}

#[no_mangle]
pub unsafe extern "C" fn execv(path: *const c_char, argv: CArgs) -> c_int {
    // SAFETY: as above.
    unsafe { exec_next(Exec::Execv, path, -1, argv, core::ptr::null()) }
}

#[no_mangle]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: CArgs) -> c_int {
    // SAFETY: as above.
    unsafe { exec_next(Exec::Execvp, file, -1, argv, core::ptr::null()) }
}

#[no_mangle]
pub unsafe extern "C" fn execvpe(file: *const c_char, argv: CArgs, envp: CArgs) -> c_int {
    // SAFETY: as above.
    unsafe { exec_next(Exec::Execvpe, file, -1, argv, envp) }
}

#[no_mangle]
pub unsafe extern "C" fn fexecve(fd: c_int, argv: CArgs, envp: CArgs) -> c_int {
    // SAFETY: as above.
    unsafe { exec_next(Exec::Fexecve, core::ptr::null(), fd, argv, envp) }
}

/// `execl`, `execlp` and `execle` take their arguments as C varargs, which
/// stable Rust cannot receive. Each is a naked trampoline that stores the
/// six integer argument registers next to each other and passes them, with
/// the address of the arguments on the stack, to [`exec_list`]: under the
/// x86-64 System V ABI a variadic pointer argument is passed exactly like a
/// named one (registers first, then 8-byte stack slots in order), so the
/// list can be read back as an array of words. Other architectures do not
/// get these three wrappers (see the crate docs).
#[cfg(target_arch = "x86_64")]
mod exec_list_abi {
    use super::*;

    /// Which list function was called.
    const EXECL: u32 = 0;
    const EXECLP: u32 = 1;
    const EXECLE: u32 = 2;

    macro_rules! trampoline {
        ($name:ident, $kind:expr) => {
            #[no_mangle]
            #[unsafe(naked)]
            pub unsafe extern "C" fn $name() {
                core::arch::naked_asm!(
                    "push rbp",
                    "mov rbp, rsp",
                    // 48 bytes keep the stack 16-byte aligned for the call.
                    "sub rsp, 48",
                    "mov [rsp], rdi",
                    "mov [rsp + 8], rsi",
                    "mov [rsp + 16], rdx",
                    "mov [rsp + 24], rcx",
                    "mov [rsp + 32], r8",
                    "mov [rsp + 40], r9",
                    "mov rdi, rsp",
                    "lea rsi, [rbp + 16]",
                    "mov edx, {kind}",
                    "call {imp}",
                    "leave",
                    "ret",
                    kind = const $kind,
                    imp = sym exec_list,
                );
            }
        };
    }

    trampoline!(execl, EXECL);
    trampoline!(execlp, EXECLP);
    trampoline!(execle, EXECLE);

    /// Rebuilds the argument vector of a list exec call and makes the
    /// matching vector call. `regs` holds the six register arguments,
    /// `stack` points at the first argument passed on the stack.
    unsafe extern "C" fn exec_list(regs: *const usize, stack: *const usize, kind: u32) -> c_int {
        // SAFETY: the caller passed `path, arg0, ..., NULL[, envp]` as C
        // requires; every word read is one of those arguments, up to and
        // including the terminating null pointer (and `envp` after it).
        let arg = |i: usize| unsafe {
            if i < 6 {
                *regs.add(i)
            } else {
                *stack.add(i - 6)
            }
        };
        let path = arg(0) as *const c_char;
        let mut argv: Vec<*const c_char> = Vec::new();
        let mut i = 1;
        loop {
            let a = arg(i) as *const c_char;
            argv.push(a);
            i += 1;
            if a.is_null() {
                break;
            }
        }
        // SAFETY: `argv` is null-terminated and outlives the call; `environ`
        // is the process environment, as the list functions use.
        unsafe {
            match kind {
                EXECLP => exec_next(Exec::Execvp, path, -1, argv.as_ptr(), core::ptr::null()),
                EXECLE => exec_next(Exec::Execve, path, -1, argv.as_ptr(), arg(i) as CArgs),
                _ => exec_next(Exec::Execv, path, -1, argv.as_ptr(), core::ptr::null()),
            }
        }
    }
}
