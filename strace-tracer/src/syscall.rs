//! Syscall identity: decoding `PTRACE_GET_SYSCALL_INFO`, naming a number in
//! its ABI (x86-64, i386, x32), the I/O families whose return value counts
//! bytes, and the seccomp filter that traces only chosen syscalls.

use std::collections::HashMap;

use crate::sys::{BpfInsn, SYSCALL_INFO_LEN};
use crate::tables::{I386, X32_FIRST, X32_HIGH, X86_64};

pub(crate) const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
pub(crate) const AUDIT_ARCH_I386: u32 = 0x4000_0003;
pub(crate) const X32_SYSCALL_BIT: u64 = 0x4000_0000;

/// The syscall table a call went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Abi {
    X86_64,
    I386,
    X32,
}

/// What `PTRACE_GET_SYSCALL_INFO` says about the current stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Info {
    /// At syscall entry (a syscall-enter stop or a seccomp stop).
    Entry { arch: u32, nr: u64, args: [u64; 6] },
    /// At syscall exit.
    Exit { rval: i64, is_error: bool },
    /// Not a syscall stop.
    None,
}

const OP_ENTRY: u8 = 1;
const OP_EXIT: u8 = 2;
const OP_SECCOMP: u8 = 3;

impl Info {
    /// Decodes `struct ptrace_syscall_info` (fields at fixed offsets).
    pub(crate) fn parse(buf: &[u8; SYSCALL_INFO_LEN]) -> Info {
        let u32_at = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_ne_bytes(buf[o..o + 8].try_into().expect("8 bytes"));
        match buf[0] {
            OP_ENTRY | OP_SECCOMP => {
                Info::Entry { arch: u32_at(4), nr: u64_at(24), args: std::array::from_fn(|i| u64_at(32 + 8 * i)) }
            }
            OP_EXIT => Info::Exit { rval: u64_at(24) as i64, is_error: buf[32] != 0 },
            _ => Info::None,
        }
    }
}

/// Splits an (audit arch, number) pair into its ABI and table index.
pub(crate) fn classify(arch: u32, nr: u64) -> Option<(Abi, u64)> {
    match arch {
        AUDIT_ARCH_X86_64 if nr & X32_SYSCALL_BIT != 0 => Some((Abi::X32, nr & !X32_SYSCALL_BIT)),
        AUDIT_ARCH_X86_64 => Some((Abi::X86_64, nr)),
        AUDIT_ARCH_I386 => Some((Abi::I386, nr)),
        _ => None,
    }
}

/// The name of a syscall number in its ABI, if the table has one.
pub(crate) fn name_of(abi: Abi, nr: u64) -> Option<&'static str> {
    let n = usize::try_from(nr).ok()?;
    let name = match abi {
        Abi::X86_64 => X86_64.get(n),
        Abi::I386 => I386.get(n),
        Abi::X32 if n >= X32_FIRST => X32_HIGH.get(n - X32_FIRST),
        Abi::X32 => X86_64.get(n),
    };
    name.copied().filter(|s| !s.is_empty())
}

/// Syscalls whose positive return value is a number of bytes moved.
const IO_FAMILY: &[&str] = &[
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "recvfrom",
    "sendto",
    "recvmsg",
    "sendmsg",
    "send",
    "recv",
    "sendfile",
    "sendfile64",
    "splice",
    "tee",
    "vmsplice",
    "copy_file_range",
    "process_vm_readv",
    "process_vm_writev",
];

/// Syscalls moving several messages: the return value is a number of
/// messages, the bytes are the `msg_len` of each `struct mmsghdr`.
const MESSAGES_FAMILY: &[&str] = &["sendmmsg", "recvmmsg", "recvmmsg_time64"];

/// How the bytes a call moved are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bytes {
    /// Not an I/O call.
    None,
    /// Its positive return value.
    Return,
    /// The sum of `msg_len` over the messages its return value counts.
    Messages,
}

pub(crate) fn bytes_rule(name: &str) -> Bytes {
    if IO_FAMILY.contains(&name) {
        Bytes::Return
    } else if MESSAGES_FAMILY.contains(&name) {
        Bytes::Messages
    } else {
        Bytes::None
    }
}

#[cfg(test)]
pub(crate) fn is_io(name: &str) -> bool {
    bytes_rule(name) != Bytes::None
}

/// Where `msg_len` lies in the `struct mmsghdr` array of an ABI: the size
/// of one element and the field's offset in it.
pub(crate) fn mmsghdr_layout(abi: Abi) -> (usize, usize) {
    match abi {
        // struct msghdr is 56 bytes, msg_len follows, padded to 64.
        Abi::X86_64 => (64, 56),
        // The compat msghdr (seven 32-bit fields) is 28 bytes.
        Abi::I386 | Abi::X32 => (32, 28),
    }
}

/// Index of a counted name; the same name in several ABIs shares a slot.
pub(crate) type Slot = u32;
const NO_SLOT: Slot = Slot::MAX;
/// The slot of a number for which no `syscall_N` slot was left (see
/// [`Catalog::limit_unknown`]): its calls are counted as lost.
pub(crate) const LOST: Slot = Slot::MAX - 1;

/// Maps (ABI, number) to a counter slot in constant time. Numbers without
/// a name get a `syscall_N` slot on first sight.
#[derive(Debug)]
pub(crate) struct Catalog {
    names: Vec<String>,
    bytes: Vec<Bytes>,
    by_name: HashMap<String, Slot>,
    x86_64: Vec<Slot>,
    i386: Vec<Slot>,
    x32_high: Vec<Slot>,
    unknown: HashMap<(Option<Abi>, u64), Slot>,
    /// How many `syscall_N` slots may be created.
    max_unknown: usize,
}

impl Catalog {
    pub(crate) fn new() -> Catalog {
        let mut c = Catalog {
            names: Vec::new(),
            bytes: Vec::new(),
            by_name: HashMap::new(),
            x86_64: Vec::new(),
            i386: Vec::new(),
            x32_high: Vec::new(),
            unknown: HashMap::new(),
            max_unknown: usize::MAX,
        };
        c.x86_64 = X86_64.iter().map(|n| c.intern(n)).collect();
        c.i386 = I386.iter().map(|n| c.intern(n)).collect();
        c.x32_high = X32_HIGH.iter().map(|n| c.intern(n)).collect();
        c
    }

    fn intern(&mut self, name: &str) -> Slot {
        if name.is_empty() {
            return NO_SLOT;
        }
        if let Some(&s) = self.by_name.get(name) {
            return s;
        }
        let s = self.names.len() as Slot;
        self.names.push(name.to_owned());
        self.bytes.push(bytes_rule(name));
        self.by_name.insert(name.to_owned(), s);
        s
    }

    /// Slots that exist before any unknown number is seen.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn name(&self, slot: Slot) -> &str {
        &self.names[slot as usize]
    }

    pub(crate) fn is_io(&self, slot: Slot) -> bool {
        self.bytes_rule(slot) != Bytes::None
    }

    pub(crate) fn bytes_rule(&self, slot: Slot) -> Bytes {
        self.bytes.get(slot as usize).copied().unwrap_or(Bytes::None)
    }

    /// At most `n` numbers without a name get a `syscall_N` slot; further
    /// ones get [`LOST`], so that a tracee calling ever new invalid numbers
    /// cannot make the tracer grow without bound.
    pub(crate) fn limit_unknown(&mut self, n: usize) {
        self.max_unknown = n;
    }

    pub(crate) fn slot_of_name(&self, name: &str) -> Option<Slot> {
        self.by_name.get(name).copied()
    }

    /// The slot counting this syscall; new `syscall_N` slots are created
    /// for numbers without a name, as long as the limit allows (else
    /// [`LOST`]).
    pub(crate) fn slot(&mut self, arch: u32, nr: u64) -> Slot {
        let abi = classify(arch, nr);
        let known = match abi {
            Some((Abi::X86_64, n)) => self.x86_64.get(n as usize).copied(),
            Some((Abi::I386, n)) => self.i386.get(n as usize).copied(),
            Some((Abi::X32, n)) if n as usize >= X32_FIRST => self.x32_high.get(n as usize - X32_FIRST).copied(),
            Some((Abi::X32, n)) => self.x86_64.get(n as usize).copied(),
            None => None,
        };
        match known {
            Some(s) if s != NO_SLOT => s,
            _ => {
                let key = (abi.map(|a| a.0), abi.map_or(nr, |a| a.1));
                if let Some(&s) = self.unknown.get(&key) {
                    return s;
                }
                if self.unknown.len() >= self.max_unknown {
                    return LOST;
                }
                let s = self.intern(&format!("syscall_{}", key.1));
                self.unknown.insert(key, s);
                s
            }
        }
    }

    /// Numbers per ABI that carry one of `names` (for the seccomp filter).
    fn numbers(&self, names: &[Slot]) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
        let pick = |table: &[Slot], base: u32| -> Vec<u32> {
            table.iter().enumerate().filter(|(_, s)| names.contains(s)).map(|(n, _)| n as u32 + base).collect()
        };
        let x86_64 = pick(&self.x86_64, 0);
        let i386 = pick(&self.i386, 0);
        let bit = X32_SYSCALL_BIT as u32;
        let mut x32: Vec<u32> = x86_64.iter().filter(|&&n| (n as usize) < X32_FIRST).map(|n| n | bit).collect();
        x32.extend(pick(&self.x32_high, X32_FIRST as u32 | bit));
        (x86_64, i386, x32)
    }

    /// A seccomp program returning `SECCOMP_RET_TRACE` for the syscalls in
    /// `names` (in every ABI) and `SECCOMP_RET_ALLOW` for all others.
    pub(crate) fn seccomp_filter(&self, names: &[Slot]) -> Vec<BpfInsn> {
        const LD_W_ABS: u16 = 0x20;
        const JEQ_K: u16 = 0x15;
        const JA: u16 = 0x05;
        const RET_K: u16 = 0x06;
        const ALLOW: u32 = 0x7fff_0000;
        const TRACE: u32 = 0x7ff0_0000;
        let insn = |code, jt, jf, k| BpfInsn { code, jt, jf, k };
        let (x86_64, i386, x32) = self.numbers(names);
        // Each test is followed by its own "return TRACE" so that no jump
        // exceeds the 8-bit conditional offset, whatever the list length.
        let tests = |nrs: &[u32]| -> Vec<BpfInsn> {
            let mut v = vec![insn(LD_W_ABS, 0, 0, 0)];
            for &n in nrs {
                v.push(insn(JEQ_K, 0, 1, n));
                v.push(insn(RET_K, 0, 0, TRACE));
            }
            v.push(insn(RET_K, 0, 0, ALLOW));
            v
        };
        let mut body64 = x86_64;
        body64.extend(x32);
        let b64 = tests(&body64);
        let b32 = tests(&i386);
        let mut prog = vec![
            insn(LD_W_ABS, 0, 0, 4),
            insn(JEQ_K, 0, 1, AUDIT_ARCH_X86_64),
            insn(JA, 0, 0, 3),
            insn(JEQ_K, 0, 1, AUDIT_ARCH_I386),
            insn(JA, 0, 0, b64.len() as u32 + 1),
            insn(RET_K, 0, 0, ALLOW),
        ];
        prog.extend(b64);
        prog.extend(b32);
        prog
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_per_abi() {
        assert_eq!(name_of(Abi::X86_64, 0), Some("read"));
        assert_eq!(name_of(Abi::X86_64, 231), Some("exit_group"));
        assert_eq!(name_of(Abi::X86_64, 262), Some("newfstatat"));
        assert_eq!(name_of(Abi::X86_64, 435), Some("clone3"));
        assert_eq!(name_of(Abi::X86_64, 462), Some("mseal"));
        assert_eq!(name_of(Abi::I386, 3), Some("read"));
        assert_eq!(name_of(Abi::I386, 20), Some("getpid"));
        assert_eq!(name_of(Abi::I386, 140), Some("_llseek"));
        assert_eq!(name_of(Abi::X32, 0), Some("read"));
        assert_eq!(name_of(Abi::X32, 512), Some("rt_sigaction"));
        assert_eq!(name_of(Abi::X32, 547), Some("pwritev2"));
        assert_eq!(name_of(Abi::X86_64, 9999), None);
        assert_eq!(name_of(Abi::X86_64, 387), None);
    }

    #[test]
    fn every_table_is_complete_up_to_its_end() {
        // No hole inside the common range 0..=334 of the 64-bit table.
        assert!(X86_64[..=334].iter().all(|n| !n.is_empty()));
        assert!(X86_64[424..=450].iter().all(|n| !n.is_empty()));
        assert_eq!(X32_HIGH.len(), 36);
    }

    #[test]
    fn slots_are_shared_across_abis_and_unknowns_are_named() {
        let mut c = Catalog::new();
        let read64 = c.slot(AUDIT_ARCH_X86_64, 0);
        assert_eq!(c.name(read64), "read");
        assert!(c.is_io(read64));
        assert_eq!(c.slot(AUDIT_ARCH_I386, 3), read64);
        assert_eq!(c.slot(AUDIT_ARCH_X86_64, X32_SYSCALL_BIT), read64);
        let getpid = c.slot(AUDIT_ARCH_I386, 20);
        assert_eq!(c.name(getpid), "getpid");
        assert!(!c.is_io(getpid));
        assert_eq!(c.slot(AUDIT_ARCH_X86_64, 39), getpid);
        let before = c.len();
        let unk = c.slot(AUDIT_ARCH_X86_64, 1000);
        assert_eq!(c.name(unk), "syscall_1000");
        assert_eq!(c.slot(AUDIT_ARCH_X86_64, 1000), unk);
        assert_eq!(c.len(), before + 1);
        let hole = c.slot(AUDIT_ARCH_X86_64, 400);
        assert_eq!(c.name(hole), "syscall_400");
        let other = c.slot(0x1234, 7);
        assert_eq!(c.name(other), "syscall_7");
    }

    #[test]
    fn unknown_numbers_beyond_the_limit_are_lost_and_add_no_slot() {
        let mut c = Catalog::new();
        c.limit_unknown(2);
        let a = c.slot(AUDIT_ARCH_X86_64, 1000);
        // The same name in another ABI shares the slot, but takes room.
        assert_eq!(c.slot(AUDIT_ARCH_I386, 1000), a);
        let len = c.len();
        assert_eq!(c.slot(AUDIT_ARCH_X86_64, 1001), LOST);
        assert_eq!(c.len(), len);
        assert_eq!(c.slot(AUDIT_ARCH_X86_64, 1000), a, "numbers already named keep their slot");
        assert_eq!(c.slot(AUDIT_ARCH_X86_64, 0), c.slot_of_name("read").unwrap(), "known names are never lost");
        assert_eq!(c.bytes_rule(LOST), Bytes::None);
    }

    #[test]
    fn io_families() {
        for n in ["read", "pwritev2", "sendfile", "splice", "copy_file_range", "recvmsg", "sendto", "process_vm_readv"]
        {
            assert_eq!(bytes_rule(n), Bytes::Return, "{n}");
        }
        for n in ["sendmmsg", "recvmmsg", "recvmmsg_time64"] {
            assert_eq!(bytes_rule(n), Bytes::Messages, "{n}");
            assert!(is_io(n));
        }
        for n in ["openat", "close", "lseek", "mmap", "process_madvise"] {
            assert!(!is_io(n), "{n}");
        }
    }

    #[test]
    fn parses_syscall_info() {
        let mut buf = [0u8; SYSCALL_INFO_LEN];
        buf[0] = OP_ENTRY;
        buf[4..8].copy_from_slice(&AUDIT_ARCH_I386.to_ne_bytes());
        buf[24..32].copy_from_slice(&4u64.to_ne_bytes());
        for i in 0..6 {
            buf[32 + 8 * i..40 + 8 * i].copy_from_slice(&(10 + i as u64).to_ne_bytes());
        }
        let args = [10, 11, 12, 13, 14, 15];
        assert_eq!(Info::parse(&buf), Info::Entry { arch: AUDIT_ARCH_I386, nr: 4, args });
        buf[0] = OP_SECCOMP;
        assert_eq!(Info::parse(&buf), Info::Entry { arch: AUDIT_ARCH_I386, nr: 4, args });
        buf[0] = OP_EXIT;
        buf[24..32].copy_from_slice(&(-9i64).to_ne_bytes());
        buf[32] = 1;
        assert_eq!(Info::parse(&buf), Info::Exit { rval: -9, is_error: true });
        buf[0] = 0;
        assert_eq!(Info::parse(&buf), Info::None);
    }

    /// Runs a classic BPF program over `seccomp_data` (arch, nr only).
    fn run_bpf(prog: &[BpfInsn], arch: u32, nr: u32) -> u32 {
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            match i.code {
                0x20 => a = if i.k == 0 { nr } else { arch },
                0x15 => pc += if a == i.k { i.jt } else { i.jf } as usize,
                0x05 => pc += i.k as usize,
                0x06 => return i.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
            pc += 1;
        }
    }

    #[test]
    fn seccomp_filter_traces_only_the_chosen_names() {
        let c = Catalog::new();
        let chosen: Vec<Slot> = ["write", "getpid"].iter().map(|n| c.slot_of_name(n).unwrap()).collect();
        let prog = c.seccomp_filter(&chosen);
        let trace = 0x7ff0_0000;
        let allow = 0x7fff_0000;
        assert_eq!(run_bpf(&prog, AUDIT_ARCH_X86_64, 1), trace);
        assert_eq!(run_bpf(&prog, AUDIT_ARCH_X86_64, 39), trace);
        assert_eq!(run_bpf(&prog, AUDIT_ARCH_X86_64, 0), allow);
        assert_eq!(run_bpf(&prog, AUDIT_ARCH_X86_64, 231), allow);
        assert_eq!(run_bpf(&prog, AUDIT_ARCH_X86_64, 1 | X32_SYSCALL_BIT as u32), trace);
        assert_eq!(run_bpf(&prog, AUDIT_ARCH_I386, 4), trace);
        assert_eq!(run_bpf(&prog, AUDIT_ARCH_I386, 20), trace);
        assert_eq!(run_bpf(&prog, AUDIT_ARCH_I386, 1), allow);
        assert_eq!(run_bpf(&prog, 0x1234, 1), allow);
        // Long lists stay within the 8-bit jump offsets.
        let all: Vec<Slot> = (0..c.len() as Slot).collect();
        let prog = c.seccomp_filter(&all);
        assert!(prog.len() < 4096);
        assert_eq!(run_bpf(&prog, AUDIT_ARCH_I386, 400), trace);
        assert_eq!(run_bpf(&prog, AUDIT_ARCH_X86_64, 450), trace);
    }
}
