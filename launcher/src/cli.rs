//! The command line of `tau_metric_proxy_run`, alone in its file so that
//! `cargo xtask dist` can build the man page and completions from it.

use std::ffi::OsString;
use std::path::PathBuf;

pub(crate) const TOOL: &str = "tau_metric_proxy_run";

const HELP: &str = "\
tau_metric_proxy_run -m -s -v -h -u [PATH] -S [PID] -- [COMMAND]

Wrapper to run commands instrumented for the tau_metric_proxy.

-m: enable MPI profiling
-s: enable strace profiling (requires tau_strace beside this command or in path)
-S [PID]: attach tau_strace to a running process id (COMMAND is ignored, no MPI instrum)
-u [PATH]: specify path to tau_metric_proxy push gateway UNIX socket
-j [ID]: count the command as part of job ID (else TAU_METRIC_PROXY_JOB,
         the scheduler's job, or the MPI launcher's)
-v: enable verbose output
-h: show this help

The exit status is the command's own; a command killed by signal N gives 128+N.
Without a running tau_metric_proxy the command runs normally.
With -s or -S, tau_strace counts in the kernel with eBPF where it may load it
(CAP_BPF and CAP_PERFMON, as root has) or through the node service
(/run/tau_strace/service.unix, or TAU_STRACE_SERVICE), else with ptrace
(-v says which).";

/// Wrapper to run commands instrumented for the tau_metric_proxy
#[derive(Debug, clap::Parser)]
#[command(name = TOOL, version, disable_help_flag = true, override_help = HELP)]
pub(crate) struct Cli {
    /// enable MPI profiling
    #[arg(short = 'm')]
    pub(crate) mpi: bool,
    /// enable strace profiling
    #[arg(short = 's')]
    pub(crate) strace: bool,
    /// attach tau_strace to a running process id
    #[arg(short = 'S', value_name = "PID", conflicts_with_all = ["mpi", "strace"])]
    pub(crate) attach: Option<i32>,
    /// path to the push gateway UNIX socket
    #[arg(short = 'u', value_name = "PATH")]
    pub(crate) unix: Option<PathBuf>,
    /// count the command as part of job ID
    #[arg(short = 'j', value_name = "ID", value_parser = job_id)]
    pub(crate) job: Option<String>,
    /// verbose output
    #[arg(short = 'v')]
    pub(crate) verbose: bool,
    /// show this help
    #[arg(short = 'h', long = "help", action = clap::ArgAction::Help)]
    pub(crate) help: (),
    /// the command to run
    #[arg(last = true, value_name = "COMMAND")]
    pub(crate) command: Vec<OsString>,
}

/// A job id as [`protocol::check_job_id`] allows it.
fn job_id(id: &str) -> Result<String, String> {
    protocol::check_job_id(id).map(|()| id.to_owned())
}
