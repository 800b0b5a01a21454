//! Faults: the daemon stopped or killed under load. Collectors never block
//! for long, and once the daemon is back nothing counted is lost.

use std::time::{Duration, Instant};

use client::{PushConfig, PushState, Pusher};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use protocol::Desc;

use crate::util::Proxy;

/// Runs `threads` collectors pushing every 20 ms for `run_for`, each adding
/// its index + 1 per push; returns (pushes per thread, longest flush).
fn push_for(p: &Proxy, threads: u64, run_for: Duration) -> std::thread::JoinHandle<(Vec<u64>, Duration)> {
    let socket = p.socket.clone();
    std::thread::spawn(move || {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let socket = socket.clone();
                std::thread::spawn(move || {
                    let mut pusher = Pusher::new(PushConfig::new(socket, "fault"));
                    let id = pusher.register(Desc::counter("fault_total", &[], "Fault test counter"));
                    let (start, mut pushes, mut longest) = (Instant::now(), 0u64, Duration::ZERO);
                    while start.elapsed() < run_for {
                        pusher.add(id, t + 1);
                        pushes += 1;
                        let t0 = Instant::now();
                        pusher.flush();
                        longest = longest.max(t0.elapsed());
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    // Keep trying until the daemon has it all.
                    let t0 = Instant::now();
                    while pusher.flush() != PushState::Sent || !pusher.is_connected() {
                        assert!(t0.elapsed() < Duration::from_secs(30), "daemon never came back");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    (pushes, longest)
                })
            })
            .collect();
        let mut longest = Duration::ZERO;
        let pushes = workers
            .into_iter()
            .map(|w| {
                let (n, l) = w.join().unwrap();
                longest = longest.max(l);
                n
            })
            .collect();
        (pushes, longest)
    })
}

fn expected(pushes: &[u64]) -> f64 {
    pushes.iter().enumerate().map(|(t, n)| (t as u64 + 1) * n).sum::<u64>() as f64
}

#[test]
fn a_daemon_stopped_for_ten_seconds_blocks_no_collector_and_loses_nothing() {
    let p = Proxy::start();
    let load = push_for(&p, 4, Duration::from_secs(12));
    std::thread::sleep(Duration::from_millis(500));
    let pid = Pid::from_raw(p.pid());
    kill(pid, Signal::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_secs(10));
    kill(pid, Signal::SIGCONT).unwrap();
    let (pushes, longest) = load.join().unwrap();
    let want = expected(&pushes);
    assert_eq!(p.wait_value("fault_total", want), want);
    println!(
        "SIGSTOP 10 s: {} pushes, longest flush {:.0} ms, total exact",
        pushes.iter().sum::<u64>(),
        longest.as_secs_f64() * 1e3
    );
    // A flush is bounded by a few I/O timeouts (200 ms each), never the 10 s stop.
    assert!(longest < Duration::from_secs(3), "a flush blocked for {longest:?}");
}

#[test]
fn a_daemon_killed_and_restarted_under_load_ends_with_exact_totals() {
    let p = Proxy::start();
    let load = push_for(&p, 4, Duration::from_secs(3));
    std::thread::sleep(Duration::from_secs(1));
    let p = p.restart(); // SIGKILL, then a new daemon on the same socket
    let (pushes, longest) = load.join().unwrap();
    let want = expected(&pushes);
    assert_eq!(p.wait_value("fault_total", want), want);
    println!(
        "SIGKILL + restart: {} pushes, longest flush {:.0} ms, total exact",
        pushes.iter().sum::<u64>(),
        longest.as_secs_f64() * 1e3
    );
}
