//! The command line of `tau_metric_client`, alone in its file so that
//! `cargo xtask dist` can build the man page and completions from it.

use std::path::PathBuf;

/// tau_metric_proxy client
#[derive(Debug, clap::Parser)]
#[command(name = "tau_metric_client", version)]
#[command(group = clap::ArgGroup::new("action").args(["list", "values", "get", "track", "track_list", "prometheus_config", "report", "jobs"]))]
#[command(group = clap::ArgGroup::new("tracking").args(["track", "track_list"]))]
pub(crate) struct Cli {
    /// File to store the result to
    #[arg(short = 'o', long = "output", value_name = "OUTPUT")]
    pub(crate) output: Option<PathBuf>,
    /// Path to the tau_metric_proxy UNIX socket
    #[arg(short = 'u', long = "unix", value_name = "UNIX")]
    pub(crate) unix: Option<PathBuf>,
    /// Sampling frequency in Hz (for data retrieval)
    #[arg(short = 'F', long = "freq", value_name = "FREQ", default_value_t = 1.0, value_parser = parse_freq, requires = "tracking")]
    pub(crate) freq: f64,
    /// Output format [default: md, json when tracking]
    #[arg(short = 'f', long = "format", value_enum)]
    pub(crate) format: Option<Format>,
    /// List metrics in the tau_metric_proxy
    #[arg(short = 'l', long = "list")]
    pub(crate) list: bool,
    /// List all values in the tau_metric_proxy
    #[arg(short = 'v', long = "values")]
    pub(crate) values: bool,
    /// Get values by name (comma separated)
    #[arg(short = 'g', long = "get", value_name = "GET")]
    pub(crate) get: Option<String>,
    /// Track all non-null counters over time
    #[arg(short = 't', long = "track")]
    pub(crate) track: bool,
    /// Track a given list of values over time (comma separated)
    #[arg(short = 'T', long = "track-list", value_name = "TRACK_LIST")]
    pub(crate) track_list: Option<String>,
    /// List the jobs on this node, running and recently finished (id, ranks,
    /// start, end, command)
    #[arg(long = "jobs")]
    pub(crate) jobs: bool,
    /// Restrict -l, -v, -g, -t, -T (and --jobs) to job ID: its tau_job_*
    /// series; -g and -T also take the node's names for the job's part
    /// (mpi_hits_total{function="MPI_Send"})
    #[arg(long = "job", value_name = "ID", value_parser = job_id, conflicts_with = "prometheus_config")]
    pub(crate) job: Option<String>,
    /// Print a prometheus.yml scraping the proxy of every node in NODES: a
    /// comma list (node1,node2:9000), a SLURM node list (node[01-04,07],gpu1)
    /// or @FILE, a hostfile with one host per line (@- reads stdin); the port
    /// defaults to 1337
    #[arg(long = "prometheus-config", value_name = "NODES")]
    pub(crate) prometheus_config: Option<String>,
    /// With --prometheus-config: load this recording-rules file (the shipped
    /// share/tau_metric_proxy/prometheus/tau_metric_proxy.rules.yml)
    #[arg(long = "prometheus-rules", value_name = "FILE", requires = "prometheus_config")]
    pub(crate) prometheus_rules: Option<PathBuf>,
    /// With --prometheus-config: split the nodes over N Prometheus servers
    /// for clusters one server cannot scrape; writes shard-0.yml ...
    /// shard-<N-1>.yml and global.yml, which federates the shards' recording
    /// rules, into the directory given with -o
    #[arg(long = "shards", value_name = "N", requires = "prometheus_config", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) shards: Option<u32>,
    /// With --shards: where the shard servers listen, one per shard in order,
    /// in the forms of NODES with the port defaulting to 9090 [default:
    /// localhost:9091, localhost:9092, ...]
    #[arg(long = "shard-servers", value_name = "SERVERS", requires = "shards")]
    pub(crate) shard_servers: Option<String>,
    /// Print the report of one job from its end-of-job profiles (one JSON
    /// file per node, written by tau_metric_proxy --profile-dir): summary,
    /// MPI time per rank, top MPI functions and syscalls by time; md, json
    /// or txt
    #[arg(long = "report", value_name = "FILE", num_args = 1..)]
    pub(crate) report: Vec<PathBuf>,
}

/// Output format chosen with `-f`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Md,
    Json,
    Yaml,
    Txt,
}

/// Lowest frequency accepted: one poll every 11.6 days. Below it the
/// period is not a time the tracker can sleep for (`1e-20` Hz is longer
/// than any clock counts).
const MIN_FREQ: f64 = 1e-6;
/// Highest frequency accepted: one poll every microsecond.
const MAX_FREQ: f64 = 1e6;

/// A job id as the proxy takes it.
fn job_id(id: &str) -> Result<String, String> {
    protocol::check_job_id(id).map(|()| id.to_owned())
}

fn parse_freq(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (MIN_FREQ..=MAX_FREQ).contains(&f) => Ok(f),
        _ => Err(format!("{s:?} is not a frequency in Hz (a number from 0.000001 to 1000000)")),
    }
}
