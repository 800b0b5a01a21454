//! Installs the Debian packages the tools and tests need, when missing.

use std::process::Command;

/// MPI (both implementations), strace (the tests' oracle), Prometheus and
/// promtool, systemd-analyze (unit checks), PyYAML (a real YAML parser for
/// the client's YAML output), mpi4py (the interpreter case of `-m`), the
/// kernel's uapi headers (the syscall tables `cargo xtask codegen` reads,
/// and `<linux/bpf.h>` for the eBPF engine), gfortran (the MPI Fortran
/// wrappers `mpif90` the shim's build asks for the Fortran MPI libraries,
/// and the Fortran test programs), clang and libbpf's headers
/// (`strace-tracer/build.rs` compiles the eBPF engine's C program),
/// chromium (the live page's test opens it in a real, headless browser),
/// and libcap2-bin (`setcap`, giving a test program file capabilities,
/// which tracing must leave to it under eBPF).
pub(crate) const PACKAGES: &[&str] = &[
    "openmpi-bin",
    "libopenmpi-dev",
    "mpich",
    "libmpich-dev",
    "strace",
    "prometheus",
    "systemd",
    "python3-yaml",
    "python3-mpi4py",
    "linux-libc-dev",
    "gfortran",
    "clang",
    "libbpf-dev",
    "chromium",
    "libcap2-bin",
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Installs what is missing with apt-get (directly as root, else through
/// sudo); explains what to install when neither is possible.
pub(crate) fn ensure() -> Result<(), String> {
    if Command::new("dpkg-query").arg("--version").output().is_err() {
        eprintln!("xtask: not a Debian system: make sure these are installed: {}", PACKAGES.join(" "));
        return Ok(());
    }
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false);
    let apt = |args: &[&str]| {
        let mut c = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    let ok = |mut c: Command| c.status().map(|s| s.success()).unwrap_or(false);
    if !ok(apt(&["update", "-qq"])) {
        return Err(format!("apt-get update failed; install these packages yourself: {}", missing.join(" ")));
    }
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    if !ok(apt(&args)) {
        return Err(format!("apt-get install failed; install these packages yourself: {}", missing.join(" ")));
    }
    Ok(())
}
