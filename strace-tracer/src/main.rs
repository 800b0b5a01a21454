//! tau_strace: runs or attaches to a program under ptrace, following every
//! thread, fork and exec like `strace -f`, and pushes exact per-syscall
//! counts, bytes and times to tau_metric_proxy.
// Only `sys` may hold `unsafe` code: the compiler enforces it.
#![deny(unsafe_code)]

mod bpf;
mod cli;
mod counts;
mod engine;
mod push;
mod sched;
mod serve;
mod service;
mod stop;
#[allow(unsafe_code)]
mod sys;
mod syscall;
mod tables;
mod tracer;

use std::collections::HashSet;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cli::Cli;
use counts::{Bounds, Counts};
use push::Source;
use stop::Stop;
use sys::Pid;
use syscall::{Catalog, Info, Slot};
use tracer::{Action, Inspect, Outcome, Tracer};

/// Signals that make `tau_strace` detach (attach mode) or that it passes on
/// to the command (run mode).
const TERMINATING: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];
/// Where commands are looked for when `PATH` is unset.
const PATH_IF_UNSET: &str = "/usr/local/bin:/usr/bin:/bin";
const TOOL: &str = "tau_strace";

fn main() {
    let cli: Cli = client::parse_args(TOOL);
    env_logger::Builder::new()
        .filter_level(if cli.verbose { log::LevelFilter::Info } else { log::LevelFilter::Warn })
        .format_timestamp(None)
        .format_target(false)
        .init();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) if e.usage => client::usage_error(TOOL, &e.message),
        Err(e) => {
            eprintln!("{TOOL}: {e}");
            std::process::exit(e.code);
        }
    }
}

#[derive(Debug)]
pub(crate) struct Failure {
    message: String,
    code: i32,
    /// A bad command line, reported like clap's errors (status 2).
    usage: bool,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub(crate) fn fail(code: i32, message: String) -> Failure {
    Failure { message, code, usage: false }
}

fn usage(message: String) -> Failure {
    Failure { message, code: 2, usage: true }
}

/// Real ptrace queries for the state machine.
struct Os;

impl Inspect for Os {
    fn syscall_info(&mut self, pid: Pid) -> io::Result<Info> {
        let mut buf = [0u8; sys::SYSCALL_INFO_LEN];
        sys::syscall_info(pid, &mut buf)?;
        Ok(Info::parse(&buf))
    }
    fn event_msg(&mut self, pid: Pid) -> io::Result<u64> {
        sys::event_msg(pid)
    }
    fn read_memory(&mut self, pid: Pid, addr: u64, len: usize) -> io::Result<Vec<u8>> {
        sys::read_memory(pid, addr, len)
    }
}

const OPTIONS: u32 =
    sys::OPT_TRACESYSGOOD | sys::OPT_TRACECLONE | sys::OPT_TRACEFORK | sys::OPT_TRACEVFORK | sys::OPT_TRACEEXEC;

fn run(cli: Cli) -> Result<i32, Failure> {
    let catalog = Catalog::new();
    let only: Option<Vec<Slot>> = if cli.only.is_empty() {
        None
    } else {
        let mut slots = Vec::new();
        for name in cli.only.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            match catalog.slot_of_name(name) {
                Some(s) => slots.push(s),
                None => return Err(usage(format!("unknown syscall name in --only: {name}"))),
            }
        }
        Some(slots)
    };
    if let Some(socket) = &cli.serve {
        sys::catch_signals(&TERMINATING, &[]).map_err(|e| fail(1, format!("cannot install signal handlers: {e}")))?;
        return serve::serve(socket, cli.max_threads.unwrap_or(bpf::MAX_THREADS));
    }
    let counts = Arc::new(Counts::new(catalog.len()));
    let socket = client::socket_path(cli.socket.clone());

    // Handlers first (installed after fork they would race with an early
    // signal), blocked until the pusher thread exists so that it never
    // takes one of them.
    let blocked_before =
        sys::mask_signals(&TERMINATING, true).map_err(|e| fail(1, format!("cannot block signals: {e}")))?;
    let unblock: Vec<i32> = TERMINATING.iter().copied().filter(|s| !blocked_before.contains(s)).collect();
    // Attached, these signals are the way to detach, even when inherited
    // as ignored (a background job of a non-interactive shell ignores
    // SIGINT). Running a command, SIGINT is caught all the same and passed
    // on like SIGTERM (an ignored SIGINT is the shell's doing, not a wish
    // of the user's, who would otherwise have no way to interrupt it); the
    // others, found ignored, stay ignored for the command (`nohup`).
    let keep_ignored: &[i32] = if cli.pid.is_none() { &[libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] } else { &[] };
    sys::catch_signals(&TERMINATING, keep_ignored)
        .map_err(|e| fail(1, format!("cannot install signal handlers: {e}")))?;
    let choice = choose_engine(&cli, only.as_deref())?;
    let plan = |seccomp| match cli.pid {
        Some(_) => Ok(None),
        None => spawn_plan(&cli.command, &cli.env, seccomp, unblock.clone()).map(Some),
    };
    let counted_elsewhere = |marker: &mut dyn engine::Marker, source: Source| -> Result<i32, Failure> {
        let plan = plan(None)?;
        let pusher = push::start(source, &socket, Duration::from_millis(cli.interval), false)?;
        let _ = sys::mask_signals(&unblock, false);
        let result = match (cli.pid, &plan) {
            (Some(pid), _) => engine::attach(marker, pid),
            (None, Some(plan)) => engine::run(marker, plan),
            (None, None) => unreachable!("a command without a plan"),
        };
        pusher.finish();
        result
    };
    match choice {
        Choice::Bpf(mut engine) => {
            let source = Source::Bpf(Box::new(engine.take_reader().expect("a fresh engine has its reader")));
            return counted_elsewhere(&mut *engine, source);
        }
        Choice::Service(socket) => {
            let totals = Arc::new(std::sync::Mutex::new(service::Totals::default()));
            let max_threads = cli.max_threads.unwrap_or(bpf::MAX_THREADS);
            let mut marker = engine::ViaService {
                socket,
                only: cli.only.clone(),
                max_threads,
                totals: totals.clone(),
                remote: None,
            };
            let bounds = Bounds { bpf: true, threads: max_threads.into(), numbers: bpf::MAX_RARE };
            return counted_elsewhere(&mut marker, Source::Service(totals, bounds));
        }
        Choice::Ptrace => {}
    }

    let (tracer, attached) = match cli.pid {
        Some(pid) => {
            // Run where the target may run: sharing its CPU(s) avoids a
            // cross-CPU wake-up at every stop.
            if let Ok(cpus) = sys::get_affinity(pid) {
                let _ = sys::set_own_affinity(&cpus);
            }
            let mut tracer = Tracer::new(catalog, counts.clone(), pid, false, only.as_deref());
            attach(pid, &mut tracer)?;
            log::info!("attached to process {pid} ({} threads)", tracer.threads().len());
            (tracer, true)
        }
        None => {
            let seccomp = only.as_deref().map(|s| catalog.seccomp_filter(s));
            let plan = spawn_plan(&cli.command, &cli.env, seccomp, unblock.clone())?;
            let seccomp = plan.seccomp.is_some();
            // With a seccomp filter, a tracer that dies (the OOM killer)
            // must take the command with it: otherwise every filtered call
            // of the command would fail with ENOSYS from then on.
            let options = if seccomp { OPTIONS | sys::OPT_TRACESECCOMP | sys::OPT_EXITKILL } else { OPTIONS };
            let pid = start_command(&plan, options)?;
            let mut tracer = Tracer::new(catalog, counts.clone(), pid, seccomp, only.as_deref());
            tracer.add_thread(pid);
            (tracer, false)
        }
    };

    let pusher = push::start(Source::Ptrace(counts), &socket, Duration::from_millis(cli.interval), !cli.no_idle_sched)?;
    let _ = sys::mask_signals(&unblock, false);

    let code = trace(tracer, attached);
    pusher.finish();
    Ok(code)
}

/// Who counts.
enum Choice {
    /// This process's own eBPF engine.
    Bpf(Box<bpf::Engine>),
    /// The node service's, on this socket.
    Service(std::path::PathBuf),
    Ptrace,
}

/// The engine `--engine` asks for: this process's eBPF engine, else the
/// node service's, else (with auto) ptrace.
fn choose_engine(cli: &Cli, only: Option<&[Slot]>) -> Result<Choice, Failure> {
    if cli.engine == cli::Engine::Ptrace {
        if cli.max_threads.is_some() {
            return Err(usage("--max-threads sizes the eBPF engine's thread map: ptrace follows every thread".into()));
        }
        log::info!("engine: ptrace (--engine ptrace)");
        return Ok(Choice::Ptrace);
    }
    let why = match cli.engine {
        cli::Engine::Bpf => "--engine bpf",
        _ => "auto",
    };
    let local = match bpf::Engine::load(only, cli.max_threads.unwrap_or(bpf::MAX_THREADS)) {
        Ok(e) => {
            let reason = if why == "auto" { "auto: this process can load the eBPF engine" } else { why };
            log::info!("engine: bpf ({reason})");
            return Ok(Choice::Bpf(Box::new(e)));
        }
        Err(local) => local,
    };
    let service = service::socket_path(cli.service.as_deref());
    if service::reachable(&service) {
        log::info!("engine: bpf through the node service on {} ({why}: {local})", service.display());
        return Ok(Choice::Service(service));
    }
    let no_service = format!("{local}; no node service on {}", service.display());
    if cli.engine == cli::Engine::Bpf {
        return Err(fail(1, format!("--engine bpf: cannot count with eBPF: {no_service}")));
    }
    let threads =
        if cli.max_threads.is_some() { "; --max-threads does not apply: ptrace follows every thread" } else { "" };
    log::info!("engine: ptrace (auto: eBPF unavailable: {no_service}{threads})");
    Ok(Choice::Ptrace)
}

fn spawn_plan(
    command: &[OsString],
    env: &[OsString],
    seccomp: Option<Vec<sys::BpfInsn>>,
    unblock: Vec<i32>,
) -> Result<sys::SpawnPlan, Failure> {
    let prog = &command[0];
    // Resolved like `execvp`, but in the tracer, so the traced command makes
    // exactly one `execve` (as under strace).
    // A file that exists but cannot be executed is left to `execve`, which
    // names the reason (status 126, as a shell); a directory is named here
    // because `execve` only says "Permission denied".
    let path = client::find_program(prog, client::MustBe::Executable, Some(PATH_IF_UNSET))
        .or_else(|| client::find_program(prog, client::MustBe::File, Some(PATH_IF_UNSET)));
    let path = match path {
        Some(p) => p,
        None if prog.as_bytes().contains(&b'/') && Path::new(prog).is_dir() => {
            return Err(fail(126, format!("cannot execute {}: Is a directory", Path::new(prog).display())))
        }
        None => return Err(fail(127, format!("cannot find executable {}", Path::new(prog).display()))),
    };
    let cstr = |s: &[u8]| CString::new(s).map_err(|_| usage("arguments must not contain NUL bytes".into()));
    let argv = command.iter().map(|a| cstr(a.as_bytes())).collect::<Result<Vec<_>, _>>()?;
    let envp = command_env(env)
        .into_iter()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstr(&kv)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(sys::SpawnPlan { path: cstr(path.as_os_str().as_bytes())?, argv, envp, seccomp, unblock })
}

/// tau_strace's environment with the `-E VAR=VAL` / `-E VAR` edits applied.
fn command_env(edits: &[OsString]) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    for edit in edits {
        let bytes = edit.as_bytes();
        let (key, value) = match bytes.iter().position(|&b| b == b'=') {
            Some(i) => (OsStr::from_bytes(&bytes[..i]), Some(OsStr::from_bytes(&bytes[i + 1..]))),
            None => (OsStr::from_bytes(bytes), None),
        };
        env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            env.push((key.to_owned(), v.to_owned()));
        }
    }
    env
}

/// Forks the command stopped before its `execve`, seizes it, lets it go.
fn start_command(plan: &sys::SpawnPlan, options: u32) -> Result<Pid, Failure> {
    let pid = spawn_stopped(plan)?;
    if let Err(e) = sys::seize(pid, options) {
        let _ = sys::kill(pid, libc::SIGKILL);
        return Err(fail(1, format!("cannot trace the command: {e}")));
    }
    // The child is in a group-stop from its own SIGSTOP: end it. The
    // resulting stops are handled by the main loop like any other.
    let _ = sys::kill(pid, libc::SIGCONT);
    Ok(pid)
}

/// Forks the command, stopped by itself before its `execve`; fails with the
/// command's own status when it ended before that stop.
pub(crate) fn spawn_stopped(plan: &sys::SpawnPlan) -> Result<Pid, Failure> {
    let pid = sys::spawn_stopped(plan).map_err(|e| fail(1, format!("cannot fork: {e}")))?;
    let status = sys::wait_stopped(pid).map_err(|e| fail(1, format!("cannot wait for the command: {e}")))?;
    match Stop::decode(status) {
        Stop::Exited(c) => return Err(fail(c, "the command failed before it started".into())),
        Stop::Killed(s) => return Err(fail(128 + s, "the command was killed before it started".into())),
        _ => {}
    }
    Ok(pid)
}

pub(crate) fn task_ids(pid: Pid) -> io::Result<Vec<Pid>> {
    let mut tids = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        if let Some(t) = e?.file_name().to_str().and_then(|s| s.parse().ok()) {
            tids.push(t);
        }
    }
    Ok(tids)
}

/// Seizes every thread of `pid`, listing them again until no new one
/// appears (threads created meanwhile by a not-yet-seized thread).
fn attach(pid: Pid, tracer: &mut Tracer) -> Result<(), Failure> {
    let mut seized = HashSet::new();
    loop {
        let tids = task_ids(pid).map_err(|e| fail(1, format!("no process {pid}: {e}")))?;
        let new: Vec<Pid> = tids.into_iter().filter(|t| !seized.contains(t)).collect();
        if new.is_empty() {
            return Ok(());
        }
        for tid in new {
            match sys::seize(tid, OPTIONS) {
                Ok(()) => {
                    // PTRACE_SYSCALL needs a stop: ask for one.
                    let _ = sys::interrupt(tid);
                    tracer.add_thread(tid);
                }
                Err(e) if tid == pid => return Err(fail(1, format!("cannot attach to process {pid}: {e}"))),
                // A thread that exited in between.
                Err(_) => {}
            }
            seized.insert(tid);
        }
    }
}

fn monotonic_ns(origin: Instant) -> u64 {
    origin.elapsed().as_nanos() as u64
}

/// Main loop: waits for stops until every tracee is gone (or, attached, a
/// signal asks to detach). Returns the exit code for `tau_strace`.
fn trace(mut tracer: Tracer, attached: bool) -> i32 {
    let origin = Instant::now();
    let mut os = Os;
    loop {
        for received in sys::take_signals() {
            if attached {
                log::info!("signal {}: detaching", received.sig);
                detach_all(&mut tracer);
                return 0;
            }
            // Run mode: the command gets the signal as it would without
            // us. A terminal's Ctrl+C or hangup (sent by the kernel to the
            // whole foreground group) already reached it; a signal sent to
            // tau_strace alone did not.
            if !received.from_kernel {
                let _ = sys::kill(tracer.main(), received.sig);
            }
        }
        let (pid, status) = match sys::wait_any() {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let stop = Stop::decode(status);
        let now = if matches!(stop, Stop::Syscall | Stop::Seccomp) { monotonic_ns(origin) } else { 0 };
        // A resume that fails means the thread died meanwhile (SIGKILL);
        // its death is reported by a later wait.
        let _ = match tracer.on_stop(pid, stop, now, &mut os) {
            Action::Syscall(sig) => sys::resume_syscall(pid, sig),
            Action::Cont(sig) => sys::resume_cont(pid, sig),
            Action::Listen => sys::listen(pid),
            Action::Gone => Ok(()),
        };
    }
    // Attached, as `strace -p` (and the eBPF engine): 0, however the
    // process ended; it is not ours.
    match tracer.outcome() {
        _ if attached => 0,
        Some(o) => o.code(),
        None => Outcome::Exited(1).code(),
    }
}

/// Interrupts every tracee and detaches from each at its next stop, so
/// that all keep running (or stay stopped if a group-stop is in effect)
/// with no signal lost.
fn detach_all(tracer: &mut Tracer) {
    let mut pending: HashSet<Pid> = tracer.threads().into_iter().collect();
    for &tid in &pending {
        let _ = sys::interrupt(tid);
    }
    // Polled, not blocking: a thread that vanished without a report (it
    // should not happen) must not keep the target from being left alone.
    // Whatever remains at the deadline is detached by the kernel when
    // tau_strace exits.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pending.is_empty() && Instant::now() < deadline {
        let (pid, status) = match sys::wait_any_nohang() {
            Ok(Some(r)) => r,
            Ok(None) => {
                pending.retain(|t| Path::new(&format!("/proc/{t}")).exists());
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let stop = Stop::decode(status);
        pending.remove(&pid);
        match stop {
            Stop::Exited(_) | Stop::Killed(_) => continue,
            Stop::NewChild => {
                if let Ok(child) = sys::event_msg(pid) {
                    pending.insert(child as Pid);
                }
            }
            _ => {}
        }
        let _ = sys::detach(pid, tracer::detach_signal(stop));
    }
    log::info!("detached");
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::Parser;

    use super::*;

    #[test]
    fn command_line_is_consistent_and_keeps_the_launcher_forms() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        // The forms tau_metric_proxy_run uses.
        let run = Cli::try_parse_from(["tau_strace", "-u", "/s", "--", "prog", "-x", "--y"]).expect("run form");
        assert_eq!(run.socket, Some(PathBuf::from("/s")));
        assert_eq!(run.command, ["prog", "-x", "--y"]);
        assert_eq!(run.pid, None);
        assert_eq!(run.interval, 100);
        let attach = Cli::try_parse_from(["tau_strace", "-u", "/s", "-p", "42"]).expect("attach form");
        assert_eq!(attach.pid, Some(42));
        assert!(attach.command.is_empty());
        assert!(Cli::try_parse_from(["tau_strace", "-p", "42", "--", "prog"]).is_err());
        assert!(Cli::try_parse_from(["tau_strace"]).is_err());
        let only = Cli::try_parse_from(["tau_strace", "--only", "read,write", "--", "p"]).expect("only");
        assert_eq!(only.only, ["read", "write"]);
    }

    #[test]
    fn env_edits_set_and_remove_variables() {
        std::env::set_var("TAU_STRACE_TEST_KEEP", "1");
        std::env::set_var("TAU_STRACE_TEST_DROP", "1");
        let env = command_env(&["TAU_STRACE_TEST_DROP".into(), "TAU_STRACE_TEST_NEW=a=b".into()]);
        let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert_eq!(get("TAU_STRACE_TEST_KEEP"), Some("1".into()));
        assert_eq!(get("TAU_STRACE_TEST_DROP"), None);
        assert_eq!(get("TAU_STRACE_TEST_NEW"), Some("a=b".into()));
    }
}
