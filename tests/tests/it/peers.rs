//! Greedy local peers: a query client that pipelines thousands of requests
//! and never reads, replies larger than any queue, connection-side limits.
//! Each test prints what a collector and a scraper noticed meanwhile.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use client::QueryClient;
use protocol::{decode_frame, encode_frame, Desc, Preamble, Reply, Request, Role, Sample, Value, PREAMBLE_LEN};

use crate::util::{identity, push_and_scrape_meanwhile, Meanwhile, Proxy, RawPeer};

/// Registers `n` counters `bulk_total{i="…"}` from one raw collector and
/// waits until the daemon has them all; returns the connection.
fn bulk_series(p: &Proxy, n: u32, help: &str) -> RawPeer {
    let mut c = RawPeer::connect(&p.socket, Role::Collector);
    c.send(&Request::Hello { identity: identity("bulk") });
    let mut bytes = Vec::new();
    for i in 0..n {
        let desc = Desc::counter("bulk_total", &[("i", &i.to_string())], help);
        encode_frame(&Request::Register { id: i, desc }, &mut bytes).unwrap();
    }
    let samples: Vec<Sample> = (0..n).map(|id| Sample { id, value: Value::Int(1) }).collect();
    for chunk in samples.chunks(8192) {
        encode_frame(&Request::Update { samples: chunk.to_vec() }, &mut bytes).unwrap();
    }
    c.stream.write_all(&bytes).unwrap();
    let last = format!("bulk_total{{i=\"{}\"}}", n - 1);
    let mut q = QueryClient::connect(&p.socket, Duration::from_secs(10)).unwrap();
    let ready = crate::util::wait_for(Duration::from_secs(60), || {
        matches!(q.get(std::slice::from_ref(&last)), Ok(client::GetResult::Found(v)) if v[0].value == 1.0).then_some(())
    });
    assert!(ready.is_some(), "the daemon never had {n} series; log:\n{}", p.log());
    c
}

/// Reads one whole reply (every frame up to the one marked last) and
/// returns how many values or descriptions it carried.
fn read_reply(s: &mut UnixStream, buf: &mut Vec<u8>) -> usize {
    let mut count = 0;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        while let Some((reply, used)) = decode_frame::<Reply>(buf).unwrap() {
            buf.drain(..used);
            let (n, last) = match reply {
                Reply::Values { values, last, .. } => (values.len(), last),
                Reply::Descs { descs, last } => (descs.len(), last),
                other => panic!("unexpected reply {other:?}"),
            };
            count += n;
            if last {
                return count;
            }
        }
        let n = s.read(&mut chunk).expect("reply within the read timeout");
        assert!(n > 0, "the daemon closed the connection inside a reply");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn a_peer_pipelining_13000_queries_delays_neither_collectors_nor_scrapes() {
    const SERIES: u32 = 100_000;
    let p = Proxy::start();
    let _bulk = bulk_series(&p, SERIES, "Bulk");
    let total = p.values().len();

    // 13,000 Values requests in one write, never read.
    let mut greedy = UnixStream::connect(&p.socket).unwrap();
    let mut bytes = Preamble::new(Role::Query).encode().to_vec();
    for _ in 0..13_000 {
        encode_frame(&Request::Values, &mut bytes).unwrap();
    }
    greedy.write_all(&bytes).unwrap();
    println!("greedy peer wrote {} bytes of pipelined Values requests", bytes.len());

    let Meanwhile { pushed, worst_push, worst_scrape } = push_and_scrape_meanwhile(&p, Duration::from_secs(3));
    println!(
        "while one peer pipelines 13000 Values queries over {SERIES} series: {pushed} pushes, worst push \
         {:.1} ms, worst scrape {:.1} ms",
        worst_push.as_secs_f64() * 1e3,
        worst_scrape.as_secs_f64() * 1e3
    );

    // The greedy peer still gets whole, exact replies, in order, when it reads.
    greedy.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut pre = [0u8; PREAMBLE_LEN];
    greedy.read_exact(&mut pre).unwrap();
    let mut buf = Vec::new();
    let first = read_reply(&mut greedy, &mut buf);
    assert!(first == total || first == total + 1, "{first} values, {total} series before the pushes");
    for _ in 0..2 {
        assert_eq!(read_reply(&mut greedy, &mut buf), total + 1, "every series and meanwhile_total");
    }
}

#[test]
fn a_list_over_64_mib_arrives_whole() {
    // 17,000 series with 4,000 bytes of help each: a 68 MB answer to -l.
    const SERIES: u32 = 17_000;
    let p = Proxy::start();
    let help = "h".repeat(4000);
    let _bulk = bulk_series(&p, SERIES, &help);
    let t = Instant::now();
    let out = p.client(&["-l", "-f", "json"]);
    out.assert_success();
    let listed: serde_json::Value = serde_json::from_slice(out.stdout_bytes()).expect("JSON");
    let bulk =
        listed.as_array().unwrap().iter().filter(|d| d["name"].as_str().unwrap().starts_with("bulk_total{")).count();
    assert_eq!(bulk, SERIES as usize);
    println!(
        "tau_metric_client -l listed {SERIES} series with 4000-byte help ({} MB of JSON) in {:.2} s",
        out.stdout_bytes().len() / 1_000_000,
        t.elapsed().as_secs_f64()
    );
}

/// How a fake daemon (run by this test, so of a trusted user) misbehaves.
#[derive(Clone, Copy, Debug)]
enum Broken {
    /// Accepts and then neither reads nor writes.
    Silent,
    /// Answers the preamble, then sends error replies as fast as it can.
    Flood,
    /// Sends its preamble one byte every 150 ms, then nothing more.
    Trickle,
}

/// Serves `socket` the broken way until dropped.
struct FakeDaemon {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FakeDaemon {
    fn start(socket: &std::path::Path, how: Broken) -> FakeDaemon {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                let stopped = stopped.clone();
                std::thread::spawn(move || {
                    let preamble = Preamble::new(Role::Daemon).encode();
                    let mut flood = preamble.to_vec();
                    let error = Reply::Error { id: None, message: "x".repeat(1000) };
                    for _ in 0..64 {
                        encode_frame(&error, &mut flood).unwrap();
                    }
                    let mut first = true;
                    while !stopped.load(Ordering::Relaxed) {
                        let alive = match how {
                            Broken::Silent => true,
                            Broken::Flood => {
                                let bytes = if first { &flood[..] } else { &flood[PREAMBLE_LEN..] };
                                s.write_all(bytes).is_ok()
                            }
                            Broken::Trickle if first => preamble.iter().all(|b| {
                                std::thread::sleep(Duration::from_millis(150));
                                s.write_all(&[*b]).is_ok()
                            }),
                            Broken::Trickle => true,
                        };
                        first = false;
                        if !alive {
                            return;
                        }
                        if !matches!(how, Broken::Flood) {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                });
            }
        });
        FakeDaemon { stop }
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn collectors_facing_a_broken_daemon_end_within_a_bound() {
    for how in [Broken::Silent, Broken::Flood, Broken::Trickle] {
        let dir = crate::util::TempDir::new("broken");
        let socket = dir.join("fake.sock");
        let _fake = FakeDaemon::start(&socket, how);
        let mut took = Vec::new();
        for argv in [&["tau_metric_proxy_run", "--", "true"][..], &["tau_strace", "true"]] {
            let run = crate::util::tool(argv[0]).arg("-u").arg(&socket).args(&argv[1..]).spawn();
            let run = run.finish_within(Duration::from_secs(30));
            run.assert_exit(0);
            took.push(format!("{} {:.2} s", argv[0], run.took().as_secs_f64()));
        }
        println!("against a daemon that is {how:?}: {}", took.join(", "));
    }
}

#[test]
fn a_push_of_80000_changed_series_is_split_into_frames() {
    use client::{PushConfig, PushState, Pusher};
    const SERIES: u32 = 80_000;
    let p = Proxy::start();
    let mut pusher = Pusher::new(PushConfig::new(p.socket.clone(), "wide"));
    let ids: Vec<_> =
        (0..SERIES).map(|i| pusher.register(Desc::counter("wide_total", &[("i", &i.to_string())], "Wide"))).collect();
    // Values of 9-byte varints: one Update of every series is over 1 MiB.
    let step = 1u64 << 60;
    assert_eq!(pusher.flush(), PushState::Sent, "connecting");
    for round in 1..=3u64 {
        for &id in &ids {
            pusher.add(id, if round == 1 { step } else { 1 });
        }
        assert_eq!(pusher.flush(), PushState::Sent, "round {round}: the push must not drop the connection");
    }
    let last = format!("wide_total{{i=\"{}\"}}", SERIES - 1);
    let want = (step + 2) as f64;
    assert_eq!(p.wait_value(&last, want), want);
    assert_eq!(p.value("tau_metric_proxy_protocol_errors_total"), 0.0);
    println!("{SERIES} changed series per push, 3 pushes on one connection");
}
