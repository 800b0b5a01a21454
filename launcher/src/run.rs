//! Counting the launch, starting the command and relaying its fate.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use client::{MustBe, PushConfig, PushState, Pusher};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use protocol::Desc;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use signal_hook::low_level::siginfo::Cause;

use crate::TOOL;

/// What every mode needs.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) socket: PathBuf,
    pub(crate) verbose: bool,
    /// `-j`: the job of the command and of every collector it starts.
    pub(crate) job: Option<String>,
}

impl Config {
    /// What the command and the tracer inherit: the socket, and the job.
    fn env(&self) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = vec![(protocol::SOCKET_ENV.into(), self.socket.clone().into())];
        if let Some(job) = &self.job {
            env.push((protocol::JOB_ENV.into(), job.into()));
        }
        env
    }

    fn say(&self, what: &str) {
        if self.verbose {
            crate::say(what);
        }
    }
}

/// Signals relayed to the command when another process sends them to us.
const FORWARDED: [i32; 6] = [SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2];

/// Adds one to `tau_metric_proxy_run_total{operation=OP}` and tells (with
/// -v) whether the proxy was reached. Bounded by the pusher's timeouts.
/// A launcher of a job stays connected while its command runs (the
/// returned pusher, finished by [`end_run`]), so the job lasts on the node
/// from the launch to the command's end, whatever its other collectors do.
fn count_run(config: &Config, operation: &str) -> Option<Pusher> {
    let mut cfg = PushConfig::new(config.socket.clone(), TOOL);
    cfg.io_timeout = Duration::from_millis(500);
    cfg.job = config.job.clone();
    let mut pusher = Pusher::new(cfg);
    let id = pusher.register(Desc::counter(
        "tau_metric_proxy_run_total",
        &[("operation", operation)],
        "Number of launch with the tau_metric_proxy_run command",
    ));
    pusher.add(id, 1);
    let (state, stay) = if pusher.job().is_some() {
        let state = pusher.flush_now();
        (state, (state == PushState::Sent).then_some(pusher))
    } else {
        (pusher.finish(), None)
    };
    match state {
        PushState::Sent => config.say(&format!("tau_metric_proxy found on {}", config.socket.display())),
        PushState::Offline => config.say(&format!(
            "tau_metric_proxy not found on {}: the command runs without it (collectors push once it starts)",
            config.socket.display()
        )),
    }
    stay
}

/// The command ended: the launcher's collector leaves its job.
fn end_run(pusher: Option<Pusher>, code: i32) -> i32 {
    if let Some(p) = pusher {
        p.finish();
    }
    code
}

/// Finds `tau_strace` beside this executable, else on `PATH`.
fn tracer() -> Result<PathBuf, String> {
    let beside = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join("tau_strace")));
    if let Some(p) = beside.filter(|p| p.is_file()) {
        return Ok(p);
    }
    client::find_program("tau_strace".as_ref(), MustBe::File, None)
        .ok_or_else(|| "tau_strace not found beside tau_metric_proxy_run nor on PATH".to_owned())
}

/// Runs `command` instrumented; returns the exit code to leave with.
pub(crate) fn launch(config: &Config, command: &[OsString], mpi: bool, strace: bool) -> i32 {
    let run = count_run(config, "exec");
    let env = config.env();
    // The PMPI preload is for the command only, never for tau_strace.
    let mut mpi_env: Vec<(OsString, OsString)> = Vec::new();
    if mpi {
        match crate::mpi::preload_env(command, config.verbose) {
            Ok(vars) => mpi_env = vars,
            Err(e) => {
                // The program must still run: only the instrumentation is lost.
                crate::say(&format!("warning: MPI profiling disabled: {e}"));
            }
        }
    }
    let mut cmd = if strace {
        let tracer = match tracer() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{TOOL}: error: {e}");
                return end_run(run, 127);
            }
        };
        let mut c = Command::new(tracer);
        c.arg("-u").arg(&config.socket);
        if config.verbose {
            // It says which engine counts, and why.
            c.arg("-v");
        }
        for (k, v) in &mpi_env {
            let mut kv = k.clone();
            kv.push("=");
            kv.push(v);
            c.arg("-E").arg(kv);
        }
        c.arg("--").args(command);
        c
    } else {
        let mut c = Command::new(&command[0]);
        c.args(&command[1..]).envs(mpi_env);
        c
    };
    cmd.envs(env);
    config.say(&format!("running {}", shown(command)));
    end_run(run, spawn_and_wait(cmd, &command[0]))
}

/// Attaches `tau_strace` to `pid`; Ctrl+C detaches and leaves it running.
pub(crate) fn attach(config: &Config, pid: i32) -> i32 {
    let run = count_run(config, "attach");
    let tracer = match tracer() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{TOOL}: error: {e}");
            return 127;
        }
    };
    let mut cmd = Command::new(&tracer);
    cmd.arg("-u").arg(&config.socket).envs(config.env());
    if config.verbose {
        cmd.arg("-v");
    }
    cmd.arg("-p").arg(pid.to_string());
    config.say(&format!("attaching tau_strace to pid {pid}"));
    end_run(run, spawn_and_wait(cmd, tracer.as_os_str()))
}

fn shown(command: &[OsString]) -> String {
    command.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
}

fn spawn_and_wait(mut cmd: Command, name: &std::ffi::OsStr) -> i32 {
    // Installed before the spawn so no signal slips through; the handlers
    // are reset to their defaults in the child by exec.
    let mut signals = match SignalsInfo::<WithOrigin>::new(FORWARDED) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{TOOL}: error: cannot install signal handlers: {e}");
            return 1;
        }
    };
    let handle = signals.handle();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 };
            eprintln!("{TOOL}: error: cannot run {}: {e}", Path::new(name).display());
            return code;
        }
    };
    let pid = Pid::from_raw(child.id() as i32);
    let relay = std::thread::spawn(move || {
        for origin in signals.forever() {
            // A terminal's Ctrl+C already reached the whole foreground
            // process group, the command included: relay only signals that
            // a process sent to us alone (mpirun, kill, a batch system).
            if origin.cause == Cause::Kernel {
                continue;
            }
            if let Ok(sig) = Signal::try_from(origin.signal) {
                let _ = kill(pid, sig);
            }
        }
    });
    let status = loop {
        match child.wait() {
            Ok(s) => break Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break None,
        }
    };
    handle.close();
    let _ = relay.join();
    status.map_or(1, exit_code)
}

/// The shell's convention: the exit code, or 128+N for a signal N.
fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    }
}
