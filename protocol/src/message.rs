//! The messages carried inside frames.

use serde::{Deserialize, Serialize};

/// Who a collector is. Stable for the life of one process, so the daemon can
/// recognise a collector that reconnects and count nothing twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// Process id on this node.
    pub pid: u32,
    /// Process start time in clock ticks since boot (`/proc/PID/stat` field
    /// 22), so a reused pid is not mistaken for the same process.
    pub start_time: u64,
    /// Random per-process value; changes in a forked child.
    pub nonce: u64,
    /// Short program name, for log lines.
    pub program: String,
}

/// The job a collector belongs to (protocol version 3 on), apart from its
/// [`Identity`]: it is not part of what makes a process unique, and the
/// identity keeps the shape that state files and older peers use.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobTag {
    /// The job id (see [`crate::check_job_id`] for what it may hold).
    pub id: String,
    /// The process's MPI rank in its job, when its launcher tells it.
    pub rank: Option<u32>,
}

/// Counter or gauge, as Prometheus defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// Monotonic; updates are deltas, the node value is their sum.
    Counter,
    /// Updates are absolute values; the node value is the sum of the last
    /// value of every connected collector.
    Gauge,
}

impl Kind {
    /// The type name used by the CLI client's listings.
    pub fn tau_name(self) -> &'static str {
        match self {
            Kind::Counter => "TAU_METRIC_COUNTER",
            Kind::Gauge => "TAU_METRIC_GAUGE",
        }
    }
}

/// Multiplier applied to integer updates when the value is exported.
///
/// Collectors count time in integer nanoseconds (exact sums) and register
/// the series with [`Scale::Nano`] so it is exported in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scale {
    One,
    Nano,
}

impl Scale {
    pub fn factor(self) -> f64 {
        match self {
            Scale::One => 1.0,
            Scale::Nano => 1e-9,
        }
    }
}

/// A series description, sent once per series by a collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Desc {
    /// Metric family name, e.g. `mpi_hits_total`.
    pub name: String,
    /// Label pairs, e.g. `[("function", "MPI_Send")]`.
    pub labels: Vec<(String, String)>,
    /// One-line documentation (`# HELP`).
    pub help: String,
    pub kind: Kind,
    pub scale: Scale,
}

impl Desc {
    /// A counter with [`Scale::One`].
    pub fn counter(name: &str, labels: &[(&str, &str)], help: &str) -> Desc {
        Desc::new(name, labels, help, Kind::Counter, Scale::One)
    }

    /// A gauge with [`Scale::One`].
    pub fn gauge(name: &str, labels: &[(&str, &str)], help: &str) -> Desc {
        Desc::new(name, labels, help, Kind::Gauge, Scale::One)
    }

    pub fn new(name: &str, labels: &[(&str, &str)], help: &str, kind: Kind, scale: Scale) -> Desc {
        Desc {
            name: name.to_owned(),
            labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            help: help.to_owned(),
            kind,
            scale,
        }
    }

    /// Same description with another scale.
    pub fn with_scale(mut self, scale: Scale) -> Desc {
        self.scale = scale;
        self
    }
}

/// A number carried by an update.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// Exact integer; multiplied by the series' [`Scale`] on export.
    Int(u64),
    /// Floating point; exported as is.
    Float(f64),
}

/// One series' update: a delta for counters, a value for gauges.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The id the collector gave the series in [`Request::Register`].
    pub id: u32,
    pub value: Value,
}

/// Peer to daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// First frame of a collector connection: who is pushing. A known
    /// identity resumes its earlier session.
    Hello { identity: Identity },
    /// Declares series `id` for the rest of this connection.
    Register { id: u32, desc: Desc },
    /// Counter deltas and gauge values since the previous update.
    Update { samples: Vec<Sample> },
    /// Cumulative counter totals (and current gauge values) of this
    /// collector, sent after each (re)connection. The daemon adds only what
    /// it has not yet counted for this identity.
    Resync { samples: Vec<Sample> },
    /// The collector is finished for good: fold it into the node totals.
    Goodbye,
    /// Query: every series description.
    List,
    /// Query: every series value.
    Values,
    /// Query: the values of the named series (`name{labels}` as listed).
    Get { names: Vec<String> },
    /// Query: the series whose value changed after `generation`, which is
    /// the generation returned by an earlier [`Reply::Values`] (0: all).
    Changes { since: u64 },
    /// Version 3: the first frame of a collector that belongs to a job, in
    /// place of [`Request::Hello`] (which stays the hello of a collector of
    /// no job). New variants go last, so the encoding of the older ones,
    /// which version-1 and -2 peers send, is unchanged.
    JobHello { identity: Identity, job: JobTag },
    /// Query (version 3): the jobs of this node, running and finished
    /// within their retention.
    Jobs,
}

/// A job as listed to clients (version 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    /// The job id its collectors carry.
    pub id: String,
    /// Every rank seen on this node, in order.
    pub ranks: Vec<u32>,
    /// Distinct ranks connected now.
    pub ranks_connected: u32,
    /// Collectors it had on this node, and those not gone yet.
    pub collectors: u32,
    pub live_collectors: u32,
    /// When its first collector came, and when its last one left (`None`
    /// while it runs), in seconds since the Unix epoch.
    pub start: f64,
    pub end: Option<f64>,
    /// Its collectors' distinct program names, in the order they came (at
    /// most 32, each at most 256 bytes).
    pub commands: Vec<String>,
}

/// A series description as listed to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DescInfo {
    /// `family{label="value",...}`.
    pub name: String,
    pub help: String,
    pub kind: Kind,
}

/// A series value as given to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueInfo {
    /// `family{label="value",...}`.
    pub name: String,
    /// Last change, seconds since the Unix epoch.
    pub ts: f64,
    pub value: f64,
}

/// Daemon to peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// Answer to [`Request::Hello`] (protocol version 2 on); `resumed` when
    /// the identity was known, so what it counted is not counted again.
    /// A collector not `resumed` after an earlier connection was forgotten
    /// (the daemon restarted without its state): its `Resync` counts from
    /// zero.
    Welcome { resumed: bool },
    /// A request of this connection failed; the connection stays usable.
    /// `id` names the series concerned, if any.
    Error { id: Option<u32>, message: String },
    /// Answer to [`Request::List`]. Long answers come in several frames;
    /// the one with `last` set ends it.
    Descs { descs: Vec<DescInfo>, last: bool },
    /// Answer to value queries, in one or more frames like [`Reply::Descs`];
    /// `generation` is the store's current one.
    Values { generation: u64, values: Vec<ValueInfo>, last: bool },
    /// Answer to [`Request::Get`] when some names are not in the proxy.
    Unknown { names: Vec<String> },
    /// Answer to [`Request::Jobs`] (version 3), ordered by start, in one or
    /// more frames like [`Reply::Descs`].
    Jobs { jobs: Vec<JobInfo>, last: bool },
}
