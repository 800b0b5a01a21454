//! The HTTP endpoint Prometheus scrapes: `/metrics`, `/metrics/` and `/`.
//!
//! A small HTTP/1.1 server on its own mio loop and thread. It is written
//! here rather than taken from a crate because the endpoint faces the
//! network (port 1337 on every address by default) and must bound what a
//! client can make it hold: request heads are limited in size (414, 431),
//! a request head must arrive within a timeout (408), and a client that
//! never finishes its request costs one buffer, never a thread. Only GET
//! and HEAD are served; keep-alive and pipelining are supported, as
//! Prometheus keeps its scrape connections open.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;
use proxy_core::{render, Format, Store};

use crate::server::{now, SelfMetrics};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// Longest request line accepted (414 beyond).
const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Largest request head accepted, request line and headers (431 beyond).
const MAX_HEAD: usize = 32 * 1024;
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 1024;
/// A client that reads none of its response for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a refused client may keep sending before it is cut off.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// An idle keep-alive connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

const INDEX: &str = "<!DOCTYPE html>\n<html><head><title>tau_metric_proxy</title></head>\n\
<body><h1>tau_metric_proxy</h1>\n<p>Node-local aggregating gateway for Prometheus.</p>\n\
<p><a href=\"/metrics\">Metrics</a></p>\n</body></html>\n";

/// The running HTTP server and its thread.
pub(crate) struct Http {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: JoinHandle<()>,
}

impl Http {
    /// Binds `addr:port` (logging the address actually bound) and serves
    /// in a thread of its own. `head_timeout` bounds the arrival of a
    /// request head.
    pub(crate) fn start(
        addr: IpAddr,
        port: u16,
        head_timeout: Duration,
        store: Arc<Mutex<Store>>,
        selfm: SelfMetrics,
    ) -> Result<Http, String> {
        let mut listener = TcpListener::bind(SocketAddr::new(addr, port))
            .map_err(|e| format!("cannot listen on {addr}:{port}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| format!("cannot listen on {addr}:{port}: {e}"))?;
        let poll = Poll::new().map_err(|e| format!("cannot create the HTTP event loop: {e}"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| format!("cannot register the HTTP listener: {e}"))?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(|e| format!("cannot create a waker: {e}"))?);
        log::info!("now listening on {bound}");
        let stop = Arc::new(AtomicBool::new(false));
        let mut server = HttpServer {
            poll,
            listener,
            conns: Vec::new(),
            free: Vec::new(),
            store,
            selfm,
            head_timeout,
            body: String::new(),
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || server.run())
            .map_err(|e| format!("cannot start the HTTP thread: {e}"))?;
        Ok(Http { stop, waker, thread })
    }

    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        let _ = self.thread.join();
    }
}

struct Conn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// When the current request's first byte arrived (or the connection
    /// opened): the head must be complete within the timeout.
    since: Instant,
    /// Bytes in `inbuf` are a request being received (not idle keep-alive).
    receiving: bool,
    /// Close once `outbuf` is written.
    close_after: bool,
    /// When bytes of `outbuf` were last written (or it was filled).
    write_progress: Instant,
    /// The final response is out and our side shut: discard what the
    /// client still sends, so closing does not reset the connection
    /// before it read the response.
    draining: bool,
    writable_armed: bool,
}

struct HttpServer {
    poll: Poll,
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    store: Arc<Mutex<Store>>,
    selfm: SelfMetrics,
    head_timeout: Duration,
    /// Reused rendering buffer.
    body: String,
    stop: Arc<AtomicBool>,
}

/// A response: status, extra headers, body, and whether the body is sent.
struct Response {
    status: u16,
    content_type: &'static str,
    extra: &'static str,
    /// The body; the rendered page is not copied here but taken from the
    /// server's render buffer (see `page`).
    body: Vec<u8>,
    /// The body is the page just rendered into `HttpServer::body`.
    page: bool,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

fn error(status: u16, message: &str) -> Response {
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        extra: "",
        body: format!("{message}\n").into_bytes(),
        page: false,
    }
}

/// Where the request head ends (after the blank line), if it has.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// The parts of a request head the endpoint cares about.
struct Head<'a> {
    method: &'a str,
    path: &'a str,
    http11: bool,
    accept: Option<&'a str>,
    connection: Option<&'a str>,
    has_body: bool,
}

fn parse_head(head: &str) -> Result<Head<'_>, Response> {
    let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
    let request = lines.next().unwrap_or("");
    let mut parts = request.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(error(400, "malformed request line"));
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        v if v.starts_with("HTTP/") => return Err(error(505, "only HTTP/1.0 and HTTP/1.1 are supported")),
        _ => return Err(error(400, "malformed request line")),
    };
    let mut h = Head {
        method,
        path: target.split('?').next().unwrap_or(""),
        http11,
        accept: None,
        connection: None,
        has_body: false,
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(error(400, "malformed header line"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("accept") {
            h.accept = Some(value);
        } else if name.eq_ignore_ascii_case("connection") {
            h.connection = Some(value);
        } else if (name.eq_ignore_ascii_case("content-length") && value != "0")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            h.has_body = true;
        }
    }
    Ok(h)
}

impl HttpServer {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        while !self.stop.load(Ordering::Relaxed) {
            match self.poll.poll(&mut events, Some(Duration::from_millis(250))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::error!("HTTP event loop failed: {e}");
                    return;
                }
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(t) => {
                        let i = t - FIRST_CONN;
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(i);
                        }
                        if event.is_writable() {
                            self.flush(i);
                        }
                    }
                }
            }
            self.expire();
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let live = self.conns.len() - self.free.len();
                    if live >= MAX_CONNECTIONS {
                        log::warn!("too many HTTP connections ({live}): closing a new one");
                        continue;
                    }
                    let i = self.free.pop().unwrap_or(self.conns.len());
                    if self.poll.registry().register(&mut stream, Token(i + FIRST_CONN), Interest::READABLE).is_err() {
                        self.free.push(i);
                        continue;
                    }
                    let conn = Conn {
                        stream,
                        inbuf: Vec::new(),
                        outbuf: Vec::new(),
                        since: Instant::now(),
                        receiving: true,
                        close_after: false,
                        write_progress: Instant::now(),
                        draining: false,
                        writable_armed: false,
                    };
                    if i == self.conns.len() {
                        self.conns.push(Some(conn));
                    } else {
                        self.conns[i] = Some(conn);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("cannot accept an HTTP connection: {e}");
                    return;
                }
            }
        }
    }

    fn on_readable(&mut self, i: usize) {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let Some(conn) = self.conns.get_mut(i).and_then(|c| c.as_mut()) else { return };
            if conn.close_after {
                // A final response is queued or sent: discard further input.
                match conn.stream.read(&mut chunk) {
                    Ok(0) => {
                        if conn.draining {
                            self.close(i);
                            return;
                        }
                        break;
                    }
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        self.close(i);
                        return;
                    }
                }
            }
            match conn.stream.read(&mut chunk) {
                Ok(0) => {
                    self.close(i);
                    return;
                }
                Ok(n) => {
                    if conn.inbuf.is_empty() && !conn.receiving {
                        conn.receiving = true;
                        conn.since = Instant::now();
                    }
                    conn.inbuf.extend_from_slice(&chunk[..n]);
                    self.serve_buffered(i);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close(i);
                    return;
                }
            }
        }
        self.flush(i);
    }

    /// Answers every complete request head in the buffer (pipelining), or
    /// refuses a head that grew beyond the limits.
    fn serve_buffered(&mut self, i: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(i).and_then(|c| c.as_mut()) else { return };
            // One response in flight at a time: pipelined requests wait in
            // `inbuf` (bounded) until the previous response is written.
            if conn.close_after || conn.inbuf.is_empty() || !conn.outbuf.is_empty() {
                if conn.inbuf.len() > 4 * MAX_HEAD {
                    self.respond_and_close(i, error(431, "too many pipelined requests"), false);
                }
                return;
            }
            let Some(end) = head_end(&conn.inbuf[..conn.inbuf.len().min(MAX_HEAD)]) else {
                let line_len = conn.inbuf.iter().position(|&b| b == b'\n').unwrap_or(conn.inbuf.len());
                if line_len > MAX_REQUEST_LINE {
                    self.respond_and_close(i, error(414, "request line too long"), false);
                } else if conn.inbuf.len() > MAX_HEAD {
                    self.respond_and_close(i, error(431, "request headers too large"), false);
                }
                return;
            };
            if conn.inbuf[..end].iter().position(|&b| b == b'\n').unwrap_or(end) > MAX_REQUEST_LINE {
                self.respond_and_close(i, error(414, "request line too long"), false);
                return;
            }
            let head_bytes: Vec<u8> = conn.inbuf.drain(..end).collect();
            conn.receiving = !conn.inbuf.is_empty();
            conn.since = Instant::now();
            let Ok(head) = std::str::from_utf8(&head_bytes) else {
                self.respond_and_close(i, error(400, "request head is not UTF-8"), false);
                return;
            };
            let head = match parse_head(head) {
                Ok(h) => h,
                Err(resp) => {
                    self.respond_and_close(i, resp, false);
                    return;
                }
            };
            let is_head = head.method == "HEAD";
            let keep_alive = !head.has_body
                && match head.connection {
                    Some(c) if c.eq_ignore_ascii_case("close") => false,
                    Some(c) if c.eq_ignore_ascii_case("keep-alive") => true,
                    _ => head.http11,
                };
            let resp = self.route(&head);
            // Another method may carry a body we will not read: close.
            let keep_alive = keep_alive && resp.status != 405;
            let Some(conn) = self.conns.get_mut(i).and_then(|c| c.as_mut()) else { return };
            let body = if resp.page { self.body.as_bytes() } else { &resp.body };
            write_response(&mut conn.outbuf, &resp, body, is_head, keep_alive);
            conn.write_progress = Instant::now();
            if !keep_alive {
                conn.close_after = true;
                conn.inbuf.clear();
                return;
            }
        }
    }

    fn route(&mut self, head: &Head<'_>) -> Response {
        if head.method != "GET" && head.method != "HEAD" {
            return Response {
                status: 405,
                content_type: "text/plain; charset=utf-8",
                extra: "Allow: GET, HEAD\r\n",
                body: b"only GET and HEAD are supported\n".to_vec(),
                page: false,
            };
        }
        match head.path {
            "/metrics" | "/metrics/" => {
                let format = Format::negotiate(head.accept);
                {
                    let mut st = self.store.lock();
                    let counter = match format {
                        Format::Text => self.selfm.scrapes_text,
                        Format::OpenMetrics => self.selfm.scrapes_openmetrics,
                    };
                    st.internal_add(counter, 1, now());
                    render(&mut st, format, &mut self.body);
                }
                Response { status: 200, content_type: format.content_type(), extra: "", body: Vec::new(), page: true }
            }
            "/" => Response {
                status: 200,
                content_type: "text/html; charset=utf-8",
                extra: "",
                body: INDEX.as_bytes().to_vec(),
                page: false,
            },
            _ => error(404, "not found: try /metrics"),
        }
    }

    fn respond_and_close(&mut self, i: usize, resp: Response, is_head: bool) {
        let Some(conn) = self.conns.get_mut(i).and_then(|c| c.as_mut()) else { return };
        write_response(&mut conn.outbuf, &resp, &resp.body, is_head, false);
        conn.write_progress = Instant::now();
        conn.close_after = true;
        conn.inbuf.clear();
    }

    fn flush(&mut self, i: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(i).and_then(|c| c.as_mut()) else { return };
            let before = conn.outbuf.len();
            if !crate::nonblock::write_pending(&mut conn.stream, &mut conn.outbuf) {
                self.close(i);
                return;
            }
            if conn.outbuf.len() < before {
                conn.write_progress = Instant::now();
            }
            // The response is out: serve the next pipelined request, if any.
            if conn.outbuf.is_empty() && !conn.close_after && !conn.inbuf.is_empty() {
                self.serve_buffered(i);
                if self.conns.get(i).and_then(|c| c.as_ref()).is_some_and(|c| !c.outbuf.is_empty()) {
                    continue;
                }
            }
            break;
        }
        let Some(conn) = self.conns.get_mut(i).and_then(|c| c.as_mut()) else { return };
        if conn.outbuf.is_empty() && conn.close_after && !conn.draining {
            let _ = conn.stream.shutdown(std::net::Shutdown::Write);
            conn.draining = true;
            conn.since = Instant::now();
        }
        let want_write = !conn.outbuf.is_empty();
        if want_write != conn.writable_armed {
            let interest = if want_write { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            if self.poll.registry().reregister(&mut conn.stream, Token(i + FIRST_CONN), interest).is_ok() {
                conn.writable_armed = want_write;
            }
        }
    }

    /// Answers 408 to requests whose head is late and closes idle
    /// keep-alive connections.
    fn expire(&mut self) {
        for i in 0..self.conns.len() {
            let Some(conn) = self.conns[i].as_ref() else { continue };
            if conn.draining && conn.since.elapsed() > DRAIN_TIMEOUT {
                self.close(i);
                continue;
            }
            if !conn.outbuf.is_empty() {
                // A client that stopped reading its response gives its slot back.
                if conn.write_progress.elapsed() > WRITE_TIMEOUT {
                    self.close(i);
                }
                continue;
            }
            if conn.close_after {
                continue;
            }
            let age = conn.since.elapsed();
            if conn.receiving && age > self.head_timeout {
                self.respond_and_close(i, error(408, "request head not received in time"), false);
                self.flush(i);
            } else if !conn.receiving && age > IDLE_TIMEOUT {
                self.close(i);
            }
        }
    }

    fn close(&mut self, i: usize) {
        if let Some(mut conn) = self.conns.get_mut(i).and_then(|c| c.take()) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.free.push(i);
        }
    }
}

fn write_response(out: &mut Vec<u8>, resp: &Response, body: &[u8], is_head: bool, keep_alive: bool) {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: {}\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        body.len(),
        resp.extra,
        if keep_alive { "keep-alive" } else { "close" }
    );
    out.extend_from_slice(head.as_bytes());
    if !is_head {
        out.extend_from_slice(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_end_at_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }

    #[test]
    fn request_heads_are_parsed_strictly() {
        let h = parse_head("GET /metrics?x=1 HTTP/1.1\r\nAccept: a/b\r\nConnection: close\r\n").ok().unwrap();
        assert_eq!(
            (h.method, h.path, h.http11, h.accept, h.connection),
            ("GET", "/metrics", true, Some("a/b"), Some("close"))
        );
        assert_eq!(parse_head("GET /\r\n").err().map(|r| r.status), Some(400));
        assert_eq!(parse_head("GET / HTTP/2.0\r\n").err().map(|r| r.status), Some(505));
        assert_eq!(parse_head("GET / HTTP/1.1\r\nno colon\r\n").err().map(|r| r.status), Some(400));
        assert!(parse_head("GET / HTTP/1.1\r\nContent-Length: 3\r\n").ok().unwrap().has_body);
    }
}
