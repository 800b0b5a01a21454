//! Per-thread counter slabs: the hot path's only memory.
//!
//! Each thread that makes MPI calls owns one slab (hits, cycles and bytes
//! per wrapped function). Only the owner writes it, with relaxed
//! load + store (no locked instruction); the push thread reads every slab
//! with relaxed loads and sums them. A slab freed by an exiting thread is
//! reused by the next new thread, so its totals simply keep growing.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering::*};

use crate::ffi::{self, NFUNCS};

pub(crate) struct Slot {
    hits: AtomicU64,
    ticks: AtomicU64,
    bytes: AtomicU64,
}

pub(crate) struct Slab {
    owned: AtomicBool,
    pub(crate) next: AtomicPtr<Slab>,
    slots: [Slot; NFUNCS],
}

/// Single-writer increment: a plain load and store, no `lock` prefix.
#[inline(always)]
fn bump(a: &AtomicU64, d: u64) {
    a.store(a.load(Relaxed).wrapping_add(d), Relaxed);
}

impl Slab {
    fn new() -> Box<Slab> {
        Box::new(Slab {
            owned: AtomicBool::new(true),
            next: AtomicPtr::new(std::ptr::null_mut()),
            slots: [const { Slot { hits: AtomicU64::new(0), ticks: AtomicU64::new(0), bytes: AtomicU64::new(0) } };
                NFUNCS],
        })
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

    pub(crate) fn release(&self) {
        self.owned.store(false, Release);
    }
}

/// A free slab for the calling thread (allocated when none is free).
pub(crate) fn claim() -> &'static Slab {
    crate::clock::start();
    for s in ffi::slabs() {
        if s.owned.compare_exchange(false, true, Acquire, Relaxed).is_ok() {
            return s;
        }
    }
    let s: &'static Slab = Box::leak(Slab::new());
    ffi::publish(s);
    s
}

/// Cumulative totals of one function over all threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) hits: u64,
    pub(crate) ticks: u64,
    pub(crate) bytes: u64,
}

pub(crate) fn totals() -> Vec<Totals> {
    let mut out = vec![Totals::default(); NFUNCS];
    for s in ffi::slabs() {
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
    let mine = ffi::current_slab().map(|s| s as *const Slab);
    for s in ffi::slabs() {
        for slot in &s.slots {
            slot.hits.store(0, Relaxed);
            slot.ticks.store(0, Relaxed);
            slot.bytes.store(0, Relaxed);
        }
        s.owned.store(Some(s as *const Slab) == mine, Release);
    }
}
