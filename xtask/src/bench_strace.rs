//! `cargo xtask bench strace`: wall time of two workloads untraced, under
//! `tau_strace` and under `strace -c -f`, unpinned (as users run them) and
//! with everything pinned to CPU 0, plus the cost per traced syscall.
//! Printed, never asserted.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::root;

/// Small reads and writes: the tracer's worst case.
const HEAVY: &str = r#"
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    int zero = open("/dev/zero", O_RDONLY), null = open("/dev/null", O_WRONLY);
    char b[16];
    for (int i = 0; i < n; i++) {
        if (read(zero, b, sizeof b) != sizeof b || write(null, b, sizeof b) != sizeof b) return 1;
    }
    return 0;
}
"#;

/// Files, stat, open/close and a little computing, on four threads.
const MIXED: &str = r#"
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
static int n;
static const char *dir;
static void *work(void *arg) {
    char path[512], buf[4096] = {0};
    snprintf(path, sizeof path, "%s/f%ld", dir, (long)arg);
    volatile double x = 0;
    for (int i = 0; i < n; i++) {
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || write(fd, buf, sizeof buf) != sizeof buf) exit(1);
        struct stat st;
        fstat(fd, &st);
        lseek(fd, 0, SEEK_SET);
        if (read(fd, buf, sizeof buf) != sizeof buf) exit(1);
        close(fd);
        stat(path, &st);
        for (int k = 0; k < 20000; k++) x += k * 0.5;
    }
    unlink(path);
    return NULL;
}
int main(int argc, char **argv) {
    n = atoi(argv[1]);
    dir = argv[2];
    pthread_t t[4];
    for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, work, (void *)i);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    return 0;
}
"#;

struct Workload {
    name: &'static str,
    exe: PathBuf,
    args: Vec<String>,
}

pub(crate) fn run() -> Result<(), String> {
    let tracer = root().join("target/release/tau_strace");
    if !tracer.is_file() {
        return Err(format!("{} is missing: build the workspace in release mode", tracer.display()));
    }
    let dir = std::env::temp_dir().join(format!("tau-bench-strace-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = bench_all(&tracer, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn bench_all(tracer: &Path, dir: &Path) -> Result<(), String> {
    let work_dir = dir.join("files");
    std::fs::create_dir_all(&work_dir).map_err(|e| e.to_string())?;
    let workloads = [
        Workload {
            name: "syscall-heavy (16-byte read+write)",
            exe: compile(dir, "heavy", HEAVY)?,
            args: vec!["20000".into()],
        },
        Workload {
            name: "mixed (4 threads: open/write/read/stat/close + compute)",
            exe: compile(dir, "mixed", MIXED)?,
            args: vec!["1500".into(), work_dir.to_string_lossy().into_owned()],
        },
    ];
    let dead_socket = dir.join("no-proxy.sock");
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // Other work on the machine changes the picture (busy CPUs never
    // sleep, so cross-CPU wake-ups get cheap): show it with the figures.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?");
    println!("\n== tau_strace vs strace -c -f ({cpus} CPUs, load {load}; best of 3 interleaved rounds; no proxy listening) ==");
    for w in &workloads {
        let calls = count_calls(w, dir)?;
        println!("\n{}: {} traced syscalls per run", w.name, calls);
        let socket = dead_socket.to_string_lossy().into_owned();
        let exe = w.exe.to_string_lossy().into_owned();
        let tau = |flags: &[&str]| -> Vec<String> {
            let mut a: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
            a.extend(["-u".into(), socket.clone(), "--".into(), exe.clone()]);
            a.extend(w.args.iter().cloned());
            a
        };
        let mut st = vec!["-c".to_owned(), "-f".into(), "-o".into(), "/dev/null".into(), exe.clone()];
        st.extend(w.args.iter().cloned());
        let variants: Vec<(&Path, Vec<String>)> = vec![
            (&w.exe, w.args.clone()),
            (tracer, tau(&[])),
            (Path::new("strace"), st),
            (tracer, tau(&["--no-idle-sched"])),
            (tracer, tau(&["--only", "write"])),
        ];
        println!(
            "  {:<10} {:>10} {:>12} {:>12} {:>8} {:>9} {:>10} {:>16} {:>14}",
            "",
            "untraced",
            "tau_strace",
            "strace -cf",
            "ratio",
            "µs/call",
            "strace µs",
            "--no-idle-sched",
            "--only write"
        );
        for pinned in [false, true] {
            let t = time_interleaved(pinned, &variants)?;
            let per_call = |x: Duration| (x.as_secs_f64() - t[0].as_secs_f64()).max(0.0) * 1e6 / calls as f64;
            println!(
                "  {:<10} {:>9.3}s {:>11.3}s {:>11.3}s {:>7.2}x {:>9.1} {:>10.1} {:>15.3}s {:>13.3}s",
                if pinned { "taskset 0" } else { "unpinned" },
                t[0].as_secs_f64(),
                t[1].as_secs_f64(),
                t[2].as_secs_f64(),
                t[1].as_secs_f64() / t[2].as_secs_f64(),
                per_call(t[1]),
                per_call(t[2]),
                t[3].as_secs_f64(),
                t[4].as_secs_f64(),
            );
        }
    }
    println!(
        "  (ratio: tau_strace / strace -c -f; --only write: seccomp stops the tracee in write only, every other call runs untraced)"
    );
    Ok(())
}

fn compile(dir: &Path, name: &str, source: &str) -> Result<PathBuf, String> {
    let src = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    std::fs::write(&src, source).map_err(|e| e.to_string())?;
    let out = Command::new("cc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .map_err(|e| format!("cannot run cc: {e}"))?;
    if !out.status.success() {
        return Err(format!("cc {name}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(exe)
}

/// Total calls `strace -f -c` counts for one run of the workload.
fn count_calls(w: &Workload, dir: &Path) -> Result<u64, String> {
    let out = dir.join("count.txt");
    let status = Command::new("strace")
        .args(["-f", "-c", "-U", "name,calls", "-o"])
        .arg(&out)
        .arg(&w.exe)
        .args(&w.args)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run strace: {e}"))?;
    if !status.success() {
        return Err(format!("strace on {} failed", w.name));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|l| l.strip_prefix("total")?.trim().parse().ok())
        .ok_or_else(|| format!("no total in strace output:\n{text}"))
}

/// Best wall time of each variant over three rounds; every round runs each
/// variant once, so a change in the machine's load hits all of them alike.
fn time_interleaved(pinned: bool, variants: &[(&Path, Vec<String>)]) -> Result<Vec<Duration>, String> {
    let mut best = vec![Duration::MAX; variants.len()];
    for _ in 0..3 {
        for (i, (prog, args)) in variants.iter().enumerate() {
            best[i] = best[i].min(time_once(pinned, prog, args)?);
        }
    }
    Ok(best)
}

fn time_once(pinned: bool, prog: &Path, args: &[String]) -> Result<Duration, String> {
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(prog);
        c
    } else {
        Command::new(prog)
    };
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    let start = Instant::now();
    let status = cmd.status().map_err(|e| format!("cannot run {}: {e}", prog.display()))?;
    let t = start.elapsed();
    if !status.success() {
        return Err(format!("{} {} failed: {status}", prog.display(), args.join(" ")));
    }
    Ok(t)
}
