//! Exit statuses, commands that cannot run, signals and the terminal: the
//! command behaves as without tracing, whatever the engine.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{tau_strace, Engine};
use crate::util::{bin, cmd, compile, tool, wait_for, TempDir};

fn exit_statuses_are_relayed(engine: Engine) {
    let sock = Path::new("/nonexistent-dir/none.sock");
    let sh = Path::new("/bin/sh");
    tau_strace(engine, sock, &[], sh, &["-c", "exit 3"]).assert_exit(3);
    tau_strace(engine, sock, &[], sh, &["-c", "kill -SEGV $$"]).assert_exit(128 + 11);
    tau_strace(engine, sock, &[], sh, &["-c", "kill -KILL $$"]).assert_exit(128 + 9);
    tau_strace(engine, sock, &[], Path::new("no-such-program-here"), &[])
        .assert_exit(127)
        .assert_stderr("tau_strace: cannot find executable no-such-program-here\n");
    tau_strace(engine, sock, &[], Path::new("/no-such-dir/program"), &[])
        .assert_exit(127)
        .assert_stderr("tau_strace: cannot find executable /no-such-dir/program\n");
}

fn a_command_that_exists_but_cannot_run_gives_126_with_the_shells_reason(engine: Engine) {
    let dir = TempDir::new("strace-126");
    let sock = Path::new("/nonexistent-dir/none.sock");
    let plain = dir.join("plain-file");
    std::fs::write(&plain, b"echo never\n").expect("write file");
    tau_strace(engine, sock, &[], &plain, &[])
        .assert_exit(126)
        .assert_stderr(&format!("tau_strace: cannot execute {}: Permission denied\n", plain.display()))
        .assert_stdout("");
    tau_strace(engine, sock, &[], dir.path(), &[])
        .assert_exit(126)
        .assert_stderr(&format!("tau_strace: cannot execute {}: Is a directory\n", dir.path().display()));
    // Found on PATH without execute permission: the same as the shell.
    let out = tool("tau_strace")
        .arg(engine.flag())
        .env("PATH", dir.path())
        .args(["-u", "/nonexistent-dir/none.sock", "--", "plain-file"])
        .run();
    out.assert_exit(126).assert_stderr(&format!("tau_strace: cannot execute {}: Permission denied\n", plain.display()));
}

fn a_file_that_cannot_be_executed_gives_126(engine: Engine) {
    let dir = TempDir::new("strace-noexec");
    let bad = dir.join("not-a-program");
    std::fs::write(&bad, b"neither ELF nor script").expect("write file");
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    tau_strace(engine, Path::new("/nonexistent-dir/none.sock"), &[], &bad, &[])
        .assert_exit(126)
        .assert_stderr(&format!("tau_strace: cannot execute {}: Exec format error\n", bad.display()));
}

fn signals_ignored_for_tau_strace_stay_ignored_for_the_command(engine: Engine) {
    // As under nohup: the command must inherit the ignored SIGHUP.
    let tracer = bin("tau_strace");
    let script = format!(
        "trap '' HUP; exec {} {} -u /nonexistent-dir/none.sock -- sh -c 'kill -HUP $$; echo alive'",
        tracer.display(),
        engine.flag()
    );
    cmd("sh").args(["-c", &script]).run().assert_stdout("alive\n").assert_exit(0);
    // Not ignored: the command dies of it, and tau_strace reports 128+1.
    tau_strace(
        engine,
        Path::new("/nonexistent-dir/none.sock"),
        &[],
        Path::new("/bin/sh"),
        &["-c", "kill -HUP $$; echo alive"],
    )
    .assert_stdout("")
    .assert_exit(128 + 1);
}

fn sigterm_to_the_tracer_reaches_the_command(engine: Engine) {
    // The command's own exit status (7) proves the SIGTERM reached it and
    // not just killed tau_strace.
    let mut child = tool("tau_strace")
        .arg(engine.flag())
        .args(["-u", "/nonexistent-dir/none.sock", "--", "sh", "-c"])
        .arg("trap 'exit 7' TERM; echo ready; while :; do sleep 0.01; done")
        .spawn();
    assert_eq!(child.read_line(), "ready\n");
    child.signal(Signal::SIGTERM);
    // Status 7: the command ran its SIGTERM trap.
    child.finish_within(Duration::from_secs(10)).assert_exit(7);
}

fn sigint_to_the_tracer_alone_reaches_the_command_even_if_inherited_ignored(engine: Engine) {
    // Started as a script's background job is: with SIGINT ignored.
    let script = format!(
        "trap '' INT; exec {} {} -u /nonexistent-dir/none.sock -- sleep 60",
        bin("tau_strace").display(),
        engine.flag()
    );
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
fn a_killed_tracer_takes_a_seccomp_filtered_command_with_it() {
    // Left alone, the command would see every getppid fail with ENOSYS.
    let dir = TempDir::new("strace-exitkill");
    let prog = compile(&dir, "strace_late", false);
    let mut tracer = tool("tau_strace")
        .arg(Engine::Ptrace.flag())
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
fn a_killed_ebpf_tracer_leaves_the_command_running() {
    // The kernel unloads the programs with their last holder; the command
    // never knew it was watched.
    let dir = TempDir::new("strace-bpf-killed");
    let prog = compile(&dir, "strace_late", false);
    let go = dir.join("go");
    let mut tracer = tool("tau_strace")
        .args([Engine::Bpf.flag(), "-u", "/nonexistent-dir/none.sock", "--"])
        .arg(&prog)
        .arg(&go)
        .spawn();
    assert_eq!(tracer.read_line(), "ready\n");
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", tracer.id())).expect("children");
    let command: u32 = children.trim().parse().expect("one child");
    tracer.signal(Signal::SIGKILL);
    let alive = || std::fs::read_to_string(format!("/proc/{command}/stat")).is_ok_and(|s| !s.contains(") Z "));
    std::thread::sleep(Duration::from_millis(200));
    if !alive() {
        panic!("the command {command} died with its tracer");
    }
    // Released, it runs to its end (and is reaped by its new parent).
    std::fs::write(&go, b"").expect("create go file");
    let ended = wait_for(Duration::from_secs(10), || (!alive()).then_some(()));
    if ended.is_none() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(command as i32), Signal::SIGKILL);
        panic!("the command {command} did not finish once released");
    }
    tracer.finish_within(Duration::from_secs(10)).assert_killed_by(Signal::SIGKILL);
}

/// On a terminal (a pseudo-terminal of `script`), the command has it as
/// stdin and stdout and is in its foreground process group, as untraced.
fn the_command_keeps_the_terminal(engine: Engine) {
    let dir = TempDir::new("strace-tty");
    let prog = compile(&dir, "strace_tty", false);
    let on_a_terminal = |line: String| {
        cmd("script").args(["-qec", &line, "/dev/null"]).hint("script (package bsdutils, always installed)").run()
    };
    let untraced = on_a_terminal(prog.display().to_string());
    untraced.assert_exit(4).assert_stdout("stdin tty=1 stdout tty=1 foreground=1\r\n");
    let traced = format!(
        "{} {} -u /nonexistent-dir/none.sock -- {}",
        bin("tau_strace").display(),
        engine.flag(),
        prog.display()
    );
    on_a_terminal(traced).assert_exit(4).assert_stdout("stdin tty=1 stdout tty=1 foreground=1\r\n");
}

engine_tests!(
    exit_statuses_are_relayed,
    the_command_keeps_the_terminal,
    a_command_that_exists_but_cannot_run_gives_126_with_the_shells_reason,
    a_file_that_cannot_be_executed_gives_126,
    signals_ignored_for_tau_strace_stay_ignored_for_the_command,
    sigterm_to_the_tracer_reaches_the_command,
    sigint_to_the_tracer_alone_reaches_the_command_even_if_inherited_ignored,
);
