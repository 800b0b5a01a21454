//! Load: a thousand concurrent collectors under scrapes and fast tracking,
//! and ten thousand that come and go. Bounded in count and time; each
//! prints its figures.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use protocol::{encode_frame, Desc, Identity, Preamble, Request, Role, Sample, Value, PREAMBLE_LEN};

use crate::util::{http_get, wait_for, Proxy, TempDir};

/// Lets this test process hold a few thousand sockets.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

fn rss_mib(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

/// A collector connection with `series` registered counters.
fn collector(socket: &std::path::Path, nonce: u64, series: u32) -> UnixStream {
    let mut s = UnixStream::connect(socket).unwrap();
    s.write_all(&Preamble::new(Role::Collector).encode()).unwrap();
    let mut pre = [0u8; PREAMBLE_LEN];
    s.read_exact(&mut pre).unwrap();
    let mut b = Vec::new();
    let identity = Identity { pid: std::process::id(), start_time: 0, nonce, program: "load".into() };
    encode_frame(&Request::Hello { identity }, &mut b).unwrap();
    for id in 0..series {
        let desc = Desc::counter("load_total", &[("series", &id.to_string())], "Load test counter");
        encode_frame(&Request::Register { id, desc }, &mut b).unwrap();
    }
    s.write_all(&b).unwrap();
    s
}

const COLLECTORS: usize = 1000;
const SERIES: u32 = 10;
const ROUNDS: u64 = 500;
const THREADS: usize = 10;

#[test]
fn a_thousand_collectors_under_scrapes_and_1khz_tracking_sum_exactly() {
    raise_fd_limit();
    let p = Proxy::start();
    let idle_rss = rss_mib(p.pid());
    let dir = TempDir::new("load-track");
    let track_file = dir.join("track.json");
    let tracker = p
        .tool("tau_metric_client")
        .args(["-T", "load_total{series=\"0\"}", "-F", "1000", "-o"])
        .arg(&track_file)
        .spawn();

    let done = Arc::new(AtomicBool::new(false));
    let scraper = {
        let (port, done) = (p.port, done.clone());
        std::thread::spawn(move || {
            let mut latencies = Vec::new();
            let start = Instant::now();
            // 50 scrapes per second until the collectors are done (at most 60 s).
            while !done.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(60) {
                let t = Instant::now();
                assert_eq!(http_get(port, "/metrics", None).status, 200);
                latencies.push(t.elapsed());
                std::thread::sleep(Duration::from_millis(20).saturating_sub(t.elapsed()));
            }
            latencies
        })
    };

    // Every collector adds (its index + 1) to each series, ROUNDS times.
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (socket, barrier) = (p.socket.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mine: Vec<usize> = (t..COLLECTORS).step_by(THREADS).collect();
                let mut conns: Vec<(UnixStream, Vec<u8>)> = mine
                    .iter()
                    .map(|&c| {
                        let s = collector(&socket, c as u64, SERIES);
                        let samples = (0..SERIES).map(|id| Sample { id, value: Value::Int(c as u64 + 1) }).collect();
                        let mut frame = Vec::new();
                        encode_frame(&Request::Update { samples }, &mut frame).unwrap();
                        (s, frame)
                    })
                    .collect();
                barrier.wait();
                for _ in 0..ROUNDS {
                    for (s, frame) in &mut conns {
                        s.write_all(frame).unwrap();
                    }
                }
                for (s, _) in &mut conns {
                    let mut bye = Vec::new();
                    encode_frame(&Request::Goodbye, &mut bye).unwrap();
                    s.write_all(&bye).unwrap();
                }
                conns
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let conns: Vec<_> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    let per_series: u64 = (1..=COLLECTORS as u64).sum::<u64>() * ROUNDS;
    for id in 0..SERIES {
        let name = format!("load_total{{series=\"{id}\"}}");
        assert_eq!(p.wait_value(&name, per_series as f64), per_series as f64, "{name}");
    }
    let secs = start.elapsed().as_secs_f64();
    let loaded_rss = rss_mib(p.pid());
    drop(conns);
    done.store(true, Ordering::Relaxed);
    let mut lat = scraper.join().unwrap();
    lat.sort();
    let p99 = lat[(lat.len() * 99 / 100).min(lat.len() - 1)];

    tracker.signal(Signal::SIGINT);
    tracker.wait().assert_exit(0);
    let track: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&track_file).unwrap()).unwrap();
    let last = track.as_array().unwrap().last().unwrap().as_array().unwrap()[0]["value"].as_u64().unwrap();
    assert_eq!(last, per_series, "the 1 kHz tracker saw the final total");

    let updates = COLLECTORS as u64 * ROUNDS * SERIES as u64;
    println!(
        "load: {updates} updates from {COLLECTORS} collectors in {secs:.2} s ({:.0}/s) under {} scrapes, \
         p99 scrape latency {:.1} ms, tracker snapshots {}, daemon RSS {idle_rss:.1} MiB idle, {loaded_rss:.1} MiB loaded",
        updates as f64 / secs,
        lat.len(),
        p99.as_secs_f64() * 1e3,
        track.as_array().unwrap().len()
    );
    assert!(loaded_rss < idle_rss + 200.0, "daemon memory grew to {loaded_rss} MiB");
}

#[test]
fn ten_thousand_collectors_that_come_and_go_are_folded() {
    raise_fd_limit();
    let p = Proxy::start();
    // Warm up allocator pools with one round of the same traffic first.
    let run = |from: usize, to: usize| {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let socket = p.socket.clone();
                std::thread::spawn(move || {
                    for c in (from + t..to).step_by(8) {
                        let mut s = collector(&socket, c as u64, 1);
                        let mut b = Vec::new();
                        let samples = vec![Sample { id: 0, value: Value::Int(1) }];
                        encode_frame(&Request::Update { samples }, &mut b).unwrap();
                        encode_frame(&Request::Goodbye, &mut b).unwrap();
                        s.write_all(&b).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    };
    run(0, 1000);
    assert_eq!(p.wait_value("load_total{series=\"0\"}", 1000.0), 1000.0);
    let idle_rss = rss_mib(p.pid());
    run(1000, 11_000);
    assert_eq!(p.wait_value("load_total{series=\"0\"}", 11_000.0), 11_000.0);
    assert_eq!(p.wait_value("tau_metric_proxy_remembered_collectors", 0.0), 0.0);
    assert_eq!(p.wait_value("tau_metric_proxy_collectors", 0.0), 0.0);
    let after = rss_mib(p.pid());
    println!("churn: 10000 collectors came and went; daemon RSS {idle_rss:.1} MiB before, {after:.1} MiB after");
    assert!(after < idle_rss + 16.0, "memory did not return to its idle level: {idle_rss} then {after} MiB");
}

/// Fills the daemon's listen queue with connections it never accepts
/// (it is stopped); returns them so they stay queued.
fn fill_listen_queue(socket: &std::path::Path) -> Vec<std::os::fd::OwnedFd> {
    use nix::sys::socket::{connect, socket as new_socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let addr = UnixAddr::new(socket).unwrap();
    let mut queued = Vec::new();
    for _ in 0..100_000 {
        let fd = new_socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK, None).unwrap();
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => queued.push(fd),
            Err(nix::errno::Errno::EAGAIN) => return queued,
            Err(e) => panic!("connect: {e}"),
        }
    }
    panic!("the listen queue never filled up");
}

#[test]
fn a_full_listen_queue_of_a_stopped_daemon_does_not_block_collectors() {
    raise_fd_limit();
    let p = Proxy::start();
    let pid = Pid::from_raw(p.pid());
    kill(pid, Signal::SIGSTOP).unwrap();
    let queued = fill_listen_queue(&p.socket);
    let mut pusher = client::Pusher::new(client::PushConfig::new(p.socket.clone(), "queue"));
    let id = pusher.register(Desc::counter("queued_total", &[], "Counted while the daemon was stopped"));
    pusher.add(id, 5);
    let t0 = Instant::now();
    assert_eq!(pusher.flush(), client::PushState::Offline);
    let took = t0.elapsed();
    kill(pid, Signal::SIGCONT).unwrap();
    println!("full listen queue ({} queued): a flush gave up after {:.0} ms", queued.len(), took.as_secs_f64() * 1e3);
    assert!(took < Duration::from_secs(2), "a flush blocked for {took:?}");
    drop(queued);
    // Once the daemon runs again, the count arrives.
    let sent = wait_for(Duration::from_secs(10), || {
        (pusher.flush() == client::PushState::Sent && pusher.is_connected()).then_some(())
    });
    assert!(sent.is_some());
    assert_eq!(p.wait_value("queued_total", 5.0), 5.0);
}
