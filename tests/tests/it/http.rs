//! The HTTP endpoint Prometheus scrapes.

use std::io::Write;

use protocol::{Desc, Request, Role, Sample, Scale, Value};

use crate::util::{http_get, http_raw, identity, promtool, Proxy, RawPeer, Run};

/// A proxy holding a few awkward series: labels needing escapes, a
/// nanosecond counter, a gauge, a huge integer.
fn populated() -> (Proxy, RawPeer) {
    let p = Proxy::start();
    let mut c = RawPeer::connect(&p.socket, Role::Collector);
    c.send(&Request::Hello { identity: identity("http") });
    let descs = [
        Desc::counter("mpi_hits_total", &[("function", "MPI_Send")], "Number of calls"),
        Desc::counter("mpi_time_total", &[("function", "MPI_Send")], "Seconds spent in calls").with_scale(Scale::Nano),
        Desc::gauge("job_ranks", &[("path", "C:\\tmp\n\"q\"")], "Ranks with a \"quoted\" \\ help\nover two lines"),
        Desc::counter("big_total", &[], "A counter past 2^53"),
    ];
    for (i, d) in descs.into_iter().enumerate() {
        c.send(&Request::Register { id: i as u32, desc: d });
    }
    c.send(&Request::Update {
        samples: vec![
            Sample { id: 0, value: Value::Int(12) },
            Sample { id: 1, value: Value::Int(2_500_000_001) },
            Sample { id: 2, value: Value::Float(4.0) },
            Sample { id: 3, value: Value::Int(u64::MAX - 1) },
        ],
    });
    assert_eq!(p.wait_value("mpi_hits_total{function=\"MPI_Send\"}", 12.0), 12.0);
    (p, c)
}

#[test]
fn metrics_page_in_text_format() {
    let (p, _c) = populated();
    for path in ["/metrics", "/metrics/", "/metrics?x=1"] {
        let r = http_get(p.port, path, None);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("Content-Type"), Some("text/plain; version=0.0.4; charset=utf-8"));
        let body = r.body;
        // A shared family shows the help the daemon declared for it.
        assert!(body.contains(
            "# HELP mpi_hits_total Number of calls to an MPI function\n# TYPE mpi_hits_total counter\nmpi_hits_total{function=\"MPI_Send\"} 12\n"
        ));
        assert!(body.contains("mpi_time_total{function=\"MPI_Send\"} 2.500000001\n"), "{body}");
        assert!(body.contains("big_total 18446744073709551614\n"), "{body}");
        assert!(
            body.contains(
                "# HELP job_ranks Ranks with a \"quoted\" \\\\ help\\nover two lines\n# TYPE job_ranks gauge\n\
             job_ranks{path=\"C:\\\\tmp\\n\\\"q\\\"\"} 4\n"
            ),
            "{body}"
        );
        assert!(body.contains("tau_metric_proxy_scrapes_total{format=\"text\"} "));
        assert!(!body.contains("# EOF"));
    }
}

#[test]
fn openmetrics_when_the_scraper_asks() {
    let (p, _c) = populated();
    // What Prometheus 2.x sends.
    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                  text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let r = http_get(p.port, "/metrics", Some(accept));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    assert!(r.body.ends_with("# EOF\n"));
    assert_eq!(p.value("tau_metric_proxy_scrapes_total{format=\"openmetrics\"}"), 1.0);
    assert!(r.body.contains("# TYPE mpi_hits counter\nmpi_hits_total{function=\"MPI_Send\"} 12\n"), "{}", r.body);
    assert!(r.body.contains("# HELP job_ranks Ranks with a \\\"quoted\\\" \\\\ help\\nover two lines\n"), "{}", r.body);
}

/// `promtool check metrics` reads the page on stdin; it prints lint
/// problems and exits non-zero on any.
fn promtool_check(body: &str) -> Run {
    promtool(&["check", "metrics"]).input(body).run()
}

#[test]
fn promtool_accepts_the_page() {
    let (p, _c) = populated();
    let body = p.metrics_text();
    let check = promtool_check(&body);
    if check.code() != Some(0) || !check.combined().is_empty() {
        check.fail(format_args!("expected status 0 and no complaint about the page:\n{body}"));
    }
    // promtool does complain about a bad page: the check is real.
    let bad = promtool_check("# TYPE hits counter\nhits 1\n");
    bad.assert_exit(3);
    assert!(bad.combined().contains("counter metrics should have \"_total\" suffix"), "{bad}");
}

#[test]
fn index_unknown_paths_and_methods() {
    let p = Proxy::start();
    let r = http_get(p.port, "/", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert!(r.body.contains("<a href=\"/metrics\">Metrics</a>"));
    let r = http_get(p.port, "/nope", None);
    assert_eq!((r.status, r.body.as_str()), (404, "not found: try /metrics\n"));
    let r = http_raw(p.port, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET, HEAD"));
    let r = http_raw(p.port, "HEAD /metrics HTTP/1.0\r\n\r\n");
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert_eq!(r.header("Content-Type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert_eq!(r.header("Content-Length"), None, "a HEAD renders no page, so it has no length");
    // A HEAD is no scrape; only a GET of /metrics is.
    assert_eq!(p.value("tau_metric_proxy_scrapes_total{format=\"text\"}"), 0.0);
    assert_eq!(http_get(p.port, "/metrics", None).status, 200);
    assert_eq!(p.value("tau_metric_proxy_scrapes_total{format=\"text\"}"), 1.0);
    assert_eq!(p.value("tau_metric_proxy_scrapes_total{format=\"openmetrics\"}"), 0.0);
}

/// Reads one HTTP response (head and `Content-Length` body) from `s`.
fn read_response(s: &mut std::net::TcpStream) -> (u16, String) {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "connection closed inside a response head");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).map(|v| v.trim().parse().unwrap()).unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (status, String::from_utf8(body).unwrap())
}

#[test]
fn keep_alive_and_pipelined_requests() {
    let p = Proxy::start();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 200);
    assert!(body.contains("# TYPE tau_metric_proxy_frames_total counter\n"));
    // Two pipelined requests on the same connection.
    s.write_all(b"GET / HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).0, 200);
    assert_eq!(read_response(&mut s), (404, "not found: try /metrics\n".into()));
}

#[test]
fn malformed_and_oversized_requests_get_their_status() {
    let p = Proxy::start();
    let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(20_000));
    // Longer than the line limit, shorter than one read: the head is whole.
    let long_query = format!("GET /metrics?{} HTTP/1.1\r\n\r\n", "a".repeat(9_000));
    let many_headers = format!(
        "GET /metrics HTTP/1.1\r\n{}\r\n",
        "X-Filler: 0123456789012345678901234567890123456789\r\n".repeat(1000)
    );
    let cases = [
        (long_line.as_str(), 414, "request line too long\n"),
        (long_query.as_str(), 414, "request line too long\n"),
        (many_headers.as_str(), 431, "request headers too large\n"),
        ("NONSENSE\r\n\r\n", 400, "malformed request line\n"),
        ("GET /metrics HTTP/2.0\r\n\r\n", 505, "only HTTP/1.0 and HTTP/1.1 are supported\n"),
        ("GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", 400, "malformed header line\n"),
        ("DELETE /metrics HTTP/1.1\r\n\r\n", 405, "only GET and HEAD are supported\n"),
    ];
    for (request, status, body) in cases {
        let r = http_raw(p.port, request);
        assert_eq!((r.status, r.body.as_str()), (status, body), "{}", &request[..request.len().min(40)]);
        assert_eq!(r.header("Connection"), Some("close"));
    }
    // The daemon still serves.
    assert_eq!(http_get(p.port, "/metrics", None).status, 200);
}

#[test]
fn slow_clients_do_not_starve_others_and_time_out() {
    let p = Proxy::start_with(&["--http-timeout", "1"]);
    let mut slow: Vec<std::net::TcpStream> = (0..50)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: slow").unwrap();
            s
        })
        .collect();
    // Fifty unfinished requests; a normal scrape is still answered.
    let r = http_get(p.port, "/metrics", None);
    assert_eq!(r.status, 200);
    // Each slow client gets 408 once its time is up.
    for s in &mut slow {
        let (status, body) = read_response(s);
        assert_eq!((status, body.as_str()), (408, "request head not received in time\n"));
    }
}

#[test]
fn pipelined_requests_are_answered_one_at_a_time_within_a_bound() {
    let p = Proxy::start();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    // 8,000 requests in one go (~200 KiB), none of whose answers is read yet.
    let request = b"GET /metrics HTTP/1.1\r\n\r\n";
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let all: Vec<u8> = request.iter().copied().cycle().take(request.len() * 8_000).collect();
        let _ = w.write_all(&all); // the daemon may close before taking it all
    });
    let mut ok = 0;
    let last = loop {
        let (status, _) = read_response(&mut s);
        if status != 200 {
            break status;
        }
        ok += 1;
    };
    writer.join().unwrap();
    // The daemon held at most a bounded backlog, then refused the rest.
    assert_eq!(last, 431);
    assert!(ok > 0 && ok < 8_000, "{ok} answered before the refusal");
    println!("pipelining: {ok} requests answered, then 431");
    assert_eq!(http_get(p.port, "/metrics", None).status, 200);
}

/// Sends `request` and returns the response head and its raw body.
fn raw_bytes(port: u16, request: &str) -> (String, Vec<u8>) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    (String::from_utf8(raw[..at].to_vec()).unwrap(), raw[at + 4..].to_vec())
}

#[test]
fn gzip_vary_date_qualities_and_connection_tokens_are_honoured() {
    let (p, _c) = populated();
    let plain = http_get(p.port, "/metrics", None);
    assert_eq!(plain.header("Vary"), Some("Accept, Accept-Encoding"));
    assert_eq!(plain.header("Content-Encoding"), None);
    let date = plain.header("Date").expect("a Date header");
    assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
    // gzip as Prometheus asks for it: the same page, compressed.
    let (head, body) =
        raw_bytes(p.port, "GET /metrics HTTP/1.0\r\nAccept-Encoding: gzip\r\nConnection: TE, close\r\n\r\n");
    assert!(head.contains("\r\nContent-Encoding: gzip\r\n"), "{head}");
    assert!(head.contains("\r\nConnection: close"), "{head}");
    let unzipped = crate::util::cmd("gzip").arg("-dc").input(body.clone()).run();
    unzipped.assert_success();
    let text = unzipped.stdout();
    assert!(text.contains("mpi_hits_total{function=\"MPI_Send\"} 12\n"), "{text}");
    println!("gzip: {} bytes for a page of {} bytes", body.len(), text.len());
    let (head, _) = raw_bytes(p.port, "GET /metrics HTTP/1.0\r\nAccept-Encoding: gzip;q=0, identity\r\n\r\n");
    assert!(!head.contains("Content-Encoding"), "q=0 refuses gzip: {head}");
    // Accept: qualities decide, media types in any case.
    let r = http_get(p.port, "/metrics", Some("TEXT/PLAIN;q=0.9, Application/OpenMetrics-Text;version=1.0.0;q=0.4"));
    assert_eq!(r.header("Content-Type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let r = http_get(p.port, "/metrics", Some("text/plain;q=0.2, APPLICATION/OPENMETRICS-TEXT;version=1.0.0"));
    assert_eq!(r.header("Content-Type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    assert!(r.body.ends_with("# EOF\n"));
    // Connection is a token list: keep-alive among others keeps an HTTP/1.0 connection.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nConnection: Upgrade, Keep-Alive\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).0, 200);
    s.write_all(b"GET /nope HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).0, 404);
}
