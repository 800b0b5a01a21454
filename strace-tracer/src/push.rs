//! The push thread: every push period it takes the totals from whichever
//! engine counts (the ptrace engine's counters, the eBPF engine's maps, or
//! what the node service sent last) with what their bounds made them lose,
//! and pushes them to the proxy through the [`Exporter`]; a last push is
//! made at the end.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::counts::{Bounds, Counts, Exporter, Lost, Row};
use crate::service::Totals;
use crate::sys::{self, Pid};
use crate::{bpf, fail, sched, Failure};

/// Time between two looks at the tracer's scheduling statistics.
const GOVERN_EVERY: Duration = Duration::from_millis(20);

/// Where the pushed totals come from.
pub(crate) enum Source {
    /// The ptrace engine's counters, written by the tracing thread.
    Ptrace(Arc<Counts>),
    /// The eBPF engine's maps.
    Bpf(Box<bpf::Reader>),
    /// What the node service sent last, counted within these bounds.
    Service(Arc<Mutex<Totals>>, Bounds),
}

impl Source {
    fn snapshot(&mut self) -> Vec<Row> {
        match self {
            Source::Ptrace(counts) => counts.snapshot(),
            Source::Bpf(reader) => reader.snapshot(),
            Source::Service(totals, _) => totals.lock().unwrap_or_else(|e| e.into_inner()).rows.clone(),
        }
    }

    /// What the engine's bounds made it lose, as of the last snapshot, and
    /// those bounds.
    fn lost(&self) -> (Lost, Bounds) {
        match self {
            Source::Ptrace(counts) => (counts.lost(), Bounds::ptrace()),
            Source::Bpf(reader) => (reader.lost(), reader.bounds()),
            Source::Service(totals, bounds) => (totals.lock().unwrap_or_else(|e| e.into_inner()).lost, *bounds),
        }
    }

    fn total_hits(&self) -> u64 {
        match self {
            Source::Ptrace(counts) => counts.total_hits(),
            Source::Bpf(_) | Source::Service(..) => 0,
        }
    }
}

/// The push thread, and how to stop it after a last push.
pub(crate) struct PushThread {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl PushThread {
    pub(crate) fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Starts the push thread; with `idle_sched`, it also governs the ptrace
/// tracer's scheduling policy (see `sched.rs`).
pub(crate) fn start(
    source: Source,
    socket: &Path,
    push_every: Duration,
    idle_sched: bool,
) -> Result<PushThread, Failure> {
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let main_tid = sys::gettid();
    let socket = socket.to_owned();
    let exporter = Exporter::new(client::Pusher::new(client::PushConfig::new(socket.clone(), "tau_strace")));
    let thread = std::thread::Builder::new()
        .name("push".into())
        .spawn(move || push_loop(exporter, source, &stop_rx, main_tid, &socket, idle_sched, push_every))
        .map_err(|e| fail(1, format!("cannot start the push thread: {e}")))?;
    Ok(PushThread { stop: stop_tx, thread })
}

/// Pushes the totals every `push_every` and once more at the end. Also
/// re-interrupts the tracing thread while a signal it has not yet handled
/// is pending (it may have arrived just before a blocking wait).
fn push_loop(
    mut exporter: Exporter,
    mut source: Source,
    stop: &mpsc::Receiver<()>,
    main_tid: Pid,
    socket: &Path,
    idle_sched: bool,
    push_every: Duration,
) {
    // Set from here so that this thread keeps the normal policy and can
    // always rescue a starved tracer.
    let mut governor = if idle_sched { sched::start(main_tid, source.total_hits()) } else { None };
    let mut online = false;
    let mut last_push = Instant::now();
    loop {
        // A starved SCHED_IDLE tracer stalls the tracee: check it more
        // often than we push.
        let tick = if governor.is_some() { GOVERN_EVERY.min(push_every) } else { push_every };
        let done = !matches!(stop.recv_timeout(tick), Err(mpsc::RecvTimeoutError::Timeout));
        if !done && sys::signal_pending() {
            let _ = sys::tgkill_self(main_tid, libc::SIGTERM);
        }
        if let Some(g) = &mut governor {
            sched::tick(g, main_tid, source.total_hits());
        }
        if !done && last_push.elapsed() < push_every {
            continue;
        }
        last_push = Instant::now();
        exporter.update(&source.snapshot());
        let (lost, bounds) = source.lost();
        exporter.update_lost(lost, bounds);
        if done {
            if exporter.finish() == client::PushState::Sent {
                log::info!("final counts pushed to tau_metric_proxy on {}", socket.display());
            } else {
                log::info!("tau_metric_proxy not reachable on {}: final counts not pushed", socket.display());
            }
            return;
        }
        let now_online = exporter.flush() == client::PushState::Sent;
        if now_online != online {
            log::info!("{} tau_metric_proxy on {}", if now_online { "pushing to" } else { "lost" }, socket.display());
            online = now_online;
        }
    }
}
