//! The collectors a store knows: their slots and connection epochs, the
//! processes behind them, and what was counted of each of their series ids.

use std::collections::HashMap;

use protocol::Identity;

use super::series::SeriesId;
use crate::refusal::Refusal;

/// A connected collector, as handed to the connection that speaks for it.
/// The epoch changes whenever the same collector connects again, so a stale
/// connection can no longer change anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectorSlot {
    pub(super) index: u32,
    epoch: u32,
}

/// A process as the daemon sees it: pid in the daemon's namespace (from the
/// kernel's peer credentials) and start time, used to tell whether a
/// disconnected collector is gone for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRef {
    pub pid: u32,
    /// Clock ticks since boot, 0 when unknown.
    pub start_time: u64,
}

/// How much of one counter a collector's contributions amount to.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counted {
    pub(super) int: u64,
    pub(super) float: f64,
}

#[derive(Debug)]
pub(super) struct Collector {
    identity: Identity,
    /// The process behind it, vouched for by the kernel when known.
    pub(super) process: ProcessRef,
    /// The user of its connection (`SO_PEERCRED`), when known.
    pub(super) uid: Option<u32>,
    /// When its connection closed (for folding the longest-gone first).
    disconnected_at: f64,
    epoch: u32,
    connected: bool,
    /// The collector's ids, mapped to store series.
    pub(super) ids: Vec<Option<SeriesId>>,
    /// How much of each of its counters this store already counted.
    pub(super) counted: Vec<Counted>,
    /// Per id, the job's twin of its series, when it belongs to a job.
    pub(super) twins: Vec<Option<SeriesId>>,
    /// Its job and its member index there.
    pub(super) job: Option<(u32, u32)>,
    registered: usize,
    /// Restored after a crash and not resynced since (see
    /// [`crate::Store::start_recovery`]).
    pub(super) awaited: bool,
    /// The journal segment it was last announced in (0: none).
    pub(super) journaled: u64,
}

impl Collector {
    /// Checks that `id` may be bound under a per-collector `limit`, at most
    /// `max_gap` past the ids so far; returns whether it is a new id (not
    /// bound yet).
    pub(super) fn check_id(&self, id: u32, limit: usize, max_gap: usize) -> Result<bool, Refusal> {
        if id as usize >= limit {
            return Err(Refusal::IdBeyondLimit { id, limit });
        }
        if id as usize > self.ids.len().saturating_add(max_gap) {
            return Err(Refusal::SparseId { id, max_gap });
        }
        let fresh = self.ids.get(id as usize).is_none_or(|s| s.is_none());
        if fresh && self.registered >= limit {
            return Err(Refusal::CollectorLimit { limit });
        }
        Ok(fresh)
    }

    /// Binds `id` to `sid` with nothing counted yet, unless it already is.
    /// Returns the series it was bound to before, if the binding changed.
    pub(super) fn bind(&mut self, id: u32, sid: SeriesId) -> Option<SeriesId> {
        let i = id as usize;
        self.grow(i);
        let previous = self.ids[i];
        if previous != Some(sid) {
            if previous.is_none() {
                self.registered += 1;
            }
            self.ids[i] = Some(sid);
            self.counted[i] = Counted::default();
        }
        previous.filter(|p| *p != sid)
    }

    /// Unbinds `id` (it names a gauge now, in the journal's replay);
    /// returns the series it was bound to.
    pub(super) fn unbind(&mut self, id: u32) -> Option<SeriesId> {
        let i = id as usize;
        let previous = self.ids.get_mut(i)?.take();
        if previous.is_some() {
            self.registered -= 1;
            self.counted[i] = Counted::default();
        }
        previous
    }

    /// The job's twin of the series of `id`.
    pub(super) fn twin(&self, id: u32) -> Option<SeriesId> {
        self.twins.get(id as usize).copied().flatten()
    }

    /// Sets the twin of the bound `id`.
    pub(super) fn set_twin(&mut self, id: u32, twin: Option<SeriesId>) {
        if let Some(t) = self.twins.get_mut(id as usize) {
            *t = twin;
        }
    }

    fn grow(&mut self, i: usize) {
        if self.ids.len() <= i {
            self.ids.resize(i + 1, None);
            self.counted.resize(i + 1, Counted::default());
            self.twins.resize(i + 1, None);
        }
    }

    /// Per id: its series and what was counted of it.
    pub(super) fn counted_ids(&self) -> impl Iterator<Item = (u32, SeriesId, u64, f64)> + '_ {
        self.ids
            .iter()
            .zip(&self.counted)
            .enumerate()
            .filter_map(|(id, (sid, k))| sid.map(|sid| (id as u32, sid, k.int, k.float)))
    }

    pub(super) fn identity(&self) -> &Identity {
        &self.identity
    }
}

type IdentityKey = (u32, u64, u64);

fn identity_key(i: &Identity) -> IdentityKey {
    (i.pid, i.start_time, i.nonce)
}

/// Every collector remembered, connected or waiting to reconnect, in
/// reusable slots.
#[derive(Debug, Default)]
pub(super) struct Collectors {
    slots: Vec<Option<Collector>>,
    free: Vec<u32>,
    by_identity: HashMap<IdentityKey, u32>,
    /// Collectors with a live connection.
    connected: usize,
    /// Collectors remembered without a connection.
    waiting: usize,
    /// Collectors restored after a crash that did not resync yet.
    awaited: usize,
}

impl Collectors {
    pub(super) fn connected(&self) -> usize {
        self.connected
    }

    pub(super) fn known(&self) -> usize {
        self.by_identity.len()
    }

    /// Collectors remembered without a connection.
    pub(super) fn waiting(&self) -> usize {
        self.waiting
    }

    pub(super) fn contains(&self, identity: &Identity) -> bool {
        self.by_identity.contains_key(&identity_key(identity))
    }

    /// The slot of a remembered identity.
    pub(super) fn find(&self, identity: &Identity) -> Option<u32> {
        self.by_identity.get(&identity_key(identity)).copied()
    }

    /// Slots in use or free, for tests of their reuse.
    #[cfg(test)]
    pub(super) fn slots(&self) -> usize {
        self.slots.len()
    }

    /// A collector says hello: see [`crate::Store::hello`].
    pub(super) fn hello(&mut self, identity: Identity) -> (CollectorSlot, bool) {
        if let Some(&index) = self.by_identity.get(&identity_key(&identity)) {
            let c = self.slots[index as usize].as_mut().expect("indexed collector exists");
            c.epoch = c.epoch.wrapping_add(1);
            // Announced again in the journal, with what this connection says.
            c.journaled = 0;
            if !c.connected {
                c.connected = true;
                self.connected += 1;
                self.waiting -= 1;
            }
            return (CollectorSlot { index, epoch: c.epoch }, true);
        }
        let key = identity_key(&identity);
        let process = ProcessRef { pid: identity.pid, start_time: identity.start_time };
        let c = Collector {
            identity,
            process,
            uid: None,
            disconnected_at: 0.0,
            epoch: 0,
            connected: true,
            ids: Vec::new(),
            counted: Vec::new(),
            twins: Vec::new(),
            job: None,
            registered: 0,
            awaited: false,
            journaled: 0,
        };
        self.connected += 1;
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(c);
                i
            }
            None => {
                self.slots.push(Some(c));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_identity.insert(key, index);
        (CollectorSlot { index, epoch: 0 }, false)
    }

    /// Whether `slot` is still the collector's current connection.
    pub(super) fn is_current(&self, slot: CollectorSlot) -> bool {
        matches!(self.slots.get(slot.index as usize), Some(Some(c)) if c.epoch == slot.epoch && c.connected)
    }

    /// The collector of `slot`, if that is still its current connection.
    pub(super) fn current_mut(&mut self, slot: CollectorSlot) -> Result<&mut Collector, Refusal> {
        match self.slots.get_mut(slot.index as usize) {
            Some(Some(c)) if c.epoch == slot.epoch && c.connected => Ok(c),
            _ => Err(Refusal::Superseded),
        }
    }

    pub(super) fn get(&self, index: u32) -> Option<&Collector> {
        self.slots.get(index as usize).and_then(Option::as_ref)
    }

    pub(super) fn get_mut(&mut self, index: u32) -> Option<&mut Collector> {
        self.slots.get_mut(index as usize).and_then(Option::as_mut)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Collector> {
        self.slots.iter().flatten()
    }

    /// Marks the connection of `slot` closed; false if it was not current.
    pub(super) fn disconnect(&mut self, slot: CollectorSlot, now: f64) -> bool {
        let Ok(c) = self.current_mut(slot) else {
            return false;
        };
        c.connected = false;
        c.disconnected_at = now;
        self.connected -= 1;
        self.waiting += 1;
        true
    }

    /// The disconnected collectors to fold: those whose process `alive`
    /// says is gone, and only those. A collector whose process still runs
    /// is never folded, whatever their number: it would be counted twice
    /// when it comes back (the store refuses new collectors instead).
    pub(super) fn departed(&self, mut alive: impl FnMut(ProcessRef) -> bool) -> Vec<u32> {
        let mut gone: Vec<u32> = Vec::new();
        for (i, c) in self.slots.iter().enumerate() {
            let Some(c) = c.as_ref().filter(|c| !c.connected) else { continue };
            if !alive(c.process) {
                gone.push(i as u32);
            }
        }
        gone
    }

    /// Up to `max_scan` slots from `from` on: the disconnected collectors
    /// among them with their processes, and where to go on (`None` at the
    /// end). Bounded, so that a caller holding the store's lock holds it
    /// for a bounded time, and judges the processes without it.
    pub(super) fn disconnected_batch(
        &self,
        from: usize,
        max_scan: usize,
    ) -> (Vec<(CollectorSlot, ProcessRef)>, Option<usize>) {
        let end = from.saturating_add(max_scan).min(self.slots.len());
        let found = (from.min(end)..end)
            .filter_map(|i| {
                let c = self.slots[i].as_ref().filter(|c| !c.connected)?;
                Some((CollectorSlot { index: i as u32, epoch: c.epoch }, c.process))
            })
            .collect();
        (found, (end < self.slots.len()).then_some(end))
    }

    /// Whether `slot` names a remembered collector still disconnected since
    /// it was listed (it did not come back meanwhile).
    pub(super) fn still_disconnected(&self, slot: CollectorSlot) -> bool {
        matches!(self.slots.get(slot.index as usize), Some(Some(c)) if c.epoch == slot.epoch && !c.connected)
    }

    /// Marks every remembered collector awaited; returns how many.
    pub(super) fn await_all(&mut self) -> usize {
        self.awaited = self.slots.iter_mut().flatten().map(|c| c.awaited = true).count();
        self.awaited
    }

    /// Collectors still awaited.
    pub(super) fn awaited(&self) -> usize {
        self.awaited
    }

    /// The collector of slot `index` sent its totals: no longer awaited.
    pub(super) fn resynced(&mut self, index: u32) {
        if let Some(Some(c)) = self.slots.get_mut(index as usize) {
            if std::mem::take(&mut c.awaited) {
                self.awaited -= 1;
            }
        }
    }

    /// Drops the collector of slot `index` and frees the slot.
    pub(super) fn remove(&mut self, index: u32) {
        if let Some(c) = self.slots[index as usize].take() {
            if c.awaited {
                self.awaited -= 1;
            }
            if c.connected {
                self.connected -= 1;
            } else {
                self.waiting -= 1;
            }
            self.by_identity.remove(&identity_key(&c.identity));
            self.free.push(index);
        }
    }

    /// Re-creates a disconnected collector of an identity not known yet,
    /// whose process the kernel named `process`, with what was counted of
    /// each id (ids already checked against the per-collector limit).
    /// Returns its slot.
    pub(super) fn restore(
        &mut self,
        identity: Identity,
        process: ProcessRef,
        counted: Vec<(u32, SeriesId, u64, f64)>,
    ) -> u32 {
        let (slot, _) = self.hello(identity);
        let c = self.slots[slot.index as usize].as_mut().expect("collector just created");
        c.process = process;
        for (id, sid, int, float) in counted {
            let i = id as usize;
            c.grow(i);
            if c.ids[i].is_none() {
                c.registered += 1;
            }
            c.ids[i] = Some(sid);
            c.counted[i] = Counted { int, float };
        }
        c.connected = false;
        self.connected -= 1;
        self.waiting += 1;
        slot.index
    }
}
