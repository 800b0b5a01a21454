//! The node service (`tau_strace --serve`), played against a second,
//! unprivileged user (uid 65534, switched to with `setpriv`, which needs
//! root as in CI): that user gets eBPF counts for their own program through
//! it, exact against `strace -f -c`, and is refused another user's process
//! with the reason; what the service's full maps lose reaches that user
//! (counted and said once by the user's `tau_strace`); the service stops
//! counting (its programs unloaded) when that `tau_strace` dies; set-user-id and
//! file-capability programs keep their privileges under eBPF (and lose
//! them under ptrace); the systemd unit that runs it passes
//! `systemd-analyze verify`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::bounds::{
    assert_three_threads_followed, assert_unknown_numbers, programs_of, unknown_counted_up_to, BPF_NUMBERS_FULL, LAST,
    THREADS_FULL,
};
use super::{family, named, strace_counts_as, wait_hits, Engine};
use crate::util::{bin, cmd, compile, deploy, tool, wait_for, Proxy, Run, Running, TempDir, TestCommand};

const USER: u32 = 65534;

/// A service on a socket in a directory every user can reach.
struct Service {
    socket: PathBuf,
    running: Running,
    _dir: TempDir,
}

impl Service {
    fn start() -> Service {
        let dir = open(TempDir::new("strace-service"));
        let socket = dir.join("service.unix");
        let running = tool("tau_strace").args(["-v", "--serve"]).arg(&socket).spawn();
        let up = wait_for(Duration::from_secs(10), || socket.exists().then_some(()));
        assert!(up.is_some(), "the service did not create {}", socket.display());
        assert_eq!(std::fs::metadata(&socket).expect("socket").permissions().mode() & 0o777, 0o666);
        Service { socket, running, _dir: dir }
    }
}

fn open(dir: TempDir) -> TempDir {
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// `tau_strace ARGS` as the unprivileged user.
fn tau_strace_as_user(args: &[&str], socket: &Path, proxy: &Path) -> Run {
    user_tau_strace(args, socket, proxy).run()
}

/// The command of [`tau_strace_as_user`], not yet run.
fn user_tau_strace(args: &[&str], socket: &Path, proxy: &Path) -> TestCommand {
    assert!(nix::unistd::geteuid().is_root(), "these tests switch users with setpriv and need root (CI runs as root)");
    cmd("setpriv")
        .args([format!("--reuid={USER}"), format!("--regid={USER}"), "--clear-groups".into()])
        .arg(bin("tau_strace"))
        .arg("--service")
        .arg(socket)
        .arg("-u")
        .arg(proxy)
        .args(args)
        .hint("setpriv (util-linux)")
}

#[test]
fn a_user_gets_ebpf_counts_for_their_own_program_through_the_service() {
    let service = Service::start();
    let proxy = proxy_for_user();
    let dir = TempDir::new("strace-service-prog");
    // Writable by the user, for strace's summary.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let prog = compile(&dir, "strace_threads", false);
    let as_user = [format!("--reuid={USER}"), format!("--regid={USER}"), "--clear-groups".into()];
    let mut prefix = vec!["setpriv"];
    prefix.extend(as_user.iter().map(String::as_str));
    // The user's own run: its failed calls differ from root's.
    let oracle = strace_counts_as(&prefix, &prog, &[], &dir);
    let out = tau_strace_as_user(&["-v", "--", prog.to_str().expect("path")], &service.socket, &proxy.socket);
    out.assert_exit(0);
    let engine = format!(
        "[INFO ] engine: bpf through the node service on {} (auto: missing capability: loading it needs \
         CAP_BPF and CAP_PERFMON (or root))\n",
        service.socket.display()
    );
    assert!(out.stderr().starts_with(&engine), "{out}");
    let values = wait_hits(&proxy, &oracle.calls);
    assert_eq!(named(family(&values, "strace_hits_total")), oracle.calls, "calls (left: via the service)");
    assert_eq!(named(family(&values, "strace_errors_total")), oracle.errors, "errors (left: via the service)");
    assert_eq!(values["strace_size_total{scall=\"write\"}"], 20000.0);
    // Asked for explicitly, the same; the collector is the user's own
    // tau_strace, so its job (from the job's environment) reaches the proxy.
    user_tau_strace(&["--engine", "bpf", "--", prog.to_str().expect("path")], &service.socket, &proxy.socket)
        .env("TAU_METRIC_PROXY_JOB", "service-job-7")
        .run()
        .assert_exit(0)
        .assert_stderr("");
    assert_eq!(proxy.wait_value("strace_hits_total{scall=\"getppid\"}", 400.0), 400.0);
    let log = proxy.log();
    let jobs: Vec<&str> = log.lines().filter(|l| l.contains("collector tau_strace (pid ")).collect();
    assert!(jobs.last().is_some_and(|l| l.contains(") connected, job service-job-7")), "{log}");
}

#[test]
fn the_launchers_s_counts_through_the_service_named_in_the_environment() {
    let service = Service::start();
    let proxy = proxy_for_user();
    let dir = open(TempDir::new("strace-service-launcher"));
    let prog = compile(&dir, "strace_threads", false);
    let out = cmd("setpriv")
        .args([format!("--reuid={USER}"), format!("--regid={USER}"), "--clear-groups".into()])
        .arg(bin("tau_metric_proxy_run"))
        .args(["-v", "-s", "-u"])
        .arg(&proxy.socket)
        .arg("--")
        .arg(&prog)
        .env("TAU_STRACE_SERVICE", &service.socket)
        .run();
    out.assert_exit(0);
    let engine = format!("engine: bpf through the node service on {} (auto: ", service.socket.display());
    assert!(out.stderr().contains(&engine), "{out}");
    assert_eq!(proxy.wait_value("strace_hits_total{scall=\"getppid\"}", 200.0), 200.0);
    assert_eq!(proxy.wait_value("strace_size_total{scall=\"write\"}", 20000.0), 20000.0);
}

/// A proxy the unprivileged user may push to (logging each collector's
/// connection with its job).
fn proxy_for_user() -> Proxy {
    let proxy = Proxy::start_with(&["-v", "--allow-uid", &USER.to_string()]);
    std::fs::set_permissions(proxy.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    proxy
}

#[test]
fn what_the_services_full_maps_lose_reaches_the_user() {
    let service = Service::start();
    let dir = open(TempDir::new("strace-service-lost"));
    // Threads beyond --max-threads, which the user's request carries.
    let prog = compile(&dir, "strace_many_threads", false);
    let proxy = proxy_for_user();
    let out =
        tau_strace_as_user(&["--max-threads", "3", "--", prog.to_str().expect("path")], &service.socket, &proxy.socket);
    out.assert_exit(0).assert_stdout("6 threads done\n").assert_stderr(THREADS_FULL);
    proxy.wait_value("strace_lost_threads_total", 4.0);
    assert_three_threads_followed(&proxy.values());
    // Numbers outside the tables beyond the service's map.
    let prog = compile(&dir, "strace_unknown", false);
    let proxy = proxy_for_user();
    let out = tau_strace_as_user(&["--", prog.to_str().expect("path")], &service.socket, &proxy.socket);
    out.assert_exit(3).assert_stderr(BPF_NUMBERS_FULL);
    proxy.wait_value("strace_lost_calls_total", (LAST - unknown_counted_up_to(Engine::Bpf)) as f64);
    assert_unknown_numbers(Engine::Bpf, &proxy.values());
    // The service's thread maps are bounded by its own --max-threads.
    tau_strace_as_user(&["--max-threads", "65537", "--", "true"], &service.socket, &proxy.socket)
        .assert_exit(1)
        .assert_stderr(
            "tau_strace: the node service refused: --max-threads 65537: this node service follows at most 65536 \
             threads per request\n",
        );
}

#[test]
fn the_service_stops_counting_when_the_users_tau_strace_dies() {
    let service = Service::start();
    let dir = open(TempDir::new("strace-service-hangup"));
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let prog = compile(&dir, "strace_late", false);
    let go = dir.join("go");
    let args = ["--", prog.to_str().expect("path"), go.to_str().expect("path")];
    let mut tracer = user_tau_strace(&args, &service.socket, Path::new("/nonexistent-dir/none.sock")).spawn();
    assert_eq!(tracer.read_line(), "ready\n");
    let service_pid = service.running.id().to_string();
    assert_eq!(programs_of(&service_pid).len(), 5, "the service holds an engine for the request");
    tracer.signal(nix::sys::signal::Signal::SIGKILL);
    // The command outlives its tracer: release it.
    std::fs::write(&go, b"").expect("create go file");
    tracer.finish_within(Duration::from_secs(10)).assert_killed_by(nix::sys::signal::Signal::SIGKILL);
    let unloaded = wait_for(Duration::from_secs(10), || programs_of(&service_pid).is_empty().then_some(()));
    assert!(unloaded.is_some(), "the service still counts: {:?}", programs_of(&service_pid));
}

#[test]
fn another_users_process_is_refused_with_the_reason() {
    let service = Service::start();
    let mut root_process = cmd("sleep").arg("30").spawn();
    let pid = root_process.id().to_string();
    let out = tau_strace_as_user(&["-p", &pid], &service.socket, Path::new("/nonexistent-dir/none.sock"));
    out.assert_exit(1)
        .assert_stderr(&format!("tau_strace: the node service refused: process {pid} belongs to another user\n"));
    assert!(!root_process.has_ended());
    // A process that does not exist: said before asking.
    tau_strace_as_user(&["-p", "999999999"], &service.socket, Path::new("/nonexistent-dir/none.sock"))
        .assert_exit(1)
        .assert_stderr("tau_strace: no process 999999999: No such file or directory (os error 2)\n");
}

#[test]
fn the_service_unit_passes_systemd_analyze_verify() {
    let dir = TempDir::new("service-unit");
    let rel = "systemd/system/tau_strace_service.service";
    let unit = std::fs::read_to_string(deploy(rel)).expect("unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/tau_strace --serve /run/tau_strace/service.unix\n"));
    assert!(unit.contains("AmbientCapabilities=CAP_BPF CAP_PERFMON\nCapabilityBoundingSet=CAP_BPF CAP_PERFMON\n"));
    let file = dir.join("tau_strace_service.service");
    std::fs::write(&file, unit.replace("/usr/local/bin/tau_strace", bin("tau_strace").to_str().expect("path")))
        .expect("write unit");
    cmd("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&file)
        .hint("systemd-analyze (package systemd; cargo xtask test installs it)")
        .run()
        .assert_exit(0)
        .assert_stdout("")
        .assert_stderr("");
}

#[test]
fn a_setuid_program_keeps_its_privileges_under_ebpf_and_loses_them_under_ptrace() {
    let service = Service::start();
    let dir = open(TempDir::new("strace-setuid"));
    let id = dir.join("id");
    std::fs::copy("/usr/bin/id", &id).expect("copy id");
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o4755)).expect("chmod u+s");
    let run = |engine: &str| {
        let args = ["--engine", engine, "--", id.to_str().expect("path"), "-u"];
        tau_strace_as_user(&args, &service.socket, Path::new("/nonexistent-dir/none.sock"))
    };
    // Counted by the kernel, the program runs as it would untraced...
    let untraced = cmd("setpriv").args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(&id).arg("-u").run();
    untraced.assert_exit(0).assert_stdout("0\n");
    run("bpf").assert_exit(0).assert_stdout("0\n");
    // ...whereas ptrace makes the kernel drop the set-user-id.
    run("ptrace").assert_exit(0).assert_stdout(&format!("{USER}\n"));
}

#[test]
fn a_program_with_file_capabilities_keeps_them_under_ebpf_and_loses_them_under_ptrace() {
    let service = Service::start();
    let dir = open(TempDir::new("strace-filecaps"));
    let grep = dir.join("grep");
    std::fs::copy("/usr/bin/grep", &grep).expect("copy grep");
    cmd("setcap")
        .arg("cap_net_bind_service=ep")
        .arg(&grep)
        .hint("setcap (package libcap2-bin; cargo xtask test installs it)")
        .run()
        .assert_success();
    let run = |engine: &str| {
        let args = ["--engine", engine, "--", grep.to_str().expect("path"), "CapEff", "/proc/self/status"];
        tau_strace_as_user(&args, &service.socket, Path::new("/nonexistent-dir/none.sock"))
    };
    // CAP_NET_BIND_SERVICE is bit 10.
    let with_it = "CapEff:\t0000000000000400\n";
    cmd("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&grep)
        .args(["CapEff", "/proc/self/status"])
        .run()
        .assert_exit(0)
        .assert_stdout(with_it);
    // Counted by the kernel, the program gets its capability as untraced...
    run("bpf").assert_exit(0).assert_stdout(with_it);
    // ...whereas under ptrace the kernel does not grant it.
    run("ptrace").assert_exit(0).assert_stdout("CapEff:\t0000000000000000\n");
}
