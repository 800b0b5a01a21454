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
    println!("\n== tau_strace vs strace -c -f ({cpus} CPUs, load {load}; best of 3 runs; no proxy listening) ==");
    for w in &workloads {
        let calls = count_calls(w, dir)?;
        println!("\n{}: {} traced syscalls per run", w.name, calls);
        println!(
            "  {:<10} {:>10} {:>12} {:>12} {:>10} {:>9} {:>9}",
            "", "untraced", "tau_strace", "strace -cf", "ratio", "µs/call", "strace µs"
        );
        for pinned in [false, true] {
            let base = time_best(pinned, &w.exe, &w.args)?;
            let mut tau_args: Vec<String> = vec!["-u".into(), dead_socket.to_string_lossy().into_owned(), "--".into()];
            tau_args.push(w.exe.to_string_lossy().into_owned());
            tau_args.extend(w.args.iter().cloned());
            let tau = time_best(pinned, tracer, &tau_args)?;
            let mut st_args: Vec<String> = vec!["-c".into(), "-f".into(), "-o".into(), "/dev/null".into()];
            st_args.push(w.exe.to_string_lossy().into_owned());
            st_args.extend(w.args.iter().cloned());
            let st = time_best(pinned, Path::new("strace"), &st_args)?;
            let per_call = |t: Duration| (t.as_secs_f64() - base.as_secs_f64()).max(0.0) * 1e6 / calls as f64;
            println!(
                "  {:<10} {:>9.3}s {:>11.3}s {:>11.3}s {:>9.2}x {:>9.1} {:>9.1}",
                if pinned { "taskset 0" } else { "unpinned" },
                base.as_secs_f64(),
                tau.as_secs_f64(),
                st.as_secs_f64(),
                tau.as_secs_f64() / st.as_secs_f64(),
                per_call(tau),
                per_call(st),
            );
        }
        // The two levers: the idle-policy tracer, and seccomp filtering.
        let mut normal: Vec<String> =
            vec!["--no-idle-sched".into(), "-u".into(), dead_socket.to_string_lossy().into_owned(), "--".into()];
        normal.push(w.exe.to_string_lossy().into_owned());
        normal.extend(w.args.iter().cloned());
        let t = time_best(false, tracer, &normal)?;
        println!("  unpinned, tau_strace --no-idle-sched: {:.3}s", t.as_secs_f64());
        let mut only: Vec<String> =
            vec!["--only".into(), "write".into(), "-u".into(), dead_socket.to_string_lossy().into_owned(), "--".into()];
        only.push(w.exe.to_string_lossy().into_owned());
        only.extend(w.args.iter().cloned());
        let t = time_best(false, tracer, &only)?;
        println!("  unpinned, tau_strace --only write (seccomp, other calls untraced): {:.3}s", t.as_secs_f64());
    }
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

/// Best wall time of three runs (the machine may be shared).
fn time_best(pinned: bool, prog: &Path, args: &[String]) -> Result<Duration, String> {
    let mut best = Duration::MAX;
    for _ in 0..3 {
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
        best = best.min(t);
    }
    Ok(best)
}
