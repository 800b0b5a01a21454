//! The mio event loop serving the UNIX socket: collectors push, clients query.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use parking_lot::Mutex;
use protocol::{decode_frame, encode_frame, Desc, Preamble, Reply, Request, Role, PREAMBLE_LEN};
use proxy_core::{CollectorSlot, SeriesId, Store};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const FIRST_CONN: usize = 2;
/// How often departed collectors are folded and self metrics refreshed.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// Replies a peer does not read are dropped beyond this many queued bytes.
const MAX_QUEUED_REPLY: usize = 64 << 20;

/// The daemon's own series, updated as it works.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SelfMetrics {
    collectors: SeriesId,
    frames: SeriesId,
    bytes: SeriesId,
    protocol_errors: SeriesId,
    /// Scrapes answered in text 0.0.4 and in OpenMetrics.
    pub(crate) scrapes_text: SeriesId,
    pub(crate) scrapes_openmetrics: SeriesId,
}

impl SelfMetrics {
    pub(crate) fn register(store: &mut Store) -> SelfMetrics {
        let mut reg = |d: Desc| store.internal(&d).expect("self metric descriptions are valid");
        SelfMetrics {
            collectors: reg(Desc::gauge(
                "tau_metric_proxy_collectors",
                &[],
                "Collectors currently connected to the proxy",
            )),
            frames: reg(Desc::counter("tau_metric_proxy_frames_total", &[], "Frames received from collectors")),
            bytes: reg(Desc::counter("tau_metric_proxy_received_bytes_total", &[], "Bytes received from collectors")),
            protocol_errors: reg(Desc::counter(
                "tau_metric_proxy_protocol_errors_total",
                &[],
                "Connections closed because they broke the protocol",
            )),
            scrapes_text: reg(Desc::counter(
                "tau_metric_proxy_scrapes_total",
                &[("format", "text")],
                "Scrapes of the HTTP /metrics endpoint, by exposition format served",
            )),
            scrapes_openmetrics: reg(Desc::counter(
                "tau_metric_proxy_scrapes_total",
                &[("format", "openmetrics")],
                "Scrapes of the HTTP /metrics endpoint, by exposition format served",
            )),
        }
    }
}

pub(crate) fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[derive(Debug)]
enum State {
    /// Waiting for the peer's preamble.
    Preamble,
    /// A collector that has not said hello yet.
    Collector,
    /// A collector with its store slot.
    Pushing { slot: CollectorSlot, program: String, pid: u32 },
    /// A query client.
    Query,
    /// A collector that said goodbye; anything more is ignored.
    Done,
}

#[derive(Debug)]
struct Conn {
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    state: State,
    writable_armed: bool,
    dropped_replies: bool,
}

/// Why a connection ends.
enum Close {
    /// The peer closed it.
    Eof,
    /// The peer broke the protocol (logged and counted).
    Protocol(String),
    /// An I/O error on the socket.
    Io(io::Error),
    /// The same collector connected again; this connection is stale.
    Superseded,
}

/// Owns the listener and every connection.
pub(crate) struct Server {
    poll: Poll,
    listener: UnixListener,
    signals: Signals,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    store: Arc<Mutex<Store>>,
    selfm: SelfMetrics,
    /// Per-wakeup tallies added to the self metrics in one go.
    frames: u64,
    bytes: u64,
}

impl Server {
    pub(crate) fn new(
        mut listener: UnixListener,
        store: Arc<Mutex<Store>>,
        selfm: SelfMetrics,
    ) -> Result<Server, String> {
        let poll = Poll::new().map_err(|e| format!("cannot create event loop: {e}"))?;
        let mut signals =
            Signals::new([SIGINT, SIGTERM]).map_err(|e| format!("cannot install signal handlers: {e}"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .and_then(|_| poll.registry().register(&mut signals, SIGNALS, Interest::READABLE))
            .map_err(|e| format!("cannot register with the event loop: {e}"))?;
        Ok(Server { poll, listener, signals, conns: Vec::new(), free: Vec::new(), store, selfm, frames: 0, bytes: 0 })
    }

    /// Serves until SIGINT or SIGTERM.
    pub(crate) fn run(mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(1024);
        let mut last_housekeeping = std::time::Instant::now();
        loop {
            match self.poll.poll(&mut events, Some(HOUSEKEEPING)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("event loop failed: {e}")),
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    SIGNALS => {
                        if let Some(sig) = self.signals.pending().next() {
                            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                            log::info!("received {name}, shutting down");
                            return Ok(());
                        }
                    }
                    Token(t) => {
                        let i = t - FIRST_CONN;
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(i);
                        }
                        if event.is_writable() {
                            self.on_writable(i);
                        }
                    }
                }
            }
            if self.frames > 0 {
                let now = now();
                let mut st = self.store.lock();
                st.internal_add(self.selfm.frames, self.frames, now);
                st.internal_add(self.selfm.bytes, self.bytes, now);
                self.frames = 0;
                self.bytes = 0;
            }
            if last_housekeeping.elapsed() >= HOUSEKEEPING {
                last_housekeeping = std::time::Instant::now();
                self.housekeeping();
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.add_conn(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors, typically: try again on the next event.
                    log::warn!("cannot accept a connection: {e}");
                    return;
                }
            }
        }
    }

    fn add_conn(&mut self, mut stream: UnixStream) {
        let i = self.free.pop().unwrap_or(self.conns.len());
        if let Err(e) = self.poll.registry().register(&mut stream, Token(i + FIRST_CONN), Interest::READABLE) {
            log::warn!("cannot register a connection: {e}");
            return;
        }
        let conn = Conn {
            stream,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            state: State::Preamble,
            writable_armed: false,
            dropped_replies: false,
        };
        if i == self.conns.len() {
            self.conns.push(Some(conn));
        } else {
            self.conns[i] = Some(conn);
        }
    }

    fn on_readable(&mut self, i: usize) {
        let mut chunk = vec![0u8; 256 * 1024];
        let outcome = loop {
            let Some(conn) = self.conns.get_mut(i).and_then(|c| c.as_mut()) else {
                return;
            };
            match conn.stream.read(&mut chunk) {
                Ok(0) => break Some(Close::Eof),
                Ok(n) => {
                    conn.inbuf.extend_from_slice(&chunk[..n]);
                    if let Err(close) = self.process(i) {
                        break Some(close);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Some(Close::Io(e)),
            }
        };
        self.flush_out(i);
        if let Some(close) = outcome {
            self.close(i, close);
        }
    }

    fn on_writable(&mut self, i: usize) {
        self.flush_out(i);
    }

    /// Handles every whole frame buffered for connection `i`.
    fn process(&mut self, i: usize) -> Result<(), Close> {
        let Some(conn) = self.conns.get_mut(i).and_then(|c| c.as_mut()) else {
            return Ok(());
        };
        if let State::Preamble = conn.state {
            let Some(bytes) = conn.inbuf.get(..PREAMBLE_LEN) else {
                return Ok(());
            };
            let bytes: [u8; PREAMBLE_LEN] = bytes.try_into().expect("slice of preamble length");
            // Answer first, even on a mismatch, so the peer can say which
            // version this daemon speaks.
            conn.outbuf.extend_from_slice(&Preamble::new(Role::Daemon).encode());
            conn.inbuf.drain(..PREAMBLE_LEN);
            conn.state = match Preamble::decode(&bytes) {
                Ok(p) if p.role == Role::Collector => State::Collector,
                Ok(p) if p.role == Role::Query => State::Query,
                Ok(_) => return Err(Close::Protocol("peer claims to be a daemon".into())),
                Err(e) => return Err(Close::Protocol(format!("refused: {e}"))),
            };
        }
        let now = now();
        let mut store = self.store.lock();
        let mut at = 0;
        let result = loop {
            let decoded = match decode_frame::<Request>(&conn.inbuf[at..]) {
                Ok(Some(d)) => d,
                Ok(None) => break Ok(()),
                Err(e) => break Err(Close::Protocol(e.to_string())),
            };
            let (req, used) = decoded;
            at += used;
            if matches!(conn.state, State::Collector | State::Pushing { .. }) {
                self.frames += 1;
                self.bytes += used as u64;
            }
            if let Err(e) = handle(conn, &mut store, req, now) {
                break Err(e);
            }
        };
        drop(store);
        conn.inbuf.drain(..at);
        result
    }

    fn flush_out(&mut self, i: usize) {
        let Some(conn) = self.conns.get_mut(i).and_then(|c| c.as_mut()) else {
            return;
        };
        let mut written = 0;
        let failed = loop {
            if written == conn.outbuf.len() {
                break false;
            }
            match conn.stream.write(&conn.outbuf[written..]) {
                Ok(0) => break true,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break true,
            }
        };
        conn.outbuf.drain(..written);
        if failed {
            // The peer is gone; reading will tell us so.
            conn.outbuf.clear();
        }
        let want_write = !conn.outbuf.is_empty();
        if want_write != conn.writable_armed {
            let interest = if want_write { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            if self.poll.registry().reregister(&mut conn.stream, Token(i + FIRST_CONN), interest).is_ok() {
                conn.writable_armed = want_write;
            }
        }
    }

    fn close(&mut self, i: usize, why: Close) {
        let Some(mut conn) = self.conns.get_mut(i).and_then(|c| c.take()) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.free.push(i);
        let who = match &conn.state {
            State::Pushing { program, pid, .. } => format!("collector {program} (pid {pid})"),
            State::Query => "query client".to_owned(),
            _ => "peer".to_owned(),
        };
        match why {
            Close::Eof => log::debug!("{who} disconnected"),
            Close::Io(e) => log::debug!("{who} connection failed: {e}"),
            Close::Superseded => log::debug!("{who} reconnected: closing its previous connection"),
            Close::Protocol(msg) => {
                log::warn!("closing connection of {who}: {msg}");
                self.store.lock().internal_add(self.selfm.protocol_errors, 1, now());
            }
        }
        if let State::Pushing { slot, .. } = conn.state {
            self.store.lock().disconnect(slot, now());
        }
    }

    fn housekeeping(&mut self) {
        let now = now();
        let mut st = self.store.lock();
        let folded = st.fold_departed(|id| process_alive(id.pid, id.start_time), now);
        if folded > 0 {
            log::debug!("folded {folded} departed collectors into the node totals");
        }
        let connected = st.connected_collectors() as f64;
        st.internal_set(self.selfm.collectors, connected, now);
    }
}

/// Applies one request of a connection. An error closes the connection.
fn handle(conn: &mut Conn, store: &mut Store, req: Request, now: f64) -> Result<(), Close> {
    if let State::Pushing { slot, .. } = conn.state {
        if !store.is_current(slot) {
            return Err(Close::Superseded);
        }
    }
    let reply = match (&conn.state, req) {
        (State::Collector, Request::Hello { identity }) => {
            let (pid, program) = (identity.pid, identity.program.clone());
            let (slot, resumed) = store.hello(identity);
            log::debug!("collector {program} (pid {pid}) {}", if resumed { "reconnected" } else { "connected" });
            conn.state = State::Pushing { slot, program, pid };
            None
        }
        (State::Pushing { slot, .. }, Request::Register { id, desc }) => {
            store.register(*slot, id, &desc).err().map(|e| Reply::Error { id: e.id, message: e.message })
        }
        (State::Pushing { slot, .. }, Request::Update { samples }) => errors_reply(store.update(*slot, &samples, now)),
        (State::Pushing { slot, .. }, Request::Resync { samples }) => errors_reply(store.resync(*slot, &samples, now)),
        (State::Pushing { slot, .. }, Request::Goodbye) => {
            store.goodbye(*slot, now);
            conn.state = State::Done;
            None
        }
        (State::Query, Request::List) => {
            queue_descs(conn, store.descs());
            None
        }
        (State::Query, Request::Values) => {
            queue_values(conn, store.generation(), store.values());
            None
        }
        (State::Query, Request::Get { names }) => match store.get(&names) {
            Ok(values) => {
                queue_values(conn, store.generation(), values);
                None
            }
            Err(names) => Some(Reply::Unknown { names }),
        },
        (State::Query, Request::Changes { since }) => {
            queue_values(conn, store.generation(), store.changes(since));
            None
        }
        (State::Done, _) => None,
        (state, req) => {
            let what = format!("{req:?}");
            let what = what.split([' ', '{', '(']).next().unwrap_or("");
            return Err(Close::Protocol(format!(
                "out-of-order frame: {what} is not valid in state {}",
                state_name(state)
            )));
        }
    };
    if let Some(reply) = reply {
        queue_reply(conn, &reply);
    }
    Ok(())
}

fn state_name(s: &State) -> &'static str {
    match s {
        State::Preamble => "preamble",
        State::Collector => "collector-before-hello",
        State::Pushing { .. } => "collector",
        State::Query => "query",
        State::Done => "done",
    }
}

fn errors_reply(errors: Vec<proxy_core::IngestError>) -> Option<Reply> {
    let first = errors.first()?;
    let message = if errors.len() > 1 {
        format!("{} (and {} more errors in this update)", first.message, errors.len() - 1)
    } else {
        first.message.clone()
    };
    Some(Reply::Error { id: first.id, message })
}

/// Target payload of one reply frame, well below the frame limit (a single
/// series, bounded by the name rules, always fits).
const REPLY_CHUNK_BYTES: usize = 256 * 1024;

/// Splits `items` into runs whose estimated encoded size stays near
/// [`REPLY_CHUNK_BYTES`]; always at least one (possibly empty) run.
fn chunk_by_size<T>(items: &[T], size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let n = size(item);
        if bytes + n > REPLY_CHUNK_BYTES && i > start {
            out.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += n;
    }
    out.push(&items[start..]);
    out
}

fn queue_values(conn: &mut Conn, generation: u64, values: Vec<protocol::ValueInfo>) {
    let chunks = chunk_by_size(&values, |v| v.name.len() + 24);
    let n = chunks.len();
    for (i, c) in chunks.into_iter().enumerate() {
        queue_reply(conn, &Reply::Values { generation, values: c.to_vec(), last: i + 1 == n });
    }
}

fn queue_descs(conn: &mut Conn, descs: Vec<protocol::DescInfo>) {
    let chunks = chunk_by_size(&descs, |d| d.name.len() + d.help.len() + 8);
    let n = chunks.len();
    for (i, c) in chunks.into_iter().enumerate() {
        queue_reply(conn, &Reply::Descs { descs: c.to_vec(), last: i + 1 == n });
    }
}

fn queue_reply(conn: &mut Conn, reply: &Reply) {
    if conn.outbuf.len() > MAX_QUEUED_REPLY {
        if !conn.dropped_replies {
            log::warn!("peer does not read its replies; dropping them");
            conn.dropped_replies = true;
        }
        return;
    }
    if let Err(e) = encode_frame(reply, &mut conn.outbuf) {
        // Only a reply over the frame limit can fail: tell the peer instead.
        let msg = Reply::Error { id: None, message: format!("reply too large: {e}") };
        let _ = encode_frame(&msg, &mut conn.outbuf);
    }
}

/// Whether `pid` still runs the process that started at `start_time`.
fn process_alive(pid: u32, start_time: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    // Field 3 is the state: a zombie has exited already.
    if fields.first() == Some(&"Z") {
        return false;
    }
    start_time == 0 || fields.get(19).and_then(|f| f.parse::<u64>().ok()) == Some(start_time)
}
