//! The engines' limits: a full table is counted and said once, never a
//! crash, the other counts exact (numbers outside the syscall tables under
//! both engines, threads beyond `--max-threads` under eBPF); and the eBPF
//! engine's programs are in the kernel only while something is traced
//! (gone when `tau_strace` exits, even by SIGKILL).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{compare, family, tau_strace, Engine};
use crate::util::{compile, tool, wait_for, Proxy, Running, TempDir};

/// `strace_unknown` calls each number from 1000 to 2099 once. The eBPF
/// engine has slots for numbers below 1024; its map for the others holds
/// 256 numbers (1024..=1279), so the calls of 1280..=2099 are lost. The
/// ptrace engine names 1024 numbers outside the tables (1000..=2023).
const FIRST: u64 = 1000;
pub(super) const LAST: u64 = 2099;
pub(super) const BPF_NUMBERS_FULL: &str = "[WARN ] eBPF map full: 256 syscall numbers outside the tables counted, \
                                           calls of further ones are not (strace_lost_calls_total)\n";
const PTRACE_NUMBERS_FULL: &str = "[WARN ] 1024 syscall numbers outside the tables counted, calls of further ones \
                                   are not (strace_lost_calls_total)\n";

/// The last number each engine names `syscall_N`, the rest being lost.
pub(super) fn unknown_counted_up_to(engine: Engine) -> u64 {
    match engine {
        Engine::Bpf => 1279,
        Engine::Ptrace => FIRST + 1023,
    }
}

/// Checks the `syscall_N` series and `strace_lost_calls_total` of a run of
/// `strace_unknown` counted within the bounds of `engine`.
pub(super) fn assert_unknown_numbers(engine: Engine, v: &BTreeMap<String, f64>) {
    let hits = family(v, "strace_hits_total");
    let errors = family(v, "strace_errors_total");
    let unknown: BTreeMap<u64, u64> =
        hits.iter().filter_map(|(k, n)| Some((k.strip_prefix("syscall_")?.parse().ok()?, *n))).collect();
    let counted_up_to = unknown_counted_up_to(engine);
    let want: BTreeMap<u64, u64> = (FIRST..=counted_up_to).map(|n| (n, 1)).collect();
    assert_eq!(unknown, want, "syscall_N series");
    for n in FIRST..=counted_up_to {
        assert_eq!(errors.get(&format!("syscall_{n}")), Some(&1), "syscall_{n} failed with ENOSYS");
    }
    assert_eq!(v.get("strace_lost_calls_total"), Some(&((LAST - counted_up_to) as f64)), "{v:?}");
    assert_eq!(v.get("strace_lost_threads_total"), None, "{v:?}");
    println!("{engine:?}: {} of {} unknown numbers counted", unknown.len(), LAST - FIRST + 1);
}

fn more_unknown_numbers_than_there_is_room_for_are_counted_as_lost_and_said(engine: Engine) {
    // Exit status, output and the named calls' counts and errors against
    // strace -f -c are checked by compare.
    let (out, v) = compare(engine, "strace_unknown", false, &[], &[]);
    out.assert_exit(3).assert_stdout(&format!("{} numbers failed with ENOSYS\n", LAST - FIRST + 1));
    out.assert_stderr(match engine {
        Engine::Bpf => BPF_NUMBERS_FULL,
        Engine::Ptrace => PTRACE_NUMBERS_FULL,
    });
    assert_unknown_numbers(engine, &v);
}

/// What `tau_strace --max-threads 3` says when `strace_many_threads`'s
/// third thread (the main one and the first two it created are followed)
/// finds the map full.
pub(super) const THREADS_FULL: &str = "[WARN ] eBPF thread map full (--max-threads 3): further threads are not \
                                       counted (strace_lost_threads_total)\n";

/// Checks the counts of `strace_many_threads` counted with `--max-threads
/// 3`: its main thread and threads 1 and 2 exactly, threads 3 to 6 lost.
pub(super) fn assert_three_threads_followed(v: &BTreeMap<String, f64>) {
    assert_eq!(v.get("strace_lost_threads_total"), Some(&4.0), "threads 3 to 6 are lost: {v:?}");
    assert_eq!(v.get("strace_hits_total{scall=\"clone3\"}"), Some(&6.0), "the main thread's six clone3: {v:?}");
    // 50 each from threads 1 and 2.
    assert_eq!(v.get("strace_hits_total{scall=\"getppid\"}"), Some(&100.0), "{v:?}");
    // 1 and 2 bytes from threads 1 and 2, "6 threads done\n" from the main one.
    assert_eq!(v.get("strace_hits_total{scall=\"write\"}"), Some(&3.0), "{v:?}");
    assert_eq!(v.get("strace_size_total{scall=\"write\"}"), Some(&18.0), "{v:?}");
    assert_eq!(v.get("strace_lost_calls_total"), None, "{v:?}");
}

#[test]
fn threads_beyond_max_threads_are_counted_as_lost_and_said_once() {
    let dir = TempDir::new("strace-max-threads");
    let prog = compile(&dir, "strace_many_threads", false);
    let proxy = Proxy::start();
    let out = tau_strace(Engine::Bpf, &proxy.socket, &["--max-threads", "3"], &prog, &[]);
    out.assert_exit(0).assert_stdout("6 threads done\n").assert_stderr(THREADS_FULL);
    proxy.wait_value("strace_lost_threads_total", 4.0);
    assert_three_threads_followed(&proxy.values());
    // The ptrace engine follows every thread: the option is refused there.
    tau_strace(Engine::Ptrace, &proxy.socket, &["--max-threads", "3"], &prog, &[]).assert_exit(2).assert_stderr(
        "tau_strace: error: --max-threads sizes the eBPF engine's thread map: ptrace follows every thread \
         (see tau_strace --help)\n",
    );
}

/// The BPF programs held open by process `pid`: id -> `prog_type`, from
/// `/proc/PID/fdinfo` (a program lives while a descriptor holds it).
pub(super) fn programs_of(pid: &str) -> BTreeMap<u32, u32> {
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

engine_tests!(more_unknown_numbers_than_there_is_room_for_are_counted_as_lost_and_said);
