//! `tau_strace`: per-syscall counts compared with real `strace -f -c` on
//! the same programs (single-threaded, multi-threaded, forking, exec-ing,
//! 32-bit calls, restarted and interrupted calls), exact byte counts, exit
//! statuses and signals, the engines' bounds, attach and
//! detach, and an absent or late proxy. Every test of the tracer runs once
//! per engine (`engine_tests!`): `…::bpf::NAME` and `…::ptrace::NAME`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::util::{cmd, compile, tool, wait_for, Proxy, Run, TempDir};

/// Which engine a test runs `tau_strace` with. The eBPF one is asked for
/// explicitly, so that a test fails with the kernel's reason where it
/// cannot run rather than quietly testing ptrace twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Engine {
    Bpf,
    Ptrace,
}

impl Engine {
    pub(super) fn flag(self) -> &'static str {
        match self {
            Engine::Bpf => "--engine=bpf",
            Engine::Ptrace => "--engine=ptrace",
        }
    }
}

/// Expands test functions taking an [`Engine`] into one test per engine,
/// in the submodules `bpf` and `ptrace` of the module that lists them.
macro_rules! engine_tests {
    ($($name:ident),+ $(,)?) => {
        mod bpf {
            $(#[test]
            fn $name() {
                super::$name(super::Engine::Bpf)
            })+
        }
        mod ptrace {
            $(#[test]
            fn $name() {
                super::$name(super::Engine::Ptrace)
            })+
        }
    };
}

mod attach;
mod bounds;
mod counts;
mod engine;
mod lifecycle;
mod service;

/// What `strace -f -c` counted, per syscall (all personalities summed).
pub(super) struct Oracle {
    pub(super) calls: BTreeMap<String, u64>,
    /// Calls that returned an error, for syscalls with any.
    pub(super) errors: BTreeMap<String, u64>,
}

/// Per-syscall calls and errors from `strace -f -c`. strace counts unknown
/// numbers in its total but lists no line for them.
pub(super) fn strace_counts(prog: &Path, args: &[&str], dir: &TempDir) -> Oracle {
    strace_counts_as(&[], prog, args, dir)
}

/// [`strace_counts`] with strace run through `prefix` (such as `setpriv`
/// switching to another user, whose failed calls differ from root's).
pub(super) fn strace_counts_as(prefix: &[&str], prog: &Path, args: &[&str], dir: &TempDir) -> Oracle {
    let out = dir.join("strace.out");
    let strace = |c: crate::util::TestCommand| c.args(["-f", "-c", "-U", "name,calls,errors", "-o"]).arg(&out);
    let r = match prefix.split_first() {
        Some((first, rest)) => strace(cmd(first).args(rest).arg("strace")),
        None => strace(cmd("strace")),
    }
    .arg(prog)
    .args(args)
    .run();
    if r.code().is_none() {
        r.fail("strace itself failed");
    }
    summary(&std::fs::read_to_string(&out).expect("strace summary"))
}

/// The counts of a summary written by `strace -c -U name,calls,errors`.
pub(super) fn summary(text: &str) -> Oracle {
    let mut oracle = Oracle { calls: BTreeMap::new(), errors: BTreeMap::new() };
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (name, calls, errors) = match f[..] {
            [name, calls] => (name, calls, "0"),
            [name, calls, errors] => (name, calls, errors),
            _ => continue,
        };
        if let (true, Ok(n), Ok(e)) = (name != "total", calls.parse::<u64>(), errors.parse::<u64>()) {
            *oracle.calls.entry(name.to_owned()).or_insert(0) += n;
            if e > 0 {
                *oracle.errors.entry(name.to_owned()).or_insert(0) += e;
            }
        }
    }
    assert!(!oracle.calls.is_empty(), "no counts in strace output:\n{text}");
    oracle
}

/// Named syscalls only: what `strace -c` lists.
pub(super) fn named(hits: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    hits.into_iter().filter(|(k, _)| !k.starts_with("syscall_")).collect()
}

/// The series of one family, keyed by syscall name.
pub(super) fn family(values: &BTreeMap<String, f64>, fam: &str) -> BTreeMap<String, u64> {
    let prefix = format!("{fam}{{scall=\"");
    values
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.strip_suffix("\"}")?.to_owned(), *v as u64)))
        .collect()
}

pub(super) fn tau_strace(engine: Engine, socket: &Path, extra: &[&str], prog: &Path, args: &[&str]) -> Run {
    tool("tau_strace").arg(engine.flag()).arg("-u").arg(socket).args(extra).arg("--").arg(prog).args(args).run()
}

/// Waits until the proxy's hit counts equal `want` (they arrive with the
/// final push) and returns every value.
pub(super) fn wait_hits(proxy: &Proxy, want: &BTreeMap<String, u64>) -> BTreeMap<String, f64> {
    let mut last = BTreeMap::new();
    wait_for(Duration::from_secs(10), || {
        last = proxy.values();
        (named(family(&last, "strace_hits_total")) == *want).then_some(())
    });
    last
}

/// Runs `prog` under strace and under tau_strace, asserts equal hits and
/// the same exit code; returns tau_strace's output and the proxy's values.
pub(super) fn compare(
    engine: Engine,
    name: &str,
    statically: bool,
    args: &[&str],
    extra: &[&str],
) -> (Run, BTreeMap<String, f64>) {
    let dir = TempDir::new("strace");
    let prog = compile(&dir, name, statically);
    let args: Vec<String> = args.iter().map(|a| a.replace("$DIR", &dir.path().to_string_lossy())).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let oracle = strace_counts(&prog, &args, &dir);
    let want = oracle.calls;
    let untraced = cmd(&prog).args(&args).run();
    let proxy = Proxy::start();
    let out = tau_strace(engine, &proxy.socket, extra, &prog, &args);
    if out.code() != untraced.code() {
        out.fail(format_args!("{name}: exit code differs from the untraced run's, {:?}", untraced.code()));
    }
    if out.stdout_bytes() != untraced.stdout_bytes() {
        out.fail(format_args!("{name}: output differs under tau_strace; untraced:\n{}", untraced.stdout()));
    }
    let values = wait_hits(&proxy, &want);
    assert_eq!(
        named(family(&values, "strace_hits_total")),
        want,
        "{name}: per-syscall calls (left: tau_strace, right: strace -f -c)"
    );
    assert_eq!(
        named(family(&values, "strace_errors_total")),
        oracle.errors,
        "{name}: per-syscall errors (left: tau_strace, right: strace -f -c)"
    );
    (out, values)
}

/// `/proc/PID/task/*/status`: (state letter, tracer pid) per thread.
pub(super) fn thread_states(pid: u32) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).expect("task dir") {
        let status = std::fs::read_to_string(e.expect("entry").path().join("status")).unwrap_or_default();
        let field =
            |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(|s| s.trim().to_owned()).unwrap_or_default();
        v.push((field("State:"), field("TracerPid:")));
    }
    v
}

/// What `TracerPid` the threads of a process watched by `tau_strace` (pid
/// `tracer`) show: the tracer under ptrace, none under eBPF.
pub(super) fn traced_by(engine: Engine, tracer: u32) -> String {
    match engine {
        Engine::Ptrace => tracer.to_string(),
        Engine::Bpf => "0".into(),
    }
}

/// Waits until `tau_strace` (pid `tracer`) watches `target`: under ptrace
/// every thread is its tracee; under eBPF it holds its programs' links
/// (attached after its signal handlers, before it marks the threads) and
/// the threads have no tracer.
pub(super) fn wait_attached(engine: Engine, tracer: u32, target: u32) {
    let want = traced_by(engine, tracer);
    let links = || {
        std::fs::read_dir(format!("/proc/{tracer}/fd"))
            .map(|d| {
                d.flatten()
                    .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("bpf_link")))
                    .count()
            })
            .unwrap_or(0)
    };
    let ready = wait_for(Duration::from_secs(10), || {
        let states = thread_states(target);
        let ok = states.iter().all(|(_, t)| t == &want) && (engine == Engine::Ptrace || links() > 0);
        ok.then_some(())
    });
    assert!(ready.is_some(), "tau_strace {tracer} does not watch {target}: {:?}", thread_states(target));
    if engine == Engine::Bpf {
        // Marking follows the links by a few map updates.
        std::thread::sleep(Duration::from_millis(100));
    }
}
