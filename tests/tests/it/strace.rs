//! `tau_strace`: per-syscall counts compared with real `strace -f -c` on
//! the same programs (single-threaded, multi-threaded, forking, exec-ing,
//! 32-bit calls), exact byte counts, exit statuses and signals, attach and
//! detach, and an absent or late proxy.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::util::{bin, cmd, compile, lines_in, tool, wait_for, Proxy, Run, TempDir};

/// What `strace -f -c` counted, per syscall (all personalities summed).
struct Oracle {
    calls: BTreeMap<String, u64>,
    /// Calls that returned an error, for syscalls with any.
    errors: BTreeMap<String, u64>,
}

/// Per-syscall calls and errors from `strace -f -c`. strace counts unknown
/// numbers in its total but lists no line for them.
fn strace_counts(prog: &Path, args: &[&str], dir: &TempDir) -> Oracle {
    let out = dir.join("strace.out");
    let r = cmd("strace").args(["-f", "-c", "-U", "name,calls,errors", "-o"]).arg(&out).arg(prog).args(args).run();
    if r.code().is_none() {
        r.fail("strace itself failed");
    }
    let text = std::fs::read_to_string(&out).expect("strace summary");
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
fn named(hits: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    hits.into_iter().filter(|(k, _)| !k.starts_with("syscall_")).collect()
}

/// The series of one family, keyed by syscall name.
fn family(values: &BTreeMap<String, f64>, fam: &str) -> BTreeMap<String, u64> {
    let prefix = format!("{fam}{{scall=\"");
    values
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.strip_suffix("\"}")?.to_owned(), *v as u64)))
        .collect()
}

fn tau_strace(socket: &Path, extra: &[&str], prog: &Path, args: &[&str]) -> Run {
    tool("tau_strace").arg("-u").arg(socket).args(extra).arg("--").arg(prog).args(args).run()
}

/// Waits until the proxy's hit counts equal `want` (they arrive with the
/// final push) and returns every value.
fn wait_hits(proxy: &Proxy, want: &BTreeMap<String, u64>) -> BTreeMap<String, f64> {
    let mut last = BTreeMap::new();
    wait_for(Duration::from_secs(10), || {
        last = proxy.values();
        (named(family(&last, "strace_hits_total")) == *want).then_some(())
    });
    last
}

/// Runs `prog` under strace and under tau_strace, asserts equal hits and
/// the same exit code; returns tau_strace's output and the proxy's values.
fn compare(name: &str, statically: bool, args: &[&str], extra: &[&str]) -> (Run, BTreeMap<String, f64>) {
    let dir = TempDir::new("strace");
    let prog = compile(&dir, name, statically);
    let args: Vec<String> = args.iter().map(|a| a.replace("$DIR", &dir.path().to_string_lossy())).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let oracle = strace_counts(&prog, &args, &dir);
    let want = oracle.calls;
    let untraced = cmd(&prog).args(&args).run();
    let proxy = Proxy::start();
    let out = tau_strace(&proxy.socket, extra, &prog, &args);
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

#[test]
fn single_threaded_counts_and_bytes_match() {
    let (out, v) = compare("strace_io", true, &["$DIR"], &[]);
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

#[test]
fn multi_threaded_counts_match() {
    let (_, v) = compare("strace_threads", false, &[], &[]);
    assert_eq!(v["strace_hits_total{scall=\"getppid\"}"], 200.0);
    assert_eq!(v["strace_size_total{scall=\"write\"}"], 20000.0);
}

#[test]
fn forking_counts_and_exit_code_match() {
    let (out, v) = compare("strace_fork", false, &[], &[]);
    out.assert_exit(6);
    assert_eq!(v["strace_hits_total{scall=\"getppid\"}"], 22.0);
}

#[test]
fn exec_from_main_and_from_a_thread_counts_match() {
    let (out, v) = compare("strace_exec", false, &[], &[]);
    out.assert_exit(5);
    assert_eq!(v["strace_hits_total{scall=\"execve\"}"], 3.0);
    assert_eq!(v["strace_hits_total{scall=\"getppid\"}"], 4.0);
}

#[test]
fn i386_syscalls_are_named_from_their_table() {
    let (out, v) = compare("strace_i386", true, &[], &[]);
    out.assert_stdout("hello int80\n");
    assert_eq!(v["strace_hits_total{scall=\"getpid\"}"], 4.0);
    assert_eq!(v["strace_size_total{scall=\"write\"}"], 12.0);
}

#[test]
fn signals_and_job_control_behave_as_untraced() {
    let (out, _) = compare("strace_signals", false, &[], &[]);
    out.assert_stdout("usr1=3 stopped=1 continued=1 child=7\n");
}

#[test]
fn default_scheduling_opt_out_keeps_counts() {
    compare("strace_threads", false, &[], &["--no-idle-sched"]);
}

#[test]
fn only_traces_the_chosen_syscalls() {
    let dir = TempDir::new("strace-only");
    let prog = compile(&dir, "strace_threads", false);
    let proxy = Proxy::start();
    tau_strace(&proxy.socket, &["--only", "write,getppid"], &prog, &[]).assert_exit(0);
    let want: BTreeMap<String, u64> = [("getppid".to_owned(), 200), ("write".to_owned(), 200)].into();
    let v = wait_hits(&proxy, &want);
    assert_eq!(family(&v, "strace_hits_total"), want);
    assert_eq!(v["strace_size_total{scall=\"write\"}"], 20000.0);

    tau_strace(&proxy.socket, &["--only", "write,nosuchcall"], &prog, &[])
        .assert_exit(2)
        .assert_stderr("tau_strace: error: unknown syscall name in --only: nosuchcall (see tau_strace --help)\n");
}

#[test]
fn usage_errors_are_one_line_with_status_2() {
    let cases: [(&[&str], &str); 3] = [
        (&[], "the following required arguments were not provided: <COMMAND>..."),
        (&["-i", "5", "--", "true"], "invalid value '5' for '--interval <MS>': 5 is not in 10..18446744073709551615"),
        (&["-p", "1", "--", "true"], "the argument '--pid <PID>' cannot be used with '[COMMAND]...'"),
    ];
    for (args, message) in cases {
        tool("tau_strace")
            .args(args)
            .run()
            .assert_exit(2)
            .assert_stderr(&format!("tau_strace: error: {message} (see tau_strace --help)\n"))
            .assert_stdout("");
    }
    let help = tool("tau_strace").arg("--help").run();
    help.assert_exit(0);
    assert!(help.stdout().contains("Usage: tau_strace [OPTIONS] -- COMMAND [ARGS]..."), "{help}");
}

#[test]
fn exit_statuses_are_relayed() {
    let sock = Path::new("/nonexistent-dir/none.sock");
    let sh = Path::new("/bin/sh");
    tau_strace(sock, &[], sh, &["-c", "exit 3"]).assert_exit(3);
    tau_strace(sock, &[], sh, &["-c", "kill -SEGV $$"]).assert_exit(128 + 11);
    tau_strace(sock, &[], sh, &["-c", "kill -KILL $$"]).assert_exit(128 + 9);
    tau_strace(sock, &[], Path::new("no-such-program-here"), &[])
        .assert_exit(127)
        .assert_stderr("tau_strace: cannot find executable no-such-program-here\n");
    tau_strace(sock, &[], Path::new("/no-such-dir/program"), &[])
        .assert_exit(127)
        .assert_stderr("tau_strace: cannot find executable /no-such-dir/program\n");
}

#[test]
fn a_command_that_exists_but_cannot_run_gives_126_with_the_shells_reason() {
    let dir = TempDir::new("strace-126");
    let sock = Path::new("/nonexistent-dir/none.sock");
    let plain = dir.join("plain-file");
    std::fs::write(&plain, b"echo never\n").expect("write file");
    tau_strace(sock, &[], &plain, &[])
        .assert_exit(126)
        .assert_stderr(&format!("tau_strace: cannot execute {}: Permission denied\n", plain.display()))
        .assert_stdout("");
    tau_strace(sock, &[], dir.path(), &[])
        .assert_exit(126)
        .assert_stderr(&format!("tau_strace: cannot execute {}: Is a directory\n", dir.path().display()));
    // Found on PATH without execute permission: the same as the shell.
    let out =
        tool("tau_strace").env("PATH", dir.path()).args(["-u", "/nonexistent-dir/none.sock", "--", "plain-file"]).run();
    out.assert_exit(126).assert_stderr(&format!("tau_strace: cannot execute {}: Permission denied\n", plain.display()));
}

#[test]
fn a_file_that_cannot_be_executed_gives_126() {
    let dir = TempDir::new("strace-noexec");
    let bad = dir.join("not-a-program");
    std::fs::write(&bad, b"neither ELF nor script").expect("write file");
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    tau_strace(Path::new("/nonexistent-dir/none.sock"), &[], &bad, &[])
        .assert_exit(126)
        .assert_stderr(&format!("tau_strace: cannot execute {}: Exec format error\n", bad.display()));
}

#[test]
fn signals_ignored_for_tau_strace_stay_ignored_for_the_command() {
    // As under nohup: the command must inherit the ignored SIGHUP.
    let tracer = bin("tau_strace");
    let script = format!(
        "trap '' HUP; exec {} -u /nonexistent-dir/none.sock -- sh -c 'kill -HUP $$; echo alive'",
        tracer.display()
    );
    cmd("sh").args(["-c", &script]).run().assert_stdout("alive\n").assert_exit(0);
    // Not ignored: the command dies of it, and tau_strace reports 128+1.
    tau_strace(Path::new("/nonexistent-dir/none.sock"), &[], Path::new("/bin/sh"), &["-c", "kill -HUP $$; echo alive"])
        .assert_stdout("")
        .assert_exit(128 + 1);
}

#[test]
fn sigterm_to_the_tracer_reaches_the_command() {
    // The command's own exit status (7) proves the SIGTERM reached it and
    // not just killed tau_strace.
    let mut child = tool("tau_strace")
        .args(["-u", "/nonexistent-dir/none.sock", "--", "sh", "-c"])
        .arg("trap 'exit 7' TERM; echo ready; while :; do sleep 0.01; done")
        .spawn();
    assert_eq!(child.read_line(), "ready\n");
    child.signal(Signal::SIGTERM);
    // Status 7: the command ran its SIGTERM trap.
    child.finish_within(Duration::from_secs(10)).assert_exit(7);
}

#[test]
fn sigint_to_the_tracer_alone_reaches_the_command_even_if_inherited_ignored() {
    // Started as a script's background job is: with SIGINT ignored.
    let script = format!("trap '' INT; exec {} -u /nonexistent-dir/none.sock -- sleep 60", bin("tau_strace").display());
    let tracer = cmd("sh").args(["-c", &script]).spawn();
    // Wait until the command runs under it.
    let children = format!("/proc/{0}/task/{0}/children", tracer.id());
    assert!(wait_for(Duration::from_secs(10), || {
        let child = std::fs::read_to_string(&children).ok()?.trim().parse::<u32>().ok()?;
        std::fs::read_to_string(format!("/proc/{child}/cmdline")).ok()?.starts_with("sleep").then_some(())
    })
    .is_some());
    tracer.signal(Signal::SIGINT);
    tracer.finish_within(Duration::from_secs(10)).assert_exit(128 + 2);
}

#[test]
fn a_killed_tracer_takes_a_seccomp_filtered_command_with_it() {
    // Left alone, the command would see every getppid fail with ENOSYS.
    let dir = TempDir::new("strace-exitkill");
    let prog = compile(&dir, "strace_late", false);
    let mut tracer = tool("tau_strace")
        .args(["-u", "/nonexistent-dir/none.sock", "--only", "getppid", "--"])
        .arg(&prog)
        .arg(dir.join("go"))
        .spawn();
    assert_eq!(tracer.read_line(), "ready\n");
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", tracer.id())).expect("children");
    let command: u32 = children.trim().parse().expect("one child");
    tracer.signal(Signal::SIGKILL);
    let gone = wait_for(Duration::from_secs(10), || {
        let stat = std::fs::read_to_string(format!("/proc/{command}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for its new parent to reap it.
        (stat.is_empty() || stat.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z'))).then_some(())
    });
    if gone.is_none() {
        // It holds the tracer's stdout: end it before failing.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(command as i32), Signal::SIGKILL);
        panic!("the command {command} outlived its killed tracer");
    }
    tracer.finish_within(Duration::from_secs(10)).assert_killed_by(Signal::SIGKILL);
}

#[test]
fn absent_proxy_leaves_the_command_untouched() {
    let dir = TempDir::new("strace-absent");
    let prog = compile(&dir, "strace_fork", false);
    tau_strace(&dir.join("no-proxy.sock"), &[], &prog, &[]).assert_exit(6).assert_stderr("");
}

#[test]
fn late_proxy_gets_everything_counted_before_it_started() {
    let dir = TempDir::new("strace-late");
    let prog = compile(&dir, "strace_late", false);
    let socket = dir.join("late.sock");
    let go = dir.join("go");
    let mut child = tool("tau_strace").arg("-u").arg(&socket).arg("--").arg(&prog).arg(&go).spawn();
    assert_eq!(child.read_line(), "ready\n");
    let proxy = Proxy::start_at(TempDir::new("late-proxy"), socket, &[]);
    // Counted before the proxy existed, pushed once it appears.
    assert_eq!(proxy.wait_value("strace_hits_total{scall=\"getppid\"}", 100.0), 100.0);
    std::fs::write(&go, b"").expect("create go file");
    child.finish_within(Duration::from_secs(10)).assert_exit(0);
    assert_eq!(proxy.wait_value("strace_hits_total{scall=\"getppid\"}", 150.0), 150.0);
}

#[test]
fn interval_sets_the_push_period() {
    let dir = TempDir::new("strace-interval");
    let prog = compile(&dir, "strace_late", false);
    let go = dir.join("go");
    let proxy = Proxy::start();
    let mut child = proxy.tool("tau_strace").args(["--interval", "600000", "--"]).arg(&prog).arg(&go).spawn();
    assert_eq!(child.read_line(), "ready\n");
    // The default period would have pushed these 100 calls by now.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(family(&proxy.values(), "strace_hits_total").get("getppid"), None);
    std::fs::write(&go, b"").expect("create go file");
    child.finish_within(Duration::from_secs(10)).assert_exit(0);
    // The final push carries everything.
    assert_eq!(proxy.wait_value("strace_hits_total{scall=\"getppid\"}", 150.0), 150.0);
}

/// `/proc/PID/task/*/status`: (state letter, tracer pid) per thread.
fn thread_states(pid: u32) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).expect("task dir") {
        let status = std::fs::read_to_string(e.expect("entry").path().join("status")).unwrap_or_default();
        let field =
            |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(|s| s.trim().to_owned()).unwrap_or_default();
        v.push((field("State:"), field("TracerPid:")));
    }
    v
}

#[test]
fn attach_counts_every_thread_and_ctrl_c_detaches_cleanly() {
    let dir = TempDir::new("strace-attach");
    let prog = compile(&dir, "strace_attach", false);
    let progress = dir.join("progress");
    let mut target = Command::new(&prog).arg(&progress).arg("1500").spawn().expect("start target");
    assert!(wait_for(Duration::from_secs(10), || (lines_in(&progress) > 2).then_some(())).is_some());
    let proxy = Proxy::start();
    let tracer = proxy.tool("tau_strace").args(["-p", &target.id().to_string()]).spawn();
    // Both threads are traced: the writer's write and the sleeper's getppid.
    let seen = wait_for(Duration::from_secs(10), || {
        let v = proxy.values();
        let hits = family(&v, "strace_hits_total");
        (hits.get("write").copied().unwrap_or(0) >= 3 && hits.get("getppid").copied().unwrap_or(0) >= 3).then_some(hits)
    });
    assert!(seen.is_some(), "no counts from the attached process: {:?}", proxy.values());
    let states = thread_states(target.id());
    assert_eq!(states.len(), 2);
    assert!(states.iter().all(|(_, tracer_pid)| tracer_pid == &tracer.id().to_string()), "{states:?}");

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

#[test]
fn attach_to_a_stopped_process_leaves_it_stopped_and_detaches_even_if_sigint_was_ignored() {
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
    let script =
        format!("trap '' INT; exec {} -u /nonexistent-dir/none.sock -p {}", bin("tau_strace").display(), target.id());
    let tracer = cmd("sh").args(["-c", &script]).spawn();
    let tracer_pid = tracer.id().to_string();
    assert!(wait_for(Duration::from_secs(10), || thread_states(target.id())
        .iter()
        .all(|(_, t)| t == &tracer_pid)
        .then_some(()))
    .is_some());
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

#[test]
fn attach_to_a_missing_process_fails_clearly() {
    let out = tool("tau_strace").args(["-u", "/nonexistent-dir/none.sock", "-p", "999999999"]).run();
    out.assert_exit(1);
    assert!(out.stderr().starts_with("tau_strace: no process 999999999: "), "{out}");
}

#[test]
fn attach_with_only_counts_just_those_calls_and_sigterm_detaches() {
    let dir = TempDir::new("strace-attach-only");
    let prog = compile(&dir, "strace_attach", false);
    let progress = dir.join("progress");
    let mut target = Command::new(&prog).arg(&progress).arg("1500").spawn().expect("start target");
    assert!(wait_for(Duration::from_secs(10), || (lines_in(&progress) > 2).then_some(())).is_some());
    let proxy = Proxy::start();
    let tracer = proxy.tool("tau_strace").args(["--only", "getppid", "-p", &target.id().to_string()]).spawn();
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

#[test]
fn verbose_reports_the_final_push() {
    let proxy = Proxy::start();
    let out = tau_strace(&proxy.socket, &["-v"], Path::new("/bin/true"), &[]);
    out.assert_exit(0);
    let pushed = format!("final counts pushed to tau_metric_proxy on {}", proxy.socket.display());
    assert!(out.stderr().contains(&pushed), "{out}");
    assert_eq!(proxy.wait_value("strace_hits_total{scall=\"execve\"}", 1.0), 1.0);
}
