//! The collector side: cumulative totals kept locally, deltas pushed.

use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use protocol::{Desc, Identity, JobTag, Kind, Reply, Request, Role, Sample, Value};

use crate::conn::{Connection, Error};

/// Index of a series inside one [`Pusher`]; also its id on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetricId(pub u32);

/// Samples per `Update` or `Resync` frame: 8192 samples of at most 15
/// bytes stay far below the frame limit, however many series changed.
const SAMPLES_PER_FRAME: usize = 8192;
/// Errors kept for [`Pusher::take_errors`]; beyond it they are counted
/// only, so a collector that never asks does not accumulate them.
const MAX_ERRORS: usize = 64;

/// How a [`Pusher`] reaches the daemon.
#[derive(Debug, Clone)]
pub struct PushConfig {
    pub socket: PathBuf,
    /// Program name reported in the daemon's log lines.
    pub program: String,
    /// Prefix of the one line printed on stderr when the socket is served
    /// by a user this process does not trust (see [`crate::Error`]).
    pub tool: String,
    /// Bound on every connect, read and write.
    pub io_timeout: Duration,
    /// Minimum time between two connection attempts while the daemon is
    /// unreachable, so an absent daemon costs nothing measurable.
    pub retry_every: Duration,
    /// The job to report in place of the one this process's environment
    /// names (see [`crate::own_job`]); its rank is still the environment's.
    pub job: Option<String>,
}

impl PushConfig {
    pub fn new(socket: PathBuf, program: &str) -> PushConfig {
        PushConfig {
            socket,
            program: program.to_owned(),
            tool: program.to_owned(),
            io_timeout: Duration::from_millis(200),
            retry_every: Duration::from_millis(500),
            job: None,
        }
    }
}

/// Outcome of [`Pusher::flush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushState {
    /// Everything counted so far is with the daemon.
    Sent,
    /// The daemon is unreachable; totals are kept and will be resent.
    Offline,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    /// Exact counter: cumulative total and the part already sent.
    Int { total: u64, sent: u64 },
    /// Float counter: cumulative total and the part not yet sent.
    Float { total: f64, pending: f64 },
    /// Gauge: current value and whether it changed since it was sent.
    Gauge { value: f64, dirty: bool },
}

/// A collector's link to the daemon.
///
/// Counts live here (cumulative, per series); [`Pusher::flush`] sends the
/// changes. After any (re)connection it sends `Hello`, every registration
/// and a `Resync` of all totals, so the daemon can add exactly what it has
/// not yet seen from this process.
#[derive(Debug)]
pub struct Pusher {
    config: PushConfig,
    identity: Identity,
    /// The job and rank this process reports, if any.
    job: Option<JobTag>,
    descs: Vec<Desc>,
    slots: Vec<Slot>,
    conn: Option<Connection>,
    last_attempt: Option<Instant>,
    /// Errors the daemon reported, for the caller to log if it wishes
    /// (the first [`MAX_ERRORS`]), and how many more there were.
    errors: Vec<String>,
    errors_dropped: usize,
    /// Whether the untrusted socket was reported already.
    warned: bool,
    /// Whether a daemon welcomed this identity before.
    welcomed: bool,
    /// Times a daemon that had welcomed us did not know us any more.
    forgotten: u64,
}

impl Pusher {
    /// A pusher that has not tried to connect yet.
    pub fn new(config: PushConfig) -> Pusher {
        let identity = own_identity(&config.program);
        let job = own_job_tag(config.job.clone());
        Pusher {
            config,
            identity,
            job,
            descs: Vec::new(),
            slots: Vec::new(),
            conn: None,
            last_attempt: None,
            errors: Vec::new(),
            errors_dropped: 0,
            warned: false,
            welcomed: false,
            forgotten: 0,
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The job and rank this process reports.
    pub fn job(&self) -> Option<&JobTag> {
        self.job.as_ref()
    }

    /// Declares a series. Counters start at 0; integer updates go through
    /// [`Pusher::add`] / [`Pusher::set_total`], float ones through
    /// [`Pusher::add_float`].
    pub fn register(&mut self, desc: Desc) -> MetricId {
        let id = MetricId(self.descs.len() as u32);
        self.slots.push(match desc.kind {
            Kind::Counter => Slot::Int { total: 0, sent: 0 },
            Kind::Gauge => Slot::Gauge { value: 0.0, dirty: false },
        });
        if let Some(conn) = &mut self.conn {
            if conn.queue(&Request::Register { id: id.0, desc: desc.clone() }).is_err() {
                self.conn = None;
            }
        }
        self.descs.push(desc);
        id
    }

    /// Adds to an integer counter.
    pub fn add(&mut self, id: MetricId, delta: u64) {
        if let Some(Slot::Int { total, .. }) = self.slots.get_mut(id.0 as usize) {
            *total = total.wrapping_add(delta);
        }
    }

    /// Sets an integer counter's cumulative total (it never goes down).
    pub fn set_total(&mut self, id: MetricId, value: u64) {
        if let Some(Slot::Int { total, .. }) = self.slots.get_mut(id.0 as usize) {
            *total = value;
        }
    }

    /// Adds to a float counter.
    pub fn add_float(&mut self, id: MetricId, delta: f64) {
        let Some(slot) = self.slots.get_mut(id.0 as usize) else {
            return;
        };
        match slot {
            Slot::Float { total, pending } => {
                *total += delta;
                *pending += delta;
            }
            Slot::Int { total: 0, sent: 0 } => *slot = Slot::Float { total: delta, pending: delta },
            _ => {}
        }
    }

    /// Sets a gauge.
    pub fn set_gauge(&mut self, id: MetricId, v: f64) {
        if let Some(Slot::Gauge { value, dirty }) = self.slots.get_mut(id.0 as usize) {
            if *value != v || !*dirty {
                *dirty = *value != v || *dirty;
                *value = v;
            }
        }
    }

    /// The cumulative total of an integer counter.
    pub fn total(&self, id: MetricId) -> u64 {
        match self.slots.get(id.0 as usize) {
            Some(Slot::Int { total, .. }) => *total,
            _ => 0,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// How many times a daemon that had welcomed this collector did not
    /// know it any more on a reconnection (`Welcome { resumed: false }`,
    /// a daemon restarted without its state): its totals were counted anew
    /// from zero each time, which is right for a daemon that lost them.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Errors the daemon reported since the last call.
    pub fn take_errors(&mut self) -> Vec<String> {
        let mut errors = std::mem::take(&mut self.errors);
        if self.errors_dropped > 0 {
            errors.push(format!("and {} more errors", std::mem::take(&mut self.errors_dropped)));
        }
        errors
    }

    /// Sends what changed since the last successful flush. Connects (or
    /// reconnects, at most once per `retry_every`) when needed. Never blocks
    /// longer than a few `io_timeout`s.
    pub fn flush(&mut self) -> PushState {
        if self.conn.is_none() && !self.reconnect() {
            return PushState::Offline;
        }
        let samples = self.changed_samples();
        let Some(conn) = &mut self.conn else {
            return PushState::Offline;
        };
        let mut ok = true;
        for chunk in samples.chunks(SAMPLES_PER_FRAME) {
            ok = ok && conn.queue(&Request::Update { samples: chunk.to_vec() }).is_ok();
        }
        if ok && conn.queued() > 0 {
            ok = conn.flush().is_ok();
        }
        if ok {
            ok = self.collect_replies();
        }
        if ok {
            self.mark_sent();
            PushState::Sent
        } else {
            self.conn = None;
            PushState::Offline
        }
    }

    /// Like [`Pusher::flush`], but tries to connect even if a retry is not
    /// yet due: for a last push before the process image goes away (an
    /// exec) when the collector must stay usable should that fail.
    pub fn flush_now(&mut self) -> PushState {
        self.last_attempt = None;
        self.flush()
    }

    /// Final flush, then tells the daemon this collector is gone for good.
    /// Tries to connect even if a retry is not yet due.
    pub fn finish(mut self) -> PushState {
        self.last_attempt = None;
        let state = self.flush();
        if let Some(conn) = &mut self.conn {
            if conn.queue(&Request::Goodbye).is_ok() {
                let _ = conn.flush();
            }
        }
        state
    }

    /// In a forked child: the counts so far belong to the parent. Starts a
    /// new identity with every series at zero and drops the inherited
    /// connection without saying goodbye on the parent's behalf.
    pub fn reset_after_fork(&mut self) {
        self.identity = own_identity(&self.config.program);
        self.job = own_job_tag(self.config.job.clone());
        self.conn = None;
        self.last_attempt = None;
        for slot in &mut self.slots {
            *slot = match slot {
                Slot::Int { .. } | Slot::Float { .. } => Slot::Int { total: 0, sent: 0 },
                Slot::Gauge { .. } => Slot::Gauge { value: 0.0, dirty: false },
            };
        }
    }

    fn reconnect(&mut self) -> bool {
        if let Some(at) = self.last_attempt {
            if at.elapsed() < self.config.retry_every {
                return false;
            }
        }
        self.last_attempt = Some(Instant::now());
        let mut conn = match Connection::connect(&self.config.socket, Role::Collector, self.config.io_timeout) {
            Ok(conn) => conn,
            Err(e @ Error::Untrusted { .. }) => {
                if !std::mem::replace(&mut self.warned, true) {
                    eprintln!("{}: warning: {e}", self.config.tool);
                }
                return false;
            }
            Err(_) => return false,
        };
        let identity = self.identity.clone();
        let hello = match &self.job {
            Some(job) => Request::JobHello { identity, job: job.clone() },
            None => Request::Hello { identity },
        };
        let mut queued = conn.queue(&hello);
        for (i, desc) in self.descs.iter().enumerate() {
            queued = queued.and_then(|_| conn.queue(&Request::Register { id: i as u32, desc: desc.clone() }));
        }
        let totals = self.total_samples();
        for chunk in totals.chunks(SAMPLES_PER_FRAME) {
            queued = queued.and_then(|_| conn.queue(&Request::Resync { samples: chunk.to_vec() }));
        }
        if queued.is_err() || conn.flush().is_err() {
            return false;
        }
        self.conn = Some(conn);
        // The Resync carried every total: nothing is pending any more.
        self.mark_sent();
        true
    }

    fn collect_replies(&mut self) -> bool {
        let Some(conn) = &mut self.conn else {
            return false;
        };
        match conn.drain_ready() {
            Ok(replies) => {
                for r in replies {
                    if let Reply::Welcome { resumed } = r {
                        // Welcomed before and now unknown: the daemon lost
                        // what it counted of us (a restart without its
                        // state), and the Resync counted our totals anew.
                        if self.welcomed && !resumed {
                            self.forgotten += 1;
                        }
                        self.welcomed = true;
                    }
                    if let Reply::Error { id, message } = r {
                        let series = id
                            .and_then(|i| self.descs.get(i as usize))
                            .map(|d| format!(" (series {})", d.name))
                            .unwrap_or_default();
                        self.note(format!("{message}{series}"));
                    }
                }
                true
            }
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => true,
            Err(_) => false,
        }
    }

    /// Keeps an error for [`Pusher::take_errors`], within [`MAX_ERRORS`].
    fn note(&mut self, error: String) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(error);
        } else {
            self.errors_dropped += 1;
        }
    }

    fn changed_samples(&self) -> Vec<Sample> {
        let mut out = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let value = match *slot {
                Slot::Int { total, sent } if total != sent => Value::Int(total.wrapping_sub(sent)),
                Slot::Float { pending, .. } if pending != 0.0 => Value::Float(pending),
                Slot::Gauge { value, dirty: true } => Value::Float(value),
                _ => continue,
            };
            out.push(Sample { id: i as u32, value });
        }
        out
    }

    fn total_samples(&self) -> Vec<Sample> {
        let mut out = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let value = match *slot {
                Slot::Int { total: 0, .. } => continue,
                Slot::Int { total, .. } => Value::Int(total),
                Slot::Float { total, .. } => Value::Float(total),
                Slot::Gauge { value, .. } => Value::Float(value),
            };
            out.push(Sample { id: i as u32, value });
        }
        out
    }

    fn mark_sent(&mut self) {
        for slot in &mut self.slots {
            match slot {
                Slot::Int { total, sent } => *sent = *total,
                Slot::Float { pending, .. } => *pending = 0.0,
                Slot::Gauge { dirty, .. } => *dirty = false,
            }
        }
    }
}

/// This process's identity: pid, start time, and a random nonce.
fn own_identity(program: &str) -> Identity {
    let pid = std::process::id();
    let start_time = procinfo::stat(pid).map_or(0, |s| s.start_time);
    Identity { pid, start_time, nonce: random_u64(), program: program.to_owned() }
}

/// The job `given` (with the environment's rank), else the one this
/// process's environment and ancestors name.
fn own_job_tag(given: Option<String>) -> Option<JobTag> {
    match given {
        Some(id) => Some(JobTag { id, rank: crate::own_rank() }),
        None => crate::own_job(),
    }
}

fn random_u64() -> u64 {
    // RandomState is seeded from the OS's random source.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_names_this_process_and_its_start_time() {
        let p = Pusher::new(PushConfig::new("/nonexistent".into(), "t"));
        let me = procinfo::stat(std::process::id()).expect("own stat");
        assert_eq!((p.identity().pid, p.identity().start_time), (std::process::id(), me.start_time));
        assert!(me.start_time > 0);
    }

    #[test]
    fn a_job_given_in_the_config_is_the_identitys() {
        let mut cfg = PushConfig::new("/nonexistent".into(), "t");
        cfg.job = Some("given-7".into());
        let mut p = Pusher::new(cfg);
        assert_eq!(p.job().map(|j| j.id.as_str()), Some("given-7"));
        p.reset_after_fork();
        assert_eq!(p.job().map(|j| j.id.as_str()), Some("given-7"), "a forked child keeps it");
    }

    #[test]
    fn offline_pusher_keeps_totals_and_retries_rarely() {
        let mut cfg = PushConfig::new("/nonexistent/dir/sock".into(), "t");
        cfg.retry_every = Duration::from_secs(3600);
        let mut p = Pusher::new(cfg);
        let id = p.register(Desc::counter("x_total", &[], "x"));
        p.add(id, 5);
        assert_eq!(p.flush(), PushState::Offline);
        p.add(id, 2);
        assert_eq!(p.flush(), PushState::Offline);
        assert_eq!(p.total(id), 7);
        assert_eq!(p.changed_samples(), vec![Sample { id: 0, value: Value::Int(7) }]);
        assert_eq!(p.total_samples(), vec![Sample { id: 0, value: Value::Int(7) }]);
    }

    #[test]
    fn flush_now_retries_before_the_retry_is_due() {
        let mut cfg = PushConfig::new("/nonexistent/dir/sock".into(), "t");
        cfg.retry_every = Duration::from_secs(3600);
        let mut p = Pusher::new(cfg);
        assert_eq!(p.flush(), PushState::Offline);
        let first = p.last_attempt.expect("a first attempt");
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(p.flush(), PushState::Offline);
        assert_eq!(p.last_attempt, Some(first), "flush waits for retry_every");
        assert_eq!(p.flush_now(), PushState::Offline);
        assert!(p.last_attempt.expect("an attempt") > first, "flush_now tried again");
    }

    #[test]
    fn fork_reset_starts_a_new_identity_at_zero() {
        let mut p = Pusher::new(PushConfig::new("/nonexistent".into(), "t"));
        let id = p.register(Desc::counter("x_total", &[], "x"));
        p.add(id, 5);
        let before = p.identity().clone();
        p.reset_after_fork();
        assert_ne!(p.identity().nonce, before.nonce);
        assert_eq!(p.total(id), 0);
        assert!(p.changed_samples().is_empty());
    }
}
