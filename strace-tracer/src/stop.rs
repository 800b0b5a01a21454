//! Decoding a `waitpid` status of a seized tracee into what happened to it.

/// Why a tracee reported to the tracer (see ptrace(2), "Stopped states").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Syscall-enter or syscall-exit stop (`SIGTRAP | 0x80`).
    Syscall,
    /// A seccomp filter returned `SECCOMP_RET_TRACE`: a syscall entry.
    Seccomp,
    /// `clone`, `fork` or `vfork` created a new tracee.
    NewChild,
    /// `execve` succeeded; the event message holds the former thread id.
    Exec,
    /// Group-stop of a seized tracee (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU).
    Group(i32),
    /// `PTRACE_EVENT_STOP` that is not a group-stop: `PTRACE_INTERRUPT`,
    /// the first stop of a new child, or the wake-up after `PTRACE_LISTEN`.
    Trap,
    /// Signal-delivery stop: the signal is pending for the tracee.
    Signal(i32),
    /// Another ptrace event (not requested; resumed as is).
    OtherEvent(i32),
    /// The thread exited with this code.
    Exited(i32),
    /// The thread was killed by this signal.
    Killed(i32),
}

const PTRACE_EVENT_FORK: i32 = 1;
const PTRACE_EVENT_VFORK: i32 = 2;
const PTRACE_EVENT_CLONE: i32 = 3;
const PTRACE_EVENT_EXEC: i32 = 4;
const PTRACE_EVENT_SECCOMP: i32 = 7;
const PTRACE_EVENT_STOP: i32 = 128;

const SIGTRAP: i32 = 5;
const SIGSTOP: i32 = 19;
const SIGTSTP: i32 = 20;
const SIGTTIN: i32 = 21;
const SIGTTOU: i32 = 22;

impl Stop {
    pub(crate) fn decode(status: i32) -> Stop {
        let low = status & 0x7f;
        if low == 0 {
            return Stop::Exited((status >> 8) & 0xff);
        }
        if (status & 0xff) != 0x7f {
            return Stop::Killed(low);
        }
        let sig = (status >> 8) & 0xff;
        let event = (status >> 16) & 0xffff;
        if sig == SIGTRAP | 0x80 {
            return Stop::Syscall;
        }
        match event {
            0 => Stop::Signal(sig),
            PTRACE_EVENT_FORK | PTRACE_EVENT_VFORK | PTRACE_EVENT_CLONE => Stop::NewChild,
            PTRACE_EVENT_EXEC => Stop::Exec,
            PTRACE_EVENT_SECCOMP => Stop::Seccomp,
            PTRACE_EVENT_STOP => match sig {
                SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU => Stop::Group(sig),
                _ => Stop::Trap,
            },
            e => Stop::OtherEvent(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped(sig: i32, event: i32) -> i32 {
        (event << 16) | (sig << 8) | 0x7f
    }

    #[test]
    fn decodes_deaths() {
        assert_eq!(Stop::decode(3 << 8), Stop::Exited(3));
        assert_eq!(Stop::decode(0), Stop::Exited(0));
        assert_eq!(Stop::decode(9), Stop::Killed(9));
        // Core dump flag set.
        assert_eq!(Stop::decode(0x80 | 11), Stop::Killed(11));
    }

    #[test]
    fn decodes_stops() {
        assert_eq!(Stop::decode(stopped(SIGTRAP | 0x80, 0)), Stop::Syscall);
        assert_eq!(Stop::decode(stopped(SIGTRAP, 1)), Stop::NewChild);
        assert_eq!(Stop::decode(stopped(SIGTRAP, 2)), Stop::NewChild);
        assert_eq!(Stop::decode(stopped(SIGTRAP, 3)), Stop::NewChild);
        assert_eq!(Stop::decode(stopped(SIGTRAP, 4)), Stop::Exec);
        assert_eq!(Stop::decode(stopped(SIGTRAP, 7)), Stop::Seccomp);
        assert_eq!(Stop::decode(stopped(SIGTRAP, 6)), Stop::OtherEvent(6));
        assert_eq!(Stop::decode(stopped(SIGTRAP, 128)), Stop::Trap);
        assert_eq!(Stop::decode(stopped(SIGSTOP, 128)), Stop::Group(SIGSTOP));
        assert_eq!(Stop::decode(stopped(SIGTSTP, 128)), Stop::Group(SIGTSTP));
        assert_eq!(Stop::decode(stopped(SIGSTOP, 0)), Stop::Signal(SIGSTOP));
        assert_eq!(Stop::decode(stopped(10, 0)), Stop::Signal(10));
        // A real SIGTRAP (not a syscall stop) is a signal to deliver.
        assert_eq!(Stop::decode(stopped(SIGTRAP, 0)), Stop::Signal(SIGTRAP));
    }
}
