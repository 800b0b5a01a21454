//! Running a command, or watching a running process, with the eBPF engine:
//! the kernel counts, so the program is never stopped. `tau_strace` marks
//! the command (or every thread of the process) as traced, itself or through
//! the node service, then only waits: for the command's end and its
//! descendants' (as `strace -f` does), or, on a process it attached to, for
//! a signal or the process's end.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bpf;
use crate::service::{Remote, Totals};
use crate::stop::Stop;
use crate::sys::{self, Pid};
use crate::{fail, spawn_stopped, task_ids, Failure};

/// How often the end of the last traced thread is looked for.
const POLL: Duration = Duration::from_millis(5);

/// Who marks the threads to count.
pub(crate) trait Marker {
    /// Counts process `pid` from now on: its main thread only (a command
    /// stopped before its execve) or, with `whole`, all its threads.
    fn mark(&mut self, pid: Pid, whole: bool) -> Result<(), String>;
    /// Whether a marked thread is still alive.
    fn any_traced(&self) -> bool;
}

impl Marker for bpf::Engine {
    fn mark(&mut self, pid: Pid, whole: bool) -> Result<(), String> {
        if whole {
            mark_process(self, pid).map(drop)
        } else {
            self.trace(pid as u32)
        }
    }
    fn any_traced(&self) -> bool {
        bpf::Engine::any_traced(self)
    }
}

/// The node service marks and counts; the totals arrive in `totals`.
pub(crate) struct ViaService {
    pub(crate) socket: PathBuf,
    pub(crate) only: Vec<String>,
    pub(crate) max_threads: u32,
    pub(crate) totals: Arc<Mutex<Totals>>,
    pub(crate) remote: Option<Remote>,
}

impl Marker for ViaService {
    fn mark(&mut self, pid: Pid, _whole: bool) -> Result<(), String> {
        let remote = Remote::request(&self.socket, pid, &self.only, self.max_threads, self.totals.clone())?;
        self.remote = Some(remote);
        Ok(())
    }
    fn any_traced(&self) -> bool {
        self.remote.as_ref().is_some_and(Remote::any_traced)
    }
}

/// Marks every thread of `pid`, listing them again until no new one
/// appears (created meanwhile by a thread not yet marked). Returns how many.
pub(crate) fn mark_process(engine: &mut bpf::Engine, pid: Pid) -> Result<usize, String> {
    let mut marked = std::collections::HashSet::new();
    loop {
        let tids = task_ids(pid).map_err(|e| format!("no process {pid}: {e}"))?;
        let new: Vec<Pid> = tids.into_iter().filter(|t| !marked.contains(t)).collect();
        if new.is_empty() {
            return Ok(marked.len());
        }
        for tid in new {
            engine.trace(tid as u32)?;
            // A thread that ended before it was marked would stay listed
            // for ever: looked for once marked.
            if !Path::new(&format!("/proc/{pid}/task/{tid}")).exists() {
                engine.untrace(tid as u32);
            }
            marked.insert(tid);
        }
    }
}

/// Runs the command of `plan`, counted by `marker`; returns its exit code.
pub(crate) fn run(marker: &mut dyn Marker, plan: &sys::SpawnPlan) -> Result<i32, Failure> {
    // The child stops itself before its execve (outside any call, its
    // kill returned): marked then, it is counted from the execve on.
    let pid = spawn_stopped(plan)?;
    if let Err(e) = marker.mark(pid, false) {
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
    while marker.any_traced() && sys::take_signals().is_empty() {
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
pub(crate) fn attach(marker: &mut dyn Marker, pid: Pid) -> Result<i32, Failure> {
    task_ids(pid).map_err(|e| fail(1, format!("no process {pid}: {e}")))?;
    marker.mark(pid, true).map_err(|e| fail(1, e))?;
    log::info!("attached to process {pid}");
    loop {
        if let Some(received) = sys::take_signals().first() {
            log::info!("signal {}: detaching", received.sig);
            break;
        }
        if !marker.any_traced() {
            break;
        }
        std::thread::sleep(POLL);
    }
    log::info!("detached");
    Ok(0)
}
