//! `tau_metric_proxy_run` without collectors: statuses, counting, environment.

use std::process::Command;

use crate::util::{bin, text, Proxy, TempDir};

fn run(socket: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("tau_metric_proxy_run")).arg("-u").arg(socket).args(args).output().unwrap()
}

#[test]
fn exit_status_is_the_commands() {
    let p = Proxy::start();
    assert_eq!(run(&p.socket, &["--", "sh", "-c", "exit 3"]).status.code(), Some(3));
    assert_eq!(run(&p.socket, &["--", "true"]).status.code(), Some(0));
    // Killed by signal N: 128+N.
    assert_eq!(run(&p.socket, &["--", "sh", "-c", "kill -TERM $$"]).status.code(), Some(128 + 15));
    assert_eq!(run(&p.socket, &["--", "sh", "-c", "kill -KILL $$"]).status.code(), Some(128 + 9));
    let out = run(&p.socket, &["--", "/nonexistent/program"]);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(
        text(&out.stderr),
        "tau_metric_proxy_run: error: cannot run /nonexistent/program: No such file or directory (os error 2)\n"
    );
    assert_eq!(p.wait_value("tau_metric_proxy_run_total{operation=\"exec\"}", 5.0), 5.0);
}

#[test]
fn the_command_sees_the_socket_and_its_own_io() {
    let p = Proxy::start();
    let out = run(&p.socket, &["--", "sh", "-c", "echo \"$TAU_METRIC_PROXY\"; echo err >&2"]);
    assert_eq!(text(&out.stdout), format!("{}\n", p.socket.display()));
    assert_eq!(text(&out.stderr), "err\n");
}

#[test]
fn without_a_proxy_the_command_runs_unchanged() {
    let dir = TempDir::new("noproxy");
    let socket = dir.join("absent.sock");
    let out = run(&socket, &["--", "sh", "-c", "echo hello; exit 4"]);
    assert_eq!((out.status.code(), text(&out.stdout), text(&out.stderr)), (Some(4), "hello\n".into(), String::new()));
    let out = run(&socket, &["-v", "--", "true"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stderr),
        format!(
            "tau_metric_proxy_run: tau_metric_proxy not found on {}: the command runs without it (collectors push once it starts)\n\
             tau_metric_proxy_run: running true\n",
            socket.display()
        )
    );
}

#[test]
fn relays_signals_sent_to_it() {
    let p = Proxy::start();
    let mut child = Command::new(bin("tau_metric_proxy_run"))
        .arg("-u")
        .arg(&p.socket)
        .args(["--", "sh", "-c", "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.01; done"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Signal only once the trap is in place.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!((status.code(), rest.as_str()), (Some(7), "got TERM\n"));
}

#[test]
fn usage_errors() {
    let dir = TempDir::new("usage");
    let socket = dir.join("s.sock");
    let out = run(&socket, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "tau_metric_proxy_run: error: no command given: tau_metric_proxy_run [-m] [-s] -- COMMAND (see tau_metric_proxy_run --help)\n"
    );
    let out = run(&socket, &["-S", "12", "-m"]);
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(bin("tau_metric_proxy_run")).arg("-h").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with(
        "tau_metric_proxy_run -m -s -v -h -u [PATH] -S [PID] -- [COMMAND]\n\n\
         Wrapper to run commands instrumented for the tau_metric_proxy.\n\n-m: enable MPI profiling\n"
    ));
}

#[test]
fn with_m_and_s_the_shim_is_preloaded_into_the_command_not_the_tracer() {
    let p = Proxy::start();
    // sh's parent is tau_strace: its environment must not preload the shim.
    let script = "case \"$LD_PRELOAD\" in *libtau_pmpi_openmpi.so*) echo command-preloaded;; esac; \
                  tr '\\0' '\\n' < /proc/$PPID/environ | grep -c '^LD_PRELOAD=.*libtau_pmpi' || true";
    let out = Command::new("mpirun.openmpi")
        .args(["-np", "1", "--oversubscribe"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .arg(bin("tau_metric_proxy_run"))
        .arg("-u")
        .arg(&p.socket)
        .args(["-m", "-s", "--", "sh", "-c", script])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "command-preloaded\n0\n");
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

    let out = Command::new(&run)
        .arg("-u")
        .arg(&p.socket)
        .args(["-s", "--", "/bin/true"])
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(p.wait_value("strace_hits_total{scall=\"execve\"}", 1.0), 1.0);

    let out = Command::new("mpirun.openmpi")
        .args(["-np", "1", "--oversubscribe"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .arg(&run)
        .arg("-u")
        .arg(&p.socket)
        .args(["-m", "-v", "--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let preloading = format!("preloading {}", tree.join("lib/libtau_pmpi_openmpi.so").display());
    assert!(text(&out.stderr).contains(&preloading), "{}", text(&out.stderr));
}

#[test]
fn attach_mode_warns_that_the_command_is_ignored() {
    let dir = TempDir::new("attach-cmd");
    let out = run(&dir.join("none.sock"), &["-S", "999999", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "tau_metric_proxy_run: warning: -S attaches to process 999999: ignoring COMMAND\n\
         tau_strace: no process 999999: No such file or directory (os error 2)\n"
    );
}
