//! The node's series, the collectors feeding them, and the queries on them.
//!
//! This module holds [`Store`] and what changes it; its submodules hold the
//! parts that know nothing of the store: `series` (a series' value and its
//! family), `collectors` (who feeds the store and what was counted of them),
//! `change_log` (what changed in which generation) and `order` (the
//! exposition order). `query` answers query clients on top of the store.
//! Imports point one way: `query` → this module → the others → `series`.

mod change_log;
mod collectors;
mod jobs;
mod journal;
mod keys;
mod order;
mod owners;
pub(crate) mod query;
mod recovery;
mod series;
#[cfg(test)]
mod tests;
mod tracking;

use std::collections::{BTreeMap, HashMap};

use protocol::{Desc, Identity, JobTag, Kind, Sample, Value};

use crate::refusal::{IngestError, Refusal, RefusalCounts, RefusalKind};
use crate::validate::{series_key, validate_desc};
use change_log::ChangeLog;
use collectors::Collectors;
pub use collectors::{CollectorSlot, ProcessRef};
use jobs::Jobs;
pub(crate) use jobs::KeptJob;
use keys::Keys;
pub(crate) use keys::KeysView;
pub(crate) use order::{Layout, RenderOrder};
pub use protocol::{job_family_name, JOB_LABEL};
pub use recovery::{RECOVERING, RECOVERY_MAX, RECOVERY_MIN};
pub use series::SeriesId;
pub(crate) use series::{om_family_name, Family, Owner, Series, Val};

/// Family names that start with this are the daemon's (see
/// [`Store::declare_shared`] for the one its launcher pushes).
pub const RESERVED_PREFIX: &str = "tau_metric_proxy_";

/// The per-job families, the daemon's too (see [`protocol::job_family_name`]).
pub const JOB_PREFIX: &str = protocol::JOB_PREFIX;

/// Upper bounds that keep one misbehaving collector from exhausting memory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Series on the whole node.
    pub max_series: usize,
    /// Series ids one collector may register.
    pub max_series_per_collector: usize,
    /// Disconnected collectors remembered (waiting to reconnect). One whose
    /// process still runs is never folded: beyond it, new collectors are
    /// refused.
    pub max_remembered: usize,
    /// Labels one series may carry.
    pub max_labels: usize,
    /// Bytes of one label value.
    pub max_label_value_length: usize,
    /// How far past its registered ids a collector may choose a new id:
    /// ids are meant to be dense (0, 1, 2, ...), and the per-collector
    /// tables are sized by the largest id.
    pub max_id_gap: usize,
    /// Seconds a finished job's series stay after its last collector left.
    pub job_retention: f64,
    /// Jobs kept, running or finished; beyond it the one that finished
    /// first goes, and a collector of a new job is kept out of jobs while
    /// every kept job runs.
    pub max_jobs: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_series: 1_000_000,
            max_series_per_collector: 100_000,
            max_remembered: 100_000,
            max_labels: 16,
            max_label_value_length: 1024,
            max_id_gap: 1024,
            job_retention: 300.0,
            max_jobs: 1000,
        }
    }
}

/// A remembered collector as a state file keeps it (see
/// [`Store::collectors`]).
pub(crate) struct KeptCollector<'a> {
    pub(crate) identity: &'a Identity,
    pub(crate) process: ProcessRef,
    /// Per id: its series and what was counted of it.
    pub(crate) counted: Vec<(u32, SeriesId, u64, f64)>,
    /// Its job's index and its member index there.
    pub(crate) job: Option<(u32, u32)>,
    /// Per id, the job's twin series.
    pub(crate) twins: Vec<(u32, SeriesId)>,
}

/// What [`Store::restore_collector`] gives a collector back.
pub(crate) struct RestoredCollector {
    pub(crate) counted: Vec<(u32, SeriesId, u64, f64)>,
    pub(crate) job: Option<(u32, u32)>,
    pub(crate) twins: Vec<(u32, SeriesId)>,
}

/// Who registers a series: the daemon (self metrics, state file) or a
/// collector of a known or unknown user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Registrant {
    Daemon,
    Peer(Option<u32>),
}

/// All series of a node, and the collectors feeding them.
#[derive(Debug, Default)]
pub struct Store {
    pub(crate) series: Vec<Series>,
    /// Every series' key, stored once, and the index by key.
    keys: Keys,
    pub(crate) families: Vec<Family>,
    /// Family indexes by name, for deterministic rendering.
    pub(crate) family_order: BTreeMap<String, u32>,
    /// OpenMetrics family names (counters lose `_total`), to refuse two
    /// families that would render under one name.
    om_names: HashMap<String, Kind>,
    collectors: Collectors,
    generation: u64,
    limits: Limits,
    /// Refusals of collector requests, by kind.
    refusals: RefusalCounts,
    pub(crate) order: RenderOrder,
    change_log: ChangeLog,
    /// Series ids retired, to reuse.
    free_series: Vec<SeriesId>,
    jobs: Jobs,
    /// Records of the jobs that finished, until taken.
    finished: Vec<crate::JobRecord>,
    /// Finished jobs dropped before their retention ended, at `max_jobs`.
    job_evictions: u64,
    /// Collectors of a job kept out of jobs, at `max_jobs`.
    untracked_collectors: u64,
    /// Bumped whenever a collector disconnects, says goodbye or is folded:
    /// what it counted is then only in the store.
    departures: u64,
    /// Since when the store waits for collectors restored after a crash.
    recovery: Option<f64>,
    /// What it records for the journal, when it keeps one.
    journal: Option<Box<journal::Recording>>,
}

impl Store {
    pub fn new(limits: Limits) -> Store {
        Store { limits, ..Store::default() }
    }

    /// Bumped by every change; value queries return it so that a client can
    /// ask for what changed after it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Series on the page (retired ones are not).
    pub fn series_count(&self) -> usize {
        self.keys.live()
    }

    /// Collectors with a live connection.
    pub fn connected_collectors(&self) -> usize {
        self.collectors.connected()
    }

    /// Collectors remembered, connected or waiting to reconnect.
    pub fn known_collectors(&self) -> usize {
        self.collectors.known()
    }

    /// Counts `n` refusals of `kind` made outside the store (a connection
    /// refused, a frame too long, replies dropped), so that every refusal
    /// shows in one place.
    pub fn count_refusals(&mut self, kind: RefusalKind, n: u64) {
        self.refusals.add_many(kind, n);
    }

    /// Refusals of `kind` returned to collectors by [`Store::register`],
    /// [`Store::update`] and [`Store::resync`] (one per refused sample).
    pub fn refusals(&self, kind: RefusalKind) -> u64 {
        self.refusals.get(kind)
    }

    /// Counts `refusal` and ties it to the collector's series `id`.
    fn refuse(&mut self, id: Option<u32>, refusal: Refusal) -> IngestError {
        self.refusals.add(refusal.kind());
        IngestError { id, refusal }
    }

    /// A collector says hello. Returns its slot and whether it was known
    /// (a reconnection, whose `Resync` adds only what was not yet counted).
    pub fn hello(&mut self, identity: Identity) -> (CollectorSlot, bool) {
        self.collectors.hello(identity)
    }

    /// A collector says hello on a connection whose peer the kernel named:
    /// its process (judged alive by it, not by the identity's claims) and
    /// its user, and of which job it is (a new collector joins it; one
    /// that reconnects is already a member). A new identity is refused
    /// while [`Limits::max_remembered`] collectors wait disconnected with
    /// their processes running: none of them may be forgotten.
    pub fn hello_from(
        &mut self,
        identity: Identity,
        job: Option<JobTag>,
        process: Option<ProcessRef>,
        uid: Option<u32>,
        now: f64,
    ) -> Result<(CollectorSlot, bool), IngestError> {
        let limit = self.limits.max_remembered;
        if !self.collectors.contains(&identity) && self.collectors.waiting() >= limit {
            return Err(self.refuse(None, Refusal::RememberedLimit { limit }));
        }
        let (slot, resumed) = self.collectors.hello(identity);
        if let Some(process) = process {
            self.set_process(slot, process);
        }
        if let Some(uid) = uid {
            self.set_uid(slot, uid);
        }
        // A collector restored from a state file knows no job yet.
        let member = self.collectors.get(slot.index).is_some_and(|c| c.job.is_some());
        match job {
            _ if member => self.member_connected(slot.index, true, now),
            Some(job) => self.join_job(slot.index, &job, now),
            None => {}
        }
        Ok((slot, resumed))
    }

    /// Whether `slot` is still the collector's current connection.
    pub fn is_current(&self, slot: CollectorSlot) -> bool {
        self.collectors.is_current(slot)
    }

    /// Binds the collector's `id` to the series `desc` names, creating it.
    pub fn register(&mut self, slot: CollectorSlot, id: u32, desc: &Desc) -> Result<SeriesId, IngestError> {
        let (limit, gap) = (self.limits.max_series_per_collector, self.limits.max_id_gap);
        let checked = self.collectors.current_mut(slot).map(|c| (c.check_id(id, limit, gap), c.uid));
        let uid = checked.as_ref().ok().and_then(|(_, uid)| *uid);
        let sid = match checked {
            Err(r) => Err((None, r)),
            Ok((Err(r), _)) => Err((Some(id), r)),
            Ok((Ok(_), uid)) => self.series_for(desc, Registrant::Peer(uid)).map_err(|r| (Some(id), r)),
        };
        let sid = sid.map_err(|(id, r)| self.refuse(id, r))?;
        if let Some(uid) = uid {
            self.claim(sid, uid);
        }
        let c = match self.collectors.current_mut(slot) {
            Ok(c) => c,
            Err(r) => return Err(self.refuse(None, r)),
        };
        // A gauge value given under the old binding leaves with it.
        if let Some(old) = c.bind(id, sid) {
            self.series[old as usize].drop_gauge(slot.index);
            if let Some(twin) = c.twin(id) {
                self.series[twin as usize].drop_gauge(slot.index);
            }
        }
        self.bind_twin(slot.index, id, sid);
        self.journal_bind(slot.index, id, desc);
        Ok(sid)
    }

    /// Finds or creates the series of `desc`, checking names, types, the
    /// label limits and who may register in its family. The node's series
    /// limit and the label limits do not apply to the daemon.
    fn series_for(&mut self, desc: &Desc, who: Registrant) -> Result<SeriesId, Refusal> {
        let limited = who != Registrant::Daemon;
        if limited {
            self.check_labels(desc)?;
        }
        validate_desc(desc)?;
        if let Registrant::Peer(uid) = who {
            self.check_owner(&desc.name, uid)?;
        }
        let key = series_key(desc);
        if let Some(sid) = self.keys.find(&key) {
            let s = &self.series[sid as usize];
            if s.kind != desc.kind {
                return Err(Refusal::TypeConflict { name: desc.name.clone(), was: s.kind, now: desc.kind });
            }
            if s.scale != desc.scale {
                return Err(Refusal::UnitConflict { key });
            }
            return Ok(sid);
        }
        if limited && self.keys.live() >= self.limits.max_series {
            return Err(Refusal::NodeLimit { limit: self.limits.max_series });
        }
        let fam = match self.family_order.get(&desc.name) {
            Some(&f) => {
                let fam = &self.families[f as usize];
                if fam.kind != desc.kind {
                    return Err(Refusal::TypeConflict { name: desc.name.clone(), was: fam.kind, now: desc.kind });
                }
                if fam.scale.is_some_and(|s| s != desc.scale) {
                    return Err(Refusal::UnitConflict { key });
                }
                f
            }
            None => {
                let om = om_family_name(&desc.name, desc.kind).to_owned();
                if self.om_names.contains_key(&om) {
                    return Err(Refusal::NameConflict { name: desc.name.clone(), family: om });
                }
                self.om_names.insert(om, desc.kind);
                let help = if desc.help.is_empty() {
                    format!("{} (no documentation given)", desc.name)
                } else {
                    desc.help.clone()
                };
                let owner = match who {
                    Registrant::Daemon => Owner::Daemon,
                    Registrant::Peer(Some(uid)) => Owner::Uid(uid),
                    Registrant::Peer(None) => Owner::Unclaimed,
                };
                self.families.push(Family {
                    name: desc.name.clone(),
                    help,
                    kind: desc.kind,
                    owner,
                    scale: None,
                    series: Vec::new(),
                    twin: None,
                });
                let f = (self.families.len() - 1) as u32;
                self.family_order.insert(desc.name.clone(), f);
                f
            }
        };
        let sid = match self.free_series.pop() {
            Some(sid) => {
                self.keys.reuse(sid, &key);
                self.series[sid as usize] = Series::new(fam, desc.kind, desc.scale);
                sid
            }
            None => {
                let sid = self.keys.push(&key);
                debug_assert_eq!(sid as usize, self.series.len());
                self.series.push(Series::new(fam, desc.kind, desc.scale));
                sid
            }
        };
        self.families[fam as usize].series.push(sid);
        self.order.valid = false;
        Ok(sid)
    }

    /// Applies counter deltas and gauge values; `now` is the Unix time in
    /// seconds. Bad samples are reported and skipped, the rest applied.
    pub fn update(&mut self, slot: CollectorSlot, samples: &[Sample], now: f64) -> Vec<IngestError> {
        self.apply(slot, samples, now, false)
    }

    /// Applies a collector's cumulative totals: only the part of each
    /// counter that this store has not counted yet is added.
    pub fn resync(&mut self, slot: CollectorSlot, samples: &[Sample], now: f64) -> Vec<IngestError> {
        self.apply(slot, samples, now, true)
    }

    fn apply(&mut self, slot: CollectorSlot, samples: &[Sample], now: f64, totals: bool) -> Vec<IngestError> {
        let mut errors = Vec::new();
        let generation = self.generation + 1;
        // What the collector counted in all of each counter, for the journal.
        let mut journal = self.journal_lists();
        let c = match self.collectors.current_mut(slot) {
            Ok(c) => c,
            Err(r) => return vec![self.refuse(None, r)],
        };
        let mut changed = false;
        for s in samples {
            let idx = s.id as usize;
            let Some(Some(sid)) = c.ids.get(idx) else {
                errors.push(IngestError { id: Some(s.id), refusal: Refusal::Unregistered });
                continue;
            };
            let twin = c.twin(s.id);
            let series = &mut self.series[*sid as usize];
            let shared = self.families[series.family as usize].owner == Owner::Shared;
            let keys = &self.keys;
            let counted = &mut c.counted[idx];
            let overflow = || {
                let value = match s.value {
                    Value::Int(v) => v.to_string(),
                    Value::Float(v) => format!("{v:?}"),
                };
                let key = keys.get(*sid).to_owned();
                IngestError { id: Some(s.id), refusal: Refusal::Overflow { key, value, total: totals } }
            };
            // What the job's twin gets of the sample: the same delta, or
            // the same gauge value.
            let delta_applied;
            let to_twin = match (series.kind, s.value) {
                (Kind::Counter, Value::Int(v)) => {
                    let d = if totals { v.saturating_sub(counted.int) } else { v };
                    let Some(mine) = counted.int.checked_add(d) else {
                        errors.push(overflow());
                        continue;
                    };
                    if !series.add_int(d, shared) {
                        errors.push(overflow());
                        continue;
                    }
                    counted.int = mine;
                    delta_applied = d != 0;
                    if let Some((ints, _)) = journal.as_mut().filter(|_| delta_applied) {
                        ints.push((s.id, mine));
                    }
                    Value::Int(d)
                }
                (Kind::Counter, Value::Float(v)) => {
                    if !v.is_finite() || v < 0.0 {
                        let refusal = Refusal::BadValue { key: keys.get(*sid).to_owned(), value: v, total: totals };
                        errors.push(IngestError { id: Some(s.id), refusal });
                        continue;
                    }
                    let d = if totals { (v - counted.float).max(0.0) } else { v };
                    let (mine, sum) = (counted.float + d, series.float + d);
                    if !mine.is_finite() || !sum.is_finite() {
                        errors.push(overflow());
                        continue;
                    }
                    counted.float = mine;
                    series.float = sum;
                    delta_applied = d != 0.0;
                    if let Some((_, floats)) = journal.as_mut().filter(|_| delta_applied) {
                        floats.push((s.id, mine));
                    }
                    Value::Float(d)
                }
                (Kind::Gauge, v) => {
                    let v = match v {
                        Value::Int(i) => i as f64,
                        Value::Float(f) => f,
                    };
                    series.set_gauge(slot.index, v);
                    delta_applied = true;
                    Value::Float(v)
                }
            };
            if delta_applied {
                series.ts = now;
                self.change_log.note(series, *sid, generation);
                changed = true;
                if let Some(t) = twin {
                    let twin = &mut self.series[t as usize];
                    match (twin.kind, to_twin) {
                        // A twin counts what its node series counted; past
                        // u64 it carries on in floating point.
                        (Kind::Counter, Value::Int(d)) => {
                            twin.add_int(d, true);
                        }
                        (Kind::Counter, Value::Float(d)) => twin.float += d,
                        (Kind::Gauge, Value::Float(v)) => twin.set_gauge(slot.index, v),
                        (Kind::Gauge, Value::Int(_)) => {}
                    }
                    twin.ts = now;
                    self.change_log.note(twin, t, generation);
                }
            }
        }
        if changed {
            self.generation = generation;
            self.change_log.compact(&self.series);
        }
        if totals {
            self.collectors.resynced(slot.index);
        }
        if let Some(lists) = journal {
            self.journal_counted(slot.index, lists);
        }
        for e in &errors {
            self.refusals.add(e.refusal.kind());
        }
        errors
    }

    /// Marks `sid` changed in the current generation (already bumped).
    fn mark_changed(&mut self, sid: SeriesId, now: f64) {
        let s = &mut self.series[sid as usize];
        s.ts = now;
        if s.changed != self.generation {
            self.change_log.note(s, sid, self.generation);
            self.change_log.compact(&self.series);
        }
    }

    /// The connection of `slot` closed without a goodbye. Its gauges leave;
    /// its counted totals are kept in case it reconnects.
    pub fn disconnect(&mut self, slot: CollectorSlot, now: f64) {
        if self.collectors.disconnect(slot, now) {
            self.departures += 1;
            self.drop_gauges(slot.index, now);
            self.member_connected(slot.index, false, now);
        }
    }

    /// The collector is gone for good: fold it into the node totals (its
    /// counter contributions stay, its bookkeeping goes).
    pub fn goodbye(&mut self, slot: CollectorSlot, now: f64) {
        if self.collectors.is_current(slot) {
            self.forget(slot.index, now);
        }
    }

    /// Records the process behind a connection, as the kernel reports it.
    pub fn set_process(&mut self, slot: CollectorSlot, process: ProcessRef) {
        if let Ok(c) = self.collectors.current_mut(slot) {
            c.process = process;
        }
    }

    /// Folds every disconnected collector for which `alive` says its process
    /// is gone, and no other. Returns how many were folded.
    pub fn fold_departed(&mut self, alive: impl FnMut(ProcessRef) -> bool, now: f64) -> usize {
        let gone = self.collectors.departed(alive);
        for &i in &gone {
            self.forget(i, now);
        }
        gone.len()
    }

    fn forget(&mut self, index: u32, now: f64) {
        self.leave_job(index, now);
        self.departures += 1;
        self.drop_gauges(index, now);
        self.collectors.remove(index);
    }

    fn drop_gauges(&mut self, index: u32, now: f64) {
        let Some(c) = self.collectors.get(index) else {
            return;
        };
        let dropped: Vec<SeriesId> = c
            .ids
            .iter()
            .chain(&c.twins)
            .flatten()
            .copied()
            .filter(|sid| {
                let s = &mut self.series[*sid as usize];
                s.kind == Kind::Gauge && s.drop_gauge(index)
            })
            .collect();
        if dropped.is_empty() {
            return;
        }
        self.generation += 1;
        for sid in dropped {
            self.mark_changed(sid, now);
        }
    }

    /// Registers a series owned by the daemon itself (self metrics).
    /// The node's series limit does not apply to these, and their refusals
    /// are not counted.
    pub fn internal(&mut self, desc: &Desc) -> Result<SeriesId, Refusal> {
        self.series_for(desc, Registrant::Daemon)
    }

    /// Adds to a daemon-owned counter.
    pub fn internal_add(&mut self, sid: SeriesId, delta: u64, now: f64) {
        if delta == 0 {
            return;
        }
        self.generation += 1;
        let s = &mut self.series[sid as usize];
        s.int = s.int.saturating_add(delta);
        self.mark_changed(sid, now);
    }

    /// Sets a daemon-owned gauge.
    pub fn internal_set(&mut self, sid: SeriesId, v: f64, now: f64) {
        let s = &mut self.series[sid as usize];
        if s.float == v && s.has_gauges() {
            return;
        }
        s.set_gauge(u32::MAX, v);
        self.generation += 1;
        self.mark_changed(sid, now);
    }

    /// Every remembered collector with, per id, its series and what was
    /// counted of it, and its job: the job's index and its member index
    /// there, and per id the job's twin series.
    pub(crate) fn collectors(&self) -> impl Iterator<Item = KeptCollector<'_>> {
        self.collectors.iter().map(|c| KeptCollector {
            identity: c.identity(),
            process: c.process,
            counted: c.counted_ids().collect(),
            job: c.job,
            twins: c.twins.iter().enumerate().filter_map(|(id, t)| t.map(|t| (id as u32, t))).collect(),
        })
    }

    /// Every key, readable without the store.
    pub(crate) fn keys_view(&self) -> KeysView {
        self.keys.view()
    }

    /// Whether a collector of this identity is remembered.
    pub(crate) fn knows(&self, identity: &Identity) -> bool {
        self.collectors.contains(identity)
    }

    /// Sets a restored counter's totals.
    pub(crate) fn restore_counter(&mut self, sid: SeriesId, int: u64, float: f64, ts: f64) {
        let s = &mut self.series[sid as usize];
        s.int = int;
        s.float = float;
        self.generation += 1;
        self.mark_changed(sid, ts);
    }

    /// Re-creates a disconnected collector with what was counted of it
    /// and its job's twins; the caller checked that it is not known yet,
    /// that its ids are within the per-collector limit and that its job
    /// (index and member) is kept.
    pub(crate) fn restore_collector(&mut self, identity: Identity, process: ProcessRef, kept: RestoredCollector) {
        let index = self.collectors.restore(identity, process, kept.counted);
        if let Some(c) = self.collectors.get_mut(index) {
            c.job = kept.job;
            for (id, twin) in kept.twins {
                c.set_twin(id, Some(twin));
            }
        }
    }

    /// Brings [`Store::order`] up to date.
    pub(crate) fn prepare_render(&mut self) {
        if !self.order.valid {
            self.order = RenderOrder::build(&self.family_order, &mut self.families, &mut self.keys);
        }
    }
}
