//! The mio event loop serving the UNIX socket: collectors push, clients query.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use parking_lot::Mutex;
use protocol::Desc;
use proxy_core::{ProcessRef, RefusalKind, SeriesId, Session, SessionEnd, Store, Tally};

use crate::access::Access;
use crate::cli::ConnLimits;
use crate::conn::{self, Slab, Verdict};
use crate::jobs::Jobs;
use crate::journal::SharedJournal;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const FIRST_CONN: Token = Token(2);
/// Size of one read from a connection.
const READ_CHUNK: usize = 64 * 1024;
/// Turns (one read of a collector, one read and one reply frame of
/// another peer) between two polls of the event loop.
const READS_PER_ROUND: usize = 16;
/// How often the self metrics are refreshed when nothing happens.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// The daemon's own series, updated as it works.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SelfMetrics {
    collectors: SeriesId,
    remembered: SeriesId,
    frames: SeriesId,
    bytes: SeriesId,
    protocol_errors: SeriesId,
    refused_connections: SeriesId,
    refused_series: SeriesId,
    /// `tau_metric_proxy_refusals_total`, one series per refusal kind.
    refusals: [SeriesId; RefusalKind::ALL.len()],
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
            remembered: reg(Desc::gauge(
                "tau_metric_proxy_remembered_collectors",
                &[],
                "Collectors remembered by the proxy, connected or expected to reconnect",
            )),
            frames: reg(Desc::counter("tau_metric_proxy_frames_total", &[], "Frames received from collectors")),
            bytes: reg(Desc::counter("tau_metric_proxy_received_bytes_total", &[], "Bytes received from collectors")),
            protocol_errors: reg(Desc::counter(
                "tau_metric_proxy_protocol_errors_total",
                &[],
                "Connections closed because they broke the protocol",
            )),
            refused_connections: reg(Desc::counter(
                "tau_metric_proxy_refused_connections_total",
                &[],
                "Connections refused because the peer's user may not use the proxy",
            )),
            refused_series: reg(Desc::counter(
                "tau_metric_proxy_refused_series_total",
                &[],
                "Series registrations refused because a series limit was reached",
            )),
            refusals: RefusalKind::ALL.map(|k| {
                reg(Desc::counter(
                    "tau_metric_proxy_refusals_total",
                    &[("reason", k.name())],
                    "Registrations and samples refused to collectors, by reason",
                ))
            }),
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

/// SIGINT and SIGTERM, caught from now on: taken before the socket is
/// claimed, so that a stop signal at any time removes the socket and
/// saves the state.
pub(crate) fn stop_signals() -> Result<Signals, String> {
    Signals::new([SIGINT, SIGTERM]).map_err(|e| format!("cannot install signal handlers: {e}"))
}

pub(crate) fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// One UNIX connection, without its socket.
#[derive(Debug)]
struct Peer {
    session: Session,
    /// In the queue of connections with work to do.
    queued: bool,
    /// The last read found nothing: the next readable event says when
    /// there is more.
    read_blocked: bool,
    /// The peer closed its side; a query client still gets its answers.
    eof: bool,
    /// Dropping its unread replies was logged.
    drop_logged: bool,
}

type Conn = conn::Conn<UnixStream, Peer>;

/// Why a connection ends.
enum Close {
    /// The peer closed it.
    Eof,
    /// An I/O error on the socket.
    Io(io::Error),
    /// The session ended it (protocol error, superseded).
    Session(SessionEnd),
}

/// Owns the listener and every connection.
pub(crate) struct Server {
    poll: Poll,
    listener: UnixListener,
    signals: Signals,
    conns: Slab<UnixStream, Peer>,
    core: Core,
}

/// What the loop serves its connections with: the store, the self
/// metrics, and the handlers of one connection's events,
/// each returning what becomes of the connection.
struct Core {
    store: Arc<Mutex<Store>>,
    /// The journal of `--state`, written as the store records it.
    journal: Option<SharedJournal>,
    selfm: SelfMetrics,
    /// Per-wakeup tallies added to the self metrics in one go.
    tally: Tally,
    access: Access,
    limits: ConnLimits,
    /// Connections refused at the connection limit since the last log line
    /// about them, and when that line was written.
    refused_at_limit: u64,
    limit_logged_at: Option<std::time::Instant>,
    /// Series refusals already added to the self metric.
    refused_reported: u64,
    /// Refusals of each kind already added to the self metrics.
    refusals_reported: [u64; RefusalKind::ALL.len()],
    /// Collectors with data to read, served in turn.
    ready: VecDeque<Token>,
    /// Other peers with work to do (data to read, an answer to produce),
    /// served in turn before the collectors of the same round.
    ready_peers: VecDeque<Token>,
    /// Reused read buffer.
    chunk: Vec<u8>,
    /// Jobs: their self metrics, and where finished jobs go.
    jobs: Jobs,
}

impl Server {
    pub(crate) fn new(
        mut listener: UnixListener,
        store: Arc<Mutex<Store>>,
        selfm: SelfMetrics,
        access: Access,
        limits: ConnLimits,
        profiles: crate::profiles::ProfileQueue,
        mut signals: Signals,
    ) -> Result<Server, String> {
        let jobs = Jobs::new(&mut store.lock(), profiles);
        let poll = Poll::new().map_err(|e| format!("cannot create event loop: {e}"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .and_then(|_| poll.registry().register(&mut signals, SIGNALS, Interest::READABLE))
            .map_err(|e| format!("cannot register with the event loop: {e}"))?;
        Ok(Server {
            poll,
            listener,
            signals,
            conns: Slab::new(FIRST_CONN),
            core: Core {
                store,
                journal: None,
                selfm,
                tally: Tally::default(),
                access,
                limits,
                refused_at_limit: 0,
                limit_logged_at: None,
                refused_reported: 0,
                refusals_reported: [0; RefusalKind::ALL.len()],
                ready: VecDeque::new(),
                ready_peers: VecDeque::new(),
                chunk: vec![0; READ_CHUNK],
                jobs,
            },
        })
    }

    /// The same server, writing the journal of `--state` (see
    /// [`crate::journal`]).
    pub(crate) fn with_journal(mut self, journal: Option<SharedJournal>) -> Server {
        self.core.journal = journal;
        self
    }

    /// Serves until SIGINT or SIGTERM (the caller then saves the state).
    pub(crate) fn run(mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(1024);
        let mut last_housekeeping = std::time::Instant::now();
        loop {
            // Connections left with unread data are served again at once.
            let idle = self.core.ready.is_empty() && self.core.ready_peers.is_empty();
            let timeout = if idle { HOUSEKEEPING } else { Duration::ZERO };
            match self.poll.poll(&mut events, Some(timeout)) {
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
                    token => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.handle(token, Core::readable);
                        }
                        if event.is_writable() {
                            self.handle(token, Core::writable);
                        }
                    }
                }
            }
            self.serve_ready();
            if self.core.tally.frames > 0 || !events.is_empty() {
                self.core.refresh_self_metrics();
            }
            if last_housekeeping.elapsed() >= HOUSEKEEPING {
                last_housekeeping = std::time::Instant::now();
                self.core.housekeeping();
            }
        }
    }

    fn accept(&mut self) {
        let registry = self.poll.registry();
        let accepted = conn::accept_all(
            || self.listener.accept().map(|(stream, _)| stream),
            |stream| {
                if self.conns.len() >= self.core.limits.max_connections {
                    self.core.refuse_at_limit();
                    return;
                }
                let Some(peer) = self.core.admit(&stream) else { return };
                if let Err(e) = self.conns.insert(registry, stream, peer) {
                    log::warn!("cannot register a connection: {e}");
                }
            },
        );
        if let Err(e) = accepted {
            // Out of file descriptors, typically: try again on the next event.
            log::warn!("cannot accept a connection: {e}");
        }
    }

    /// Serves queued connections round-robin, one turn each, until the
    /// round's budget is spent: however much peers send or ask, the loop
    /// comes back to poll (and to query clients polling at 1 kHz) within a
    /// bounded amount of work.
    /// Query clients (small requests, waiting for an answer) first, so
    /// that a client polling at 1 kHz does not wait behind collectors, each
    /// kind within its own budget.
    fn serve_ready(&mut self) {
        for peers in [true, false] {
            for _ in 0..READS_PER_ROUND {
                let queue = if peers { &mut self.core.ready_peers } else { &mut self.core.ready };
                let Some(token) = queue.pop_front() else { break };
                self.serve(token);
            }
        }
    }

    /// One turn of the connection of `token`.
    fn serve(&mut self, token: Token) {
        self.handle(token, |core, conn| {
            conn.state.queued = false;
            if conn.state.session.is_collector() {
                core.read(conn, 1)
            } else {
                core.serve_peer(conn)
            }
        });
    }

    /// Runs `handler` on the connection of `token`, if it is open, and
    /// applies its verdict.
    fn handle(&mut self, token: Token, handler: impl FnOnce(&mut Core, &mut Conn) -> Verdict<Close>) {
        let closed = self.conns.handle(self.poll.registry(), token, |conn| handler(&mut self.core, conn));
        if let Some((conn, why)) = closed {
            self.core.close(conn, why);
        }
    }
}

impl Core {
    /// A connection beyond `--max-connections`: closed (by the caller
    /// dropping it), counted, and logged at most once a second.
    fn refuse_at_limit(&mut self) {
        self.store.lock().count_refusals(RefusalKind::ConnectionLimit, 1);
        self.refused_at_limit += 1;
        if self.limit_logged_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            let refusal = proxy_core::Refusal::ConnectionLimit { limit: self.limits.max_connections };
            log::warn!("refused {} connection(s): {refusal}", self.refused_at_limit);
            self.refused_at_limit = 0;
            self.limit_logged_at = Some(std::time::Instant::now());
        }
    }

    /// Checks a new connection's peer: the state of its connection, or
    /// `None` when it is refused.
    fn admit(&mut self, stream: &UnixStream) -> Option<Peer> {
        let peer = match self.access.check(stream) {
            Ok(peer) => peer,
            Err(peer) => {
                match peer {
                    Some(p) => log::warn!(
                        "refused connection from uid {} (pid {}): only the proxy's user may connect \
                     (see --allow-uid and --allow-group)",
                        p.uid,
                        p.pid
                    ),
                    None => log::warn!("refused connection: cannot read the peer's credentials"),
                }
                self.store.lock().internal_add(self.selfm.refused_connections, 1, now());
                return None;
            }
        };
        // The kernel's word on the peer process, read now while it is
        // connected: its pid and start time decide later whether it is gone.
        let pid = peer.pid as u32;
        let process = ProcessRef { pid, start_time: procinfo::stat(pid).map_or(0, |s| s.start_time) };
        Some(Peer {
            session: Session::for_peer(process)
                .with_uid(peer.uid)
                .with_max_frame(self.limits.max_frame)
                .with_max_reply_queue(self.limits.max_reply_queue),
            queued: false,
            read_blocked: false,
            eof: false,
            drop_logged: false,
        })
    }

    fn enqueue(&mut self, conn: &mut Conn) {
        if !conn.state.queued {
            conn.state.queued = true;
            let queue = if conn.state.session.is_collector() { &mut self.ready } else { &mut self.ready_peers };
            queue.push_back(conn.token());
        }
    }

    /// A connection has data: it joins the fair queue.
    fn readable(&mut self, conn: &mut Conn) -> Verdict<Close> {
        conn.state.read_blocked = false;
        self.enqueue(conn);
        Verdict::Keep
    }

    /// The socket takes more: what is queued is written, and a query
    /// client whose replies drained gets its next turn.
    fn writable(&mut self, conn: &mut Conn) -> Verdict<Close> {
        let verdict = self.flush(conn);
        self.next_turn(conn, verdict)
    }

    /// One turn of a query client or of a peer before its preamble: one
    /// read if it wants input (it does not while its replies are unread),
    /// then at most one request served or one frame of an answer produced.
    fn serve_peer(&mut self, conn: &mut Conn) -> Verdict<Close> {
        if !conn.state.eof && !conn.state.read_blocked && conn.state.session.wants_input() {
            match conn.stream.read(&mut self.chunk) {
                Ok(0) => conn.state.eof = true,
                Ok(n) => {
                    if let Err(end) = self.feed(&mut conn.state.session, n) {
                        // What was answered first (our preamble, on a
                        // version mismatch) still goes out.
                        self.flush(conn);
                        return Verdict::Close(Close::Session(end));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.state.read_blocked = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Verdict::Close(Close::Io(e)),
            }
        }
        if conn.state.session.has_work() {
            let mut store = self.store.lock();
            if let Err(end) = conn.state.session.turn(&mut store, now()) {
                drop(store);
                self.flush(conn);
                return Verdict::Close(Close::Session(end));
            }
        }
        let verdict = self.flush(conn);
        self.next_turn(conn, verdict)
    }

    /// Queues a peer that has more to do now; closes one that closed its
    /// side and has nothing left to be answered.
    fn next_turn(&mut self, conn: &mut Conn, verdict: Verdict<Close>) -> Verdict<Close> {
        let (peer, session) = (&conn.state, &conn.state.session);
        if matches!(verdict, Verdict::Close(_)) {
            return verdict;
        }
        if session.is_collector() {
            // A preamble read with its first frames made a collector of it.
            if !peer.read_blocked && !peer.eof {
                self.enqueue(conn);
            }
            return verdict;
        }
        let can_read = session.wants_input() && !peer.read_blocked && !peer.eof;
        if session.has_work() || can_read {
            self.enqueue(conn);
        } else if peer.eof && session.wants_input() && session.output_len() == 0 {
            return Verdict::Close(Close::Eof);
        }
        verdict
    }

    /// Reads and handles what a connection sent, at most `max_reads`
    /// reads; a collector with more to read goes back to the queue.
    fn read(&mut self, conn: &mut Conn, max_reads: usize) -> Verdict<Close> {
        let mut reads = 0;
        let outcome = loop {
            if reads == max_reads {
                self.enqueue(conn);
                break None;
            }
            reads += 1;
            match conn.stream.read(&mut self.chunk) {
                Ok(0) => break Some(Close::Eof),
                Ok(n) => {
                    if let Err(end) = self.feed(&mut conn.state.session, n) {
                        break Some(Close::Session(end));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Some(Close::Io(e)),
            }
        };
        let flushed = self.flush(conn);
        match outcome {
            Some(close) => Verdict::Close(close),
            None => flushed,
        }
    }

    /// Hands the `n` bytes read to the connection's session. What the store
    /// recorded for the journal meanwhile is written before the store's
    /// lock is released, so before a scrape can serve it.
    fn feed(&mut self, session: &mut Session, n: usize) -> Result<(), SessionEnd> {
        let mut store = self.store.lock();
        let fed = session.feed(&self.chunk[..n], &mut store, now(), &mut self.tally);
        match &self.journal {
            Some(journal) if store.journal_pending().is_some() => journal.lock().write(&mut store),
            _ => {}
        }
        fed
    }

    /// Writes what the socket takes of the replies; waits for writability
    /// while some are left.
    fn flush(&mut self, conn: &mut Conn) -> Verdict<Close> {
        let session = &mut conn.state.session;
        let dropped = session.take_dropped_replies();
        if dropped > 0 {
            self.store.lock().count_refusals(RefusalKind::ReplyQueueLimit, dropped);
            if !std::mem::replace(&mut conn.state.drop_logged, true) {
                log::warn!(
                    "{} does not read its replies; dropping them beyond {} bytes (see --max-reply-queue)",
                    session.describe(),
                    self.limits.max_reply_queue
                );
            }
        }
        let collector = session.is_collector();
        let out = session.output();
        if !conn::write_pending(&mut conn.stream, out) {
            out.clear();
            // The peer is gone. A collector's last frames may still be
            // unread: reading will tell; a query client is done.
            if !collector {
                return Verdict::Close(Close::Io(io::ErrorKind::BrokenPipe.into()));
            }
        }
        Verdict::Rearm { write: !out.is_empty() }
    }

    /// Accounts for a connection closed: logged, counted, its collector
    /// disconnected from the store.
    fn close(&mut self, conn: Conn, why: Close) {
        let mut session = conn.state.session;
        let who = session.describe();
        let mut store = self.store.lock();
        let pending = session.pending_input();
        match why {
            Close::Eof if pending > 0 => {
                log::warn!("closing connection of {who}: closed inside a frame, {pending} bytes discarded");
                store.internal_add(self.selfm.protocol_errors, 1, now());
            }
            Close::Eof => log::debug!("{who} disconnected"),
            Close::Io(e) => log::debug!("{who} connection failed: {e}"),
            Close::Session(SessionEnd::Superseded) => log::debug!("{who} reconnected: closing its previous connection"),
            Close::Session(SessionEnd::Refused(r @ proxy_core::Refusal::FrameLimit { .. })) => {
                log::warn!("closing connection of {who}: {r}")
            }
            Close::Session(SessionEnd::Refused(r)) => log::warn!("refused a collector: {r}"),
            Close::Session(SessionEnd::Protocol(msg)) => {
                log::warn!("closing connection of {who}: {msg}");
                store.internal_add(self.selfm.protocol_errors, 1, now());
            }
        }
        session.disconnect(&mut store, now());
    }

    /// Once a second, on the loop: the jobs' bookkeeping and the self
    /// metrics (folding and saving the state run on the keeper thread).
    fn housekeeping(&mut self) {
        let now = now();
        let mut st = self.store.lock();
        let finished = self.jobs.housekeeping(&mut st, now);
        drop(st);
        for record in finished {
            self.jobs.finished_job(record);
        }
        self.refresh_self_metrics();
    }

    /// Adds this wake-up's tallies to the self metrics.
    fn refresh_self_metrics(&mut self) {
        let now = now();
        let mut st = self.store.lock();
        st.internal_add(self.selfm.frames, self.tally.frames, now);
        st.internal_add(self.selfm.bytes, self.tally.bytes, now);
        self.tally = Tally::default();
        // Registrations refused because a series limit was reached.
        let limits = RefusalKind::ALL.into_iter().filter(|k| k.is_series_limit());
        let refused: u64 = limits.map(|k| st.refusals(k)).sum();
        st.internal_add(self.selfm.refused_series, refused - self.refused_reported, now);
        self.refused_reported = refused;
        for (i, kind) in RefusalKind::ALL.into_iter().enumerate() {
            let n = st.refusals(kind);
            st.internal_add(self.selfm.refusals[i], n - self.refusals_reported[i], now);
            self.refusals_reported[i] = n;
        }
        let connected = st.connected_collectors() as f64;
        st.internal_set(self.selfm.collectors, connected, now);
        let remembered = st.known_collectors() as f64;
        st.internal_set(self.selfm.remembered, remembered, now);
    }
}
