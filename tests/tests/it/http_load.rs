//! The HTTP side under load, with figures printed (never asserted as
//! timings): collectors' pushes and scrapes while 16 keep-alive scrapers
//! hammer a 100,000-series page, the daemon's memory while 1,024 slow
//! readers hold connections, and the per-address limit.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{PushConfig, PushState, Pusher};
use protocol::Desc;

use crate::util::{http_get, Proxy};

/// A proxy holding `n` counter series from two collectors.
fn proxy_with(n: usize, extra: &[&str]) -> (Proxy, Vec<Pusher>) {
    let proxy = Proxy::start_with(extra);
    let mut pushers: Vec<Pusher> = (0..2)
        .map(|c| {
            let mut p = Pusher::new(PushConfig::new(proxy.socket.clone(), &format!("page{c}")));
            for i in 0..n / 2 {
                let id = p.register(Desc::counter("page_hits_total", &[("series", &format!("{c}-{i}"))], "many"));
                p.add(id, 1);
            }
            p
        })
        .collect();
    for p in &mut pushers {
        assert_eq!(p.flush(), PushState::Sent);
    }
    let last = format!("page_hits_total{{series=\"1-{}\"}}", n / 2 - 1);
    assert_eq!(proxy.wait_value(&last, 1.0), 1.0);
    (proxy, pushers)
}

/// Reads one response with a `Content-Length` body; returns the body length.
fn read_response(s: &mut TcpStream) -> usize {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "connection closed inside a response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let len: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().trim().parse().unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    len
}

#[test]
fn sixteen_keep_alive_scrapers_on_a_100000_series_page_do_not_delay_collectors() {
    const SERIES: usize = 100_000;
    let (p, _pushers) = proxy_with(SERIES, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let scrapers: Vec<_> = (0..16)
        .map(|i| {
            let (port, stop) = (p.port, stop.clone());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                // Half ask for gzip, as Prometheus does; half for text.
                let request: &[u8] = if i % 2 == 0 {
                    b"GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n"
                } else {
                    b"GET /metrics HTTP/1.1\r\n\r\n"
                };
                let (mut pages, mut worst) = (0, Duration::ZERO);
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    s.write_all(request).unwrap();
                    assert!(read_response(&mut s) > 0);
                    worst = worst.max(start.elapsed());
                    pages += 1;
                }
                (pages, worst)
            })
        })
        .collect();
    // A collector pushing a changed counter every 10 ms meanwhile; each
    // push is timed until the daemon has it (a value query after it).
    let mut c = Pusher::new(PushConfig::new(p.socket.clone(), "pusher"));
    let id = c.register(Desc::counter("pushed_total", &[], "pushed while scraped"));
    let mut q = client::QueryClient::connect(&p.socket, Duration::from_secs(30)).unwrap();
    let name = vec!["pushed_total".to_owned()];
    let (mut pushes, mut worst_push) = (0u64, Duration::ZERO);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        c.add(id, 1);
        assert_eq!(c.flush(), PushState::Sent);
        pushes += 1;
        loop {
            match q.get(&name).unwrap() {
                client::GetResult::Found(v) if v[0].value == pushes as f64 => break,
                _ => std::thread::sleep(Duration::from_micros(200)),
            }
        }
        worst_push = worst_push.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let results: Vec<(u32, Duration)> = scrapers.into_iter().map(|t| t.join().unwrap()).collect();
    let pages: u32 = results.iter().map(|r| r.0).sum();
    let worst_scrape = results.iter().map(|r| r.1).max().unwrap();
    println!(
        "16 keep-alive scrapers on {SERIES} series: {pages} pages in 3 s, worst scrape {worst_scrape:?}; \
         {pushes} pushes meanwhile, worst push until counted {worst_push:?}"
    );
    assert!(results.iter().all(|r| r.0 > 0), "every scraper got pages: {results:?}");
    assert_eq!(p.value("pushed_total"), pushes as f64);
}

/// A TCP connection to `port` from the loopback address 127.0.0.`from`.
fn connect_from(from: u8, port: u16) -> TcpStream {
    use nix::sys::socket::{bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
    // Close-on-exec, like every socket std opens: commands other tests
    // start meanwhile must not inherit a thousand descriptors.
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    // A small receive window: the reader is slow, the daemon must hold the rest.
    setsockopt(&fd, sockopt::RcvBuf, &4096).unwrap();
    bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, from, 0)).unwrap();
    connect(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port)).unwrap();
    TcpStream::from(fd)
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap()
}

#[test]
fn a_thousand_slow_readers_share_one_page() {
    const SERIES: usize = 100_000;
    let (p, _pushers) = proxy_with(SERIES, &[]);
    let page = http_get(p.port, "/metrics", None).body.len();
    let before = rss_kib(p.pid());
    // 1,024 readers from 16 addresses (64 each, the per-address default),
    // each reading 1 KiB of the page and then nothing.
    let mut readers = Vec::new();
    for i in 0..1024 {
        let mut s = connect_from(1 + (i / 64) as u8, p.port);
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        readers.push(s);
    }
    for s in &mut readers {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut first = [0u8; 1024];
        s.read_exact(&mut first).unwrap();
        assert!(first.starts_with(b"HTTP/1.1 200 OK\r\n"));
    }
    let held = rss_kib(p.pid());
    println!(
        "1,024 slow readers of a {page}-byte page: daemon resident {:.1} MiB before, {:.1} MiB while they hold \
         their connections (one copy per reader would be {:.0} MiB)",
        before as f64 / 1024.0,
        held as f64 / 1024.0,
        (page * 1024) as f64 / (1 << 20) as f64
    );
    // One shared page, not a copy per connection.
    assert!(held < before + 4 * (page as u64 / 1024) + 64 * 1024, "{held} KiB held, {before} KiB before");
    // Prometheus, from another address, still gets its page.
    assert_eq!(http_get(p.port, "/metrics", None).status, 200);
}

#[test]
fn a_new_connection_beyond_the_per_address_limit_evicts_the_least_active() {
    let p = Proxy::start_with(&["--http-max-per-address", "3"]);
    let mut conns: Vec<TcpStream> = (0..3).map(|_| connect_from(7, p.port)).collect();
    for s in &mut conns {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        read_response(s);
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first is now the least recently active: a fourth takes its place.
    let mut fourth = connect_from(7, p.port);
    fourth.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    fourth.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(read_response(&mut fourth) > 0, "the new connection is served, not refused");
    let mut buf = [0u8; 1];
    assert_eq!(conns[0].read(&mut buf).unwrap(), 0, "the least recently active one was closed");
    for s in &mut conns[1..] {
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert!(read_response(s) > 0, "the others stay");
    }
    // Another address is not affected by this one's limit.
    let mut other = connect_from(8, p.port);
    other.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    other.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(read_response(&mut other) > 0);
}
