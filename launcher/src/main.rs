//! `tau_metric_proxy_run`: runs a command with the collectors asked for.
//!
//! The launcher counts the launch in the proxy, prepares the environment
//! (socket path, PMPI preload), starts the command (under `tau_strace` with
//! `-s`) and waits for it, forwarding the signals other processes send it
//! (for example `mpirun` forwarding a SIGTERM) and returning its status.
#![forbid(unsafe_code)]

mod cli;
mod elf;
mod mpi;
mod run;

use cli::{Cli, TOOL};

/// Writes `TOOL: what` and a newline to stderr in one write, so that the
/// lines of the ranks of one `mpirun`, which share its stderr, never mix.
pub(crate) fn say(what: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("{TOOL}: {what}\n").as_bytes());
}

fn main() {
    let cli: Cli = client::parse_args(TOOL);
    let socket = client::socket_path(cli.unix.clone());
    let config = run::Config { socket, verbose: cli.verbose, job: cli.job.clone() };
    let code = match (cli.attach, cli.command.is_empty()) {
        (Some(pid), _) => {
            if !cli.command.is_empty() {
                eprintln!("{TOOL}: warning: -S attaches to process {pid}: ignoring COMMAND");
            }
            run::attach(&config, pid)
        }
        (None, true) => client::usage_error(TOOL, "no command given: tau_metric_proxy_run [-m] [-s] -- COMMAND"),
        (None, false) => run::launch(&config, &cli.command, cli.mpi, cli.strace),
    };
    std::process::exit(code);
}
