//! The eBPF engine's limits: a full map is counted and said, never a
//! crash, and its programs are in the kernel only while something is
//! traced (gone when `tau_strace` exits, even by SIGKILL).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{compare, family, Engine};
use crate::util::{compile, tool, wait_for, Running, TempDir};

/// `strace_unknown` calls each number from 1000 to 1400 once. The eBPF
/// engine has slots for numbers below 1024; its map for the others holds
/// 256 numbers (1024..=1279), so the calls of 1280..=1400 are lost.
const FIRST: u64 = 1000;
const LAST: u64 = 1400;
const MAP_FULL: &str = "[WARN ] eBPF map full: 256 syscall numbers outside the tables counted, calls of further ones \
                        are not (strace_lost_calls_total)\n";

fn more_unknown_numbers_than_the_map_holds_are_counted_and_said(engine: Engine) {
    // Exit status, output and the named calls' counts and errors against
    // strace -f -c are checked by compare.
    let (out, v) = compare(engine, "strace_unknown", false, &[], &[]);
    out.assert_exit(3).assert_stdout(&format!("{} numbers failed with ENOSYS\n", LAST - FIRST + 1));
    let hits = family(&v, "strace_hits_total");
    let errors = family(&v, "strace_errors_total");
    let unknown: BTreeMap<u64, u64> =
        hits.iter().filter_map(|(k, n)| Some((k.strip_prefix("syscall_")?.parse().ok()?, *n))).collect();
    let counted_up_to = match engine {
        Engine::Bpf => {
            out.assert_stderr(MAP_FULL);
            assert_eq!(v.get("strace_lost_calls_total"), Some(&((LAST - 1279) as f64)), "{v:?}");
            1279
        }
        Engine::Ptrace => {
            // ptrace names every number it sees: nothing is lost.
            out.assert_stderr("");
            assert_eq!(v.get("strace_lost_calls_total"), None, "{v:?}");
            LAST
        }
    };
    let want: BTreeMap<u64, u64> = (FIRST..=counted_up_to).map(|n| (n, 1)).collect();
    assert_eq!(unknown, want, "syscall_N series");
    for n in FIRST..=counted_up_to {
        assert_eq!(errors.get(&format!("syscall_{n}")), Some(&1), "syscall_{n} failed with ENOSYS");
    }
    assert_eq!(v.get("strace_lost_threads_total"), None, "{v:?}");
    println!("{engine:?}: {} of {} unknown numbers counted", unknown.len(), LAST - FIRST + 1);
}

/// The BPF programs held open by process `pid`: id -> `prog_type`, from
/// `/proc/PID/fdinfo` (a program lives while a descriptor holds it).
fn programs_of(pid: &str) -> BTreeMap<u32, u32> {
    let mut progs = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return progs;
    };
    for e in dir.flatten() {
        let info = std::fs::read_to_string(e.path()).unwrap_or_default();
        let field = |k: &str| info.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse().ok());
        if let (Some(ty), Some(id)) = (field("prog_type:"), field("prog_id:")) {
            progs.insert(id, ty);
        }
    }
    progs
}

/// Every BPF program some process holds: id -> holders' pids.
fn loaded_programs() -> BTreeMap<u32, BTreeSet<String>> {
    let mut all: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if pid.bytes().all(|b| b.is_ascii_digit()) {
            for id in programs_of(&pid).into_keys() {
                all.entry(id).or_default().insert(pid.clone());
            }
        }
    }
    all
}

/// Starts `tau_strace --engine bpf` on `strace_late` (which waits for its
/// go file) and returns the programs it loaded, checked to be the engine's
/// five raw tracepoint programs, held by `tau_strace` alone.
fn start(dir: &TempDir, before: &BTreeMap<u32, BTreeSet<String>>) -> (Running, BTreeSet<u32>) {
    let prog = compile(dir, "strace_late", false);
    let mut tracer = tool("tau_strace")
        .args([Engine::Bpf.flag(), "-u", "/nonexistent-dir/none.sock", "--"])
        .arg(&prog)
        .arg(dir.join("go"))
        .spawn();
    assert_eq!(tracer.read_line(), "ready\n");
    let pid = tracer.id().to_string();
    let ours = programs_of(&pid);
    const RAW_TRACEPOINT: u32 = 17;
    assert_eq!(
        ours.len(),
        5,
        "tau_strace {pid} holds the programs on sys_enter, sys_exit and fork/exec/exit: {ours:?}"
    );
    assert!(ours.values().all(|&t| t == RAW_TRACEPOINT), "{ours:?}");
    let now = loaded_programs();
    for id in ours.keys() {
        assert!(!before.contains_key(id), "program {id} was there before tau_strace started");
        assert_eq!(now[id], BTreeSet::from([pid.clone()]), "program {id}: only tau_strace holds it");
    }
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).expect("children");
    assert!(programs_of(children.trim()).is_empty(), "the traced command holds no BPF program");
    (tracer, ours.into_keys().collect())
}

/// Waits until none of `ours` is loaded any more; fails naming the holders.
fn wait_unloaded(ours: &BTreeSet<u32>, when: &str) {
    let mut left = BTreeMap::new();
    let gone = wait_for(Duration::from_secs(10), || {
        left = loaded_programs();
        left.retain(|id, _| ours.contains(id));
        left.is_empty().then_some(())
    });
    assert!(gone.is_some(), "{when}: programs still loaded (id -> holders): {left:?}");
}

#[test]
fn ebpf_programs_are_loaded_only_while_tau_strace_runs() {
    let dir = TempDir::new("strace-bpf-progs");
    let before = loaded_programs();
    println!("BPF programs held before: {}", before.len());
    // A run to its end.
    let (tracer, ours) = start(&dir, &before);
    std::fs::write(dir.join("go"), b"").expect("create go file");
    tracer.finish_within(Duration::from_secs(10)).assert_exit(0);
    wait_unloaded(&ours, "after tau_strace exited");
    // tau_strace killed: the kernel unloads them with their last holder.
    std::fs::remove_file(dir.join("go")).expect("remove go file");
    let (tracer, ours) = start(&dir, &before);
    let command = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", tracer.id())).expect("children");
    let command = command.trim().to_owned();
    tracer.signal(Signal::SIGKILL);
    // The command outlives its tracer and holds tau_strace's output pipes:
    // release it now, so that reading the killed tracer's output ends.
    std::fs::write(dir.join("go"), b"").expect("create go file");
    let killed = tracer.finish_within(Duration::from_secs(10));
    killed.assert_killed_by(Signal::SIGKILL);
    wait_unloaded(&ours, "after SIGKILL of tau_strace");
    // Gone, or a zombie waiting for whoever inherited it.
    let ended = wait_for(Duration::from_secs(10), || {
        let stat = std::fs::read_to_string(format!("/proc/{command}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
        matches!(state, None | Some(Some('Z'))).then_some(())
    });
    assert!(ended.is_some(), "the command {command} released after its tracer was killed did not end");
}

engine_tests!(more_unknown_numbers_than_the_map_holds_are_counted_and_said);
