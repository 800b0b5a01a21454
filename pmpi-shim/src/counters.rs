//! Per-thread counter slabs: the hot path's only memory.
//!
//! Each thread that makes MPI calls owns one slab (hits, cycles and bytes
//! per wrapped function), found through its thread-local [`Tls`]. Only the
//! owner writes it, with relaxed load + store (no locked instruction); the
//! push thread reads every slab with relaxed loads and sums them. Slabs are
//! kept in a lock-free list and never freed: a slab released by an exiting
//! thread is reused by the next new thread, so its totals simply keep
//! growing.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};

use crate::list::List;
use crate::mpi::NFUNCS;

pub(crate) struct Slot {
    hits: AtomicU64,
    ticks: AtomicU64,
    bytes: AtomicU64,
}

pub(crate) struct Slab {
    owned: AtomicBool,
    slots: [Slot; NFUNCS],
}

/// Every slab ever made.
static SLABS: List<Slab> = List::new();

/// Single-writer increment: a plain load and store, no `lock` prefix.
#[inline(always)]
fn bump(a: &AtomicU64, d: u64) {
    a.store(a.load(Relaxed).wrapping_add(d), Relaxed);
}

impl Slab {
    fn new() -> Slab {
        Slab {
            owned: AtomicBool::new(true),
            slots: [const { Slot { hits: AtomicU64::new(0), ticks: AtomicU64::new(0), bytes: AtomicU64::new(0) } };
                NFUNCS],
        }
    }

    #[inline(always)]
    pub(crate) fn record(&self, idx: usize, ticks: u64, bytes: u64) {
        let s = &self.slots[idx];
        bump(&s.hits, 1);
        bump(&s.ticks, ticks);
        if bytes != 0 {
            bump(&s.bytes, bytes);
        }
    }

    fn release(&self) {
        self.owned.store(false, Release);
    }
}

/// A free slab for the calling thread (made when none is free).
fn claim() -> &'static Slab {
    crate::clock::start();
    for s in SLABS.iter() {
        if s.owned.compare_exchange(false, true, Acquire, Relaxed).is_ok() {
            return s;
        }
    }
    SLABS.push(Slab::new())
}

// ------------------------------------------------------------ thread state

/// Per-thread state: nesting depth and this thread's counter slab.
pub(crate) struct Tls {
    depth: Cell<u32>,
    slab: Cell<Option<&'static Slab>>,
}

thread_local! {
    // Const-initialised and without destructor: access is a plain TLS load.
    pub(crate) static TLS: Tls = const { Tls { depth: Cell::new(0), slab: Cell::new(None) } };
}

impl Tls {
    /// Starts counting a call; `false` when this call is made from inside
    /// another MPI call (it is then not counted, the outer call's time
    /// covers it).
    #[inline(always)]
    pub(crate) fn enter(&self) -> bool {
        if self.depth.get() != 0 {
            return false;
        }
        self.depth.set(1);
        true
    }

    /// Ends a call started by [`Tls::enter`], counting it in slot `idx`.
    #[inline(always)]
    pub(crate) fn leave(&self, idx: usize, ticks: u64, bytes: u64) {
        let slab = match self.slab.get() {
            Some(s) => s,
            None => claim_slab(self),
        };
        slab.record(idx, ticks, bytes);
        self.depth.set(0);
    }
}

/// Releases the thread's slab when the thread ends, so a later thread
/// reuses it instead of allocating one.
struct SlabRelease(Cell<Option<&'static Slab>>);

impl Drop for SlabRelease {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            let _ = TLS.try_with(|t| t.slab.set(None));
            s.release();
        }
    }
}

thread_local! {
    static RELEASE: SlabRelease = const { SlabRelease(Cell::new(None)) };
}

#[cold]
#[inline(never)]
fn claim_slab(t: &Tls) -> &'static Slab {
    let s = claim();
    t.slab.set(Some(s));
    // A thread that is already exiting keeps its slab for good.
    let _ = RELEASE.try_with(|r| r.0.set(Some(s)));
    s
}

/// The calling thread's slab, if it has one.
fn current_slab() -> Option<&'static Slab> {
    TLS.try_with(|t| t.slab.get()).ok().flatten()
}

// ------------------------------------------------------------ totals

/// Cumulative totals of one function over all threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) hits: u64,
    pub(crate) ticks: u64,
    pub(crate) bytes: u64,
}

pub(crate) fn totals() -> Vec<Totals> {
    let mut out = vec![Totals::default(); NFUNCS];
    for s in SLABS.iter() {
        for (t, slot) in out.iter_mut().zip(s.slots.iter()) {
            t.hits = t.hits.wrapping_add(slot.hits.load(Relaxed));
            t.ticks = t.ticks.wrapping_add(slot.ticks.load(Relaxed));
            t.bytes = t.bytes.wrapping_add(slot.bytes.load(Relaxed));
        }
    }
    out
}

/// In a forked child (single thread): every count restarts from zero and
/// only the calling thread keeps a slab.
pub(crate) fn reset_in_child() {
    let mine = current_slab().map(|s| s as *const Slab);
    for s in SLABS.iter() {
        for slot in &s.slots {
            slot.hits.store(0, Relaxed);
            slot.ticks.store(0, Relaxed);
            slot.bytes.store(0, Relaxed);
        }
        s.owned.store(Some(s as *const Slab) == mine, Release);
    }
}

/// Held by every test that counts calls: slabs and totals are process-wide.
#[cfg(test)]
pub(crate) static TEST_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    fn count(idx: usize, ticks: u64, bytes: u64) {
        TLS.with(|t| {
            assert!(t.enter());
            assert!(!t.enter(), "a nested call is not counted");
            t.leave(idx, ticks, bytes);
        })
    }

    #[test]
    fn a_thread_counts_in_its_own_slab_and_the_next_thread_reuses_it() {
        let _lock = TEST_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = totals();
        std::thread::spawn(|| {
            count(0, 5, 7);
            count(0, 1, 0);
        })
        .join()
        .unwrap();
        let after = totals();
        assert_eq!(after[0].hits - before[0].hits, 2);
        assert_eq!(after[0].ticks - before[0].ticks, 6);
        assert_eq!(after[0].bytes - before[0].bytes, 7);
        let slabs = SLABS.iter().count();
        std::thread::spawn(|| count(1, 1, 1)).join().unwrap();
        assert_eq!(SLABS.iter().count(), slabs, "the exited thread's slab was reused");
        let after = totals();
        assert_eq!((after[0].hits - before[0].hits, after[1].hits - before[1].hits), (2, 1));

        // As in a forked child: only this thread keeps its slab, all counts restart.
        count(2, 1, 1);
        let mine = current_slab().unwrap();
        reset_in_child();
        assert!(totals().iter().all(|t| *t == Totals::default()));
        let owned: Vec<&Slab> = SLABS.iter().filter(|s| s.owned.load(Relaxed)).collect();
        assert_eq!(owned.len(), 1);
        assert!(std::ptr::eq(owned[0], mine));
    }
}
