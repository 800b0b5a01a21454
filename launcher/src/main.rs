//! `tau_metric_proxy_run`: runs a command with the collectors asked for.
//!
//! The launcher counts the launch in the proxy, prepares the environment
//! (socket path, PMPI preload), starts the command (under `tau_strace` with
//! `-s`) and waits for it, forwarding the signals other processes send it
//! (for example `mpirun` forwarding a SIGTERM) and returning its status.
#![forbid(unsafe_code)]

mod mpi;
mod run;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

const TOOL: &str = "tau_metric_proxy_run";

const HELP: &str = "\
tau_metric_proxy_run -m -s -v -h -u [PATH] -S [PID] -- [COMMAND]

Wrapper to run commands instrumented for the tau_metric_proxy.

-m: enable MPI profiling
-s: enable strace profiling (requires tau_strace beside this command or in path)
-S [PID]: attach tau_strace to a running process id (COMMAND is ignored, no MPI instrum)
-u [PATH]: specify path to tau_metric_proxy push gateway UNIX socket
-v: enable verbose output
-h: show this help

The exit status is the command's own; a command killed by signal N gives 128+N.
Without a running tau_metric_proxy the command runs normally.";

#[derive(Debug, Parser)]
#[command(name = TOOL, version, disable_help_flag = true, override_help = HELP)]
struct Cli {
    /// enable MPI profiling
    #[arg(short = 'm')]
    mpi: bool,
    /// enable strace profiling
    #[arg(short = 's')]
    strace: bool,
    /// attach tau_strace to a running process id
    #[arg(short = 'S', value_name = "PID", conflicts_with_all = ["mpi", "strace"])]
    attach: Option<i32>,
    /// path to the push gateway UNIX socket
    #[arg(short = 'u', value_name = "PATH")]
    unix: Option<PathBuf>,
    /// verbose output
    #[arg(short = 'v')]
    verbose: bool,
    /// show this help
    #[arg(short = 'h', long = "help", action = clap::ArgAction::Help)]
    help: (),
    /// the command to run
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

fn main() {
    let cli: Cli = client::parse_args(TOOL);
    let socket = client::socket_path(cli.unix.clone());
    let config = run::Config { socket, verbose: cli.verbose };
    let code = match (cli.attach, cli.command.is_empty()) {
        (Some(pid), _) => {
            if !cli.command.is_empty() && cli.verbose {
                eprintln!("{TOOL}: -S given: ignoring COMMAND");
            }
            run::attach(&config, pid)
        }
        (None, true) => client::usage_error(TOOL, "no command given: tau_metric_proxy_run [-m] [-s] -- COMMAND"),
        (None, false) => run::launch(&config, &cli.command, cli.mpi, cli.strace),
    };
    std::process::exit(code);
}
