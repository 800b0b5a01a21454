//! The tracing state machine: given one decoded stop of one thread, update
//! the counters and decide how to resume it. No system call is made here
//! except through the [`Inspect`] trait, so the logic is unit-tested with
//! scripted stops.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use crate::counts::Counts;
use crate::stop::Stop;
use crate::sys::Pid;
use crate::syscall::{Catalog, Info, Slot};

/// The two queries the state machine makes about a stopped thread.
pub(crate) trait Inspect {
    fn syscall_info(&mut self, pid: Pid) -> io::Result<Info>;
    fn event_msg(&mut self, pid: Pid) -> io::Result<u64>;
}

/// How to restart a stopped thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// `PTRACE_SYSCALL`, delivering this signal (0: none).
    Syscall(i32),
    /// `PTRACE_CONT` (seccomp mode, outside a traced call), with a signal.
    Cont(i32),
    /// `PTRACE_LISTEN`: stay in group-stop, report `SIGCONT`.
    Listen,
    /// Nothing to do: the thread is gone.
    Gone,
}

/// How the traced command ended, as a shell would report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Exited(i32),
    Killed(i32),
}

impl Outcome {
    /// Exit code for `tau_strace` itself: the code, or 128+N for signal N.
    pub(crate) fn code(self) -> i32 {
        match self {
            Outcome::Exited(c) => c,
            Outcome::Killed(s) => 128 + s,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    slot: Slot,
    at_ns: u64,
}

#[derive(Debug, Default)]
struct Thread {
    /// Set between a syscall entry and its exit.
    entry: Option<Entry>,
}

#[derive(Debug)]
pub(crate) struct Tracer {
    catalog: Catalog,
    counts: Arc<Counts>,
    threads: HashMap<Pid, Thread>,
    /// Tracees run with `PTRACE_CONT` outside the calls a seccomp filter
    /// selected.
    seccomp: bool,
    /// When set, only these slots are counted.
    only: Option<Vec<bool>>,
    main: Pid,
    outcome: Option<Outcome>,
}

impl Tracer {
    pub(crate) fn new(
        catalog: Catalog,
        counts: Arc<Counts>,
        main: Pid,
        seccomp: bool,
        only: Option<&[Slot]>,
    ) -> Tracer {
        let only = only.map(|slots| {
            let mut v = vec![false; catalog.len()];
            for &s in slots {
                v[s as usize] = true;
            }
            v
        });
        counts.publish_names(&catalog);
        Tracer { catalog, counts, threads: HashMap::new(), seccomp, only, main, outcome: None }
    }

    /// Registers a thread being traced (attached or announced by an event).
    pub(crate) fn add_thread(&mut self, pid: Pid) {
        self.threads.entry(pid).or_default();
    }

    /// Threads currently known to be traced.
    pub(crate) fn threads(&self) -> Vec<Pid> {
        self.threads.keys().copied().collect()
    }

    /// The traced command (or attached process).
    pub(crate) fn main(&self) -> Pid {
        self.main
    }

    pub(crate) fn outcome(&self) -> Option<Outcome> {
        self.outcome
    }

    /// `now_ns` is a monotonic time stamp, only read for syscall stops.
    pub(crate) fn on_stop(&mut self, pid: Pid, stop: Stop, now_ns: u64, os: &mut dyn Inspect) -> Action {
        match stop {
            Stop::Syscall => {
                let pending = self.threads.entry(pid).or_default().entry.take();
                match pending {
                    Some(entry) => self.count_exit(pid, entry, now_ns, os),
                    None => {
                        // Normally an entry; the exit of a call that was in
                        // progress when we attached, or the return from
                        // clone in a new child, is recognised and skipped.
                        if let Ok(Info::Entry { arch, nr }) = os.syscall_info(pid) {
                            self.enter(pid, arch, nr, now_ns);
                        }
                    }
                }
                self.resume(pid, 0)
            }
            Stop::Seccomp => {
                if let Ok(Info::Entry { arch, nr }) = os.syscall_info(pid) {
                    self.enter(pid, arch, nr, now_ns);
                }
                self.resume(pid, 0)
            }
            Stop::NewChild => {
                if let Ok(child) = os.event_msg(pid) {
                    self.add_thread(child as Pid);
                }
                self.resume(pid, 0)
            }
            Stop::Exec => {
                // A non-leader thread that execs takes over the leader's
                // id; its pending execve entry moves with it.
                if let Ok(former) = os.event_msg(pid) {
                    let former = former as Pid;
                    if former != pid {
                        let t = self.threads.remove(&former).unwrap_or_default();
                        self.threads.insert(pid, t);
                    }
                }
                self.resume(pid, 0)
            }
            Stop::Group(_) => {
                self.add_thread(pid);
                Action::Listen
            }
            Stop::Trap | Stop::OtherEvent(_) => {
                self.add_thread(pid);
                self.resume(pid, 0)
            }
            Stop::Signal(sig) => {
                self.add_thread(pid);
                self.resume(pid, sig)
            }
            Stop::Exited(code) => self.gone(pid, Outcome::Exited(code)),
            Stop::Killed(sig) => self.gone(pid, Outcome::Killed(sig)),
        }
    }

    fn gone(&mut self, pid: Pid, how: Outcome) -> Action {
        // A call still pending never completed (exit_group, a thread killed
        // while blocked): like strace, it is not counted.
        self.threads.remove(&pid);
        if pid == self.main {
            self.outcome = Some(how);
        }
        Action::Gone
    }

    fn resume(&self, pid: Pid, sig: i32) -> Action {
        let in_call = self.threads.get(&pid).is_some_and(|t| t.entry.is_some());
        if self.seccomp && !in_call {
            Action::Cont(sig)
        } else {
            Action::Syscall(sig)
        }
    }

    fn enter(&mut self, pid: Pid, arch: u32, nr: u64, now_ns: u64) {
        let known = self.catalog.len();
        let slot = self.catalog.slot(arch, nr);
        if self.catalog.len() != known {
            self.counts.publish_names(&self.catalog);
        }
        if let Some(only) = &self.only {
            if !only.get(slot as usize).copied().unwrap_or(false) {
                return;
            }
        }
        if let Some(t) = self.threads.get_mut(&pid) {
            t.entry = Some(Entry { slot, at_ns: now_ns });
        }
    }

    fn count_exit(&mut self, pid: Pid, entry: Entry, now_ns: u64, os: &mut dyn Inspect) {
        let mut bytes = 0;
        if self.catalog.is_io(entry.slot) {
            if let Ok(Info::Exit { rval, is_error: false }) = os.syscall_info(pid) {
                bytes = rval.max(0) as u64;
            }
        }
        self.counts.record(entry.slot, bytes, now_ns.saturating_sub(entry.at_ns));
    }
}

/// The signal to hand back when detaching from a thread in this stop:
/// a pending signal must not be lost.
pub(crate) fn detach_signal(stop: Stop) -> i32 {
    match stop {
        Stop::Signal(sig) => sig,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{AUDIT_ARCH_I386, AUDIT_ARCH_X86_64};
    use std::collections::VecDeque;

    /// Answers queries from a script, in order.
    #[derive(Default)]
    struct Script {
        infos: VecDeque<Info>,
        msgs: VecDeque<u64>,
    }

    impl Inspect for Script {
        fn syscall_info(&mut self, _pid: Pid) -> io::Result<Info> {
            Ok(self.infos.pop_front().expect("scripted syscall info"))
        }
        fn event_msg(&mut self, _pid: Pid) -> io::Result<u64> {
            Ok(self.msgs.pop_front().expect("scripted event message"))
        }
    }

    fn setup(seccomp: bool, only: Option<&[&str]>) -> (Tracer, Arc<Counts>) {
        let catalog = Catalog::new();
        let counts = Arc::new(Counts::new(catalog.len()));
        let only: Option<Vec<Slot>> = only.map(|n| n.iter().map(|n| catalog.slot_of_name(n).unwrap()).collect());
        let mut t = Tracer::new(catalog, counts.clone(), 100, seccomp, only.as_deref());
        t.add_thread(100);
        (t, counts)
    }

    fn totals(c: &Counts, name: &str) -> (u64, u64, u64) {
        c.snapshot().into_iter().find(|r| r.name == name).map(|r| (r.hits, r.bytes, r.ns)).unwrap_or((0, 0, 0))
    }

    #[test]
    fn counts_a_call_with_bytes_and_time() {
        let (mut t, c) = setup(false, None);
        let mut s = Script::default();
        s.infos.push_back(Info::Entry { arch: AUDIT_ARCH_X86_64, nr: 0 });
        s.infos.push_back(Info::Exit { rval: 42, is_error: false });
        assert_eq!(t.on_stop(100, Stop::Syscall, 1_000, &mut s), Action::Syscall(0));
        assert_eq!(t.on_stop(100, Stop::Syscall, 1_700, &mut s), Action::Syscall(0));
        assert_eq!(totals(&c, "read"), (1, 42, 700));
        // A failed read counts as a call without bytes.
        s.infos.push_back(Info::Entry { arch: AUDIT_ARCH_X86_64, nr: 0 });
        s.infos.push_back(Info::Exit { rval: -11, is_error: true });
        t.on_stop(100, Stop::Syscall, 2_000, &mut s);
        t.on_stop(100, Stop::Syscall, 2_100, &mut s);
        assert_eq!(totals(&c, "read"), (2, 42, 800));
    }

    #[test]
    fn non_io_exit_needs_no_query_and_32_bit_calls_share_names() {
        let (mut t, c) = setup(false, None);
        let mut s = Script::default();
        s.infos.push_back(Info::Entry { arch: AUDIT_ARCH_I386, nr: 20 });
        t.on_stop(100, Stop::Syscall, 0, &mut s);
        // No info scripted for the exit: asking would panic.
        t.on_stop(100, Stop::Syscall, 5, &mut s);
        s.infos.push_back(Info::Entry { arch: AUDIT_ARCH_X86_64, nr: 39 });
        t.on_stop(100, Stop::Syscall, 10, &mut s);
        t.on_stop(100, Stop::Syscall, 12, &mut s);
        assert_eq!(totals(&c, "getpid"), (2, 0, 7));
    }

    #[test]
    fn unmatched_exit_and_unfinished_calls_are_not_counted() {
        let (mut t, c) = setup(false, None);
        let mut s = Script::default();
        // Exit of a call in progress at attach time.
        s.infos.push_back(Info::Exit { rval: 3, is_error: false });
        t.on_stop(100, Stop::Syscall, 0, &mut s);
        assert_eq!(totals(&c, "read"), (0, 0, 0));
        // exit_group never returns.
        s.infos.push_back(Info::Entry { arch: AUDIT_ARCH_X86_64, nr: 231 });
        t.on_stop(100, Stop::Syscall, 0, &mut s);
        assert_eq!(t.on_stop(100, Stop::Exited(3), 0, &mut s), Action::Gone);
        assert_eq!(totals(&c, "exit_group"), (0, 0, 0));
        assert_eq!(t.outcome(), Some(Outcome::Exited(3)));
        assert!(t.threads().is_empty());
    }

    #[test]
    fn signals_are_delivered_and_group_stops_listened() {
        let (mut t, _) = setup(false, None);
        let mut s = Script::default();
        assert_eq!(t.on_stop(100, Stop::Signal(10), 0, &mut s), Action::Syscall(10));
        assert_eq!(t.on_stop(100, Stop::Group(19), 0, &mut s), Action::Listen);
        assert_eq!(t.on_stop(100, Stop::Trap, 0, &mut s), Action::Syscall(0));
        assert_eq!(t.on_stop(100, Stop::Killed(9), 0, &mut s), Action::Gone);
        assert_eq!(t.outcome().map(Outcome::code), Some(137));
    }

    #[test]
    fn children_are_followed_and_exec_moves_the_pending_call() {
        let (mut t, c) = setup(false, None);
        let mut s = Script::default();
        s.msgs.push_back(101);
        t.on_stop(100, Stop::NewChild, 0, &mut s);
        let mut th = t.threads();
        th.sort();
        assert_eq!(th, vec![100, 101]);
        // Thread 101 enters execve; the exec is reported under the leader id.
        s.infos.push_back(Info::Entry { arch: AUDIT_ARCH_X86_64, nr: 59 });
        t.on_stop(101, Stop::Syscall, 10, &mut s);
        t.on_stop(100, Stop::Killed(9), 0, &mut s);
        assert_eq!(t.outcome(), Some(Outcome::Killed(9)));
        s.msgs.push_back(101);
        t.on_stop(100, Stop::Exec, 20, &mut s);
        t.on_stop(100, Stop::Syscall, 30, &mut s);
        assert_eq!(totals(&c, "execve"), (1, 0, 20));
        assert_eq!(t.threads(), vec![100]);
        assert_eq!(t.on_stop(100, Stop::Exited(0), 0, &mut s), Action::Gone);
        assert_eq!(t.outcome(), Some(Outcome::Exited(0)));
    }

    #[test]
    fn seccomp_mode_stops_only_inside_selected_calls() {
        let (mut t, c) = setup(true, Some(&["write"]));
        let mut s = Script::default();
        assert_eq!(t.on_stop(100, Stop::Trap, 0, &mut s), Action::Cont(0));
        s.infos.push_back(Info::Entry { arch: AUDIT_ARCH_X86_64, nr: 1 });
        assert_eq!(t.on_stop(100, Stop::Seccomp, 0, &mut s), Action::Syscall(0));
        // A signal arriving inside the call keeps syscall tracing on.
        assert_eq!(t.on_stop(100, Stop::Signal(14), 0, &mut s), Action::Syscall(14));
        s.infos.push_back(Info::Exit { rval: 5, is_error: false });
        assert_eq!(t.on_stop(100, Stop::Syscall, 9, &mut s), Action::Cont(0));
        assert_eq!(totals(&c, "write"), (1, 5, 9));
    }

    #[test]
    fn only_filter_without_seccomp_skips_other_calls() {
        let (mut t, c) = setup(false, Some(&["write"]));
        let mut s = Script::default();
        s.infos.push_back(Info::Entry { arch: AUDIT_ARCH_X86_64, nr: 0 });
        t.on_stop(100, Stop::Syscall, 0, &mut s);
        // The read's exit is then taken for an entry and checked.
        s.infos.push_back(Info::Exit { rval: 1, is_error: false });
        t.on_stop(100, Stop::Syscall, 1, &mut s);
        assert_eq!(totals(&c, "read"), (0, 0, 0));
    }

    #[test]
    fn unknown_numbers_get_published_names() {
        let (mut t, c) = setup(false, None);
        let mut s = Script::default();
        s.infos.push_back(Info::Entry { arch: AUDIT_ARCH_X86_64, nr: 999 });
        t.on_stop(100, Stop::Syscall, 0, &mut s);
        t.on_stop(100, Stop::Syscall, 4, &mut s);
        assert_eq!(totals(&c, "syscall_999"), (1, 0, 4));
    }

    #[test]
    fn detach_keeps_pending_signals() {
        assert_eq!(detach_signal(Stop::Signal(15)), 15);
        assert_eq!(detach_signal(Stop::Group(19)), 0);
        assert_eq!(detach_signal(Stop::Syscall), 0);
    }
}
