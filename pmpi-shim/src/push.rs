//! Sends the counters to the daemon: every push period from a background
//! thread started by `MPI_Init`, at `MPI_Finalize`, and at process exit.
//!
//! Everything here runs off the hot path and may allocate, lock and make
//! system calls; the [`Pusher`] bounds every I/O so a dead or stalled
//! daemon only costs bounded time, and keeps cumulative totals so a daemon
//! that appears later still receives everything.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use client::{MetricId, PushConfig, PushState, Pusher};
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use protocol::{Desc, Kind, Scale};

use crate::counters::{self, Totals};
use crate::mpi::{HAS_SIZE, IMPL, NAMES, NFUNCS};

/// Environment variable overriding the push period, in milliseconds.
pub(crate) const PUSH_MS_ENV: &str = "TAU_METRIC_PROXY_PUSH_MS";
/// Environment variable making the shim report what it does on stderr.
pub(crate) const VERBOSE_ENV: &str = "TAU_PMPI_VERBOSE";
const DEFAULT_PUSH_MS: u64 = 100;

struct Series {
    hits: MetricId,
    size: Option<MetricId>,
    time: MetricId,
}

struct State {
    pusher: Pusher,
    series: Vec<Option<Series>>,
    /// Nanoseconds already reported per function; the conversion rate is
    /// refined at every push, so this keeps each series monotonic.
    time_ns: Vec<u64>,
}

/// Who holds the [`State`]. The lock is only ever held for a few
/// instructions (to take the state out or put it back), never across I/O
/// with the daemon: `fork`, which holds it across the system call so the
/// child never inherits it half-updated, must not wait for a stalled
/// daemon.
struct Shared {
    /// The state, when no push is in progress (`None` before the first
    /// push, or while a push has taken it out).
    state: Option<State>,
    /// A push in progress has taken the state out; it puts it back and
    /// notifies [`RETURNED`] when done.
    busy: bool,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared { state: None, busy: false });
/// Notified each time a push puts the state back.
static RETURNED: Condvar = Condvar::new();
static THREAD_STARTED: AtomicBool = AtomicBool::new(false);
static FINISHED: AtomicBool = AtomicBool::new(false);
/// The process whose counters these are: set at load and in a forked
/// child. A `vfork` child runs no fork hook and shares its parent's
/// memory, so it sees another pid here and must leave the state alone.
static OWNER: AtomicU32 = AtomicU32::new(0);
/// How long an exec or the exit waits for a push in progress (the push
/// thread's) before giving up on its own: bounded even if that push never
/// returns.
const HOOK_WAIT: Duration = Duration::from_secs(2);

fn lock() -> MutexGuard<'static, Shared> {
    SHARED.lock().unwrap_or_else(PoisonError::into_inner)
}

fn verbose() -> bool {
    std::env::var_os(VERBOSE_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The push period: `TAU_METRIC_PROXY_PUSH_MS` if it is a positive integer.
pub(crate) fn push_period(value: Option<&str>) -> Duration {
    let ms = value.and_then(|v| v.trim().parse::<u64>().ok()).filter(|ms| *ms > 0).unwrap_or(DEFAULT_PUSH_MS);
    Duration::from_millis(ms)
}

fn program_name() -> String {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "mpi".to_owned())
}

fn owned_by_me() -> bool {
    OWNER.load(Ordering::Acquire) == std::process::id()
}

impl State {
    fn new() -> State {
        let socket = client::socket_path(None);
        State {
            pusher: Pusher::new(PushConfig { tool: "tau_pmpi".to_owned(), ..PushConfig::new(socket, &program_name()) }),
            series: (0..NFUNCS).map(|_| None).collect(),
            time_ns: vec![0; NFUNCS],
        }
    }

    fn update(&mut self, totals: &[Totals]) {
        let rate = crate::clock::rate();
        for (i, t) in totals.iter().enumerate() {
            if t.hits == 0 {
                continue;
            }
            let pusher = &mut self.pusher;
            let s = self.series[i].get_or_insert_with(|| {
                let f = [("function", NAMES[i])];
                Series {
                    hits: pusher.register(Desc::counter("mpi_hits_total", &f, "Number of calls to an MPI function")),
                    size: HAS_SIZE[i].then(|| {
                        pusher.register(Desc::counter(
                            "mpi_size_total",
                            &f,
                            "Bytes passed to an MPI function (send plus receive buffers)",
                        ))
                    }),
                    time: pusher.register(Desc::new(
                        "mpi_time_total",
                        &f,
                        "Seconds spent inside an MPI function",
                        Kind::Counter,
                        Scale::Nano,
                    )),
                }
            });
            pusher.set_total(s.hits, t.hits);
            if let Some(id) = s.size {
                pusher.set_total(id, t.bytes);
            }
            let ns = rate.to_ns(t.ticks).max(self.time_ns[i]);
            self.time_ns[i] = ns;
            pusher.set_total(s.time, ns);
        }
    }
}

/// Which push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Push {
    /// The push thread's, or after `MPI_Finalize`: skipped when another
    /// push is in progress (that one carries nearly the same totals).
    Periodic,
    /// Before an exec: waits for a push in progress, retries the
    /// connection at once, says no goodbye.
    Exec,
    /// At exit: waits for a push in progress, then pushes and says goodbye.
    Last,
}

/// Collects and sends. The state is taken out of [`SHARED`] for the whole
/// push, so the I/O runs without the lock; the totals are read after it
/// was taken, so a push never sends less than the one before it.
fn push(kind: Push) -> Option<PushState> {
    let mut guard = lock();
    if guard.busy {
        if kind == Push::Periodic {
            return None;
        }
        guard = RETURNED.wait_timeout_while(guard, HOOK_WAIT, |s| s.busy).unwrap_or_else(PoisonError::into_inner).0;
        if guard.busy {
            return None;
        }
    }
    if kind != Push::Last && FINISHED.load(Ordering::Acquire) {
        return None;
    }
    guard.busy = true;
    let mut held = Held(guard.state.take());
    drop(guard);

    let totals = counters::totals();
    if !totals.iter().any(|t| t.hits != 0) {
        // Nothing to report (not an MPI program, or a fresh fork child):
        // never connect.
        if kind == Push::Last {
            held.0 = None;
        }
        return None;
    }
    let state = held.0.get_or_insert_with(State::new);
    state.update(&totals);
    match kind {
        Push::Periodic => Some(state.pusher.flush()),
        Push::Exec => Some(state.pusher.flush_now()),
        Push::Last => held.0.take().map(|s| s.pusher.finish()),
    }
}

/// The state taken out for a push in progress. Dropping it puts the state
/// back and ends the push, even when a panic unwinds the push, so no hook
/// waits for a push that will never end.
struct Held(Option<State>);

impl Drop for Held {
    fn drop(&mut self) {
        let mut guard = lock();
        guard.busy = false;
        guard.state = self.0.take();
        drop(guard);
        RETURNED.notify_all();
    }
}

fn push_loop(period: Duration) {
    while !FINISHED.load(Ordering::Acquire) {
        std::thread::sleep(period);
        if FINISHED.load(Ordering::Acquire) || !THREAD_STARTED.load(Ordering::Acquire) {
            break;
        }
        let _ = std::panic::catch_unwind(|| push(Push::Periodic));
    }
}

/// Spawns a thread with every signal blocked, so the program's signal
/// handlers never run on it.
fn spawn_quiet(name: &str, f: impl FnOnce() + Send + 'static) -> bool {
    let mut old = SigSet::empty();
    // Cannot fail with a valid set and `SIG_SETMASK`.
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), Some(&mut old));
    let ok = std::thread::Builder::new().name(name.to_owned()).spawn(f).is_ok();
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    ok
}

/// After a successful `MPI_Init`: starts the push thread once.
pub(crate) fn after_init() {
    let _ = std::panic::catch_unwind(|| {
        if THREAD_STARTED.swap(true, Ordering::AcqRel) {
            return;
        }
        let period = push_period(std::env::var(PUSH_MS_ENV).ok().as_deref());
        if verbose() {
            eprintln!(
                "tau_pmpi: {IMPL} shim ({NFUNCS} functions wrapped), pushing to {} every {} ms",
                client::socket_path(None).display(),
                period.as_millis()
            );
        }
        if !spawn_quiet("tau_pmpi_push", move || push_loop(period)) {
            THREAD_STARTED.store(false, Ordering::Release);
        }
    });
}

/// At library load.
pub(crate) fn at_load() {
    OWNER.store(std::process::id(), Ordering::Release);
}

/// Right before an exec function replaces the process image: a final,
/// synchronous push (no goodbye: if the exec fails the program goes on
/// under the same identity). Bounded by the `Pusher`'s timeouts, and by
/// [`HOOK_WAIT`] when another thread is pushing.
pub(crate) fn before_exec() {
    if !owned_by_me() {
        return;
    }
    let sent = push(Push::Exec);
    if verbose() {
        if let Some(s) = sent {
            eprintln!("tau_pmpi: push before exec: {s:?}");
        }
    }
}

/// After `MPI_Finalize`: pushes everything counted so far.
pub(crate) fn after_finalize() {
    let _ = std::panic::catch_unwind(|| push(Push::Periodic));
}

/// At process exit: final push and goodbye. A `vfork` child that calls
/// `exit` (instead of `_exit`) runs this hook in its parent's memory: it
/// must neither push the parent's counts under the parent's identity nor
/// end the parent's state, or the parent would count them again.
pub(crate) fn at_exit() {
    if !owned_by_me() {
        return;
    }
    FINISHED.store(true, Ordering::Release);
    let state = push(Push::Last);
    if verbose() {
        if let Some(s) = state {
            eprintln!("tau_pmpi: final push: {s:?}");
        }
    }
}

thread_local! {
    /// The state lock, held across `fork()` so the child never inherits it
    /// in the middle of taking or returning the state. It is never held
    /// during I/O, so a fork waits for no daemon.
    static FORK_GUARD: RefCell<Option<MutexGuard<'static, Shared>>> = const { RefCell::new(None) };
}

// `try_with`: a fork from a thread that is already exiting must not panic
// (the panic message would change the program's output).
pub(crate) fn before_fork() {
    let g = lock();
    let _ = FORK_GUARD.try_with(|f| *f.borrow_mut() = Some(g));
}

pub(crate) fn after_fork_parent() {
    let _ = FORK_GUARD.try_with(|f| drop(f.borrow_mut().take()));
}

/// The child's counts so far belong to the parent: it restarts from zero
/// under a new identity (a new state, made at its first push), without a
/// push thread until it calls `MPI_Init`. A state the parent's push
/// thread had taken out for a push in progress stays with that thread,
/// which does not exist in the child.
pub(crate) fn after_fork_child() {
    let _ = FORK_GUARD.try_with(|f| {
        if let Some(mut g) = f.borrow_mut().take() {
            // Dropping the inherited state closes the child's copy of the
            // parent's connection, without a goodbye.
            g.state = None;
            g.busy = false;
        }
    });
    counters::reset_in_child();
    THREAD_STARTED.store(false, Ordering::Release);
    OWNER.store(std::process::id(), Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_period_defaults_and_overrides() {
        assert_eq!(push_period(None), Duration::from_millis(100));
        assert_eq!(push_period(Some("250")), Duration::from_millis(250));
        assert_eq!(push_period(Some(" 20 ")), Duration::from_millis(20));
        assert_eq!(push_period(Some("0")), Duration::from_millis(100));
        assert_eq!(push_period(Some("fast")), Duration::from_millis(100));
    }
}
