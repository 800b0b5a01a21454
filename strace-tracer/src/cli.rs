//! The command line of `tau_strace`, alone in its file so that the man
//! page and shell completions can be built from it.

use std::ffi::OsString;
use std::path::PathBuf;

/// Trace a command (or attach to a process) and push per-syscall counters
/// to tau_metric_proxy.
#[derive(clap::Parser, Debug)]
#[command(
    name = "tau_strace",
    version,
    override_usage = "tau_strace [OPTIONS] -- COMMAND [ARGS]...\n       tau_strace [OPTIONS] -p PID\n       tau_strace [-v] [--max-threads N] --serve SOCKET"
)]
pub(crate) struct Cli {
    /// Unix socket of tau_metric_proxy [default: $TAU_METRIC_PROXY, else
    /// /tmp/tau_metric_proxy.<uid>.unix]
    #[arg(short = 'u', long = "unix", value_name = "SOCKET")]
    pub(crate) socket: Option<PathBuf>,
    /// Who counts. bpf: programs in the kernel count every call without
    /// stopping the program (needs CAP_BPF and CAP_PERFMON, as root has);
    /// ptrace: the program is stopped at each call's entry and exit; auto:
    /// bpf where this process can load it, else ptrace.
    #[arg(long, value_enum, value_name = "ENGINE", default_value_t = Engine::Auto)]
    pub(crate) engine: Engine,
    /// The node service to ask when this process cannot load the eBPF
    /// engine itself [default: $TAU_STRACE_SERVICE, else
    /// /run/tau_strace/service.unix]
    #[arg(long, value_name = "SOCKET")]
    pub(crate) service: Option<PathBuf>,
    /// Be the node service on SOCKET (run by the operator with CAP_BPF and
    /// CAP_PERFMON): count, for each user who asks, the process trees that
    /// user could ptrace.
    #[arg(long, value_name = "SOCKET", conflicts_with_all = ["pid", "command", "only", "env", "service"])]
    pub(crate) serve: Option<PathBuf>,
    /// eBPF engine: follow at most N threads at once (the size of its
    /// thread map, in kernel memory) [default: 65536]. Further threads, and
    /// what they create, are not counted but counted in
    /// strace_lost_threads_total and said once. The ptrace engine follows
    /// every thread and refuses this option. With --serve: the most a
    /// request may ask for [default: 65536].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4_194_304))]
    pub(crate) max_threads: Option<u32>,
    /// Log which engine counts (and why, with auto), attaches, detaches and
    /// the state of the link to the proxy.
    #[arg(short, long)]
    pub(crate) verbose: bool,
    /// Attach to this running process (all its threads) instead of running
    /// a command; SIGINT or SIGTERM detaches and leaves it running.
    #[arg(short = 'p', long = "pid", value_name = "PID", conflicts_with = "command")]
    pub(crate) pid: Option<i32>,
    /// Count only these syscalls (comma-separated names). With a command, a
    /// seccomp filter stops the tracee in these calls only, so all others
    /// run at native speed (the command then runs with no_new_privs set, and
    /// is killed by the kernel if tau_strace dies).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub(crate) only: Vec<String>,
    /// Milliseconds between two pushes of the totals to the proxy (a last
    /// push is always made at the end).
    #[arg(short = 'i', long = "interval", value_name = "MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub(crate) interval: u64,
    /// Keep the tracer under the normal scheduling policy (ptrace engine). By default,
    /// where it may switch back, the tracer measures whether running as
    /// SCHED_IDLE (which keeps tracer and tracee on one CPU) makes the
    /// command faster, and uses it when it does.
    #[arg(long)]
    pub(crate) no_idle_sched: bool,
    /// Set VAR=VAL in the command's environment, or remove VAR (as strace's
    /// -E); tau_strace itself keeps its own environment.
    #[arg(short = 'E', long = "env", value_name = "VAR[=VAL]", conflicts_with = "pid")]
    pub(crate) env: Vec<OsString>,
    /// The command to run and trace.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required_unless_present_any = ["pid", "serve"])]
    pub(crate) command: Vec<OsString>,
}

/// `--engine`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    Auto,
    Bpf,
    Ptrace,
}
