//! `-p PID`: every thread counted, Ctrl+C or SIGTERM leaves the process as
//! it was (running, or stopped), a missing process is said.

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{family, thread_states, traced_by, wait_attached, Engine};
use crate::util::{bin, cmd, compile, lines_in, tool, wait_for, Proxy, TempDir};

fn attach_counts_every_thread_and_ctrl_c_detaches_cleanly(engine: Engine) {
    let dir = TempDir::new("strace-attach");
    let prog = compile(&dir, "strace_attach", false);
    let progress = dir.join("progress");
    let mut target = Command::new(&prog).arg(&progress).arg("1500").spawn().expect("start target");
    assert!(wait_for(Duration::from_secs(10), || (lines_in(&progress) > 2).then_some(())).is_some());
    let proxy = Proxy::start();
    let tracer = proxy.tool("tau_strace").arg(engine.flag()).args(["-p", &target.id().to_string()]).spawn();
    // Both threads are traced: the writer's write and the sleeper's getppid.
    let seen = wait_for(Duration::from_secs(10), || {
        let v = proxy.values();
        let hits = family(&v, "strace_hits_total");
        (hits.get("write").copied().unwrap_or(0) >= 3 && hits.get("getppid").copied().unwrap_or(0) >= 3).then_some(hits)
    });
    assert!(seen.is_some(), "no counts from the attached process: {:?}", proxy.values());
    let states = thread_states(target.id());
    assert_eq!(states.len(), 2);
    // ptrace makes tau_strace the threads' tracer; eBPF leaves them alone.
    let want = traced_by(engine, tracer.id());
    assert!(states.iter().all(|(_, tracer_pid)| tracer_pid == &want), "{states:?}");

    // Ctrl+C: tau_strace detaches.
    tracer.signal(Signal::SIGINT);
    tracer.finish_within(Duration::from_secs(10)).assert_exit(0);
    // The target runs on, untraced and not stopped.
    let states = thread_states(target.id());
    assert!(
        states
            .iter()
            .all(|(state, tracer_pid)| tracer_pid == "0" && !state.starts_with('T') && !state.starts_with('t')),
        "{states:?}"
    );
    let before = lines_in(&progress);
    assert!(
        wait_for(Duration::from_secs(10), || (lines_in(&progress) > before + 3).then_some(())).is_some(),
        "target stopped making progress"
    );
    assert_eq!(target.try_wait().expect("wait target"), None, "target still alive");
    // Its counts stay with the proxy after the detach.
    assert!(family(&proxy.values(), "strace_hits_total")["write"] >= 3);
    let _ = target.kill();
    let _ = target.wait();
}

fn attach_to_a_stopped_process_leaves_it_stopped_and_detaches_even_if_sigint_was_ignored(engine: Engine) {
    let dir = TempDir::new("strace-attach-stopped");
    let prog = compile(&dir, "strace_attach", false);
    let progress = dir.join("progress");
    let mut target = Command::new(&prog).arg(&progress).arg("1500").spawn().expect("start target");
    assert!(wait_for(Duration::from_secs(10), || (lines_in(&progress) > 2).then_some(())).is_some());
    let pid = nix::unistd::Pid::from_raw(target.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("stop target");
    assert!(wait_for(Duration::from_secs(10), || thread_states(target.id())
        .iter()
        .all(|(state, _)| state.starts_with('T'))
        .then_some(()))
    .is_some());
    // Started the way a non-interactive shell starts a background job:
    // with SIGINT ignored. Attached, SIGINT must still detach.
    let script = format!(
        "trap '' INT; exec {} {} -u /nonexistent-dir/none.sock -p {}",
        bin("tau_strace").display(),
        engine.flag(),
        target.id()
    );
    let tracer = cmd("sh").args(["-c", &script]).spawn();
    wait_attached(engine, tracer.id(), target.id());
    let before = lines_in(&progress);
    tracer.signal(Signal::SIGINT);
    tracer.finish_within(Duration::from_secs(10)).assert_exit(0);
    // Still stopped, as before the attach, and untraced.
    let states = thread_states(target.id());
    assert!(states.iter().all(|(state, t)| state.starts_with("T (stopped)") && t == "0"), "{states:?}");
    assert_eq!(lines_in(&progress), before);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("continue target");
    assert!(wait_for(Duration::from_secs(10), || (lines_in(&progress) > before + 3).then_some(())).is_some());
    let _ = target.kill();
    let _ = target.wait();
}

/// Children the process creates after the attach are counted too: a shell
/// waiting for a file, then running `strace_fork` (a child, a vfork child
/// and a grandchild: 22 getppid in all; the shell itself makes none).
fn attach_counts_the_children_created_afterwards(engine: Engine) {
    let dir = TempDir::new("strace-attach-children");
    let prog = compile(&dir, "strace_fork", false);
    let go = dir.join("go");
    let script = format!("until [ -e {} ]; do sleep 0.01; done; {}; exit $?", go.display(), prog.display());
    let mut target = Command::new("sh").args(["-c", &script]).spawn().expect("start target");
    let proxy = Proxy::start();
    let tracer = proxy.tool("tau_strace").arg(engine.flag()).args(["-p", &target.id().to_string()]).spawn();
    wait_attached(engine, tracer.id(), target.id());
    std::fs::write(&go, b"").expect("create go file");
    // The process ends (with strace_fork's status): so does tau_strace.
    tracer.finish_within(Duration::from_secs(20)).assert_exit(0);
    assert_eq!(target.wait().expect("wait target").code(), Some(6));
    assert_eq!(proxy.wait_value("strace_hits_total{scall=\"getppid\"}", 22.0), 22.0);
}

fn attach_to_a_missing_process_fails_clearly(engine: Engine) {
    let out = tool("tau_strace").arg(engine.flag()).args(["-u", "/nonexistent-dir/none.sock", "-p", "999999999"]).run();
    out.assert_exit(1);
    assert!(out.stderr().starts_with("tau_strace: no process 999999999: "), "{out}");
}

fn attach_with_only_counts_just_those_calls_and_sigterm_detaches(engine: Engine) {
    let dir = TempDir::new("strace-attach-only");
    let prog = compile(&dir, "strace_attach", false);
    let progress = dir.join("progress");
    let mut target = Command::new(&prog).arg(&progress).arg("1500").spawn().expect("start target");
    assert!(wait_for(Duration::from_secs(10), || (lines_in(&progress) > 2).then_some(())).is_some());
    let proxy = Proxy::start();
    let tracer =
        proxy.tool("tau_strace").arg(engine.flag()).args(["--only", "getppid", "-p", &target.id().to_string()]).spawn();
    let seen = wait_for(Duration::from_secs(10), || {
        let hits = family(&proxy.values(), "strace_hits_total");
        (hits.get("getppid").copied().unwrap_or(0) >= 3).then_some(hits)
    })
    .expect("getppid counted");
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["getppid"]);
    tracer.signal(Signal::SIGTERM);
    tracer.finish_within(Duration::from_secs(10)).assert_exit(0);
    let before = lines_in(&progress);
    assert!(wait_for(Duration::from_secs(10), || (lines_in(&progress) > before + 3).then_some(())).is_some());
    assert!(thread_states(target.id()).iter().all(|(_, tracer_pid)| tracer_pid == "0"));
    assert_eq!(family(&proxy.values(), "strace_hits_total").keys().collect::<Vec<_>>(), ["getppid"]);
    let _ = target.kill();
    let _ = target.wait();
}

/// `-p PID` with fewer `--max-threads` than the process has threads: the
/// threads are marked in `/proc` order, the main thread first, and the one
/// that finds the map full is counted as lost (eBPF engine only).
#[test]
fn attach_beyond_max_threads_follows_the_first_and_counts_the_others_as_lost() {
    let dir = TempDir::new("strace-attach-max-threads");
    let prog = compile(&dir, "strace_attach", false);
    let progress = dir.join("progress");
    let mut target = Command::new(&prog).arg(&progress).arg("1500").spawn().expect("start target");
    assert!(wait_for(Duration::from_secs(10), || (lines_in(&progress) > 2).then_some(())).is_some());
    let proxy = Proxy::start();
    let tracer = proxy
        .tool("tau_strace")
        .arg(Engine::Bpf.flag())
        .args(["--max-threads", "1", "-p", &target.id().to_string()])
        .spawn();
    // The main thread's writes are counted; the sleeper's getppid never is.
    let v = wait_for(Duration::from_secs(10), || {
        let v = proxy.values();
        (family(&v, "strace_hits_total").get("write").copied().unwrap_or(0) >= 5).then_some(v)
    })
    .expect("the main thread's writes counted");
    assert_eq!(v.get("strace_lost_threads_total"), Some(&1.0), "{v:?}");
    assert_eq!(family(&v, "strace_hits_total").get("getppid"), None, "{v:?}");
    tracer.signal(Signal::SIGINT);
    tracer.finish_within(Duration::from_secs(10)).assert_exit(0).assert_stderr(
        "[WARN ] eBPF thread map full (--max-threads 1): further threads are not counted \
         (strace_lost_threads_total)\n",
    );
    assert_eq!(target.try_wait().expect("wait target"), None, "target still alive");
    assert_eq!(family(&proxy.values(), "strace_hits_total").get("getppid"), None);
    let _ = target.kill();
    let _ = target.wait();
}

engine_tests!(
    attach_counts_every_thread_and_ctrl_c_detaches_cleanly,
    attach_counts_the_children_created_afterwards,
    attach_to_a_stopped_process_leaves_it_stopped_and_detaches_even_if_sigint_was_ignored,
    attach_to_a_missing_process_fails_clearly,
    attach_with_only_counts_just_those_calls_and_sigterm_detaches,
);
