//! Running a command, or watching a running process, with the eBPF engine:
//! the kernel counts, so the program is never stopped. `tau_strace` marks
//! the command (or every thread of the process) as traced, then only waits:
//! for the command's end and its descendants' (as `strace -f` does), or, on
//! a process it attached to, for a signal or the process's end.

use std::io;
use std::time::Duration;

use crate::bpf;
use crate::stop::Stop;
use crate::sys::{self, Pid};
use crate::{fail, task_ids, Failure};

/// How often the end of the last traced thread is looked for.
const POLL: Duration = Duration::from_millis(5);

/// Runs the command of `plan` under `engine` and returns its exit code.
pub(crate) fn run(engine: &mut bpf::Engine, plan: &sys::SpawnPlan) -> Result<i32, Failure> {
    // The child stops itself before its execve (outside any call, its
    // kill returned): marked then, it is counted from the execve on.
    let pid = sys::spawn_stopped(plan).map_err(|e| fail(1, format!("cannot fork: {e}")))?;
    let status = sys::wait_stopped(pid).map_err(|e| fail(1, format!("cannot wait for the command: {e}")))?;
    match Stop::decode(status) {
        Stop::Exited(c) => return Err(fail(c, "the command failed before it started".into())),
        Stop::Killed(s) => return Err(fail(128 + s, "the command was killed before it started".into())),
        _ => {}
    }
    if let Err(e) = engine.trace(pid as u32) {
        let _ = sys::kill(pid, libc::SIGKILL);
        let _ = sys::wait_pid(pid);
        return Err(fail(1, e));
    }
    let _ = sys::kill(pid, libc::SIGCONT);
    let code = loop {
        relay_signals(pid);
        match sys::wait_pid(pid) {
            Ok(status) => match Stop::decode(status) {
                Stop::Exited(c) => break c,
                Stop::Killed(s) => break 128 + s,
                _ => continue,
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(1, format!("cannot wait for the command: {e}"))),
        }
    };
    // Like strace -f: until every descendant is gone (a signal ends it).
    while engine.any_traced() && sys::take_signals().is_empty() {
        std::thread::sleep(POLL);
    }
    Ok(code)
}

/// The command gets the signals sent to `tau_strace` alone, as without
/// tracing; a terminal's (sent by the kernel to the whole foreground group)
/// already reached it.
fn relay_signals(pid: Pid) {
    for received in sys::take_signals() {
        if !received.from_kernel {
            let _ = sys::kill(pid, received.sig);
        }
    }
}

/// Counts every thread of `pid` and what they create, until a signal
/// arrives or the process is gone; the process is never touched.
pub(crate) fn attach(engine: &mut bpf::Engine, pid: Pid) -> Result<i32, Failure> {
    let mut marked = std::collections::HashSet::new();
    // Listed again until no new thread appears (created meanwhile by a
    // thread not yet marked).
    loop {
        let tids = task_ids(pid).map_err(|e| fail(1, format!("no process {pid}: {e}")))?;
        let new: Vec<Pid> = tids.into_iter().filter(|t| !marked.contains(t)).collect();
        if new.is_empty() {
            break;
        }
        for tid in new {
            engine.trace(tid as u32).map_err(|e| fail(1, e))?;
            // A thread that ended before it was marked would stay listed
            // for ever: looked for once marked.
            if !std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists() {
                engine.untrace(tid as u32);
            }
            marked.insert(tid);
        }
    }
    log::info!("attached to process {pid} ({} threads)", marked.len());
    loop {
        if let Some(received) = sys::take_signals().first() {
            log::info!("signal {}: detaching", received.sig);
            break;
        }
        if !engine.any_traced() {
            break;
        }
        std::thread::sleep(POLL);
    }
    log::info!("detached");
    Ok(0)
}
