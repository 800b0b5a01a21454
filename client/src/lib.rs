//! Everything that talks to the daemon from the outside: the blocking
//! [`Connection`], the [`Pusher`] every collector uses to send its counters,
//! the [`QueryClient`], and what every tool shares: the socket path rule,
//! one-line usage errors and the `PATH` lookup.
//!
//! The [`Pusher`] is what makes "always-on" monitoring safe: it never blocks
//! longer than its I/O timeout, never raises `SIGPIPE`, keeps cumulative
//! totals locally, and resends them after any reconnection so that the
//! daemon counts everything exactly once even if it was down for a while.
//!
//! The PMPI shim links this library into other people's programs, so it
//! depends on nothing a tool alone needs: `tau_metric_client`'s output
//! formats and tracking live in the `metric-client` package.
#![forbid(unsafe_code)]

mod civil;
mod cli;
mod conn;
mod job;
mod program;
mod push;
mod query;

use std::path::PathBuf;

pub use civil::civil_date;
#[cfg(feature = "cli")]
pub use cli::parse_args;
pub use cli::usage_error;
pub use conn::{Connection, Error};
pub use job::{own_job, own_rank};
pub use program::{find_program, MustBe};
pub use push::{MetricId, PushConfig, PushState, Pusher};
pub use query::{GetResult, QueryClient};

/// Resolves the daemon socket: an explicit path, else the `TAU_METRIC_PROXY`
/// environment variable, else `/tmp/tau_metric_proxy.<uid>.unix`.
pub fn socket_path(explicit: Option<PathBuf>) -> PathBuf {
    if let Some(p) = explicit {
        return p;
    }
    match std::env::var_os(protocol::SOCKET_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(protocol::default_socket_path(nix::unistd::geteuid().as_raw())),
    }
}
