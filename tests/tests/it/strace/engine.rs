//! `--engine`: `auto` counts with eBPF where this process can (root here,
//! as in CI) and says so with `-v`; without the capabilities and without a
//! node service, `bpf` fails with the reason and `auto` falls back to
//! ptrace, saying why.

use crate::util::{bin, cmd, Proxy, Run};

const NO_CAPABILITY: &str = "missing capability: loading it needs CAP_BPF and CAP_PERFMON (or root); \
                             no node service on /nonexistent-dir/none.unix";

/// `tau_strace ARGS -- /bin/true` as the unprivileged user 65534.
fn as_nobody(args: &[&str]) -> Run {
    assert!(nix::unistd::geteuid().is_root(), "these tests switch users with setpriv and need root (CI runs as root)");
    cmd("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin("tau_strace"))
        .args(["-u", "/nonexistent-dir/none.sock", "--service", "/nonexistent-dir/none.unix"])
        .args(args)
        .args(["--", "/bin/true"])
        .hint("setpriv (util-linux)")
        .run()
}

#[test]
fn auto_counts_with_ebpf_as_root_and_says_why() {
    let proxy = Proxy::start();
    let out = proxy.tool("tau_strace").args(["-v", "--", "/bin/true"]).run();
    out.assert_exit(0);
    assert!(out.stderr().starts_with("[INFO ] engine: bpf (auto: this process can load the eBPF engine)\n"), "{out}");
    assert_eq!(proxy.wait_value("strace_hits_total{scall=\"execve\"}", 1.0), 1.0);
    let out = proxy.tool("tau_strace").args(["-v", "--engine", "ptrace", "--", "/bin/true"]).run();
    assert!(out.stderr().starts_with("[INFO ] engine: ptrace (--engine ptrace)\n"), "{out}");
}

#[test]
fn without_the_capabilities_bpf_fails_with_the_reason_and_auto_uses_ptrace() {
    as_nobody(&["--engine", "bpf"])
        .assert_exit(1)
        .assert_stderr(&format!("tau_strace: --engine bpf: cannot count with eBPF: {NO_CAPABILITY}\n"));
    let out = as_nobody(&["-v"]);
    out.assert_exit(0);
    assert!(
        out.stderr().starts_with(&format!("[INFO ] engine: ptrace (auto: eBPF unavailable: {NO_CAPABILITY})\n")),
        "{out}"
    );
}
