//! Counts, bytes, errors and times against `strace -f -c`, `--only`, and
//! pushing to a proxy that is absent, late or pushed to rarely.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{compare, family, named, tau_strace, wait_hits, Engine};
use crate::util::{cmd, compile, tool, wait_for, Proxy, Run, Running, TempDir};

fn single_threaded_counts_and_bytes_match(engine: Engine) {
    let (out, v) = compare(engine, "strace_io", true, &["$DIR"], &[]);
    out.assert_stderr("");
    assert_eq!(v["strace_hits_total{scall=\"syscall_1000\"}"], 3.0);
    assert_eq!(v["strace_hits_total{scall=\"syscall_2000\"}"], 1.0);
    // read(-1) failed; unknown numbers fail with ENOSYS.
    assert_eq!(v["strace_errors_total{scall=\"read\"}"], 1.0);
    assert_eq!(v["strace_errors_total{scall=\"syscall_1000\"}"], 3.0);
    assert_eq!(v.get("strace_errors_total{scall=\"write\"}"), None, "no error, no series");
    let size = family(&v, "strace_size_total");
    let want: BTreeMap<String, u64> = [
        ("read", 3584),
        ("write", 10100),
        ("pwrite64", 300),
        ("pread64", 200),
        ("writev", 900),
        ("readv", 900),
        ("sendto", 256),
        ("recvfrom", 256),
        ("sendmsg", 40),
        ("recvmsg", 40),
        ("sendfile", 1000),
        ("splice", 100),
        ("copy_file_range", 500),
        ("sendmmsg", 60),
        ("recvmmsg", 60),
        ("process_vm_readv", 123),
        ("process_vm_writev", 77),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect();
    assert_eq!(size, want, "bytes per I/O syscall");
    // Time is exported in seconds, for every syscall seen.
    let time = family(&v, "strace_time_total");
    assert_eq!(time.keys().collect::<Vec<_>>(), family(&v, "strace_hits_total").keys().collect::<Vec<_>>());
    assert!(v["strace_time_total{scall=\"getppid\"}"] < 1.0);
}

fn multi_threaded_counts_match(engine: Engine) {
    let (_, v) = compare(engine, "strace_threads", false, &[], &[]);
    assert_eq!(v["strace_hits_total{scall=\"getppid\"}"], 200.0);
    assert_eq!(v["strace_size_total{scall=\"write\"}"], 20000.0);
}

fn forking_counts_and_exit_code_match(engine: Engine) {
    let (out, v) = compare(engine, "strace_fork", false, &[], &[]);
    out.assert_exit(6);
    assert_eq!(v["strace_hits_total{scall=\"getppid\"}"], 22.0);
}

fn exec_from_main_and_from_a_thread_counts_match(engine: Engine) {
    let (out, v) = compare(engine, "strace_exec", false, &[], &[]);
    out.assert_exit(5);
    assert_eq!(v["strace_hits_total{scall=\"execve\"}"], 3.0);
    assert_eq!(v["strace_hits_total{scall=\"getppid\"}"], 4.0);
}

fn i386_syscalls_are_named_from_their_table(engine: Engine) {
    let (out, v) = compare(engine, "strace_i386", true, &[], &[]);
    out.assert_stdout("hello int80\n");
    assert_eq!(v["strace_hits_total{scall=\"getpid\"}"], 4.0);
    assert_eq!(v["strace_size_total{scall=\"write\"}"], 12.0);
}

fn signals_and_job_control_behave_as_untraced(engine: Engine) {
    let (out, _) = compare(engine, "strace_signals", false, &[], &[]);
    out.assert_stdout("usr1=3 stopped=1 continued=1 child=7\n");
}

fn only_traces_the_chosen_syscalls(engine: Engine) {
    let dir = TempDir::new("strace-only");
    let prog = compile(&dir, "strace_threads", false);
    let proxy = Proxy::start();
    tau_strace(engine, &proxy.socket, &["--only", "write,getppid"], &prog, &[]).assert_exit(0);
    let want: BTreeMap<String, u64> = [("getppid".to_owned(), 200), ("write".to_owned(), 200)].into();
    let v = wait_hits(&proxy, &want);
    assert_eq!(family(&v, "strace_hits_total"), want);
    assert_eq!(v["strace_size_total{scall=\"write\"}"], 20000.0);

    tau_strace(engine, &proxy.socket, &["--only", "write,nosuchcall"], &prog, &[])
        .assert_exit(2)
        .assert_stderr("tau_strace: error: unknown syscall name in --only: nosuchcall (see tau_strace --help)\n");
}

fn absent_proxy_leaves_the_command_untouched(engine: Engine) {
    let dir = TempDir::new("strace-absent");
    let prog = compile(&dir, "strace_fork", false);
    tau_strace(engine, &dir.join("no-proxy.sock"), &[], &prog, &[]).assert_exit(6).assert_stderr("");
}

fn late_proxy_gets_everything_counted_before_it_started(engine: Engine) {
    let dir = TempDir::new("strace-late");
    let prog = compile(&dir, "strace_late", false);
    let socket = dir.join("late.sock");
    let go = dir.join("go");
    let mut child = tool("tau_strace").arg(engine.flag()).arg("-u").arg(&socket).arg("--").arg(&prog).arg(&go).spawn();
    assert_eq!(child.read_line(), "ready\n");
    let proxy = Proxy::start_at(TempDir::new("late-proxy"), socket, &[]);
    // Counted before the proxy existed, pushed once it appears.
    assert_eq!(proxy.wait_value("strace_hits_total{scall=\"getppid\"}", 100.0), 100.0);
    std::fs::write(&go, b"").expect("create go file");
    child.finish_within(Duration::from_secs(10)).assert_exit(0);
    assert_eq!(proxy.wait_value("strace_hits_total{scall=\"getppid\"}", 150.0), 150.0);
}

fn interval_sets_the_push_period(engine: Engine) {
    let dir = TempDir::new("strace-interval");
    let prog = compile(&dir, "strace_late", false);
    let go = dir.join("go");
    let proxy = Proxy::start();
    let mut child =
        proxy.tool("tau_strace").arg(engine.flag()).args(["--interval", "600000", "--"]).arg(&prog).arg(&go).spawn();
    assert_eq!(child.read_line(), "ready\n");
    // The default period would have pushed these 100 calls by now.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(family(&proxy.values(), "strace_hits_total").get("getppid"), None);
    std::fs::write(&go, b"").expect("create go file");
    child.finish_within(Duration::from_secs(10)).assert_exit(0);
    // The final push carries everything.
    assert_eq!(proxy.wait_value("strace_hits_total{scall=\"getppid\"}", 150.0), 150.0);
}

fn verbose_reports_the_final_push(engine: Engine) {
    let proxy = Proxy::start();
    let out = tau_strace(engine, &proxy.socket, &["-v"], Path::new("/bin/true"), &[]);
    out.assert_exit(0);
    let pushed = format!("final counts pushed to tau_metric_proxy on {}", proxy.socket.display());
    assert!(out.stderr().contains(&pushed), "{out}");
    assert_eq!(proxy.wait_value("strace_hits_total{scall=\"execve\"}", 1.0), 1.0);
}

fn two_tracers_and_an_untraced_twin_never_mix(engine: Engine) {
    let dir = TempDir::new("strace-two");
    let late = compile(&dir, "strace_late", false);
    let go = dir.join("go");
    let proxy = Proxy::start();
    let mut traced = proxy.tool("tau_strace").arg(engine.flag()).arg("--").arg(&late).arg(&go).spawn();
    assert_eq!(traced.read_line(), "ready\n");
    // The same program, untraced, at the same time...
    let mut twin = cmd(&late).arg(&go).spawn();
    assert_eq!(twin.read_line(), "ready\n");
    // ...and a second tracer on another program: exact on its own.
    compare(engine, "strace_threads", false, &[], &[]);
    std::fs::write(&go, b"").expect("create go file");
    traced.finish_within(Duration::from_secs(10)).assert_exit(0);
    twin.finish_within(Duration::from_secs(10)).assert_exit(0);
    // Only the traced copy's calls: 150 getppid, and its one write.
    assert_eq!(proxy.wait_value("strace_hits_total{scall=\"getppid\"}", 150.0), 150.0);
    let hits = family(&proxy.values(), "strace_hits_total");
    assert_eq!(hits.get("write"), Some(&1), "{hits:?}");
}

/// Drives `strace_restart` (run by `running`, under whichever tracer):
/// three SIGUSR1 and a SIGUSR2, each sent while it is blocked in its read.
fn interrupt_three_times_then_end(mut running: Running) -> Run {
    let line = running.read_line();
    let pid: i32 = line.strip_prefix("pid ").and_then(|p| p.trim().parse().ok()).expect("pid line");
    let blocked_in_read = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let sleeping = stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('S'));
        let call = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        (sleeping && call.starts_with("0 ")).then_some(())
    };
    let target = nix::unistd::Pid::from_raw(pid);
    for sig in [Signal::SIGUSR1, Signal::SIGUSR1, Signal::SIGUSR1, Signal::SIGUSR2] {
        assert!(wait_for(Duration::from_secs(10), blocked_in_read).is_some(), "{pid} never blocked in read");
        nix::sys::signal::kill(target, sig).expect("signal the program");
        if sig == Signal::SIGUSR1 {
            assert_eq!(running.read_line(), "u\n", "the SIGUSR1 handler ran");
        }
    }
    running.finish_within(Duration::from_secs(10))
}

fn restarted_and_interrupted_calls_count_like_strace(engine: Engine) {
    let dir = TempDir::new("strace-restart");
    let prog = compile(&dir, "strace_restart", false);
    let summary = dir.join("strace.out");
    let strace = cmd("strace").args(["-f", "-c", "-U", "name,calls,errors", "-o"]).arg(&summary).arg(&prog);
    interrupt_three_times_then_end(strace.spawn()).assert_exit(0);
    let oracle = super::summary(&std::fs::read_to_string(&summary).expect("strace summary"));
    let proxy = Proxy::start();
    let traced = proxy.tool("tau_strace").arg(engine.flag()).arg("--").arg(&prog).spawn();
    let out = interrupt_three_times_then_end(traced);
    out.assert_exit(0).assert_stderr("");
    assert!(out.stdout().ends_with("read=-1 errno=EINTR restarted=3\n"), "{out}");
    let v = wait_hits(&proxy, &oracle.calls);
    assert_eq!(named(family(&v, "strace_hits_total")), oracle.calls, "calls (left: tau_strace, right: strace -f -c)");
    assert_eq!(named(family(&v, "strace_errors_total")), oracle.errors, "errors (left: tau_strace, right: strace)");
    // The blocked read: once, then three restarts, the last one interrupted
    // (each interruption returns ERESTARTSYS, an error); the SIGUSR2
    // handler's return gives EINTR back.
    assert_eq!(v["strace_errors_total{scall=\"read\"}"], 4.0, "{v:?}");
    assert_eq!(v["strace_hits_total{scall=\"rt_sigreturn\"}"], 4.0, "{v:?}");
    assert_eq!(v["strace_errors_total{scall=\"rt_sigreturn\"}"], 1.0, "{v:?}");
}

#[test]
fn default_scheduling_opt_out_keeps_counts() {
    compare(Engine::Ptrace, "strace_threads", false, &[], &["--no-idle-sched"]);
}

engine_tests!(
    single_threaded_counts_and_bytes_match,
    restarted_and_interrupted_calls_count_like_strace,
    multi_threaded_counts_match,
    forking_counts_and_exit_code_match,
    exec_from_main_and_from_a_thread_counts_match,
    i386_syscalls_are_named_from_their_table,
    signals_and_job_control_behave_as_untraced,
    only_traces_the_chosen_syscalls,
    absent_proxy_leaves_the_command_untouched,
    late_proxy_gets_everything_counted_before_it_started,
    interval_sets_the_push_period,
    verbose_reports_the_final_push,
    two_tracers_and_an_untraced_twin_never_mix,
);
