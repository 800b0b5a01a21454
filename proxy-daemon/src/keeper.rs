//! The housekeeping thread: the work that grows with the number of
//! collectors and series, kept off the event loop and out of the store's
//! lock. It folds departed collectors in bounded batches (their processes
//! judged in `/proc` without the lock), and writes the state file: the
//! store is copied under the lock ([`Store::snapshot_source`]), then the
//! snapshot is built, encoded, written, synced and renamed without it.
//!
//! A snapshot is written every `--state-interval`, and also soon after any
//! collector disconnected, said goodbye or was folded (from then on what
//! it counted lives only in the daemon and its journal) or the journal
//! failed. Snapshots are written one at a time, departures meanwhile
//! coalesced into the next. Each starts a new journal segment as the
//! store is copied, and removes the segments before it once it is in
//! place (see [`crate::journal`]).

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use proxy_core::{CollectorSlot, ProcessRef, Store};

use crate::journal::SharedJournal;
use crate::server::now;

/// How often the thread looks for departures to save.
const TICK: Duration = Duration::from_millis(100);
/// How often departed collectors are folded.
const FOLD_EVERY: Duration = Duration::from_secs(1);
/// Collector slots looked at under one lock.
const FOLD_BATCH: usize = 1024;

/// The running housekeeping thread.
pub(crate) struct Keeper {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Result<(), String>>,
}

/// `--state`: the file, how often to save it, and what the last save held.
struct StateFile {
    path: PathBuf,
    every: Duration,
    journal: Option<SharedJournal>,
    saved_at: Instant,
    saved_generation: u64,
    saved_departures: u64,
}

impl Keeper {
    /// Starts the thread; `state` is `--state FILE`, its interval and its
    /// journal.
    pub(crate) fn start(
        store: Arc<Mutex<Store>>,
        state: Option<(PathBuf, Duration, Option<SharedJournal>)>,
    ) -> Result<Keeper, String> {
        let (stop, stopped) = mpsc::channel();
        let departures = store.lock().departures();
        let state = state.map(|(path, every, journal)| StateFile {
            path,
            every,
            journal,
            saved_at: Instant::now(),
            saved_generation: u64::MAX,
            saved_departures: departures,
        });
        let thread = std::thread::Builder::new()
            .name("keeper".into())
            .spawn(move || run(&store, state, &stopped))
            .map_err(|e| format!("cannot start the housekeeping thread: {e}"))?;
        Ok(Keeper { stop, thread })
    }

    /// Stops the thread after a last save of the state file, marked
    /// clean; returns how that save went.
    pub(crate) fn stop(self) -> Result<(), String> {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_else(|_| Err("the housekeeping thread panicked".into()))
    }
}

fn run(store: &Mutex<Store>, mut state: Option<StateFile>, stopped: &mpsc::Receiver<()>) -> Result<(), String> {
    let mut folded_at: Option<Instant> = None;
    loop {
        if folded_at.is_none_or(|t| t.elapsed() >= FOLD_EVERY) {
            folded_at = Some(Instant::now());
            fold_departed(store);
        }
        if let Some(state) = &mut state {
            let _ = state.save_if_due(store, false);
        }
        match stopped.recv_timeout(TICK) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    match &mut state {
        Some(state) => state.save_if_due(store, true),
        None => Ok(()),
    }
}

/// Folds the disconnected collectors whose processes are gone, a batch of
/// slots per lock; the processes are judged between two locks.
fn fold_departed(store: &Mutex<Store>) {
    let mut from = Some(0);
    let mut folded = 0;
    while let Some(at) = from {
        let (batch, next) = store.lock().disconnected_batch(at, FOLD_BATCH);
        from = next;
        let gone: Vec<CollectorSlot> = batch.into_iter().filter(|(_, p)| !process_alive(*p)).map(|(s, _)| s).collect();
        if !gone.is_empty() {
            folded += store.lock().fold_if_departed(&gone, now());
        }
    }
    if folded > 0 {
        log::debug!("folded {folded} departed collectors into the node totals");
    }
}

impl StateFile {
    /// Saves when due: the interval passed and something changed, a
    /// collector departed since the last save, or the journal asks for
    /// one; at the stop (`last`) in any case, marked clean. A failure is logged, and returned.
    fn save_if_due(&mut self, store: &Mutex<Store>, last: bool) -> Result<(), String> {
        let started = Instant::now();
        {
            let st = store.lock();
            let departed = st.departures() != self.saved_departures;
            let periodic = self.saved_at.elapsed() >= self.every && st.generation() != self.saved_generation;
            let journal = self.journal.as_ref().is_some_and(|j| j.lock().save_due());
            if !(last || departed || periodic || journal) {
                return Ok(());
            }
        }
        // The next journal segment is created without the store's lock.
        let next = self.journal.as_ref().map(|j| j.lock().prepare());
        let copying = Instant::now();
        let (source, generation, departures, named) = {
            let mut st = store.lock();
            let named = match (&self.journal, next) {
                (Some(j), Some(next)) => j.lock().rotate(&mut st, next),
                _ => 0,
            };
            (st.snapshot_source(), st.generation(), st.departures(), named)
        };
        let locked = copying.elapsed();
        self.saved_at = Instant::now();
        let snap = source.build().with_clean(last).with_journal(named);
        let (series, collectors) = (snap.series_count(), snap.collector_count());
        match crate::state::save(&self.path, &snap) {
            Ok(()) => {
                self.saved_generation = generation;
                self.saved_departures = departures;
                if let Some(j) = &self.journal {
                    match last {
                        true => j.lock().close(),
                        false => j.lock().saved(named),
                    }
                }
                let shown = self.path.display();
                log::debug!(
                    "saved {series} counter series and {collectors} collectors to {shown} in {:.1} ms \
                     (store locked {:.1} ms)",
                    started.elapsed().as_secs_f64() * 1e3,
                    locked.as_secs_f64() * 1e3
                );
                if last {
                    log::info!("saved state of {series} counter series to {shown}");
                }
                Ok(())
            }
            Err(e) => {
                log::error!("{e}");
                Err(e)
            }
        }
    }
}

/// Whether the process behind a disconnected collector still runs. A
/// zombie thread-group leader whose other threads run is alive. Where
/// `/proc` hides it (another user's process with `hidepid`), `kill(pid, 0)`
/// still tells: only "no such process" means it is gone.
fn process_alive(p: ProcessRef) -> bool {
    match procinfo::stat(p.pid) {
        Some(s) if p.start_time != 0 && s.start_time != p.start_time => false,
        Some(s) if s.state == 'Z' => procinfo::has_live_thread(p.pid).unwrap_or(false),
        Some(_) => true,
        None => !matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid as i32), None),
            Err(nix::errno::Errno::ESRCH)
        ),
    }
}
