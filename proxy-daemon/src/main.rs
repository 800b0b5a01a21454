//! `tau_metric_proxy`: the node daemon. Parses flags, binds both servers, runs.
#![forbid(unsafe_code)]

mod access;
mod cli;
mod conn;
mod families;
mod http;
mod jobs;
mod journal;
mod keeper;
mod profiles;
mod replace;
mod server;
mod socket;
mod state;

use std::io::Write;
use std::sync::Arc;

use cli::Cli;
use parking_lot::Mutex;
use proxy_core::Store;

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
    let (limits, conn_limits) = (cli.limits(), cli.conn_limits()); // as the --max-* flags bound them
    let path = client::socket_path(cli.unix);
    let access = access::Access::new(&cli.allow_uid, &cli.allow_group)?;
    raise_fd_limit();
    let loaded = match &cli.state {
        Some(file) => state::load(file, limits)?,
        None => None,
    };
    if let (Some(file), None) = (&cli.state, &loaded) {
        log::info!("no state file {} yet: starting empty", file.display());
    }
    // No file is as a clean one naming no segment: a crash before the first save replays segment 1.
    let (store, clean, named) = loaded.map_or((Store::new(limits), true, 0), |l| (l.store, l.clean, l.journal));
    // The families of the project's own collectors, shared by every user; then a crash's recovery.
    let store = families::declare(store);
    let (store, keep_journal) = match &cli.state {
        Some(file) => state::recover(file, store, clean, named),
        None => (store, false),
    };
    let store = Arc::new(Mutex::new(store));
    let selfm = server::SelfMetrics::register(&mut store.lock());
    let profiles = profiles::ProfileWriter::start(cli.profile_dir.clone(), cli.node_name.clone(), store.clone())?;
    // Stop signals are caught from here on: a stop always removes the socket and saves the state.
    let signals = server::stop_signals()?;
    // Claim the socket first: a second proxy must fail before it takes a port.
    let (listener, claim) = socket::Claim::take(&path, access.is_shared())?;
    let access_shown = access.is_shared().then(|| access.describe());
    let http = match http::Http::start(
        cli.bind,
        cli.port,
        http::HttpLimits {
            head_timeout: std::time::Duration::from_secs(cli.http_timeout),
            per_address: cli.http_max_per_address as usize,
        },
        store.clone(),
        selfm,
    ) {
        Ok(h) => h,
        Err(e) => {
            claim.release();
            return Err(e);
        }
    };
    // The journal of the state file, now that the socket (and so the file) is this daemon's.
    let journal = cli.state.as_ref().map(|f| journal::Journal::start(f, named, keep_journal, &mut store.lock()));
    let server = server::Server::new(listener, store.clone(), selfm, access, conn_limits, profiles.queue(), signals)
        .map(|s| s.with_journal(journal.clone()));
    // Folding and saving the state, off the event loop.
    let state = cli.state.map(|f| (f, std::time::Duration::from_secs(cli.state_interval), journal));
    let (server, keeper) = match server.and_then(|s| Ok((s, keeper::Keeper::start(store, state)?))) {
        Ok(both) => both,
        Err(e) => {
            http.stop();
            claim.release();
            return Err(e);
        }
    };
    log::info!("UNIX push gateway running on {}", path.display());
    if let Some(shown) = access_shown {
        log::info!("socket also open to {shown}");
    }
    let result = server.run();
    // The last save, marked clean: nothing is counted after it.
    let saved = keeper.stop();
    http.stop();
    profiles.stop();
    claim.release();
    log::info!("tau_metric_proxy stopped");
    result.and(saved)
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
