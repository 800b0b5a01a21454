//! `cargo xtask bench strace`: wall time of two workloads untraced, under
//! the eBPF floor (programs on both syscall tracepoints that only check
//! whether the thread is traced), under `tau_strace --engine bpf` and
//! `--engine ptrace`, and under `strace -c -f`, unpinned (as users run
//! them) and pinned to CPU 0; then what a process that is not traced pays
//! while another one is. Printed as ratios, never asserted.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use crate::{cargo, root, run_cmd};

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
    /// The iteration count first.
    args: Vec<String>,
}

impl Workload {
    /// The same run with no iteration: start-up and exit only.
    fn idle_args(&self) -> Vec<String> {
        let mut a = self.args.clone();
        a[0] = "0".into();
        a
    }
}

pub(crate) fn run() -> Result<(), String> {
    let tracer = root().join("target/release/tau_strace");
    if !tracer.is_file() {
        return Err(format!("{} is missing: build the workspace in release mode", tracer.display()));
    }
    run_cmd(cargo().args(["build", "--release", "-p", "strace-tracer", "--example", "bpf_floor"]))?;
    let floor = root().join("target/release/examples/bpf_floor");
    let dir = std::env::temp_dir().join(format!("tau-bench-strace-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = bench_all(&tracer, &floor, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Rounds per figure; each round runs every variant once.
const ROUNDS: usize = 5;
/// Added time below this share of the untraced time is taken as noise.
const NOISE: f64 = 0.02;

fn bench_all(tracer: &Path, floor: &Path, dir: &Path) -> Result<(), String> {
    let work_dir = dir.join("files");
    std::fs::create_dir_all(&work_dir).map_err(|e| e.to_string())?;
    let heavy = compile(dir, "heavy", HEAVY)?;
    let workloads = [
        Workload { name: "syscall-heavy (16-byte read+write)", exe: heavy.clone(), args: vec!["50000".into()] },
        Workload {
            name: "mixed (4 threads: open/write/read/stat/close + compute)",
            exe: compile(dir, "mixed", MIXED)?,
            args: vec!["1500".into(), work_dir.to_string_lossy().into_owned()],
        },
    ];
    let dead_socket = dir.join("no-proxy.sock").to_string_lossy().into_owned();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // Other work on the machine changes the picture (busy CPUs never
    // sleep, so cross-CPU wake-ups get cheap): show it with the figures.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?");
    println!(
        "\n== tau_strace engines vs the eBPF floor and strace -c -f ({cpus} CPUs, load {load}; \
         median of {ROUNDS} interleaved rounds; no proxy listening) =="
    );
    println!(
        "  (each figure: the workload's wall time / untraced, start-up taken out; \"bpf/floor\": the eBPF \
         engine's added time / the floor's, n/a where either adds less than 2% (noise); \"start\": the fixed \
         cost of starting under the floor and the engine)"
    );
    let tau = |engine: &str, exe: &Path, args: &[String]| -> Vec<String> {
        let mut a = vec![format!("--engine={engine}"), "-u".into(), dead_socket.clone(), "--".into()];
        a.push(exe.to_string_lossy().into_owned());
        a.extend(args.iter().cloned());
        a
    };
    for w in &workloads {
        let calls = count_calls(w, dir)?;
        println!("\n{}: {} traced syscalls per run", w.name, calls);
        // Each variant also runs the workload with 0 iterations: what it
        // costs to start (loading programs, attaching, exec) is shown apart
        // and taken out of the ratios, which compare the work itself.
        let mut variants: Vec<(&Path, Vec<String>)> = Vec::new();
        for args in [w.args.clone(), w.idle_args()] {
            let exe = w.exe.to_string_lossy().into_owned();
            let mut st = vec!["-c".to_owned(), "-f".into(), "-o".into(), "/dev/null".into(), exe.clone()];
            st.extend(args.iter().cloned());
            let mut fl = vec![exe];
            fl.extend(args.iter().cloned());
            variants.extend([
                (w.exe.as_path(), args.clone()),
                (floor, fl),
                (tracer, tau("bpf", &w.exe, &args)),
                (tracer, tau("ptrace", &w.exe, &args)),
                (Path::new("strace"), st),
            ]);
        }
        println!(
            "  {:<10} {:>9} {:>8} {:>8} {:>8} {:>11} {:>10} {:>11} {:>15}",
            "", "untraced", "floor", "bpf", "ptrace", "strace -cf", "bpf/floor", "ptrace/bpf", "start floor/bpf"
        );
        for pinned in [false, true] {
            let t = time_interleaved(pinned, &variants)?;
            let work = |i: usize| (t[i].as_secs_f64() - t[i + 5].as_secs_f64()).max(1e-9);
            let ratio = |i: usize| work(i) / work(0);
            let added = |i: usize| (work(i) - work(0)).max(1e-9);
            // Added times within the noise make the ratio meaningless.
            let noise = |i: usize| work(i) - work(0) < NOISE * work(0);
            let versus_floor =
                if noise(1) || noise(2) { "n/a".to_owned() } else { format!("{:.2}x", added(2) / added(1)) };
            let start = |i: usize| (t[i + 5].as_secs_f64() - t[5].as_secs_f64()) * 1e3;
            println!(
                "  {:<10} {:>8.3}s {:>7.2}x {:>7.2}x {:>7.1}x {:>10.1}x {:>10} {:>10.1}x {:>7.0}/{:.0} ms",
                if pinned { "taskset 0" } else { "unpinned" },
                work(0),
                ratio(1),
                ratio(2),
                ratio(3),
                ratio(4),
                versus_floor,
                work(3) / work(2),
                start(1),
                start(2),
            );
        }
    }
    bystander(tracer, floor, &heavy, &dead_socket)
}

/// An untraced syscall-heavy process while another one runs untraced, under
/// the floor, or counted by the eBPF engine: what the engine costs the rest
/// of the node.
fn bystander(tracer: &Path, floor: &Path, heavy: &Path, socket: &str) -> Result<(), String> {
    let endless = heavy.to_string_lossy().into_owned();
    let forever = "2000000000".to_owned();
    let backgrounds: [(&str, &Path, Vec<String>); 3] = [
        ("untraced", heavy, vec![forever.clone()]),
        ("floor", floor, vec![endless.clone(), forever.clone()]),
        ("bpf", tracer, vec!["--engine=bpf".into(), "-u".into(), socket.into(), "--".into(), endless, forever]),
    ];
    println!("\nbystander: an untraced syscall-heavy run while another process is ...");
    let fg: [(&Path, Vec<String>); 1] = [(heavy, vec!["50000".into()])];
    let mut times = Vec::new();
    for (name, prog, args) in &backgrounds {
        let mut bg = Command::new(prog);
        bg.args(args).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
        let child = bg.spawn().map_err(|e| format!("cannot run {}: {e}", prog.display()))?;
        // Let the background settle (programs loaded and attached).
        std::thread::sleep(Duration::from_millis(300));
        let t = time_interleaved(false, &fg);
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
        let mut child = child;
        let _ = child.wait();
        times.push((name, t?[0]));
    }
    let base = times[0].1.as_secs_f64();
    for (name, t) in &times {
        println!("  ... {:<9} {:>8.3}s {:>6.2}x", name, t.as_secs_f64(), t.as_secs_f64() / base);
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

/// Median wall time of each variant over [`ROUNDS`] rounds; every round
/// runs each variant once, so a change in the machine's load hits all of
/// them alike.
fn time_interleaved(pinned: bool, variants: &[(&Path, Vec<String>)]) -> Result<Vec<Duration>, String> {
    let mut all = vec![Vec::new(); variants.len()];
    for _ in 0..ROUNDS {
        for (i, (prog, args)) in variants.iter().enumerate() {
            all[i].push(time_once(pinned, prog, args)?);
        }
    }
    Ok(all
        .into_iter()
        .map(|mut v| {
            v.sort();
            v[v.len() / 2]
        })
        .collect())
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
