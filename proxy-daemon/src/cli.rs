//! The command line of `tau_metric_proxy`, alone in its file so that
//! `cargo xtask dist` can build the man page and completions from it.

use std::net::IpAddr;
use std::path::PathBuf;

use proxy_core::Limits;

/// Aggregating gateway between instrumented programs and Prometheus.
///
/// Sums what every collector on this node pushes to its UNIX socket and
/// serves the totals over HTTP at /metrics for Prometheus and to
/// tau_metric_client over the socket.
#[derive(Debug, clap::Parser)]
#[command(name = "tau_metric_proxy", version)]
pub(crate) struct Cli {
    /// Path of the UNIX push gateway socket [default: $TAU_METRIC_PROXY, else /tmp/tau_metric_proxy.<uid>.unix]
    #[arg(short = 'u', long = "unix", value_name = "PATH")]
    pub(crate) unix: Option<PathBuf>,
    /// TCP port of the HTTP endpoint (0 picks a free port)
    #[arg(short = 'p', long = "port", default_value_t = 1337)]
    pub(crate) port: u16,
    /// Address the HTTP endpoint listens on
    #[arg(long = "bind", value_name = "ADDR", default_value = "0.0.0.0")]
    pub(crate) bind: IpAddr,
    /// Seconds an HTTP client has to send a whole request head (408 after)
    #[arg(long = "http-timeout", value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) http_timeout: u64,
    /// Most HTTP connections one client address may hold; a new one beyond
    /// closes that address's least recently active connection
    #[arg(long = "http-max-per-address", value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) http_max_per_address: u64,
    /// Most series the node keeps; further registrations are refused
    #[arg(long = "max-series", value_name = "N", default_value_t = Limits::default().max_series)]
    pub(crate) max_series: usize,
    /// Most series one collector may register
    #[arg(long = "max-series-per-collector", value_name = "N", default_value_t = Limits::default().max_series_per_collector)]
    pub(crate) max_series_per_collector: usize,
    /// Most disconnected collectors remembered while they may reconnect;
    /// a collector whose process still runs is never forgotten, so beyond it
    /// new collectors are refused until some come back or end
    #[arg(long = "max-remembered", value_name = "N", default_value_t = Limits::default().max_remembered)]
    pub(crate) max_remembered: usize,
    /// Most labels one series may carry; registrations with more are refused
    #[arg(long = "max-labels", value_name = "N", default_value_t = Limits::default().max_labels)]
    pub(crate) max_labels: usize,
    /// Longest label value, in bytes; registrations with a longer one are refused
    #[arg(long = "max-label-value-length", value_name = "BYTES", default_value_t = Limits::default().max_label_value_length)]
    pub(crate) max_label_value_length: usize,
    /// How far past its registered series ids a collector may choose a new
    /// one (ids must be dense: per-collector tables are sized by the largest)
    #[arg(long = "max-id-gap", value_name = "N", default_value_t = Limits::default().max_id_gap)]
    pub(crate) max_id_gap: usize,
    /// Most UNIX connections open at once (collectors, query clients and
    /// connections before their preamble); further ones are closed at once
    #[arg(long = "max-connections", value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_connections: u64,
    /// Longest frame a UNIX peer may send, in bytes (what one connection's
    /// read buffer holds); a peer sending a longer one is disconnected
    #[arg(long = "max-frame", value_name = "BYTES", default_value_t = proxy_core::DEFAULT_MAX_FRAME as u64,
          value_parser = clap::value_parser!(u64).range(1024..=protocol::MAX_FRAME as u64))]
    pub(crate) max_frame: u64,
    /// Bytes of replies a collector may leave unread; further replies to it
    /// are dropped
    #[arg(long = "max-reply-queue", value_name = "BYTES", default_value_t = proxy_core::DEFAULT_MAX_REPLY_QUEUE as u64,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub(crate) max_reply_queue: u64,
    /// Seconds a job's series stay after its last collector on this node left
    #[arg(long = "job-retention", value_name = "SECS", default_value_t = 300)]
    pub(crate) job_retention: u64,
    /// Most jobs kept, running or finished; beyond it the job that finished first goes
    #[arg(long = "max-jobs", value_name = "N", default_value_t = Limits::default().max_jobs)]
    pub(crate) max_jobs: usize,
    /// Keep counter totals in FILE: loaded at start, saved periodically and at shutdown, with a journal (FILE.journal.N) replayed after a crash
    #[arg(long = "state", value_name = "FILE")]
    pub(crate) state: Option<PathBuf>,
    /// Write each finished job's profile to DIR/JOB@NODE.json (JSON, read by
    /// tau_metric_client --report) when its last collector on this node leaves
    #[arg(long = "profile-dir", value_name = "DIR")]
    pub(crate) profile_dir: Option<PathBuf>,
    /// The node's name in profiles [default: the host name]
    #[arg(long = "node-name", value_name = "NAME", requires = "profile_dir", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub(crate) node_name: Option<String>,
    /// Seconds between two saves of the state file
    #[arg(long = "state-interval", value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) state_interval: u64,
    /// Also let this user connect to the socket (name or uid; repeat or comma separate)
    #[arg(long = "allow-uid", value_name = "USER", value_delimiter = ',')]
    pub(crate) allow_uid: Vec<String>,
    /// Also let members of this group connect to the socket (name or gid; repeat or comma separate)
    #[arg(long = "allow-group", value_name = "GROUP", value_delimiter = ',')]
    pub(crate) allow_group: Vec<String>,
    /// Log more (repeat for even more)
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,
    /// Log only warnings and errors
    #[arg(short = 'q', long = "quiet")]
    pub(crate) quiet: bool,
}

impl Cli {
    /// The store's limits the flags set.
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_series: self.max_series,
            max_series_per_collector: self.max_series_per_collector,
            max_remembered: self.max_remembered,
            max_labels: self.max_labels,
            max_label_value_length: self.max_label_value_length,
            max_id_gap: self.max_id_gap,
            job_retention: self.job_retention as f64,
            max_jobs: self.max_jobs,
        }
    }

    /// The bounds of the UNIX connections the flags set.
    pub(crate) fn conn_limits(&self) -> ConnLimits {
        ConnLimits {
            max_connections: self.max_connections as usize,
            max_frame: self.max_frame as usize,
            max_reply_queue: self.max_reply_queue as usize,
        }
    }
}

/// What bounds the memory of the UNIX connections, in all and each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// Connections open at once.
    pub(crate) max_connections: usize,
    /// Longest frame a peer may send.
    pub(crate) max_frame: usize,
    /// Unread reply bytes queued for a collector.
    pub(crate) max_reply_queue: usize,
}
