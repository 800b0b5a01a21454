//! What keeps a store's totals safe off the daemon's event loop and across
//! a crash: folding departed collectors in bounded batches (their
//! processes judged without the store's lock), the count of departures
//! that tells when a snapshot is due, and the recovery after a crash:
//! the daemon's own counters start again from zero and the store says
//! it is recovering until the collectors it remembered sent their totals
//! again.

use protocol::Kind;

use super::collectors::{CollectorSlot, ProcessRef};
use super::{Owner, Store};

/// What a scrape or a value query is answered while the store recovers.
pub const RECOVERING: &str = "recovering after a crash: waiting for the collectors to resend their totals";

/// However many collectors came back, a recovery lasts at least this long,
/// in seconds: collectors unknown to the state file (connected after it
/// was written) reconnect within a few of their 500 ms retry periods.
pub const RECOVERY_MIN: f64 = 2.0;
/// And at most this long: a collector that does not come back by then
/// (a stopped process, a program that has nothing to push) is not waited
/// for any longer.
pub const RECOVERY_MAX: f64 = 10.0;

impl Store {
    /// How many times a collector disconnected, said goodbye or was
    /// folded: once that changed, what it counted lives only in the store
    /// (its process may be gone), and a snapshot is due.
    pub fn departures(&self) -> u64 {
        self.departures
    }

    /// Up to `max_scan` collector slots from `from` on: the disconnected
    /// collectors among them with their processes, to judge without the
    /// lock, and the slot to go on from (`None` after the last).
    pub fn disconnected_batch(
        &self,
        from: usize,
        max_scan: usize,
    ) -> (Vec<(CollectorSlot, ProcessRef)>, Option<usize>) {
        self.collectors.disconnected_batch(from, max_scan)
    }

    /// Folds the collectors of `gone` (judged gone for good) that are
    /// still disconnected since they were listed; returns how many.
    pub fn fold_if_departed(&mut self, gone: &[CollectorSlot], now: f64) -> usize {
        let mut folded = 0;
        for &slot in gone {
            if self.collectors.still_disconnected(slot) {
                self.forget(slot.index, now);
                folded += 1;
            }
        }
        folded
    }

    /// After a crash, with the store restored from the last state file:
    /// the daemon's own counters (not the jobs') start again from zero (they were counted
    /// since that file was written, and Prometheus takes a restart of them
    /// as the reset it is), and, unless the journal replayed since vouches
    /// for the totals (`wait` false), every remembered collector is
    /// awaited, to send its totals again. Returns how many are.
    pub fn start_recovery(&mut self, now: f64, wait: bool) -> usize {
        let daemons: Vec<u32> = (0..self.series.len() as u32)
            .filter(|&sid| {
                let s = &self.series[sid as usize];
                let daemons = self.families[s.family as usize].owner == Owner::Daemon;
                // A job's series count what its collectors counted, as the
                // node series do.
                s.kind == Kind::Counter && daemons && !self.is_job_series(sid)
            })
            .collect();
        self.generation += 1;
        for sid in daemons {
            let s = &mut self.series[sid as usize];
            s.int = 0;
            s.float = 0.0;
            self.mark_changed(sid, now);
        }
        if !wait {
            return 0;
        }
        self.recovery = Some(now);
        self.collectors.await_all()
    }

    /// Whether the store is recovering from a crash (see
    /// [`Store::start_recovery`]): at least [`RECOVERY_MIN`] seconds, and
    /// then while restored collectors have neither sent their totals nor
    /// been folded, at most [`RECOVERY_MAX`] seconds. Until then its
    /// counters may be below what was served before the crash.
    pub fn recovering(&mut self, now: f64) -> bool {
        let Some(since) = self.recovery else { return false };
        let elapsed = now - since;
        let waiting = elapsed < RECOVERY_MIN || (self.collectors.awaited() > 0 && elapsed < RECOVERY_MAX);
        if !waiting {
            self.recovery = None;
        }
        waiting
    }

    /// Remembered collectors restored after a crash that did not send
    /// their totals yet.
    pub fn awaited_collectors(&self) -> usize {
        self.collectors.awaited()
    }
}
