//! `cargo xtask bench`: the daemon's figures (ingest, render, memory), then
//! the MPI shim's and the tracer's. Printed, never asserted.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use protocol::{encode_frame, Desc, Identity, Preamble, Request, Role, Sample, Value, PREAMBLE_LEN};
use proxy_core::{render, Format, Limits, Store};

use crate::{cargo, root, run_cmd};

/// Runs every benchmark, or those named (`ingest`, `render`, `memory`,
/// `jobs`, `mpi`, `strace`).
pub(crate) fn run(only: &[String]) -> Result<(), String> {
    // `render` and `jobs` run in this process: the tools need no build.
    let in_process = !only.is_empty() && only.iter().all(|o| o == "render" || o == "jobs");
    if in_process {
        run_cmd(cargo().args(["build", "--release", "-p", "xtask"]))?;
    } else {
        run_cmd(cargo().args(["build", "--release", "--workspace", "--bins"]))?;
    }
    if cfg!(debug_assertions) {
        // In-process measurements need an optimised xtask: run the bench
        // from the release build just made.
        return run_cmd(Command::new(release("xtask")).arg("bench").args(only));
    }
    let want = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    if want("ingest") {
        ingest()?;
    }
    if want("render") {
        render_bench();
    }
    if want("memory") {
        memory()?;
    }
    if want("jobs") {
        crate::bench_jobs::run();
    }
    if want("mpi") {
        crate::bench_mpi::run()?;
    }
    if want("strace") {
        crate::bench_strace::run()?;
    }
    Ok(())
}

fn release(tool: &str) -> PathBuf {
    root().join("target/release").join(tool)
}

/// A release daemon on a fresh socket, optionally pinned with taskset.
struct Daemon {
    child: Child,
    socket: PathBuf,
    dir: PathBuf,
}

impl Daemon {
    /// Starts it; `journal` gives it `--state` in its directory, so that
    /// it records what it counts in the state file's journal.
    fn start(pin_cpu: Option<&str>, journal: bool) -> Result<Daemon, String> {
        let dir = std::env::temp_dir().join(format!("tau-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let socket = dir.join("bench.sock");
        let mut cmd = match pin_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpu]).arg(release("tau_metric_proxy"));
                c
            }
            None => Command::new(release("tau_metric_proxy")),
        };
        let child = cmd
            .arg("-u")
            .arg(&socket)
            .args(["-p", "0", "--bind", "127.0.0.1", "-q", "--max-series-per-collector", "200000"])
            .args(journal.then(|| ["--state".into(), dir.join("bench.state")]).into_iter().flatten())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the daemon: {e}"))?;
        let start = Instant::now();
        while UnixStream::connect(&socket).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                return Err("daemon did not start".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Daemon { child, socket, dir })
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn query(&self) -> Result<client::QueryClient, String> {
        client::QueryClient::connect(&self.socket, Duration::from_secs(30)).map_err(|e| e.to_string())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const INGEST_COLLECTORS: usize = 64;
const INGEST_SERIES: u32 = 250;
const INGEST_SAMPLES_PER_FRAME: usize = 4096;
const INGEST_FRAMES_PER_COLLECTOR: usize = 400;

/// Rounds of the ingest benchmark, with and without the journal in turn.
const INGEST_ROUNDS: usize = 3;

fn ingest() -> Result<(), String> {
    let (mut plain, mut journal) = (Vec::new(), Vec::new());
    let mut updates = 0.0;
    for round in 0..INGEST_ROUNDS {
        // Interleaved, each first in turn: the machine's drift hits both.
        for with_journal in [round % 2 == 1, round % 2 == 0] {
            let (n, rate) = ingest_once(with_journal)?;
            updates = n;
            match with_journal {
                true => journal.push(rate),
                false => plain.push(rate),
            }
        }
    }
    let (plain, journal) = (median(plain), median(journal));
    println!(
        "ingest: {updates:.0} counter updates from {INGEST_COLLECTORS} collectors, daemon on one CPU, median of \
         {INGEST_ROUNDS}: {:.1} million/s (ratio to the 5 M/s floor: {:.2}, to the 20 M/s goal: {:.2}); with \
         --state and its journal written as it counts: {:.1} million/s (ratio to without: {:.2})",
        plain / 1e6,
        plain / 5e6,
        plain / 20e6,
        journal / 1e6,
        journal / plain
    );
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One run of the load generator against a fresh daemon: the updates it
/// applied and how many per second.
fn ingest_once(journal: bool) -> Result<(f64, f64), String> {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let (daemon_cpu, load_cpu) = if cpus > 1 { ("0", "1") } else { ("0", "0") };
    let daemon = Daemon::start(Some(daemon_cpu), journal)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new("taskset")
        .args(["-c", load_cpu])
        .arg(exe)
        .arg("ingest-load")
        .arg(&daemon.socket)
        .output()
        .map_err(|e| format!("cannot start the load generator: {e}"))?;
    if !out.status.success() {
        return Err(format!("load generator failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |k: &str| -> f64 {
        text.split_whitespace().find_map(|w| w.strip_prefix(k)).and_then(|v| v.parse().ok()).unwrap_or(0.0)
    };
    let (updates, secs) = (field("updates="), field("seconds="));
    Ok((updates, updates / secs))
}

/// The load generator: 64 collectors, each writing pre-encoded update
/// frames as fast as the daemon takes them; prints what the daemon applied
/// and how long it took, measured until the daemon has counted every frame.
pub(crate) fn ingest_load(args: &[String]) -> Result<(), String> {
    let socket = PathBuf::from(args.first().ok_or("ingest-load SOCKET")?);
    let barrier = Arc::new(Barrier::new(INGEST_COLLECTORS + 1));
    let threads: Vec<_> = (0..INGEST_COLLECTORS)
        .map(|c| {
            let socket = socket.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || -> Result<(), String> {
                let mut s = UnixStream::connect(&socket).map_err(|e| e.to_string())?;
                s.write_all(&Preamble::new(Role::Collector).encode()).map_err(|e| e.to_string())?;
                let mut pre = [0u8; PREAMBLE_LEN];
                s.read_exact(&mut pre).map_err(|e| e.to_string())?;
                let mut setup = Vec::new();
                let identity =
                    Identity { pid: std::process::id(), start_time: 0, nonce: c as u64, program: "bench".into() };
                encode_frame(&Request::Hello { identity }, &mut setup).map_err(|e| e.to_string())?;
                for id in 0..INGEST_SERIES {
                    let desc = Desc::counter("bench_ingest_total", &[("series", &id.to_string())], "Ingest benchmark");
                    encode_frame(&Request::Register { id, desc }, &mut setup).map_err(|e| e.to_string())?;
                }
                s.write_all(&setup).map_err(|e| e.to_string())?;
                let samples = (0..INGEST_SAMPLES_PER_FRAME)
                    .map(|i| Sample { id: i as u32 % INGEST_SERIES, value: Value::Int(1) })
                    .collect();
                let mut frame = Vec::new();
                encode_frame(&Request::Update { samples }, &mut frame).map_err(|e| e.to_string())?;
                let mut batch = Vec::new();
                for _ in 0..16 {
                    batch.extend_from_slice(&frame);
                }
                barrier.wait();
                for _ in 0..INGEST_FRAMES_PER_COLLECTOR / 16 {
                    s.write_all(&batch).map_err(|e| e.to_string())?;
                }
                // Keep the connection until the daemon has read everything.
                barrier.wait();
                Ok(())
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut q = client::QueryClient::connect(&socket, Duration::from_secs(30)).map_err(|e| e.to_string())?;
    let expected = (INGEST_COLLECTORS * (INGEST_FRAMES_PER_COLLECTOR / 16 * 16 + 1 + INGEST_SERIES as usize)) as f64;
    let frames = "tau_metric_proxy_frames_total".to_owned();
    loop {
        let got = match q.get(std::slice::from_ref(&frames)).map_err(|e| e.to_string())? {
            client::GetResult::Found(v) => v[0].value,
            client::GetResult::Unknown(_) => 0.0,
        };
        if got >= expected {
            break;
        }
        if start.elapsed() > Duration::from_secs(300) {
            return Err(format!("daemon applied only {got} of {expected} frames in 300 s"));
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let secs = start.elapsed().as_secs_f64();
    barrier.wait();
    for t in threads {
        t.join().map_err(|_| "collector thread panicked")??;
    }
    let updates = INGEST_COLLECTORS * (INGEST_FRAMES_PER_COLLECTOR / 16 * 16) * INGEST_SAMPLES_PER_FRAME;
    println!("updates={updates} seconds={secs}");
    Ok(())
}

/// A store with `n` counter series in 10 families of two labels each.
fn store_with(n: usize) -> Store {
    let mut st = Store::new(Limits { max_series: n + 10, max_series_per_collector: n + 10, ..Limits::default() });
    let (slot, _) = st.hello(Identity { pid: std::process::id(), start_time: 0, nonce: 1, program: "bench".into() });
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let fam = format!("bench_family_{}_total", i % 10);
        let desc = Desc::counter(&fam, &[("function", &format!("MPI_F{i}")), ("node", "node01")], "Bench series");
        st.register(slot, i as u32, &desc).expect("valid series");
        samples
            .push(Sample { id: i as u32, value: Value::Int((i as u64).wrapping_mul(2_654_435_761) % 1_000_000_007) });
    }
    st.update(slot, &samples, 1.0);
    st
}

fn time_per_series(n: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm up
    let start = Instant::now();
    let mut iters = 0u32;
    while iters < 5 || start.elapsed() < Duration::from_millis(500) {
        f();
        iters += 1;
    }
    start.elapsed().as_nanos() as f64 / iters as f64 / n as f64
}

fn render_bench() {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::registry::Registry;

    for n in [10_000usize, 100_000] {
        let mut st = store_with(n);
        let mut out = String::new();
        let text = time_per_series(n, || render(&mut st, Format::Text, &mut out));
        let om = time_per_series(n, || render(&mut st, Format::OpenMetrics, &mut out));

        let mut registry = Registry::default();
        let families: Vec<Family<Vec<(String, String)>, Counter>> = (0..10).map(|_| Family::default()).collect();
        for (f, fam) in families.iter().enumerate() {
            registry.register(format!("bench_family_{f}"), "Bench series", fam.clone());
        }
        for i in 0..n {
            let labels = vec![("function".to_owned(), format!("MPI_F{i}")), ("node".to_owned(), "node01".to_owned())];
            families[i % 10].get_or_create(&labels).inc_by((i as u64).wrapping_mul(2_654_435_761) % 1_000_000_007);
        }
        let mut theirs = String::new();
        let reference = time_per_series(n, || {
            theirs.clear();
            encode(&mut theirs, &registry).expect("encoding to a String cannot fail");
        });
        println!(
            "render: {n} series: text 0.0.4 {text:.1} ns/series, OpenMetrics {om:.1} ns/series; \
             prometheus-client (OpenMetrics) {reference:.1} ns/series; ratio {:.2}",
            om / reference
        );
    }
}

fn memory() -> Result<(), String> {
    let daemon = Daemon::start(None, false)?;
    std::thread::sleep(Duration::from_millis(300));
    let idle = daemon.rss_kib();
    let n = 100_000u32;
    let mut cfg = client::PushConfig::new(daemon.socket.clone(), "bench-memory");
    cfg.io_timeout = Duration::from_secs(30);
    let mut pusher = client::Pusher::new(cfg);
    for i in 0..n {
        let id = pusher.register(Desc::counter(
            "bench_memory_total",
            &[("function", &format!("MPI_F{i}")), ("node", "node01")],
            "Memory bench series",
        ));
        pusher.add(id, 1 + i as u64);
    }
    if pusher.flush() != client::PushState::Sent {
        return Err("could not push the 100,000 series".into());
    }
    let mut q = daemon.query()?;
    let start = Instant::now();
    // The last series, with its value, means all of them are there (they
    // come in order); asking for it costs the daemon nothing, where a
    // listing would build a reply of every series each time.
    let last = vec![format!("bench_memory_total{{function=\"MPI_F{}\",node=\"node01\"}}", n - 1)];
    let total = |r: client::GetResult| match r {
        client::GetResult::Found(v) => v[0].value,
        client::GetResult::Unknown(_) => 0.0,
    };
    while total(q.get(&last).map_err(|e| e.to_string())?) < n as f64 {
        if start.elapsed() > Duration::from_secs(60) {
            return Err("daemon did not register the 100,000 series".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let loaded = daemon.rss_kib();
    let per_series = |kib: u64| (kib.saturating_sub(idle) * 1024) as f64 / n as f64;
    // What a query client listing every series leaves behind (its reply
    // is built whole), printed apart from what the series cost.
    let listed = q.list().map_err(|e| e.to_string())?.len();
    let after_list = daemon.rss_kib();
    println!(
        "memory: daemon resident {:.1} MiB idle, {:.1} MiB with {n} series ({:.0} bytes per series, \
         ratio to the 300-byte goal {:.2}); {:.1} MiB after listing the {listed} series ({:.0} bytes per series)",
        idle as f64 / 1024.0,
        loaded as f64 / 1024.0,
        per_series(loaded),
        per_series(loaded) / 300.0,
        after_list as f64 / 1024.0,
        per_series(after_list),
    );
    drop(pusher);
    Ok(())
}
