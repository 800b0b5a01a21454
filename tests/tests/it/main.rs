//! One integration-test binary for the whole project: every module runs the
//! real binaries (built by `cargo build --workspace`, which `cargo xtask
//! test` does first) on temporary sockets and free ports.
#![forbid(unsafe_code)]
// Helpers are `pub` for the sibling modules; nothing is exported further.
#![allow(unreachable_pub)]

/// Helpers, the only thing test modules import: commands whose failed
/// checks show everything, a real daemon, MPI, raw protocol peers, HTTP.
#[allow(dead_code)] // each test module uses a different subset
mod util;

/// The helpers: what a failed check on a command reports, hung commands.
mod harness;

/// The daemon: start-up, socket ownership, signals, bad frames, reconnection.
mod daemon;

/// The HTTP endpoint: formats, content negotiation, promtool, status codes.
mod http;

/// The live page at `/` and its JSON API, in headless Chromium against a real MPI run.
mod page;

/// The HTTP endpoint under load: many scrapers, slow readers, per-address limits.
mod http_load;

/// `tau_metric_client`: every flag and output format, tracking, errors.
mod client_cli;

/// Bad and hostile input on the socket, table-driven; series limits.
mod hostile;

/// Faults: the daemon stopped or killed under load and under real collectors; killed programs; fork and exec.
mod faults;

/// Load: 1,000 concurrent collectors, 10,000 that come and go.
mod load;

/// Greedy local peers: pipelined queries, unread and huge replies, connection limits.
mod peers;

/// The UNIX side's memory bounds: connections, read buffers, reply queues, id gaps.
mod limits;

/// Live collectors are never forgotten: the remembered cap, zombie leaders, restored identities, Welcome.
mod remember;

/// `--state FILE`: restarts keep totals; damaged or foreign files are refused.
mod state;

/// Crash restarts: the journal replayed, or the collectors waited for.
mod crash;

/// Big state files: never in the way.
mod durable;

/// Who may connect: owner-only socket, `--allow-uid`, `--allow-group`.
mod access;

/// `tau_metric_proxy_run` core: exit statuses, counting, absent proxy.
mod launcher;

/// `tau_strace`: counts against real strace, bytes, signals, attach/detach, absent or late proxy.
mod strace;

/// A real Prometheus scraping proxies, configured by the generator with the shipped rules.
mod prometheus;

/// The shipped Grafana dashboard: structure, and every query against a real Prometheus and a real MPI job.
mod grafana;

/// Clusters beyond one Prometheus: shard servers and a global one over proxies on loopback.
mod shards;

/// What an operator installs: the config generator and recording rules under promtool, systemd units.
mod deploy;

/// The PMPI shim under real mpirun (Open MPI and MPICH): exact counts and bytes, absent/late/stalled proxy, fork.
mod mpi;

/// The PMPI shim and Fortran (mpif.h, use mpi, use mpi_f08), C and Fortran mixed, Open MPI's MPIX persistent collectives.
mod mpi_fortran;

/// Jobs: the job and rank of every collector, from `-j`, schedulers and plain `mpirun`.
mod jobs;

/// Per-job series: two jobs on one proxy kept apart, job gauges, retention, `--max-jobs`.
mod job_series;

/// End-of-job profiles and `tau_metric_client --report`: per-rank imbalance under real mpirun, two nodes merged, bad files, bad directories.
mod profiles;

/// Jobs in Prometheus: one job on two nodes summed by jobid, the jobs' recording rules under promtool.
mod job_prom;
