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
use crate::syscall::{classify, mmsghdr_layout, Abi, Bytes, Catalog, Info, Slot};

/// Messages of one `sendmmsg`/`recvmmsg` whose lengths are read.
const MAX_MESSAGES: u64 = 1024;

/// The queries the state machine makes about a stopped thread.
pub(crate) trait Inspect {
    fn syscall_info(&mut self, pid: Pid) -> io::Result<Info>;
    fn event_msg(&mut self, pid: Pid) -> io::Result<u64>;
    /// `len` bytes of the thread's memory at `addr`.
    fn read_memory(&mut self, pid: Pid, addr: u64, len: usize) -> io::Result<Vec<u8>>;
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
    /// For `sendmmsg`/`recvmmsg`: the message array and its ABI.
    messages: Option<(u64, Abi)>,
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
        mut catalog: Catalog,
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
        catalog.limit_unknown(crate::counts::EXTRA_SLOTS);
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
                        if let Ok(Info::Entry { arch, nr, args }) = os.syscall_info(pid) {
                            self.enter(pid, arch, nr, args, now_ns);
                        }
                    }
                }
                self.resume(pid, 0)
            }
            Stop::Seccomp => {
                if let Ok(Info::Entry { arch, nr, args }) = os.syscall_info(pid) {
                    self.enter(pid, arch, nr, args, now_ns);
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

    fn enter(&mut self, pid: Pid, arch: u32, nr: u64, args: [u64; 6], now_ns: u64) {
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
        let messages = match (self.catalog.bytes_rule(slot), classify(arch, nr)) {
            (Bytes::Messages, Some((abi, _))) => Some((args[1], abi)),
            _ => None,
        };
        if let Some(t) = self.threads.get_mut(&pid) {
            t.entry = Some(Entry { slot, at_ns: now_ns, messages });
        }
    }

    fn count_exit(&mut self, pid: Pid, entry: Entry, now_ns: u64, os: &mut dyn Inspect) {
        let (rval, failed) = match os.syscall_info(pid) {
            Ok(Info::Exit { rval, is_error }) => (rval, is_error),
            _ => (0, false),
        };
        let bytes = match self.catalog.bytes_rule(entry.slot) {
            _ if failed || rval <= 0 => 0,
            Bytes::None => 0,
            Bytes::Return => rval as u64,
            Bytes::Messages => match entry.messages {
                Some((addr, abi)) => message_bytes(os, pid, addr, abi, rval as u64),
                None => 0,
            },
        };
        self.counts.record(entry.slot, bytes, now_ns.saturating_sub(entry.at_ns), failed);
    }
}

/// The sum of `msg_len` over the first `count` elements of a tracee's
/// `struct mmsghdr` array (0 if it cannot be read).
fn message_bytes(os: &mut dyn Inspect, pid: Pid, addr: u64, abi: Abi, count: u64) -> u64 {
    let (size, offset) = mmsghdr_layout(abi);
    let count = count.min(MAX_MESSAGES) as usize;
    let Ok(mem) = os.read_memory(pid, addr, size * count) else {
        return 0;
    };
    mem.chunks_exact(size)
        .map(|m| u64::from(u32::from_ne_bytes(m[offset..offset + 4].try_into().expect("4 bytes"))))
        .sum()
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
        memory: VecDeque<(u64, Vec<u8>)>,
    }

    impl Inspect for Script {
        fn syscall_info(&mut self, _pid: Pid) -> io::Result<Info> {
            Ok(self.infos.pop_front().expect("scripted syscall info"))
        }
        fn event_msg(&mut self, _pid: Pid) -> io::Result<u64> {
            Ok(self.msgs.pop_front().expect("scripted event message"))
        }
        fn read_memory(&mut self, _pid: Pid, addr: u64, len: usize) -> io::Result<Vec<u8>> {
            let (at, mem) = self.memory.pop_front().expect("scripted memory");
            assert_eq!((at, len), (addr, mem.len()), "address and length read");
            Ok(mem)
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

    fn errors(c: &Counts, name: &str) -> u64 {
        c.snapshot().into_iter().find(|r| r.name == name).map_or(0, |r| r.errors)
    }

    fn entry(arch: u32, nr: u64) -> Info {
        Info::Entry { arch, nr, args: [0; 6] }
    }

    #[test]
    fn counts_a_call_with_bytes_and_time() {
        let (mut t, c) = setup(false, None);
        let mut s = Script::default();
        s.infos.push_back(entry(AUDIT_ARCH_X86_64, 0));
        s.infos.push_back(Info::Exit { rval: 42, is_error: false });
        assert_eq!(t.on_stop(100, Stop::Syscall, 1_000, &mut s), Action::Syscall(0));
        assert_eq!(t.on_stop(100, Stop::Syscall, 1_700, &mut s), Action::Syscall(0));
        assert_eq!(totals(&c, "read"), (1, 42, 700));
        // A failed read counts as a call without bytes.
        s.infos.push_back(entry(AUDIT_ARCH_X86_64, 0));
        s.infos.push_back(Info::Exit { rval: -11, is_error: true });
        t.on_stop(100, Stop::Syscall, 2_000, &mut s);
        t.on_stop(100, Stop::Syscall, 2_100, &mut s);
        assert_eq!(totals(&c, "read"), (2, 42, 800));
        assert_eq!(errors(&c, "read"), 1);
    }

    #[test]
    fn message_calls_count_the_length_of_each_message_sent() {
        let (mut t, c) = setup(false, None);
        let mut s = Script::default();
        // sendmmsg(fd, 0x1000, 8, 0) on x86-64 sending 3 messages.
        s.infos.push_back(Info::Entry { arch: AUDIT_ARCH_X86_64, nr: 307, args: [3, 0x1000, 8, 0, 0, 0] });
        s.infos.push_back(Info::Exit { rval: 3, is_error: false });
        let mut mem = vec![0u8; 3 * 64];
        for (i, len) in [10u32, 20, 30].into_iter().enumerate() {
            mem[i * 64 + 56..i * 64 + 60].copy_from_slice(&len.to_ne_bytes());
        }
        s.memory.push_back((0x1000, mem));
        t.on_stop(100, Stop::Syscall, 0, &mut s);
        t.on_stop(100, Stop::Syscall, 1, &mut s);
        assert_eq!(totals(&c, "sendmmsg"), (1, 60, 1));
        // recvmmsg from i386 (337): 32-byte elements, msg_len at 28.
        s.infos.push_back(Info::Entry { arch: AUDIT_ARCH_I386, nr: 337, args: [3, 0x2000, 2, 0, 0, 0] });
        s.infos.push_back(Info::Exit { rval: 2, is_error: false });
        let mut mem = vec![0u8; 2 * 32];
        mem[28..32].copy_from_slice(&5u32.to_ne_bytes());
        mem[60..64].copy_from_slice(&7u32.to_ne_bytes());
        s.memory.push_back((0x2000, mem));
        t.on_stop(100, Stop::Syscall, 0, &mut s);
        t.on_stop(100, Stop::Syscall, 1, &mut s);
        assert_eq!(totals(&c, "recvmmsg"), (1, 12, 1));
        // A failed call reads nothing and counts an error.
        s.infos.push_back(Info::Entry { arch: AUDIT_ARCH_X86_64, nr: 307, args: [3, 0x1000, 8, 0, 0, 0] });
        s.infos.push_back(Info::Exit { rval: -9, is_error: true });
        t.on_stop(100, Stop::Syscall, 0, &mut s);
        t.on_stop(100, Stop::Syscall, 1, &mut s);
        assert_eq!(totals(&c, "sendmmsg"), (2, 60, 2));
        assert_eq!(errors(&c, "sendmmsg"), 1);
    }

    #[test]
    fn errors_of_every_call_are_counted_and_32_bit_calls_share_names() {
        let (mut t, c) = setup(false, None);
        let mut s = Script::default();
        s.infos.push_back(entry(AUDIT_ARCH_I386, 20));
        s.infos.push_back(Info::Exit { rval: 7, is_error: false });
        t.on_stop(100, Stop::Syscall, 0, &mut s);
        t.on_stop(100, Stop::Syscall, 5, &mut s);
        s.infos.push_back(entry(AUDIT_ARCH_X86_64, 39));
        s.infos.push_back(Info::Exit { rval: 7, is_error: false });
        t.on_stop(100, Stop::Syscall, 10, &mut s);
        t.on_stop(100, Stop::Syscall, 12, &mut s);
        assert_eq!(totals(&c, "getpid"), (2, 0, 7));
        assert_eq!(errors(&c, "getpid"), 0);
        // A failing non-I/O call (close(-1): EBADF).
        s.infos.push_back(entry(AUDIT_ARCH_X86_64, 3));
        s.infos.push_back(Info::Exit { rval: -9, is_error: true });
        t.on_stop(100, Stop::Syscall, 20, &mut s);
        t.on_stop(100, Stop::Syscall, 21, &mut s);
        assert_eq!((totals(&c, "close"), errors(&c, "close")), ((1, 0, 1), 1));
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
        s.infos.push_back(entry(AUDIT_ARCH_X86_64, 231));
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
        s.infos.push_back(entry(AUDIT_ARCH_X86_64, 59));
        t.on_stop(101, Stop::Syscall, 10, &mut s);
        t.on_stop(100, Stop::Killed(9), 0, &mut s);
        assert_eq!(t.outcome(), Some(Outcome::Killed(9)));
        s.msgs.push_back(101);
        t.on_stop(100, Stop::Exec, 20, &mut s);
        s.infos.push_back(Info::Exit { rval: 0, is_error: false });
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
        s.infos.push_back(entry(AUDIT_ARCH_X86_64, 1));
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
        s.infos.push_back(entry(AUDIT_ARCH_X86_64, 0));
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
        s.infos.push_back(entry(AUDIT_ARCH_X86_64, 999));
        s.infos.push_back(Info::Exit { rval: -38, is_error: true });
        t.on_stop(100, Stop::Syscall, 0, &mut s);
        t.on_stop(100, Stop::Syscall, 4, &mut s);
        assert_eq!(totals(&c, "syscall_999"), (1, 0, 4));
        assert_eq!(errors(&c, "syscall_999"), 1);
    }

    #[test]
    fn detach_keeps_pending_signals() {
        assert_eq!(detach_signal(Stop::Signal(15)), 15);
        assert_eq!(detach_signal(Stop::Group(19)), 0);
        assert_eq!(detach_signal(Stop::Syscall), 0);
    }
}
