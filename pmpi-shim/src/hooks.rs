//! Process hooks (an FFI module: `unsafe` allowed): the library constructor,
//! `atexit`, `pthread_atfork` and the exec family.
//!
//! Each hook hands over to `push` under `catch_unwind`, so no panic crosses
//! the C ABI. The exec functions push what this process counted, then call
//! the C library's own function (found with `dlsym(RTLD_NEXT)`).

// The exported functions are `pub` for the C ABI, not for Rust.
#![allow(unreachable_pub)]

use core::ffi::{c_char, c_int, c_void};
use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, Ordering};

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
/// the address of the arguments on the stack, to `exec_list`: under the
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
