//! The one thin module holding every `unsafe` call of `tau_strace`: ptrace
//! requests, waiting, forking the traced command, signals, affinity and the
//! seccomp filter. Each function is a direct wrapper returning `io::Result`;
//! all decisions are taken by the safe code above it.

use std::ffi::{CStr, CString};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) type Pid = i32;

/// `PTRACE_O_*` options used by the tracer.
pub(crate) const OPT_TRACESYSGOOD: u32 = libc::PTRACE_O_TRACESYSGOOD as u32;
pub(crate) const OPT_TRACEFORK: u32 = libc::PTRACE_O_TRACEFORK as u32;
pub(crate) const OPT_TRACEVFORK: u32 = libc::PTRACE_O_TRACEVFORK as u32;
pub(crate) const OPT_TRACECLONE: u32 = libc::PTRACE_O_TRACECLONE as u32;
pub(crate) const OPT_TRACEEXEC: u32 = libc::PTRACE_O_TRACEEXEC as u32;
pub(crate) const OPT_TRACESECCOMP: u32 = libc::PTRACE_O_TRACESECCOMP as u32;
pub(crate) const OPT_EXITKILL: u32 = libc::PTRACE_O_EXITKILL as u32;

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn ptrace(req: libc::c_uint, pid: Pid, addr: usize, data: usize) -> io::Result<libc::c_long> {
    // SAFETY: every request used here takes integer arguments or a pointer
    // to a buffer owned by the caller and sized for the request.
    check(unsafe { libc::ptrace(req, pid, addr as *mut libc::c_void, data as *mut libc::c_void) })
}

pub(crate) fn seize(pid: Pid, options: u32) -> io::Result<()> {
    ptrace(libc::PTRACE_SEIZE, pid, 0, options as usize).map(drop)
}

pub(crate) fn interrupt(pid: Pid) -> io::Result<()> {
    ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0).map(drop)
}

pub(crate) fn listen(pid: Pid) -> io::Result<()> {
    ptrace(libc::PTRACE_LISTEN, pid, 0, 0).map(drop)
}

/// Resumes until the next syscall stop (or any other stop).
pub(crate) fn resume_syscall(pid: Pid, sig: i32) -> io::Result<()> {
    ptrace(libc::PTRACE_SYSCALL, pid, 0, sig as usize).map(drop)
}

/// Resumes without syscall stops (seccomp stops still happen).
pub(crate) fn resume_cont(pid: Pid, sig: i32) -> io::Result<()> {
    ptrace(libc::PTRACE_CONT, pid, 0, sig as usize).map(drop)
}

pub(crate) fn detach(pid: Pid, sig: i32) -> io::Result<()> {
    ptrace(libc::PTRACE_DETACH, pid, 0, sig as usize).map(drop)
}

pub(crate) fn event_msg(pid: Pid) -> io::Result<u64> {
    let mut msg: libc::c_ulong = 0;
    ptrace(libc::PTRACE_GETEVENTMSG, pid, 0, &mut msg as *mut libc::c_ulong as usize)?;
    Ok(msg)
}

/// `len` bytes of `pid`'s memory at `addr` (`process_vm_readv`, which a
/// tracer may do).
pub(crate) fn read_memory(pid: Pid, addr: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: len };
    let remote = libc::iovec { iov_base: addr as usize as *mut libc::c_void, iov_len: len };
    // SAFETY: the local iovec covers `buf`, owned here; the remote one is
    // only read by the kernel, with permission checks.
    let n = check(unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) } as libc::c_long)?;
    buf.truncate(n as usize);
    if buf.len() < len {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
    }
    Ok(buf)
}

/// Size of `struct ptrace_syscall_info` as of Linux 5.3.
pub(crate) const SYSCALL_INFO_LEN: usize = 88;

/// Raw `PTRACE_GET_SYSCALL_INFO`; decoded by `syscall::Info::parse`.
pub(crate) fn syscall_info(pid: Pid, buf: &mut [u8; SYSCALL_INFO_LEN]) -> io::Result<()> {
    ptrace(libc::PTRACE_GET_SYSCALL_INFO, pid, SYSCALL_INFO_LEN, buf.as_mut_ptr() as usize).map(drop)
}

/// `waitpid(-1, __WALL)`: the next stop or death of any tracee.
pub(crate) fn wait_any() -> io::Result<(Pid, i32)> {
    let mut status = 0;
    // SAFETY: status is a valid out pointer.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((pid, status))
}

/// `waitpid(-1, __WALL | WNOHANG)`: a pending report, if any.
pub(crate) fn wait_any_nohang() -> io::Result<Option<(Pid, i32)>> {
    let mut status = 0;
    // SAFETY: status is a valid out pointer.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL | libc::WNOHANG) };
    match pid {
        p if p < 0 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        p => Ok(Some((p, status))),
    }
}

/// Waits until `pid` is stopped or gone, without reaping a stop.
pub(crate) fn wait_stopped(pid: Pid) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED | libc::__WALL) };
        if r >= 0 {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub(crate) fn kill(pid: Pid, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::kill(pid, sig) } as libc::c_long).map(drop)
}

pub(crate) fn getpid() -> Pid {
    // SAFETY: plain syscall.
    unsafe { libc::getpid() }
}

pub(crate) fn gettid() -> Pid {
    // SAFETY: plain syscall.
    unsafe { libc::gettid() }
}

/// Sends `sig` to one thread of this process.
pub(crate) fn tgkill_self(tid: Pid, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::syscall(libc::SYS_tgkill, getpid(), tid, sig) }).map(drop)
}

/// The CPUs `pid` (0: this thread) may run on, as a bit set.
pub(crate) fn get_affinity(pid: Pid) -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; the size passed matches.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        check(libc::sched_getaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) as libc::c_long)?;
        Ok((0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect())
    }
}

/// Restricts the calling thread (and the threads it spawns later) to `cpus`.
pub(crate) fn set_own_affinity(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; the size passed matches.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        check(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) as libc::c_long).map(drop)
    }
}

/// One instruction of a classic BPF program (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BpfInsn {
    pub(crate) code: u16,
    pub(crate) jt: u8,
    pub(crate) jf: u8,
    pub(crate) k: u32,
}

/// What the forked child does before `execve`.
pub(crate) struct SpawnPlan {
    pub(crate) path: CString,
    pub(crate) argv: Vec<CString>,
    pub(crate) envp: Vec<CString>,
    /// Installed with `no_new_privs` right before the stop that hands the
    /// child over to the tracer.
    pub(crate) seccomp: Option<Vec<BpfInsn>>,
    /// Signals the tracer blocked for itself, to unblock in the child.
    pub(crate) unblock: Vec<i32>,
}

/// # Safety
/// Only calls sigset functions on a local set.
unsafe fn sigset(sigs: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Forks a child that resets its signal state, stops itself with SIGSTOP
/// and, once resumed, executes the command. Returns its pid once it is
/// stopped, ready to be seized.
pub(crate) fn spawn_stopped(plan: &SpawnPlan) -> io::Result<Pid> {
    // Everything the child touches is prepared here: between fork and
    // execve only async-signal-safe calls are made.
    let mut argv: Vec<*const libc::c_char> = plan.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = plan.envp.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let filter: Vec<libc::sock_filter> =
        plan.seccomp.iter().flatten().map(|i| libc::sock_filter { code: i.code, jt: i.jt, jf: i.jf, k: i.k }).collect();
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut libc::sock_filter };
    let path: &CStr = &plan.path;
    // SAFETY: sigset operations on a local set.
    let unblock = unsafe { sigset(&plan.unblock) };
    // SAFETY: the child only calls async-signal-safe functions on data
    // prepared above, then execs or exits.
    unsafe {
        let pid = libc::fork();
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // The tracer's own signal handling must not leak into the
            // command: default SIGPIPE (Rust ignores it), and the mask
            // tau_strace itself was started with.
            libc::sigprocmask(libc::SIG_UNBLOCK, &unblock, std::ptr::null_mut());
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            if plan.seccomp.is_some() {
                let ok = libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
                    && libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog) == 0;
                if !ok {
                    child_fail(b"tau_strace: cannot install the seccomp filter\n");
                }
            }
            libc::kill(libc::getpid(), libc::SIGSTOP);
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            exec_failed(path, *libc::__errno_location());
        }
        Ok(pid)
    }
}

/// The peer credentials of a connected UNIX socket: pid, uid, gid.
pub(crate) fn peer_cred(fd: i32) -> io::Result<(Pid, u32, u32)> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid out pointers sized for SO_PEERCRED.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        )
    };
    check(r as libc::c_long)?;
    Ok((cred.pid, cred.uid, cred.gid))
}

/// `waitpid(pid, 0)`: the raw status once `pid` has ended (EINTR when a
/// caught signal arrives).
pub(crate) fn wait_pid(pid: Pid) -> io::Result<i32> {
    let mut status = 0;
    // SAFETY: status is a valid out pointer.
    check(unsafe { libc::waitpid(pid, &mut status, 0) } as libc::c_long)?;
    Ok(status)
}

/// Reports a failed `execve` in the child with async-signal-safe calls
/// only, and exits 126 like a shell for a command it cannot execute.
fn exec_failed(path: &CStr, errno: i32) -> ! {
    let mut digits = [0u8; 12];
    let mut n = errno.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // strerror is not async-signal-safe: the usual causes are spelt out.
    let reason: &[u8] = match errno {
        libc::ENOENT => b"No such file or directory",
        libc::E2BIG => b"Argument list too long",
        libc::ENOEXEC => b"Exec format error",
        libc::ENOMEM => b"Cannot allocate memory",
        libc::EACCES => b"Permission denied",
        libc::ETXTBSY => b"Text file busy",
        _ => b"errno ",
    };
    let number: &[u8] = if reason == b"errno " { &digits[i..] } else { b"" };
    let parts: [&[u8]; 5] = [b"tau_strace: cannot execute ", path.to_bytes(), b": ", reason, number];
    for p in parts {
        // SAFETY: write(2) on a valid buffer in the forked child.
        unsafe { libc::write(2, p.as_ptr() as *const libc::c_void, p.len()) };
    }
    // SAFETY: as above; _exit never returns.
    unsafe {
        libc::write(2, b"\n".as_ptr() as *const libc::c_void, 1);
        libc::_exit(126)
    }
}

fn child_fail(msg: &[u8]) -> ! {
    // SAFETY: async-signal-safe calls in the forked child.
    unsafe {
        libc::write(2, msg.as_ptr() as *const libc::c_void, msg.len());
        libc::_exit(127)
    }
}

/// Terminating signals received from outside and not yet taken, one bit
/// per signal number: bit N when a process sent N, bit 32+N when the kernel
/// did (a terminal's Ctrl+C or hangup).
static RECEIVED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_signal(sig: i32, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // A signal this process sent itself only exists to interrupt a blocking
    // wait: it is not a request from the user.
    // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO.
    let (from_self, from_kernel) = unsafe {
        if info.is_null() {
            (false, false)
        } else {
            ((*info).si_code <= 0 && (*info).si_pid() == libc::getpid(), (*info).si_code == libc::SI_KERNEL)
        }
    };
    if !from_self {
        let bit = (sig as u32 % 32) + if from_kernel { 32 } else { 0 };
        RECEIVED.fetch_or(1 << bit, Ordering::SeqCst);
    }
}

/// Installs a handler for `sigs` that records them without SA_RESTART, so a
/// blocking `waitpid` returns EINTR. Those of `keep_ignored` found ignored
/// are left ignored (`nohup` semantics, inherited by the command).
/// Returns those caught.
pub(crate) fn catch_signals(sigs: &[i32], keep_ignored: &[i32]) -> io::Result<Vec<i32>> {
    let mut caught = Vec::new();
    for &sig in sigs {
        // SAFETY: sigaction with a valid handler and a zeroed mask.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            check(libc::sigaction(sig, std::ptr::null(), &mut old) as libc::c_long)?;
            if keep_ignored.contains(&sig) && old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            check(libc::sigaction(sig, &sa, std::ptr::null_mut()) as libc::c_long)?;
        }
        caught.push(sig);
    }
    Ok(caught)
}

/// A signal taken from the set received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) sig: i32,
    /// Sent by the kernel to the terminal's foreground process group.
    pub(crate) from_kernel: bool,
}

/// Takes every signal received since the last call.
pub(crate) fn take_signals() -> Vec<Received> {
    let bits = RECEIVED.swap(0, Ordering::SeqCst);
    (0..64u32)
        .filter(|b| bits & (1u64 << b) != 0)
        .map(|b| Received { sig: (b % 32) as i32, from_kernel: b >= 32 })
        .collect()
}

/// Whether a signal is recorded and not yet taken.
pub(crate) fn signal_pending() -> bool {
    RECEIVED.load(Ordering::SeqCst) != 0
}

/// Blocks (`block == true`) or unblocks `sigs` in the calling thread.
/// Returns those of `sigs` that were blocked before.
pub(crate) fn mask_signals(sigs: &[i32], block: bool) -> io::Result<Vec<i32>> {
    // SAFETY: sigset operations on local sets.
    unsafe {
        let set = sigset(sigs);
        let mut old: libc::sigset_t = std::mem::zeroed();
        let how = if block { libc::SIG_BLOCK } else { libc::SIG_UNBLOCK };
        let r = libc::pthread_sigmask(how, &set, &mut old);
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(sigs.iter().copied().filter(|&s| libc::sigismember(&old, s) == 1).collect())
    }
}

/// Switches thread `tid` (0: the caller) to `SCHED_IDLE` or back to
/// `SCHED_OTHER`.
pub(crate) fn set_idle_policy(tid: Pid, idle: bool) -> io::Result<()> {
    let policy = if idle { libc::SCHED_IDLE } else { libc::SCHED_OTHER };
    let p = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall with a valid param.
    check(unsafe { libc::sched_setscheduler(tid, policy, &p) } as libc::c_long).map(drop)
}
