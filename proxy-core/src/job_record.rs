//! What the store hands over when a job's last collector on the node has
//! left: the job's collectors and what each of them counted, the input of the
//! job's end-of-job profile.
//!
//! Plain data, in exposition units (seconds for time, bytes for sizes), so
//! whoever turns it into a profile needs nothing else of the store.

/// One job on this node, from its first collector's arrival to its last
/// collector's departure.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// The job id the collectors carried (see `protocol::check_job_id`).
    pub job: String,
    /// When its first collector connected, in seconds since the Unix epoch.
    pub start: f64,
    /// When its last collector left, in seconds since the Unix epoch.
    pub end: f64,
    /// Every collector the job had on this node, in the order they came.
    pub collectors: Vec<CollectorRecord>,
}

/// One collector of a job (an MPI rank's shim, a launcher's run counter, a
/// tracer) and what it counted.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectorRecord {
    /// Its process id, in the daemon's pid namespace when the kernel told.
    pub pid: u32,
    /// Its short program name.
    pub program: String,
    /// Its MPI rank, when its launcher said.
    pub rank: Option<u32>,
    /// When it connected and when it left, in seconds since the Unix epoch.
    pub start: f64,
    pub end: f64,
    /// Its final value of every series it counted.
    pub values: Vec<SeriesValue>,
}

/// One series' value: family name, labels in the order registered, value
/// in the family's exposition unit.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesValue {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}
