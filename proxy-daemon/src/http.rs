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

use crate::conn::{self, Slab, Verdict};
use crate::server::{now, SelfMetrics};

mod parse;
mod response;

use parse::{Head, Next};
use response::{error, write_response, Response, INDEX};

/// The loop's own tokens; connections' come after.
const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: Token = Token(2);
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 1024;
/// A client that reads none of its response for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a refused client may keep sending before it is cut off.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// An idle keep-alive connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

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
            conns: Slab::new(FIRST_CONN),
            endpoint: Endpoint { store, selfm, head_timeout, body: String::new() },
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

/// One HTTP connection, without its socket.
struct Client {
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
}

type Conn = conn::Conn<TcpStream, Client>;

/// The loop: its sockets, and the endpoint that answers on them.
struct HttpServer {
    poll: Poll,
    listener: TcpListener,
    conns: Slab<TcpStream, Client>,
    endpoint: Endpoint,
    stop: Arc<AtomicBool>,
}

/// What answers requests: the store, and the handlers of one connection's
/// events, each returning what becomes of the connection.
struct Endpoint {
    store: Arc<Mutex<Store>>,
    selfm: SelfMetrics,
    head_timeout: Duration,
    /// Reused rendering buffer.
    body: String,
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
                    token => {
                        let registry = self.poll.registry();
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.conns.handle(registry, token, |c| self.endpoint.on_readable(c));
                        }
                        if event.is_writable() {
                            self.conns.handle(registry, token, |c| self.endpoint.flush(c));
                        }
                    }
                }
            }
            self.conns.sweep(self.poll.registry(), |c| self.endpoint.expire(c));
        }
    }

    fn accept(&mut self) {
        let registry = self.poll.registry();
        let conns = &mut self.conns;
        let accepted = conn::accept_all(
            || self.listener.accept().map(|(stream, _)| stream),
            |stream| {
                let live = conns.len();
                if live >= MAX_CONNECTIONS {
                    log::warn!("too many HTTP connections ({live}): closing a new one");
                    return;
                }
                let client = Client {
                    inbuf: Vec::new(),
                    outbuf: Vec::new(),
                    since: Instant::now(),
                    receiving: true,
                    close_after: false,
                    write_progress: Instant::now(),
                    draining: false,
                };
                // Not registered: dropped, so closed.
                let _ = conns.insert(registry, stream, client);
            },
        );
        if let Err(e) = accepted {
            log::warn!("cannot accept an HTTP connection: {e}");
        }
    }
}

impl Endpoint {
    fn on_readable(&mut self, conn: &mut Conn) -> Verdict<()> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if conn.state.close_after {
                // A final response is queued or sent: discard further input.
                match conn.stream.read(&mut chunk) {
                    Ok(0) => {
                        if conn.state.draining {
                            return Verdict::Close(());
                        }
                        break;
                    }
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => return Verdict::Close(()),
                }
            }
            match conn.stream.read(&mut chunk) {
                Ok(0) => return Verdict::Close(()),
                Ok(n) => {
                    let c = &mut conn.state;
                    if c.inbuf.is_empty() && !c.receiving {
                        c.receiving = true;
                        c.since = Instant::now();
                    }
                    c.inbuf.extend_from_slice(&chunk[..n]);
                    self.serve_buffered(c);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Verdict::Close(()),
            }
        }
        self.flush(conn)
    }

    /// Answers every complete request head in the buffer (pipelining), or
    /// refuses a head that grew beyond the limits.
    fn serve_buffered(&mut self, c: &mut Client) {
        loop {
            // One response in flight at a time: pipelined requests wait in
            // `inbuf` (bounded) until the previous response is written.
            if c.close_after || c.inbuf.is_empty() || !c.outbuf.is_empty() {
                if let Err(r) = parse::check_backlog(&c.inbuf) {
                    respond_and_close(c, error(r.status, r.message));
                }
                return;
            }
            let head_bytes = match parse::take_head(&mut c.inbuf) {
                Next::Partial => return,
                Next::Refused(r) => return respond_and_close(c, error(r.status, r.message)),
                Next::Head(bytes) => bytes,
            };
            c.receiving = !c.inbuf.is_empty();
            c.since = Instant::now();
            let head = match parse::parse(&head_bytes) {
                Ok(h) => h,
                Err(r) => return respond_and_close(c, error(r.status, r.message)),
            };
            let is_head = head.method == "HEAD";
            let resp = self.route(&head);
            // Another method may carry a body we will not read: close.
            let keep_alive = head.keep_alive() && resp.status != 405;
            let body = if resp.page { self.body.as_bytes() } else { &resp.body };
            write_response(&mut c.outbuf, &resp, body, is_head, keep_alive);
            c.write_progress = Instant::now();
            if !keep_alive {
                c.close_after = true;
                c.inbuf.clear();
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

    /// Writes what the socket takes, then serves the next pipelined
    /// request once the response is out; shuts our side after a final one.
    fn flush(&mut self, conn: &mut Conn) -> Verdict<()> {
        loop {
            let c = &mut conn.state;
            let before = c.outbuf.len();
            if !conn::write_pending(&mut conn.stream, &mut c.outbuf) {
                return Verdict::Close(());
            }
            if c.outbuf.len() < before {
                c.write_progress = Instant::now();
            }
            // The response is out: serve the next pipelined request, if any.
            if c.outbuf.is_empty() && !c.close_after && !c.inbuf.is_empty() {
                self.serve_buffered(c);
                if !c.outbuf.is_empty() {
                    continue;
                }
            }
            break;
        }
        let c = &mut conn.state;
        if c.outbuf.is_empty() && c.close_after && !c.draining {
            let _ = conn.stream.shutdown(std::net::Shutdown::Write);
            c.draining = true;
            c.since = Instant::now();
        }
        Verdict::Rearm { write: !c.outbuf.is_empty() }
    }

    /// Answers 408 to a request whose head is late, closes an idle
    /// keep-alive connection and one stuck in writing or draining.
    fn expire(&mut self, conn: &mut Conn) -> Verdict<()> {
        let c = &mut conn.state;
        if c.draining && c.since.elapsed() > DRAIN_TIMEOUT {
            return Verdict::Close(());
        }
        if !c.outbuf.is_empty() {
            // A client that stopped reading its response gives its slot back.
            if c.write_progress.elapsed() > WRITE_TIMEOUT {
                return Verdict::Close(());
            }
            return Verdict::Keep;
        }
        if c.close_after {
            return Verdict::Keep;
        }
        let age = c.since.elapsed();
        if c.receiving && age > self.head_timeout {
            respond_and_close(c, error(408, "request head not received in time"));
            self.flush(conn)
        } else if !c.receiving && age > IDLE_TIMEOUT {
            Verdict::Close(())
        } else {
            Verdict::Keep
        }
    }
}

/// Queues a final response: the connection closes once it is written.
fn respond_and_close(c: &mut Client, resp: Response) {
    write_response(&mut c.outbuf, &resp, &resp.body, false, false);
    c.write_progress = Instant::now();
    c.close_after = true;
    c.inbuf.clear();
}
