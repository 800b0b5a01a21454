//! `tau_metric_proxy_run` without collectors: statuses, counting, environment.

use nix::sys::signal::Signal;

use crate::util::{bin, cmd, tool, Proxy, Run, TempDir};

fn run(socket: &std::path::Path, args: &[&str]) -> Run {
    tool("tau_metric_proxy_run").arg("-u").arg(socket).args(args).run()
}

#[test]
fn exit_status_is_the_commands() {
    let p = Proxy::start();
    run(&p.socket, &["--", "sh", "-c", "exit 3"]).assert_exit(3);
    run(&p.socket, &["--", "true"]).assert_exit(0);
    // Killed by signal N: 128+N.
    run(&p.socket, &["--", "sh", "-c", "kill -TERM $$"]).assert_exit(128 + 15);
    run(&p.socket, &["--", "sh", "-c", "kill -KILL $$"]).assert_exit(128 + 9);
    run(&p.socket, &["--", "/nonexistent/program"]).assert_exit(127).assert_stderr(
        "tau_metric_proxy_run: error: cannot run /nonexistent/program: No such file or directory (os error 2)\n",
    );
    assert_eq!(p.wait_value("tau_metric_proxy_run_total{operation=\"exec\"}", 5.0), 5.0);
}

#[test]
fn the_command_sees_the_socket_and_its_own_io() {
    let p = Proxy::start();
    run(&p.socket, &["--", "sh", "-c", "echo \"$TAU_METRIC_PROXY\"; echo err >&2"])
        .assert_stdout(&format!("{}\n", p.socket.display()))
        .assert_stderr("err\n");
}

#[test]
fn without_a_proxy_the_command_runs_unchanged() {
    let dir = TempDir::new("noproxy");
    let socket = dir.join("absent.sock");
    run(&socket, &["--", "sh", "-c", "echo hello; exit 4"]).assert_exit(4).assert_stdout("hello\n").assert_stderr("");
    run(&socket, &["-v", "--", "true"]).assert_exit(0).assert_stderr(&format!(
        "tau_metric_proxy_run: tau_metric_proxy not found on {}: the command runs without it (collectors push once it starts)\n\
         tau_metric_proxy_run: running true\n",
        socket.display()
    ));
}

#[test]
fn relays_signals_sent_to_it() {
    let p = Proxy::start();
    let mut child = p
        .tool("tau_metric_proxy_run")
        .args(["--", "sh", "-c", "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.01; done"])
        .spawn();
    // Signal only once the trap is in place.
    assert_eq!(child.read_line(), "ready\n");
    child.signal(Signal::SIGTERM);
    child.wait().assert_exit(7).assert_stdout("ready\ngot TERM\n");
}

#[test]
fn usage_errors() {
    let dir = TempDir::new("usage");
    let socket = dir.join("s.sock");
    run(&socket, &[]).assert_exit(2).assert_stderr(
        "tau_metric_proxy_run: error: no command given: tau_metric_proxy_run [-m] [-s] -- COMMAND (see tau_metric_proxy_run --help)\n",
    );
    run(&socket, &["-S", "12", "-m"]).assert_exit(2);
    let out = tool("tau_metric_proxy_run").arg("-h").run();
    out.assert_exit(0);
    assert!(
        out.stdout().starts_with(
            "tau_metric_proxy_run -m -s -v -h -u [PATH] -S [PID] -- [COMMAND]\n\n\
             Wrapper to run commands instrumented for the tau_metric_proxy.\n\n-m: enable MPI profiling\n"
        ),
        "{out}"
    );
}

#[test]
fn with_m_and_s_the_shim_is_preloaded_into_the_command_not_the_tracer() {
    let p = Proxy::start();
    // sh's parent is tau_strace: its environment must not preload the shim.
    let script = "case \"$LD_PRELOAD\" in *libtau_pmpi_openmpi.so*) echo command-preloaded;; esac; \
                  tr '\\0' '\\n' < /proc/$PPID/environ | grep -c '^LD_PRELOAD=.*libtau_pmpi' || true";
    cmd("mpirun.openmpi")
        .args(["-np", "1", "--oversubscribe"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .arg(bin("tau_metric_proxy_run"))
        .arg("-u")
        .arg(&p.socket)
        .args(["-m", "-s", "--", "sh", "-c", script])
        .run()
        .assert_exit(0)
        .assert_stdout("command-preloaded\n0\n");
}

#[test]
fn a_copied_tree_finds_its_tracer_and_shim_relative_to_itself() {
    // The dist layout (bin/ and lib/), copied somewhere no build path leads.
    let tree = TempDir::new("relocated");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::create_dir_all(tree.join("lib")).unwrap();
    for tool in ["tau_metric_proxy_run", "tau_strace"] {
        std::fs::copy(bin(tool), tree.join("bin").join(tool)).unwrap();
    }
    let shim = bin("tau_metric_proxy_run").parent().unwrap().join("lib/libtau_pmpi_openmpi.so");
    std::fs::copy(&shim, tree.join("lib/libtau_pmpi_openmpi.so")).unwrap();
    let run = tree.join("bin/tau_metric_proxy_run");
    let p = Proxy::start();

    cmd(&run)
        .arg("-u")
        .arg(&p.socket)
        .args(["-s", "--", "/bin/true"])
        .env("PATH", "/usr/bin:/bin")
        .run()
        .assert_exit(0);
    assert_eq!(p.wait_value("strace_hits_total{scall=\"execve\"}", 1.0), 1.0);

    let out = cmd("mpirun.openmpi")
        .args(["-np", "1", "--oversubscribe"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .arg(&run)
        .arg("-u")
        .arg(&p.socket)
        .args(["-m", "-v", "--", "/bin/true"])
        .run();
    out.assert_exit(0);
    let preloading = format!("preloading {}", tree.join("lib/libtau_pmpi_openmpi.so").display());
    assert!(out.stderr().contains(&preloading), "{out}");
}

#[test]
fn attach_mode_warns_that_the_command_is_ignored() {
    let dir = TempDir::new("attach-cmd");
    run(&dir.join("none.sock"), &["-S", "999999", "--", "true"]).assert_exit(1).assert_stderr(
        "tau_metric_proxy_run: warning: -S attaches to process 999999: ignoring COMMAND\n\
         tau_strace: no process 999999: No such file or directory (os error 2)\n",
    );
}

#[test]
fn syscall_counting_follows_the_engine_rule_and_says_which_with_v() {
    // Root here: tau_strace counts with eBPF, as `--engine auto` does.
    let p = Proxy::start();
    let out = p.tool("tau_metric_proxy_run").args(["-v", "-s", "--", "/bin/true"]).run();
    out.assert_exit(0);
    assert!(out.stderr().contains("[INFO ] engine: bpf (auto: this process can load the eBPF engine)\n"), "{out}");
    assert_eq!(p.wait_value("strace_hits_total{scall=\"execve\"}", 1.0), 1.0);
}
