//! `tau_metric_proxy`: the node daemon. Parses flags, binds both servers, runs.
#![forbid(unsafe_code)]

mod access;
mod http;
mod server;
mod socket;
mod state;

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use parking_lot::Mutex;
use proxy_core::{Limits, Store};

/// Aggregating gateway between instrumented programs and Prometheus.
///
/// Sums what every collector on this node pushes to its UNIX socket and
/// serves the totals over HTTP at /metrics for Prometheus and to
/// tau_metric_client over the socket.
#[derive(Debug, Parser)]
#[command(name = "tau_metric_proxy", version)]
struct Cli {
    /// Path of the UNIX push gateway socket [default: $TAU_METRIC_PROXY, else /tmp/tau_metric_proxy.<uid>.unix]
    #[arg(short = 'u', long = "unix", value_name = "PATH")]
    unix: Option<PathBuf>,
    /// TCP port of the HTTP endpoint (0 picks a free port)
    #[arg(short = 'p', long = "port", default_value_t = 1337)]
    port: u16,
    /// Address the HTTP endpoint listens on
    #[arg(long = "bind", value_name = "ADDR", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Seconds an HTTP client has to send a whole request head (408 after)
    #[arg(long = "http-timeout", value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    http_timeout: u64,
    /// Most series the node keeps; further registrations are refused
    #[arg(long = "max-series", value_name = "N", default_value_t = Limits::default().max_series)]
    max_series: usize,
    /// Most series one collector may register
    #[arg(long = "max-series-per-collector", value_name = "N", default_value_t = Limits::default().max_series_per_collector)]
    max_series_per_collector: usize,
    /// Keep counter totals in FILE: loaded at start, saved periodically and at shutdown
    #[arg(long = "state", value_name = "FILE")]
    state: Option<PathBuf>,
    /// Seconds between two saves of the state file
    #[arg(long = "state-interval", value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    state_interval: u64,
    /// Also let this user connect to the socket (name or uid; repeat or comma separate)
    #[arg(long = "allow-uid", value_name = "USER", value_delimiter = ',')]
    allow_uid: Vec<String>,
    /// Also let members of this group connect to the socket (name or gid; repeat or comma separate)
    #[arg(long = "allow-group", value_name = "GROUP", value_delimiter = ',')]
    allow_group: Vec<String>,
    /// Log more (repeat for even more)
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Log only warnings and errors
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
}

fn main() {
    let cli: Cli = client::parse_args("tau_metric_proxy");
    init_logging(&cli);
    if let Err(e) = run(cli) {
        log::error!("{e}");
        std::process::exit(1);
    }
}

/// Log lines look like the original C daemon's: `INFO (module:line): text`.
fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => log::LevelFilter::Warn,
        (false, 0) => log::LevelFilter::Info,
        (false, 1) => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .parse_env("TAU_METRIC_PROXY_LOG")
        .format(|buf, record| {
            let module = record.module_path().unwrap_or("").rsplit("::").next().unwrap_or("");
            writeln!(buf, "{} ({}:{}): {}", record.level(), module, record.line().unwrap_or(0), record.args())
        })
        .init();
}

fn run(cli: Cli) -> Result<(), String> {
    let path = client::socket_path(cli.unix);
    let limits = Limits { max_series: cli.max_series, max_series_per_collector: cli.max_series_per_collector };
    let access = access::Access::new(&cli.allow_uid, &cli.allow_group)?;
    raise_fd_limit();
    let store = match &cli.state {
        Some(file) => state::load(file, limits)?.unwrap_or_else(|| {
            log::info!("no state file {} yet: starting empty", file.display());
            Store::new(limits)
        }),
        None => Store::new(limits),
    };
    let store = Arc::new(Mutex::new(store));
    let selfm = server::SelfMetrics::register(&mut store.lock());
    // Claim the socket first: a second proxy must fail before it takes a port.
    let listener = socket::bind(&path, access.is_shared())?;
    let http = match http::Http::start(
        cli.bind,
        cli.port,
        std::time::Duration::from_secs(cli.http_timeout),
        store.clone(),
        selfm,
    ) {
        Ok(h) => h,
        Err(e) => {
            socket::remove(&path);
            return Err(e);
        }
    };
    log::info!("UNIX push gateway running on {}", path.display());
    if access.is_shared() {
        log::info!("socket also open to {}", access.describe());
    }
    let result = server::Server::new(
        listener,
        store,
        selfm,
        access,
        cli.state.map(|f| (f, std::time::Duration::from_secs(cli.state_interval))),
    )
    .and_then(|s| s.run());
    http.stop();
    socket::remove(&path);
    log::info!("tau_metric_proxy stopped");
    result
}

/// Every collector holds a connection: allow as many as the hard limit lets.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
            log::debug!("cannot raise the open file limit from {soft} to {hard}");
        }
    }
}
