//! The eBPF engine's loader: checks that this process may load it, loads
//! `bpf/count.bpf.c` (compiled by `build.rs`) with aya, attaches it to the
//! syscall and scheduler tracepoints, marks the threads to count and reads
//! the totals back as [`Row`]s. The kernel does the counting; nothing here
//! runs per syscall. Everything is released when the [`Engine`] is dropped
//! or the process dies: the kernel then detaches the programs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aya::maps::{Array, HashMap as BpfMap, MapData};
use aya::programs::RawTracePoint;
use aya::{Btf, Ebpf, EbpfLoader};

use crate::counts::{Bounds, Lost, Row};
use crate::syscall::{self, Abi, Bytes, Catalog, Slot, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/count.bpf.o"));

/// Numbers per ABI with a slot of their own (others go to the `rare` map).
const ABI_SLOTS: usize = 1024;
const SLOTS: usize = 3 * ABI_SLOTS;
/// `struct state`: four counters per slot, then the two losses.
const STATE_WORDS: usize = SLOTS * 4 + 2;
const BYTES_RETURN: u8 = 1;
const BYTES_MESSAGES: u8 = 2;
const COUNTED: u8 = 4;
/// The programs and the tracepoints they attach to.
const PROGRAMS: [(&str, &str); 5] = [
    ("sys_enter", "sys_enter"),
    ("sys_exit", "sys_exit"),
    ("on_fork", "sched_process_fork"),
    ("on_exec", "sched_process_exec"),
    ("on_exit", "sched_process_exit"),
];
const BTF: &str = "/sys/kernel/btf/vmlinux";
/// `max_entries` of the `threads` map unless `--max-threads` says otherwise.
pub(crate) const MAX_THREADS: u32 = 65536;
/// `max_entries` of the `rare` map in `bpf/count.bpf.c`.
pub(crate) const MAX_RARE: u64 = 256;

/// A thread as the program keeps it (`struct thread`).
type Thread = [u64; 4];
/// `struct state`.
type State = [u64; STATE_WORDS];

/// The ABI of a slot block, in the program's order.
const ABIS: [Abi; 3] = [Abi::X86_64, Abi::X32, Abi::I386];

/// Why this process cannot run the eBPF engine, in one line; `None` if it
/// looks possible (the kernel has the last word when loading).
pub(crate) fn unavailable() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(str::trim).unwrap_or("");
    let caps = u64::from_str_radix(field("CapEff:"), 16).unwrap_or(0);
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    const CAP_PERFMON: u64 = 1 << 38;
    const CAP_BPF: u64 = 1 << 39;
    if caps & CAP_SYS_ADMIN == 0 && caps & (CAP_BPF | CAP_PERFMON) != CAP_BPF | CAP_PERFMON {
        return Some("missing capability: loading it needs CAP_BPF and CAP_PERFMON (or root)".into());
    }
    if field("NSpid:").split_whitespace().count() > 1 {
        return Some("tau_strace runs in a nested PID namespace, where the kernel's thread ids are not ours".into());
    }
    if !std::path::Path::new(BTF).exists() {
        return Some(format!("the kernel has no BTF ({BTF} is missing)"));
    }
    None
}

/// The loaded, attached engine.
pub(crate) struct Engine {
    // Holds the programs and their links: dropping it detaches them.
    _ebpf: Ebpf,
    threads: BpfMap<MapData, u32, Thread>,
    /// Threads that found the map full when marked from here (the kernel
    /// counts those its fork program could not add).
    refused: Arc<AtomicU64>,
    reader: Option<Reader>,
}

/// Reads the totals (moved to the push thread).
pub(crate) struct Reader {
    state: Array<MapData, State>,
    rare: BpfMap<MapData, [u64; 2], [u64; 4]>,
    catalog: Catalog,
    refused: Arc<AtomicU64>,
    /// Threads not followed and calls not counted, as last read.
    lost: Lost,
    bounds: Bounds,
}

/// `flags[slot]` for every slot: bytes rule and whether it is counted.
fn flags(catalog: &Catalog, only: Option<&[Slot]>) -> Vec<u8> {
    let mut flags = vec![0u8; SLOTS];
    for (block, abi) in ABIS.iter().enumerate() {
        for nr in 0..ABI_SLOTS {
            let name = syscall::name_of(*abi, nr as u64);
            let counted = match (only, name) {
                (None, _) => true,
                (Some(only), Some(n)) => catalog.slot_of_name(n).is_some_and(|s| only.contains(&s)),
                (Some(_), None) => false,
            };
            let bytes = match name.map(syscall::bytes_rule) {
                Some(Bytes::Return) => BYTES_RETURN,
                Some(Bytes::Messages) => BYTES_MESSAGES,
                _ => 0,
            };
            flags[block * ABI_SLOTS + nr] = bytes | if counted { COUNTED } else { 0 };
        }
    }
    flags
}

impl Engine {
    /// Loads and attaches the engine, counting every syscall or only those
    /// of `only`, following at most `max_threads` threads at once. The error
    /// is one line saying why it cannot run.
    pub(crate) fn load(only: Option<&[Slot]>, max_threads: u32) -> Result<Engine, String> {
        if let Some(why) = unavailable() {
            return Err(why);
        }
        let catalog = Catalog::new();
        let flags = flags(&catalog, only);
        let flags: &[u8; SLOTS] = flags.as_slice().try_into().expect("one flag per slot");
        let rare_counted: u8 = only.is_none().into();
        let btf = Btf::from_sys_fs().map_err(|e| format!("cannot read the kernel's BTF: {e}"))?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global("flags", flags, true)
            .override_global("rare_counted", &rare_counted, true)
            .map_max_entries("threads", max_threads)
            .load(OBJECT)
            .map_err(|e| format!("the kernel refused the eBPF programs: {}", chain(&e)))?;
        for (name, tracepoint) in PROGRAMS {
            let program: &mut RawTracePoint = ebpf
                .program_mut(name)
                .ok_or_else(|| format!("program {name} missing from the object"))?
                .try_into()
                .map_err(|e| format!("program {name}: {}", chain(&e)))?;
            program.load().map_err(|e| format!("the kernel refused program {name}: {}", chain(&e)))?;
            program.attach(tracepoint).map_err(|e| format!("cannot attach to {tracepoint}: {}", chain(&e)))?;
        }
        let take = |ebpf: &mut Ebpf, name: &str| ebpf.take_map(name).ok_or_else(|| format!("map {name} missing"));
        let threads = BpfMap::try_from(take(&mut ebpf, "threads")?).map_err(|e| format!("map threads: {e}"))?;
        let state = Array::try_from(take(&mut ebpf, ".bss")?).map_err(|e| format!("map .bss: {e}"))?;
        let rare = BpfMap::try_from(take(&mut ebpf, "rare")?).map_err(|e| format!("map rare: {e}"))?;
        let refused = Arc::new(AtomicU64::new(0));
        let bounds = Bounds { bpf: true, threads: max_threads.into(), numbers: MAX_RARE };
        let reader = Reader { state, rare, catalog, refused: refused.clone(), lost: Lost::default(), bounds };
        Ok(Engine { _ebpf: ebpf, threads, refused, reader: Some(reader) })
    }

    /// Counts thread `tid` from now on (and what it creates); a thread
    /// that finds the map full is counted as lost.
    pub(crate) fn trace(&mut self, tid: u32) -> Result<(), String> {
        match self.threads.insert(tid, [0u64; 4], 0) {
            Ok(()) => Ok(()),
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::E2BIG) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(format!("cannot trace thread {tid}: {}", chain(&e))),
        }
    }

    /// Stops counting thread `tid` (one that is gone).
    pub(crate) fn untrace(&mut self, tid: u32) {
        let _ = self.threads.remove(&tid);
    }

    /// Whether any traced thread is still alive.
    pub(crate) fn any_traced(&self) -> bool {
        self.threads.keys().next().is_some()
    }

    /// The totals' reader, once.
    pub(crate) fn take_reader(&mut self) -> Option<Reader> {
        self.reader.take()
    }
}

impl Reader {
    /// Every syscall seen, summed per name (a name shared by several ABIs
    /// is one row, as in the ptrace engine).
    pub(crate) fn snapshot(&mut self) -> Vec<Row> {
        let mut rows: BTreeMap<String, Row> = BTreeMap::new();
        let mut add = |catalog: &mut Catalog, abi: Abi, nr: u64, c: &[u64]| {
            if c[0] == 0 {
                return;
            }
            let (arch, nr) = match abi {
                Abi::X86_64 => (AUDIT_ARCH_X86_64, nr),
                Abi::X32 => (AUDIT_ARCH_X86_64, nr | X32_SYSCALL_BIT),
                Abi::I386 => (AUDIT_ARCH_I386, nr),
            };
            let slot = catalog.slot(arch, nr);
            let name = catalog.name(slot).to_owned();
            let row = rows.entry(name.clone()).or_insert_with(|| Row {
                name,
                io: catalog.is_io(slot),
                hits: 0,
                bytes: 0,
                ns: 0,
                errors: 0,
            });
            // struct total: hits, errors, bytes, ns.
            row.hits += c[0];
            row.errors += c[1];
            row.bytes += c[2];
            row.ns += c[3];
        };
        let Ok(state) = self.state.get(&0, 0) else {
            return Vec::new();
        };
        for (i, c) in state[..SLOTS * 4].chunks_exact(4).enumerate() {
            add(&mut self.catalog, ABIS[i / ABI_SLOTS], (i % ABI_SLOTS) as u64, c);
        }
        for (key, c) in self.rare.iter().flatten() {
            let abi = ABIS.get((key[0] & 0xffff_ffff) as usize).copied().unwrap_or(Abi::X86_64);
            add(&mut self.catalog, abi, key[1], &c);
        }
        let refused = self.refused.load(Ordering::Relaxed);
        self.lost = Lost { threads: state[SLOTS * 4] + refused, calls: state[SLOTS * 4 + 1] };
        rows.into_values().collect()
    }

    /// What the maps could not hold, as of the last [`Reader::snapshot`].
    pub(crate) fn lost(&self) -> Lost {
        self.lost
    }

    /// The maps' sizes.
    pub(crate) fn bounds(&self) -> Bounds {
        self.bounds
    }
}

/// An error with its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_give_each_slot_its_bytes_rule_and_the_only_filter() {
        let c = Catalog::new();
        let f = flags(&c, None);
        assert_eq!(f[0], BYTES_RETURN | COUNTED, "x86-64 read");
        assert_eq!(f[307], BYTES_MESSAGES | COUNTED, "x86-64 sendmmsg");
        assert_eq!(f[39], COUNTED, "x86-64 getpid");
        assert_eq!(f[2 * ABI_SLOTS + 4], BYTES_RETURN | COUNTED, "i386 write");
        assert_eq!(f[999], COUNTED, "numbers without a name are counted");
        let write = c.slot_of_name("write").unwrap();
        let f = flags(&c, Some(&[write]));
        assert_eq!(f[0], BYTES_RETURN, "read is not counted");
        assert_eq!(f[1], BYTES_RETURN | COUNTED);
        assert_eq!(f[ABI_SLOTS + 1], BYTES_RETURN | COUNTED, "x32 write");
        assert_eq!(f[2 * ABI_SLOTS + 4], BYTES_RETURN | COUNTED, "i386 write");
        assert_eq!(f[999], 0);
    }
}
