//! `cargo xtask demo`: the main job from a fresh machine to metrics on screen.
//!
//! Builds the relocatable tree, starts `tau_metric_proxy` from it, runs an
//! MPI ring on 4 ranks under `tau_metric_proxy_run -m` and `ls -R` under
//! `tau_metric_proxy_run -s`, then shows what the proxy holds through
//! `tau_metric_client` and through the Prometheus endpoint.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{deps, dist, root, run_cmd};

pub(crate) fn run() -> Result<(), String> {
    deps::ensure()?;
    let dist = dist::run()?;
    let bin = dist.join("bin");
    let work = root().join("target/demo");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let socket = work.join("tau_metric_proxy.unix");

    // Port 1337 as documented, unless something already holds it.
    let port = if std::net::TcpListener::bind(("127.0.0.1", 1337)).is_ok() { 1337 } else { 0 };
    let log = work.join("proxy.log");
    let mut proxy = Command::new(bin.join("tau_metric_proxy"))
        .arg("-u")
        .arg(&socket)
        .args(["-p", &port.to_string(), "--bind", "127.0.0.1"])
        .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("cannot start tau_metric_proxy: {e}"))?;
    let result = demo_with_proxy(&bin, &work, &socket, &log);
    let _ = Command::new("kill").arg("-TERM").arg(proxy.id().to_string()).status();
    let _ = proxy.wait();
    result
}

fn demo_with_proxy(
    bin: &std::path::Path,
    work: &std::path::Path,
    socket: &std::path::Path,
    log: &std::path::Path,
) -> Result<(), String> {
    let start = Instant::now();
    let port = loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("UNIX push gateway running on") {
            print!("{text}");
            break text
                .lines()
                .find_map(|l| l.split("now listening on 127.0.0.1:").nth(1))
                .and_then(|p| p.trim().parse::<u16>().ok())
                .ok_or("no port in the proxy's log")?;
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!("tau_metric_proxy did not start:\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };

    let run = bin.join("tau_metric_proxy_run");
    let ring = work.join("mpi_ring");
    run_cmd(Command::new("mpicc.openmpi").arg("-O2").arg("-o").arg(&ring).arg(root().join("examples/mpi_ring.c")))?;
    println!("\n$ mpirun -np 4 tau_metric_proxy_run -m -- ./mpi_ring");
    run_cmd(
        Command::new("mpirun.openmpi")
            .args(["-np", "4", "--oversubscribe"])
            .arg(&run)
            .arg("-u")
            .arg(socket)
            .args(["-m", "--"])
            .arg(&ring)
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"),
    )?;
    println!("\n$ tau_metric_proxy_run -s -- ls -R /usr/share/doc > /dev/null");
    run_cmd(
        Command::new(&run).arg("-u").arg(socket).args(["-s", "--", "ls", "-R", "/usr/share/doc"]).stdout(Stdio::null()),
    )?;

    let client = |args: &[&str]| -> Result<String, String> {
        let out = Command::new(bin.join("tau_metric_client"))
            .arg("-u")
            .arg(socket)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run tau_metric_client: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    println!("\n$ tau_metric_client -g 'tau_metric_proxy_run_total{{operation=\"exec\"}}' -f json");
    print!("{}", client(&["-g", "tau_metric_proxy_run_total{operation=\"exec\"}", "-f", "json"])?);
    println!("\n$ tau_metric_client -v -f txt | grep -E '^(mpi_hits|mpi_size)_total'");
    for line in client(&["-v", "-f", "txt"])?.lines() {
        if line.starts_with("mpi_hits_total") || line.starts_with("mpi_size_total") {
            println!("{line}");
        }
    }
    println!("\n$ curl -s http://127.0.0.1:{port}/metrics | grep -E '^strace_hits_total' | head -8");
    let page = http_get(port)?;
    for line in page.lines().filter(|l| l.starts_with("strace_hits_total")).take(8) {
        println!("{line}");
    }
    Ok(())
}

fn http_get(port: u16) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(|e| e.to_string())?;
    Ok(body.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}
