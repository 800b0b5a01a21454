//! The HTTP endpoint: `/metrics` (and `/metrics/`) for Prometheus, the live
//! page at `/` (files under `/page/`) and the JSON it polls under `/api/`.
//!
//! A small HTTP/1.1 server on its own mio loop and thread, written here
//! rather than taken from a crate because the endpoint faces the network
//! (port 1337 on every address by default) and must bound what a client can
//! make it hold: request heads are limited in size (414, 431) and must
//! arrive within a timeout (408); a client that never finishes its request
//! costs one buffer, never a thread. GET and HEAD only, with keep-alive and
//! pipelining, as Prometheus keeps its scrape connections open. A scrape
//! copies the values out under the store's lock and formats them without it;
//! the page (gzip-compressed when the scraper accepts it) is shared by every
//! connection sending it and reused while nothing but the scrape counters
//! changed, for at most [`REUSE`]. Connections are limited per client
//! address; at a limit, the least recently active one makes room.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;
use proxy_core::{render_scrape, Format, Scrape, Store};

use crate::conn::{self, Slab, Verdict};
use crate::server::{now, SelfMetrics};

mod api;
mod assets;
mod parse;
mod response;

use parse::{Head, Next};
use response::{error, write_response, Body, Response};

/// The loop's own tokens; connections' come after.
const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: Token = Token(2);
/// Connections served at once; beyond, the least recently active one is
/// closed for the new one.
const MAX_CONNECTIONS: usize = 1024;
/// A rendered page is served again while nothing but the scrape counters
/// changed, for at most this long.
const REUSE: Duration = Duration::from_millis(500);
/// Headers of every `/metrics` response.
const VARY: &str = "Vary: Accept, Accept-Encoding\r\n";
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
        limits: HttpLimits,
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
            per_address: limits.per_address,
            endpoint: Endpoint {
                store,
                selfm,
                head_timeout: limits.head_timeout,
                scrape: Scrape::default(),
                text: String::new(),
                pages: Default::default(),
                assets: assets::load(),
                node: node_name(),
            },
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

/// What the flags bound.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpLimits {
    /// A request head must arrive within this (408 after).
    pub(crate) head_timeout: Duration,
    /// Connections one client address may hold.
    pub(crate) per_address: usize,
}

/// One HTTP connection, without its socket.
struct Client {
    /// The client's address, for the per-address limit.
    addr: IpAddr,
    /// When it last sent or was sent something (or connected).
    active: Instant,
    inbuf: Vec<u8>,
    /// Response heads and small bodies to write.
    outbuf: Vec<u8>,
    /// A shared page to write after `outbuf`, and how much of it is out.
    page: Option<(Arc<[u8]>, usize)>,
    /// A final response queued while a page is being written, sent after it.
    after: Vec<u8>,
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

impl Client {
    /// Whether nothing is left to write.
    fn written(&self) -> bool {
        self.outbuf.is_empty() && self.page.is_none() && self.after.is_empty()
    }
}

type Conn = conn::Conn<TcpStream, Client>;

/// A rendered page, kept for reuse.
struct Page {
    /// The store's generation after the scrape that rendered or reused it.
    generation: u64,
    rendered: Instant,
    body: Arc<[u8]>,
}

/// The loop: its sockets, and the endpoint that answers on them.
struct HttpServer {
    poll: Poll,
    listener: TcpListener,
    conns: Slab<TcpStream, Client>,
    per_address: usize,
    endpoint: Endpoint,
    stop: Arc<AtomicBool>,
}

/// What answers requests: the store, and the handlers of one connection's
/// events, each returning what becomes of the connection.
struct Endpoint {
    store: Arc<Mutex<Store>>,
    selfm: SelfMetrics,
    head_timeout: Duration,
    /// Reused buffers: the values copied out of the store, the text.
    scrape: Scrape,
    text: String,
    /// The last page of each format, plain and gzip.
    pages: [Option<Page>; 4],
    /// The live page's files.
    assets: Vec<assets::Asset>,
    /// This node's name, as the API shows it.
    node: String,
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
        let per_address = self.per_address;
        let accepted = conn::accept_all(
            || self.listener.accept(),
            |(stream, peer)| {
                let addr = peer.ip();
                let mine = conns.iter().filter(|c| c.state.addr == addr).count();
                if mine >= per_address || conns.len() >= MAX_CONNECTIONS {
                    // Make room: the least recently active connection of
                    // this address (or of anyone, at the global limit).
                    let of_addr = mine >= per_address;
                    let oldest = conns
                        .iter()
                        .filter(|c| !of_addr || c.state.addr == addr)
                        .min_by_key(|c| c.state.active)
                        .map(|c| c.token());
                    if let Some(token) = oldest {
                        log::debug!("HTTP connection limit reached: closing the least recently active one");
                        conns.remove(registry, token);
                    }
                }
                let client = Client {
                    addr,
                    active: Instant::now(),
                    inbuf: Vec::new(),
                    outbuf: Vec::new(),
                    page: None,
                    after: Vec::new(),
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
                    c.active = Instant::now();
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
            if c.close_after || c.inbuf.is_empty() || !c.written() {
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
            c.page = write_response(&mut c.outbuf, resp, is_head, keep_alive).map(|p| (p, 0));
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
                extra: "Allow: GET, HEAD\r\n".into(),
                body: Body::Bytes(b"only GET and HEAD are supported\n".to_vec()),
            };
        }
        let values = matches!(head.path, "/metrics" | "/metrics/" | "/api/values");
        match head.path {
            _ if values && self.store.lock().recovering(now()) => Response {
                // After a crash the totals are below what was served until
                // the collectors sent theirs again: no values rather than a
                // counter going backwards.
                status: 503,
                content_type: "text/plain; charset=utf-8",
                extra: "Retry-After: 1\r\n".into(),
                body: Body::Bytes(format!("{}\n", proxy_core::RECOVERING).into_bytes()),
            },
            "/metrics" | "/metrics/" => {
                let format = Format::negotiate(head.accept);
                let (body, extra) = match head.method {
                    // A HEAD is no scrape: nothing rendered, nothing counted.
                    "HEAD" => (Body::Unrendered, VARY),
                    _ if head.gzip => (
                        Body::Page(self.page(format, true)),
                        "Content-Encoding: gzip\r\nVary: Accept, Accept-Encoding\r\n",
                    ),
                    _ => (Body::Page(self.page(format, false)), VARY),
                };
                Response { status: 200, content_type: format.content_type(), extra: extra.into(), body }
            }
            "/api/values" | "/api/jobs" => {
                let request =
                    api::Request { path: head.path, query: head.query, head: head.method == "HEAD", time: now() };
                api::serve(request, &self.store, &mut self.scrape, &self.node)
            }
            path => match self.assets.iter().find(|a| a.path == path) {
                Some(asset) => asset.response(head.gzip, head.if_none_match),
                None => error(404, "not found: try /metrics"),
            },
        }
    }

    /// Counts a scrape and returns its page: the last one of this kind if
    /// nothing but scrape counters changed since it was rendered (and it
    /// is recent), else a new one, formatted after the store's lock is
    /// released.
    fn page(&mut self, format: Format, gzip: bool) -> Arc<[u8]> {
        let slot = usize::from(format == Format::OpenMetrics) * 2 + usize::from(gzip);
        let counter = match format {
            Format::Text => self.selfm.scrapes_text,
            Format::OpenMetrics => self.selfm.scrapes_openmetrics,
        };
        {
            let mut st = self.store.lock();
            let unchanged = self.pages[slot]
                .as_ref()
                .is_some_and(|p| p.generation == st.generation() && p.rendered.elapsed() < REUSE);
            st.internal_add(counter, 1, now());
            if unchanged {
                let page = self.pages[slot].as_mut().expect("checked above");
                page.generation = st.generation();
                return page.body.clone();
            }
            st.scrape(&mut self.scrape);
            // Nothing else is needed of the store: format without it.
            self.pages[slot] =
                Some(Page { generation: st.generation(), rendered: Instant::now(), body: Arc::from(&[][..]) });
        }
        render_scrape(&self.scrape, format, &mut self.text);
        let body: Arc<[u8]> = if gzip {
            let mut gz =
                flate2::write::GzEncoder::new(Vec::with_capacity(self.text.len() / 8), flate2::Compression::fast());
            // Writing to a Vec cannot fail.
            let _ = gz.write_all(self.text.as_bytes());
            Arc::from(gz.finish().unwrap_or_default())
        } else {
            Arc::from(self.text.as_bytes())
        };
        if let Some(p) = self.pages[slot].as_mut() {
            p.body = body.clone();
        }
        body
    }

    /// Writes what the socket takes, then serves the next pipelined
    /// request once the response is out; shuts our side after a final one.
    fn flush(&mut self, conn: &mut Conn) -> Verdict<()> {
        loop {
            let c = &mut conn.state;
            let progressed = match write_out(&mut conn.stream, c) {
                Some(progressed) => progressed,
                None => return Verdict::Close(()),
            };
            if progressed {
                c.write_progress = Instant::now();
                c.active = c.write_progress;
            }
            // The response is out: serve the next pipelined request, if any.
            if c.written() && !c.close_after && !c.inbuf.is_empty() {
                self.serve_buffered(c);
                if !c.written() {
                    continue;
                }
            }
            break;
        }
        let c = &mut conn.state;
        if c.written() && c.close_after && !c.draining {
            let _ = conn.stream.shutdown(std::net::Shutdown::Write);
            c.draining = true;
            c.since = Instant::now();
        }
        Verdict::Rearm { write: !c.written() }
    }

    /// Answers 408 to a request whose head is late, closes an idle
    /// keep-alive connection and one stuck in writing or draining.
    fn expire(&mut self, conn: &mut Conn) -> Verdict<()> {
        let c = &mut conn.state;
        if c.draining && c.since.elapsed() > DRAIN_TIMEOUT {
            return Verdict::Close(());
        }
        if !c.written() {
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

/// Writes what the socket takes of a client's response head and page.
/// Returns whether anything was written, or `None` when the peer is gone.
fn write_out(stream: &mut TcpStream, c: &mut Client) -> Option<bool> {
    let before = c.outbuf.len();
    if !conn::write_pending(stream, &mut c.outbuf) {
        return None;
    }
    let mut progressed = c.outbuf.len() < before;
    while let (true, Some((page, at))) = (c.outbuf.is_empty(), c.page.as_mut()) {
        match stream.write(&page[*at..]) {
            Ok(0) => return None,
            Ok(n) => {
                *at += n;
                progressed = true;
                if *at == page.len() {
                    c.page = None;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    if c.page.is_none() && !c.after.is_empty() {
        c.outbuf = std::mem::take(&mut c.after);
        let before = c.outbuf.len();
        if !conn::write_pending(stream, &mut c.outbuf) {
            return None;
        }
        progressed |= c.outbuf.len() < before;
    }
    Some(progressed)
}

/// Queues a final response: the connection closes once it is written.
fn respond_and_close(c: &mut Client, resp: Response) {
    // Behind a page still being written, if any (error bodies are no page).
    let out = if c.page.is_some() { &mut c.after } else { &mut c.outbuf };
    let _ = write_response(out, resp, false, false);
    c.write_progress = Instant::now();
    c.close_after = true;
    c.inbuf.clear();
}

/// The node's name, as the kernel knows it.
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned()).unwrap_or_default()
}
