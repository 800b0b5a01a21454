//! The families every user's collectors add to on a shared daemon: those of
//! the project's own collectors (the PMPI shim, `tau_strace`, the
//! launcher). The daemon declares them at start with their type and scale,
//! so that no user can register them first as something else, and no user
//! owns them. Every other family belongs to the user who registered it
//! first (see SECURITY.md).

use protocol::{Kind, Scale};
use proxy_core::Store;

/// Name, scale and help of each shared family (all counters).
pub(crate) const SHARED: [(&str, Scale, &str); 10] = [
    ("mpi_hits_total", Scale::One, "Number of calls to an MPI function"),
    ("mpi_size_total", Scale::One, "Bytes passed to an MPI function (send plus receive buffers)"),
    ("mpi_time_total", Scale::Nano, "Seconds spent inside an MPI function"),
    ("strace_hits_total", Scale::One, "Completed system calls, per syscall name"),
    ("strace_size_total", Scale::One, "Bytes moved by I/O system calls (their positive return values)"),
    ("strace_time_total", Scale::Nano, "Seconds spent inside system calls"),
    ("strace_errors_total", Scale::One, "Completed system calls that returned an error, per syscall name"),
    ("strace_lost_threads_total", Scale::One, "Threads not followed by the eBPF engine: its thread map was full"),
    (
        "strace_lost_calls_total",
        Scale::One,
        "System calls not counted: the tracer's room for syscall numbers outside the tables was full",
    ),
    ("tau_metric_proxy_run_total", Scale::One, "Number of launch with the tau_metric_proxy_run command"),
];

/// Declares the shared families in `store`; a family of one of these
/// names restored from a state file with another type is logged and left
/// as it is.
pub(crate) fn declare(mut store: Store) -> Store {
    for (name, scale, help) in SHARED {
        if let Err(e) = store.declare_shared(name, Kind::Counter, scale, help) {
            log::warn!("cannot declare the shared family {name}: {e}");
        }
    }
    store
}
