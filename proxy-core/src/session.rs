//! One peer's protocol state machine: bytes in, store changes and reply
//! bytes out. The daemon only moves bytes between sockets and sessions.

use std::fmt;

use protocol::{
    decode_frame, encode_frame, FrameError, Identity, JobInfo, JobTag, Preamble, PreambleError, Reply, Request, Role,
    FRAME_HEADER, MAX_FRAME, PREAMBLE_LEN, VERSION,
};

use crate::refusal::{IngestError, Refusal, RefusalKind};
use crate::store::query::UnknownSeries;
use crate::store::{CollectorSlot, ProcessRef, SeriesId, Store, RECOVERING};

/// A collector's replies (errors about its own requests) it does not read
/// are dropped beyond this many queued bytes, by default.
pub const DEFAULT_MAX_REPLY_QUEUE: usize = 256 << 10;
/// Longest frame a peer may send, by default: what the read buffer of a
/// connection holds at most beyond one read. The collectors' frames are
/// far shorter (8192 samples are at most 123 KiB).
pub const DEFAULT_MAX_FRAME: usize = 256 << 10;
/// Target payload of one reply frame, well below the frame limit (a single
/// series, bounded by the name rules, always fits); also how far a query
/// answer is produced ahead of what the peer has read.
const REPLY_CHUNK_BYTES: usize = 256 * 1024;

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

/// Why a session must end; the connection is closed.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEnd {
    /// The peer broke the protocol (logged, counted).
    Protocol(Violation),
    /// The same collector connected again; this connection is stale.
    Superseded,
    /// The collector was refused (it was told why, and comes back later).
    Refused(Refusal),
}

/// How a peer broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Its preamble was refused (not our protocol, another version).
    Preamble(PreambleError),
    /// Its preamble claims the daemon's role.
    ClaimsDaemon,
    /// A frame that is oversized or does not decode.
    Frame(FrameError),
    /// A request that is not valid in the session's state.
    OutOfOrder { request: &'static str, state: &'static str },
    /// A `JobHello` whose job id [`protocol::check_job_id`] refuses.
    BadJob(String),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Preamble(e) => write!(f, "refused: {e}"),
            Violation::ClaimsDaemon => f.write_str("peer claims to be a daemon"),
            Violation::Frame(e) => e.fmt(f),
            Violation::OutOfOrder { request, state } => {
                write!(f, "out-of-order frame: {request} is not valid in state {state}")
            }
            Violation::BadJob(e) => write!(f, "bad job id: {e}"),
        }
    }
}

impl std::error::Error for Violation {}

/// A query answer produced a frame at a time, as the peer reads: the
/// series it lists, fixed when the request was served, and how many of
/// them were sent. Values are read when their frame is produced.
#[derive(Debug)]
struct Answer {
    /// `List` (descriptions) rather than values.
    descs: bool,
    /// The store's generation when the request was served.
    generation: u64,
    ids: Vec<SeriesId>,
    sent: usize,
}

/// Frames and bytes received from collectors, for the self metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub frames: u64,
    pub bytes: u64,
}

/// The protocol state of one connection.
#[derive(Debug)]
pub struct Session {
    /// The connected process, as the kernel reports it, when known.
    peer: Option<ProcessRef>,
    /// The connected user, as the kernel reports it, when known: it owns
    /// the families it registers first.
    uid: Option<u32>,
    state: State,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// The query answer being produced.
    answer: Option<Answer>,
    /// Bound on a collector's queued replies.
    max_reply_queue: usize,
    /// Longest frame the peer may send.
    max_frame: usize,
    /// The protocol version the peer speaks (from its preamble).
    peer_version: u16,
    /// Replies dropped because the peer does not read them, not yet
    /// taken by [`Session::take_dropped_replies`].
    dropped_replies: u64,
}

impl Default for Session {
    fn default() -> Session {
        Session::new()
    }
}

impl Session {
    pub fn new() -> Session {
        Session {
            peer: None,
            uid: None,
            state: State::Preamble,
            inbuf: Vec::new(),
            out: Vec::new(),
            answer: None,
            max_reply_queue: DEFAULT_MAX_REPLY_QUEUE,
            max_frame: DEFAULT_MAX_FRAME,
            peer_version: VERSION,
            dropped_replies: 0,
        }
    }

    /// Sets the bound beyond which a collector's unread replies are dropped.
    pub fn with_max_reply_queue(mut self, bytes: usize) -> Session {
        self.max_reply_queue = bytes;
        self
    }

    /// Sets the longest frame the peer may send (at most the protocol's
    /// `MAX_FRAME`): a longer one ends the session, counted as a
    /// [`RefusalKind::FrameLimit`].
    pub fn with_max_frame(mut self, bytes: usize) -> Session {
        self.max_frame = bytes.min(MAX_FRAME);
        self
    }

    /// A session whose peer process is known (from `SO_PEERCRED`): a
    /// collector's liveness is then judged by it, not by what it claims.
    pub fn for_peer(peer: ProcessRef) -> Session {
        Session { peer: Some(peer), ..Session::new() }
    }

    /// The same session, for a peer of user `uid` (from `SO_PEERCRED`).
    pub fn with_uid(self, uid: u32) -> Session {
        Session { uid: Some(uid), ..self }
    }

    /// Reply bytes to send; the caller drains what it wrote.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Whether a query session has something to do in [`Session::turn`]:
    /// an answer to go on with or a whole request to serve, and room for
    /// more replies (its queued replies are below one frame's worth).
    pub fn has_work(&self) -> bool {
        matches!(self.state, State::Query)
            && self.out.len() < REPLY_CHUNK_BYTES
            && (self.answer.is_some() || frame_ready(&self.inbuf, self.max_frame))
    }

    /// Whether the connection should be read now. Collectors always are
    /// (their unread replies are dropped beyond a bound); other peers only
    /// once everything they asked is answered and sent but one frame's
    /// worth: a peer that does not read its replies stops being read.
    pub fn wants_input(&self) -> bool {
        match self.state {
            State::Preamble | State::Query => {
                self.answer.is_none() && !frame_ready(&self.inbuf, self.max_frame) && self.out.len() < REPLY_CHUNK_BYTES
            }
            _ => true,
        }
    }

    /// Reply bytes queued.
    pub fn output_len(&self) -> usize {
        self.out.len()
    }

    /// How many replies were dropped because the peer does not read them
    /// since the last call.
    pub fn take_dropped_replies(&mut self) -> u64 {
        std::mem::take(&mut self.dropped_replies)
    }

    /// Refuses a frame announced at `at` of the input longer than the
    /// session's limit, counting the refusal (one longer than the
    /// protocol's limit is the decoder's protocol error).
    fn check_frame_len(&self, at: usize, store: &mut Store) -> Result<(), SessionEnd> {
        let Some(header) = self.inbuf.get(at..at + FRAME_HEADER) else { return Ok(()) };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len <= self.max_frame || len > MAX_FRAME {
            return Ok(());
        }
        store.count_refusals(RefusalKind::FrameLimit, 1);
        Err(SessionEnd::Refused(Refusal::FrameLimit { len, limit: self.max_frame }))
    }

    /// Whether the peer pushes metrics (as opposed to querying, or not
    /// having said yet).
    pub fn is_collector(&self) -> bool {
        matches!(self.state, State::Collector | State::Pushing { .. } | State::Done)
    }

    /// Bytes received but not yet a whole frame (a peer that closes with
    /// some left sent a truncated frame).
    pub fn pending_input(&self) -> usize {
        self.inbuf.len()
    }

    /// Who is on the other side, for log lines.
    pub fn describe(&self) -> String {
        match &self.state {
            State::Pushing { program, pid, .. } => format!("collector {program} (pid {pid})"),
            State::Query => "query client".to_owned(),
            _ => "peer".to_owned(),
        }
    }

    /// Feeds bytes read from the peer. A collector's whole frames are all
    /// handled; a query client's wait for [`Session::turn`].
    pub fn feed(&mut self, bytes: &[u8], store: &mut Store, now: f64, tally: &mut Tally) -> Result<(), SessionEnd> {
        self.inbuf.extend_from_slice(bytes);
        if let State::Preamble = self.state {
            let Some(head) = self.inbuf.get(..PREAMBLE_LEN) else { return Ok(()) };
            let head: [u8; PREAMBLE_LEN] = head.try_into().expect("slice of preamble length");
            // Answer first, even on a mismatch, so the peer can say which
            // version this daemon speaks; a peer of an older version still
            // supported is answered in its version.
            let decoded = Preamble::decode(&head);
            let version = decoded.as_ref().map_or(VERSION, |p| p.version);
            self.peer_version = version;
            self.out.extend_from_slice(&Preamble { version, role: Role::Daemon }.encode());
            self.inbuf.drain(..PREAMBLE_LEN);
            self.state = match decoded {
                Ok(p) if p.role == Role::Collector => State::Collector,
                Ok(p) if p.role == Role::Query => State::Query,
                Ok(_) => return Err(SessionEnd::Protocol(Violation::ClaimsDaemon)),
                Err(e) => return Err(SessionEnd::Protocol(Violation::Preamble(e))),
            };
        }
        if matches!(self.state, State::Query) {
            return self.check_frame_len(0, store);
        }
        let mut at = 0;
        let result = loop {
            if let Err(e) = self.check_frame_len(at, store) {
                break Err(e);
            }
            let (req, used) = match decode_frame::<Request>(&self.inbuf[at..]) {
                Ok(Some(d)) => d,
                Ok(None) => break Ok(()),
                Err(e) => break Err(SessionEnd::Protocol(Violation::Frame(e))),
            };
            at += used;
            if matches!(self.state, State::Collector | State::Pushing { .. }) {
                tally.frames += 1;
                tally.bytes += used as u64;
            }
            if let Err(e) = self.handle(store, req, now) {
                break Err(e);
            }
        };
        self.inbuf.drain(..at);
        result
    }

    /// One turn of a query client: the next frame of the answer being
    /// produced, else the next request buffered is served (its first
    /// frame produced). Nothing while a frame's worth of replies waits to
    /// be sent, so one peer costs the store one frame per turn however
    /// many requests it pipelines, and an answer of any size is produced
    /// as the socket drains.
    pub fn turn(&mut self, store: &mut Store, now: f64) -> Result<(), SessionEnd> {
        if !self.has_work() {
            return Ok(());
        }
        if self.answer.is_none() {
            self.check_frame_len(0, store)?;
            let (req, used) = match decode_frame::<Request>(&self.inbuf) {
                Ok(Some(d)) => d,
                Ok(None) => return Ok(()),
                Err(e) => return Err(SessionEnd::Protocol(Violation::Frame(e))),
            };
            self.inbuf.drain(..used);
            self.handle(store, req, now)?;
        }
        self.produce(store);
        Ok(())
    }

    /// Appends the next frame of the answer being produced.
    fn produce(&mut self, store: &Store) {
        let Some(a) = &mut self.answer else { return };
        let start = a.sent;
        let mut bytes = 0;
        while let Some(&sid) = a.ids.get(a.sent) {
            let n = store.reply_size(sid, a.descs);
            if bytes + n > REPLY_CHUNK_BYTES && a.sent > start {
                break;
            }
            bytes += n;
            a.sent += 1;
        }
        let part = &a.ids[start..a.sent];
        let last = a.sent == a.ids.len();
        let reply = if a.descs {
            Reply::Descs { descs: store.desc_infos(part), last }
        } else {
            Reply::Values { generation: a.generation, values: store.value_infos(part), last }
        };
        if last {
            self.answer = None;
        }
        self.reply(&reply);
    }

    fn answer(&mut self, store: &Store, descs: bool, ids: Vec<SeriesId>) {
        self.answer = Some(Answer { descs, generation: store.generation(), ids, sent: 0 });
    }

    /// The connection closed: a collector's gauges leave; its counted
    /// totals are kept in case it reconnects.
    pub fn disconnect(&mut self, store: &mut Store, now: f64) {
        if let State::Pushing { slot, .. } = self.state {
            store.disconnect(slot, now);
        }
        self.state = State::Done;
    }

    fn handle(&mut self, store: &mut Store, req: Request, now: f64) -> Result<(), SessionEnd> {
        if let State::Pushing { slot, .. } = self.state {
            if !store.is_current(slot) {
                return Err(SessionEnd::Superseded);
            }
        }
        match (&self.state, req) {
            (State::Collector, Request::Hello { identity }) => self.hello(store, identity, None, now)?,
            (State::Collector, Request::JobHello { identity, job }) => {
                protocol::check_job_id(&job.id).map_err(|e| SessionEnd::Protocol(Violation::BadJob(e)))?;
                self.hello(store, identity, Some(job), now)?;
            }
            (State::Pushing { slot, .. }, Request::Register { id, desc }) => {
                if let Err(e) = store.register(*slot, id, &desc) {
                    self.errors(vec![e]);
                }
            }
            (State::Pushing { slot, .. }, Request::Update { samples }) => {
                let errors = store.update(*slot, &samples, now);
                self.errors(errors);
            }
            (State::Pushing { slot, .. }, Request::Resync { samples }) => {
                let errors = store.resync(*slot, &samples, now);
                self.errors(errors);
            }
            (State::Pushing { slot, .. }, Request::Goodbye) => {
                store.goodbye(*slot, now);
                self.state = State::Done;
            }
            // After a crash, until the collectors sent their totals again,
            // no values rather than lower ones (as `/metrics` answers 503).
            (State::Query, Request::Values | Request::Get { .. } | Request::Changes { .. })
                if store.recovering(now) =>
            {
                self.reply(&Reply::Error { id: None, message: RECOVERING.to_owned() })
            }
            (State::Query, Request::List) => {
                let ids = store.ordered_ids();
                self.answer(store, true, ids);
            }
            (State::Query, Request::Values) => {
                let ids = store.ordered_ids();
                self.answer(store, false, ids);
            }
            (State::Query, Request::Get { names }) => match store.ids_of(&names) {
                Ok(ids) => self.answer(store, false, ids),
                Err(UnknownSeries(names)) => self.reply(&Reply::Unknown { names }),
            },
            (State::Query, Request::Changes { since }) => self.answer(store, false, store.changed_ids(since)),
            (State::Query, Request::Jobs) => self.jobs(store),
            (State::Done, _) => {}
            (state, req) => {
                let (request, state) = (request_name(&req), state_name(state));
                return Err(SessionEnd::Protocol(Violation::OutOfOrder { request, state }));
            }
        }
        Ok(())
    }

    /// The jobs of the store, in frames of about [`REPLY_CHUNK_BYTES`]
    /// (a bounded list: [`crate::Limits::max_jobs`] jobs of bounded size).
    fn jobs(&mut self, store: &Store) {
        let jobs = store.jobs();
        let mut parts: Vec<Vec<JobInfo>> = vec![Vec::new()];
        let mut bytes = 0;
        for job in jobs {
            let size =
                job.id.len() + job.commands.iter().map(|c| c.len() + 2).sum::<usize>() + 5 * job.ranks.len() + 48;
            if bytes + size > REPLY_CHUNK_BYTES && bytes > 0 {
                parts.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            parts.last_mut().expect("one part at least").push(job);
        }
        let n = parts.len();
        for (i, jobs) in parts.into_iter().enumerate() {
            self.reply(&Reply::Jobs { jobs, last: i + 1 == n });
        }
    }

    /// A collector says who it is, and of which job.
    fn hello(
        &mut self,
        store: &mut Store,
        identity: Identity,
        job: Option<JobTag>,
        now: f64,
    ) -> Result<(), SessionEnd> {
        let (pid, program) = (identity.pid, identity.program.clone());
        let said = match &job {
            Some(JobTag { id, rank: Some(rank) }) => format!(", job {id} rank {rank}"),
            Some(JobTag { id, rank: None }) => format!(", job {id}"),
            None => String::new(),
        };
        let (slot, resumed) = match store.hello_from(identity, job, self.peer, self.uid, now) {
            Ok(hello) => hello,
            Err(e) => {
                self.reply(&Reply::Error { id: None, message: e.refusal.to_string() });
                self.state = State::Done;
                return Err(SessionEnd::Refused(e.refusal));
            }
        };
        log::debug!("collector {program} (pid {pid}) {}{said}", if resumed { "reconnected" } else { "connected" });
        // Version 2 on: the collector learns whether it was known.
        if self.peer_version >= 2 {
            self.reply(&Reply::Welcome { resumed });
        }
        self.state = State::Pushing { slot, program, pid };
        Ok(())
    }

    fn errors(&mut self, errors: Vec<IngestError>) {
        let Some(first) = errors.first() else { return };
        let message = if errors.len() > 1 {
            format!("{} (and {} more errors in this request)", first.refusal, errors.len() - 1)
        } else {
            first.refusal.to_string()
        };
        self.reply(&Reply::Error { id: first.id, message });
    }

    fn reply(&mut self, reply: &Reply) {
        // A query client's answers are produced as it reads, never dropped.
        if !matches!(self.state, State::Query) && self.out.len() > self.max_reply_queue {
            self.dropped_replies += 1;
            return;
        }
        if let Err(e) = encode_frame(reply, &mut self.out) {
            // Only a reply over the frame limit can fail: say so instead.
            let msg = Reply::Error { id: None, message: format!("reply too large: {e}") };
            let _ = encode_frame(&msg, &mut self.out);
        }
    }
}

fn request_name(r: &Request) -> &'static str {
    match r {
        Request::Hello { .. } => "Hello",
        Request::JobHello { .. } => "JobHello",
        Request::Register { .. } => "Register",
        Request::Update { .. } => "Update",
        Request::Resync { .. } => "Resync",
        Request::Goodbye => "Goodbye",
        Request::List => "List",
        Request::Values => "Values",
        Request::Get { .. } => "Get",
        Request::Changes { .. } => "Changes",
        Request::Jobs => "Jobs",
    }
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

/// Whether `buf` starts with a whole frame, or with a length prefix over
/// `limit` that will be refused.
fn frame_ready(buf: &[u8], limit: usize) -> bool {
    let Some(header) = buf.get(..FRAME_HEADER) else { return false };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    len > limit || buf.len() >= FRAME_HEADER + len
}

#[cfg(test)]
mod tests;
