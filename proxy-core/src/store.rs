//! The node's series, the collectors feeding them, and the queries on them.

use std::collections::{BTreeMap, HashMap};

use protocol::{Desc, DescInfo, Identity, Kind, Sample, Scale, Value, ValueInfo};

use crate::validate::{series_key, validate_desc};

/// How far past its registered ids a collector may choose a new id: ids
/// are meant to be dense (0, 1, 2, ...), and the per-collector tables are
/// sized by the largest id.
pub(crate) const MAX_ID_GAP: usize = 1024;

/// Index of a series in the store.
pub type SeriesId = u32;

/// A connected collector, as handed to the connection that speaks for it.
/// The epoch changes whenever the same collector connects again, so a stale
/// connection can no longer change anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectorSlot {
    index: u32,
    epoch: u32,
}

/// Upper bounds that keep one misbehaving collector from exhausting memory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Series on the whole node.
    pub max_series: usize,
    /// Series ids one collector may register.
    pub max_series_per_collector: usize,
    /// Disconnected collectors remembered (waiting to reconnect); beyond
    /// it the longest-gone are folded.
    pub max_remembered: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_series: 1_000_000, max_series_per_collector: 100_000, max_remembered: 100_000 }
    }
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

/// A request that could not be applied. The connection may carry on.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestError {
    /// The collector's series id concerned, if any.
    pub id: Option<u32>,
    pub message: String,
}

impl IngestError {
    fn new(id: Option<u32>, message: String) -> IngestError {
        IngestError { id, message }
    }
}

impl std::fmt::Display for IngestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.id {
            Some(id) => write!(f, "series id {id}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Series {
    pub(crate) key: String,
    /// Index of the family in [`Store::families`].
    family: u32,
    /// Label pairs, sorted by name (unescaped).
    labels: Vec<(String, String)>,
    pub(crate) kind: Kind,
    scale: Scale,
    /// Sum of integer counter deltas, in units of `scale`.
    int: u64,
    /// Sum of float counter deltas.
    float: f64,
    /// Gauge value of each contributing collector, by collector index.
    gauges: Vec<(u32, f64)>,
    gauge_sum: f64,
    ts: f64,
    changed: u64,
}

impl Series {
    /// Whether the value is an exact integer, printed without a fraction.
    pub(crate) fn is_integral(&self) -> bool {
        self.kind == Kind::Counter && self.scale == Scale::One && self.float == 0.0
    }

    pub(crate) fn int(&self) -> u64 {
        self.int
    }

    pub(crate) fn float(&self) -> f64 {
        self.float
    }

    pub(crate) fn ts(&self) -> f64 {
        self.ts
    }

    pub(crate) fn value(&self) -> f64 {
        match (self.kind, self.scale) {
            (Kind::Gauge, _) => self.gauge_sum,
            (Kind::Counter, Scale::One) => self.int as f64 + self.float,
            // Dividing an exact integer by 1e9 rounds once, where summing
            // many scaled deltas would round at each step.
            (Kind::Counter, Scale::Nano) => self.int as f64 / 1e9 + self.float,
        }
    }

    fn set_gauge(&mut self, collector: u32, v: f64) {
        match self.gauges.iter_mut().find(|(c, _)| *c == collector) {
            Some((_, old)) => *old = v,
            None => self.gauges.push((collector, v)),
        }
        self.gauge_sum = self.gauges.iter().map(|(_, v)| v).sum();
    }

    fn drop_gauge(&mut self, collector: u32) -> bool {
        let before = self.gauges.len();
        self.gauges.retain(|(c, _)| *c != collector);
        if self.gauges.len() == before {
            return false;
        }
        self.gauge_sum = self.gauges.iter().map(|(_, v)| v).sum();
        true
    }
}

#[derive(Debug)]
pub(crate) struct Family {
    pub(crate) name: String,
    pub(crate) help: String,
    pub(crate) kind: Kind,
    /// Series of the family, ordered by key.
    pub(crate) series: BTreeMap<String, SeriesId>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counted {
    int: u64,
    float: f64,
}

#[derive(Debug)]
struct Collector {
    identity: Identity,
    /// The process behind it, vouched for by the kernel when known.
    process: ProcessRef,
    /// When its connection closed (for folding the longest-gone first).
    disconnected_at: f64,
    epoch: u32,
    connected: bool,
    /// The collector's ids, mapped to store series.
    ids: Vec<Option<SeriesId>>,
    /// How much of each of its counters this store already counted.
    counted: Vec<Counted>,
    registered: usize,
}

type IdentityKey = (u32, u64, u64);

fn identity_key(i: &Identity) -> IdentityKey {
    (i.pid, i.start_time, i.nonce)
}

/// The exposition order of every series with their `key ` text laid out
/// contiguously, rebuilt after series are added, so that a scrape reads
/// names sequentially instead of chasing one allocation per series.
#[derive(Debug, Default)]
pub(crate) struct RenderOrder {
    valid: bool,
    /// Families in name order, each with its range in `series`.
    pub(crate) families: Vec<(u32, std::ops::Range<usize>)>,
    /// Series in exposition order.
    pub(crate) series: Vec<SeriesId>,
    /// `key ` of every series in that order, concatenated.
    pub(crate) text: String,
    /// Where each series' text ends in `text`.
    pub(crate) ends: Vec<usize>,
}

/// All series of a node, and the collectors feeding them.
#[derive(Debug, Default)]
pub struct Store {
    pub(crate) series: Vec<Series>,
    by_key: HashMap<String, SeriesId>,
    pub(crate) families: Vec<Family>,
    /// Family indexes by name, for deterministic rendering.
    pub(crate) family_order: BTreeMap<String, u32>,
    /// OpenMetrics family names (counters lose `_total`), to refuse two
    /// families that would render under one name.
    om_names: HashMap<String, Kind>,
    collectors: Vec<Option<Collector>>,
    free_slots: Vec<u32>,
    by_identity: HashMap<IdentityKey, u32>,
    generation: u64,
    limits: Limits,
    refused_series: u64,
    /// Collectors with a live connection.
    connected: usize,
    pub(crate) order: RenderOrder,
    /// `(generation, series)` each time a series changed in a generation it
    /// had not changed in yet, in generation order: a client asking what
    /// changed costs what changed, not the size of the store.
    change_log: Vec<(u64, SeriesId)>,
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

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Collectors with a live connection.
    pub fn connected_collectors(&self) -> usize {
        self.connected
    }

    /// Collectors remembered, connected or waiting to reconnect.
    pub fn known_collectors(&self) -> usize {
        self.by_identity.len()
    }

    /// Registrations refused because a series limit was reached.
    pub fn refused_series(&self) -> u64 {
        self.refused_series
    }

    /// A collector says hello. Returns its slot and whether it was known
    /// (a reconnection, whose `Resync` adds only what was not yet counted).
    pub fn hello(&mut self, identity: Identity) -> (CollectorSlot, bool) {
        if let Some(&index) = self.by_identity.get(&identity_key(&identity)) {
            let c = self.collectors[index as usize].as_mut().expect("indexed collector exists");
            c.epoch = c.epoch.wrapping_add(1);
            if !c.connected {
                c.connected = true;
                self.connected += 1;
            }
            return (CollectorSlot { index, epoch: c.epoch }, true);
        }
        let key = identity_key(&identity);
        let process = ProcessRef { pid: identity.pid, start_time: identity.start_time };
        let c = Collector {
            identity,
            process,
            disconnected_at: 0.0,
            epoch: 0,
            connected: true,
            ids: Vec::new(),
            counted: Vec::new(),
            registered: 0,
        };
        self.connected += 1;
        let index = match self.free_slots.pop() {
            Some(i) => {
                self.collectors[i as usize] = Some(c);
                i
            }
            None => {
                self.collectors.push(Some(c));
                (self.collectors.len() - 1) as u32
            }
        };
        self.by_identity.insert(key, index);
        (CollectorSlot { index, epoch: 0 }, false)
    }

    /// Whether `slot` is still the collector's current connection.
    pub fn is_current(&self, slot: CollectorSlot) -> bool {
        matches!(self.collectors.get(slot.index as usize), Some(Some(c)) if c.epoch == slot.epoch && c.connected)
    }

    fn collector_mut(&mut self, slot: CollectorSlot) -> Result<&mut Collector, IngestError> {
        match self.collectors.get_mut(slot.index as usize) {
            Some(Some(c)) if c.epoch == slot.epoch && c.connected => Ok(c),
            _ => Err(IngestError::new(
                None,
                "this connection was superseded by a newer one of the same collector".into(),
            )),
        }
    }

    /// Binds the collector's `id` to the series `desc` names, creating it.
    pub fn register(&mut self, slot: CollectorSlot, id: u32, desc: &Desc) -> Result<SeriesId, IngestError> {
        let limit = self.limits.max_series_per_collector;
        let c = self.collector_mut(slot)?;
        if id as usize >= limit {
            self.refused_series += 1;
            return Err(IngestError::new(
                Some(id),
                format!("series id {id} is beyond the per-collector limit of {limit} series"),
            ));
        }
        if id as usize > c.ids.len() + MAX_ID_GAP {
            self.refused_series += 1;
            return Err(IngestError::new(
                Some(id),
                format!("series ids must be dense: id {id} is more than {MAX_ID_GAP} past the ids registered so far"),
            ));
        }
        let fresh = c.ids.get(id as usize).is_none_or(|s| s.is_none());
        if fresh && c.registered >= limit {
            self.refused_series += 1;
            return Err(IngestError::new(Some(id), format!("per-collector limit of {limit} series reached")));
        }
        let sid = self.series_for(desc, true).map_err(|m| IngestError::new(Some(id), m))?;
        let c = self.collector_mut(slot)?;
        if c.ids.len() <= id as usize {
            c.ids.resize(id as usize + 1, None);
            c.counted.resize(id as usize + 1, Counted::default());
        }
        let previous = c.ids[id as usize];
        if previous != Some(sid) {
            if fresh {
                c.registered += 1;
            }
            c.ids[id as usize] = Some(sid);
            c.counted[id as usize] = Counted::default();
            // A gauge value given under the old binding leaves with it.
            if let Some(old) = previous {
                self.series[old as usize].drop_gauge(slot.index);
            }
        }
        Ok(sid)
    }

    /// Finds or creates the series of `desc`, checking names and types.
    /// `limited`: whether the node's series limit applies (not to the
    /// daemon's own series).
    fn series_for(&mut self, desc: &Desc, limited: bool) -> Result<SeriesId, String> {
        validate_desc(desc).map_err(|e| e.0)?;
        let key = series_key(desc);
        if let Some(&sid) = self.by_key.get(&key) {
            let s = &self.series[sid as usize];
            if s.kind != desc.kind {
                return Err(type_conflict(&desc.name, s.kind, desc.kind));
            }
            if s.scale != desc.scale {
                return Err(format!("unit conflict: {key} was registered with another scale"));
            }
            return Ok(sid);
        }
        if limited && self.series.len() >= self.limits.max_series {
            self.refused_series += 1;
            return Err(format!("node limit of {} series reached", self.limits.max_series));
        }
        let fam = match self.family_order.get(&desc.name) {
            Some(&f) => {
                let fam = &self.families[f as usize];
                if fam.kind != desc.kind {
                    return Err(type_conflict(&desc.name, fam.kind, desc.kind));
                }
                f
            }
            None => {
                let om = om_family_name(&desc.name, desc.kind).to_owned();
                if self.om_names.contains_key(&om) {
                    return Err(format!(
                        "name conflict: {:?} would share the OpenMetrics family {om:?} with another metric",
                        desc.name
                    ));
                }
                self.om_names.insert(om, desc.kind);
                let help = if desc.help.is_empty() {
                    format!("{} (no documentation given)", desc.name)
                } else {
                    desc.help.clone()
                };
                self.families.push(Family { name: desc.name.clone(), help, kind: desc.kind, series: BTreeMap::new() });
                let f = (self.families.len() - 1) as u32;
                self.family_order.insert(desc.name.clone(), f);
                f
            }
        };
        let sid = self.series.len() as SeriesId;
        let mut labels = desc.labels.clone();
        labels.sort();
        self.series.push(Series {
            key: key.clone(),
            family: fam,
            labels,
            kind: desc.kind,
            scale: desc.scale,
            int: 0,
            float: 0.0,
            gauges: Vec::new(),
            gauge_sum: 0.0,
            ts: 0.0,
            changed: 0,
        });
        self.families[fam as usize].series.insert(key.clone(), sid);
        self.by_key.insert(key, sid);
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
        if let Err(e) = self.collector_mut(slot) {
            return vec![e];
        }
        let Some(Some(c)) = self.collectors.get_mut(slot.index as usize) else {
            return errors;
        };
        let mut changed = false;
        for s in samples {
            let idx = s.id as usize;
            let Some(Some(sid)) = c.ids.get(idx) else {
                errors.push(IngestError::new(Some(s.id), "update for a series id that was not registered".into()));
                continue;
            };
            let series = &mut self.series[*sid as usize];
            let counted = &mut c.counted[idx];
            let delta_applied = match (series.kind, s.value) {
                (Kind::Counter, Value::Int(v)) => {
                    let d = if totals { v.saturating_sub(counted.int) } else { v };
                    counted.int = counted.int.saturating_add(d);
                    series.int = series.int.saturating_add(d);
                    d != 0
                }
                (Kind::Counter, Value::Float(v)) => {
                    if !v.is_finite() || v < 0.0 {
                        errors.push(IngestError::new(
                            Some(s.id),
                            format!(
                                "counter {} cannot {} by {v}",
                                series.key,
                                if totals { "total" } else { "increase" }
                            ),
                        ));
                        continue;
                    }
                    let d = if totals { (v - counted.float).max(0.0) } else { v };
                    counted.float += d;
                    series.float += d;
                    d != 0.0
                }
                (Kind::Gauge, v) => {
                    let v = match v {
                        Value::Int(i) => i as f64,
                        Value::Float(f) => f,
                    };
                    series.set_gauge(slot.index, v);
                    true
                }
            };
            if delta_applied {
                series.ts = now;
                if series.changed != generation {
                    series.changed = generation;
                    self.change_log.push((generation, *sid));
                }
                changed = true;
            }
        }
        if changed {
            self.generation = generation;
            self.compact_change_log();
        }
        errors
    }

    /// Keeps the change log within twice the number of series by keeping
    /// only the latest change of each series.
    fn compact_change_log(&mut self) {
        if self.change_log.len() <= 2 * self.series.len() + 4096 {
            return;
        }
        self.change_log = self
            .series
            .iter()
            .enumerate()
            .filter(|(_, s)| s.changed > 0)
            .map(|(sid, s)| (s.changed, sid as SeriesId))
            .collect();
        self.change_log.sort_unstable();
    }

    /// Marks `sid` changed in the current generation (already bumped).
    fn mark_changed(&mut self, sid: SeriesId, now: f64) {
        let s = &mut self.series[sid as usize];
        s.ts = now;
        if s.changed != self.generation {
            s.changed = self.generation;
            self.change_log.push((self.generation, sid));
            self.compact_change_log();
        }
    }

    /// The connection of `slot` closed without a goodbye. Its gauges leave;
    /// its counted totals are kept in case it reconnects.
    pub fn disconnect(&mut self, slot: CollectorSlot, now: f64) {
        let Ok(c) = self.collector_mut(slot) else {
            return;
        };
        c.connected = false;
        c.disconnected_at = now;
        self.connected -= 1;
        self.drop_gauges(slot.index, now);
    }

    /// The collector is gone for good: fold it into the node totals (its
    /// counter contributions stay, its bookkeeping goes).
    pub fn goodbye(&mut self, slot: CollectorSlot, now: f64) {
        if self.collector_mut(slot).is_ok() {
            self.forget(slot.index, now);
        }
    }

    /// Records the process behind a connection, as the kernel reports it.
    pub fn set_process(&mut self, slot: CollectorSlot, process: ProcessRef) {
        if let Ok(c) = self.collector_mut(slot) {
            c.process = process;
        }
    }

    /// Folds every disconnected collector for which `alive` says its process
    /// is gone, then the longest-gone ones beyond
    /// [`Limits::max_remembered`]. Returns how many were folded.
    pub fn fold_departed(&mut self, mut alive: impl FnMut(ProcessRef) -> bool, now: f64) -> usize {
        let mut waiting: Vec<(f64, u32)> = Vec::new();
        let mut gone: Vec<u32> = Vec::new();
        for (i, c) in self.collectors.iter().enumerate() {
            let Some(c) = c.as_ref().filter(|c| !c.connected) else { continue };
            if alive(c.process) {
                waiting.push((c.disconnected_at, i as u32));
            } else {
                gone.push(i as u32);
            }
        }
        if waiting.len() > self.limits.max_remembered {
            waiting.sort_by(|a, b| a.0.total_cmp(&b.0));
            let excess = waiting.len() - self.limits.max_remembered;
            gone.extend(waiting[..excess].iter().map(|(_, i)| *i));
        }
        for &i in &gone {
            self.forget(i, now);
        }
        gone.len()
    }

    fn forget(&mut self, index: u32, now: f64) {
        self.drop_gauges(index, now);
        if let Some(c) = self.collectors[index as usize].take() {
            if c.connected {
                self.connected -= 1;
            }
            self.by_identity.remove(&identity_key(&c.identity));
            self.free_slots.push(index);
        }
    }

    fn drop_gauges(&mut self, index: u32, now: f64) {
        let Some(Some(c)) = self.collectors.get(index as usize) else {
            return;
        };
        let dropped: Vec<SeriesId> = c
            .ids
            .iter()
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
    /// The node's series limit does not apply to these.
    pub fn internal(&mut self, desc: &Desc) -> Result<SeriesId, String> {
        self.series_for(desc, false)
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
        if s.gauge_sum == v && !s.gauges.is_empty() {
            return;
        }
        s.set_gauge(u32::MAX, v);
        self.generation += 1;
        self.mark_changed(sid, now);
    }

    /// The description a series was registered with (labels sorted).
    pub(crate) fn desc_of(&self, sid: SeriesId) -> Desc {
        let s = &self.series[sid as usize];
        let fam = &self.families[s.family as usize];
        Desc { name: fam.name.clone(), labels: s.labels.clone(), help: fam.help.clone(), kind: s.kind, scale: s.scale }
    }

    /// Every remembered collector with, per id, its series and what was
    /// counted of it.
    pub(crate) fn collectors(
        &self,
    ) -> impl Iterator<Item = (&Identity, impl Iterator<Item = (u32, SeriesId, u64, f64)> + '_)> {
        self.collectors.iter().flatten().map(|c| {
            let counted = c
                .ids
                .iter()
                .zip(&c.counted)
                .enumerate()
                .filter_map(|(id, (sid, k))| sid.map(|sid| (id as u32, sid, k.int, k.float)));
            (&c.identity, counted)
        })
    }

    /// Sets a restored counter's totals.
    pub(crate) fn restore_counter(&mut self, sid: SeriesId, int: u64, float: f64, ts: f64) {
        let s = &mut self.series[sid as usize];
        s.int = int;
        s.float = float;
        self.generation += 1;
        self.mark_changed(sid, ts);
    }

    /// Re-creates a disconnected collector with what was counted of it.
    pub(crate) fn restore_collector(
        &mut self,
        identity: Identity,
        counted: Vec<(u32, SeriesId, u64, f64)>,
    ) -> Result<(), String> {
        let (slot, resumed) = self.hello(identity);
        if resumed {
            return Err("corrupt: a collector appears twice".into());
        }
        let limit = self.limits.max_series_per_collector;
        let c = self.collector_mut(slot).map_err(|e| e.message)?;
        for (id, sid, int, float) in counted {
            let i = id as usize;
            if i >= limit {
                return Err(format!("corrupt: series id {id} beyond the per-collector limit"));
            }
            if c.ids.len() <= i {
                c.ids.resize(i + 1, None);
                c.counted.resize(i + 1, Counted::default());
            }
            if c.ids[i].is_none() {
                c.registered += 1;
            }
            c.ids[i] = Some(sid);
            c.counted[i] = Counted { int, float };
        }
        c.connected = false;
        self.connected -= 1;
        Ok(())
    }

    /// Brings [`Store::order`] up to date.
    pub(crate) fn prepare_render(&mut self) {
        if self.order.valid {
            return;
        }
        let mut order = RenderOrder { valid: true, ..RenderOrder::default() };
        for &f in self.family_order.values() {
            let fam = &self.families[f as usize];
            let start = order.series.len();
            for &sid in fam.series.values() {
                order.series.push(sid);
                order.text.push_str(&self.series[sid as usize].key);
                order.text.push(' ');
                order.ends.push(order.text.len());
            }
            order.families.push((f, start..order.series.len()));
        }
        self.order = order;
    }

    /// Every series description, ordered by name.
    pub fn descs(&self) -> Vec<DescInfo> {
        self.ordered().map(|(fam, s)| DescInfo { name: s.key.clone(), help: fam.help.clone(), kind: s.kind }).collect()
    }

    /// Every series value, ordered by name.
    pub fn values(&self) -> Vec<ValueInfo> {
        self.ordered().map(|(_, s)| value_info(s)).collect()
    }

    /// The named series' values, in the order asked; or the names unknown.
    pub fn get(&self, names: &[String]) -> Result<Vec<ValueInfo>, Vec<String>> {
        let unknown: Vec<String> = names.iter().filter(|n| !self.by_key.contains_key(*n)).cloned().collect();
        if !unknown.is_empty() {
            return Err(unknown);
        }
        Ok(names.iter().map(|n| value_info(&self.series[self.by_key[n] as usize])).collect())
    }

    /// The series that changed after generation `since`, ordered by name.
    pub fn changes(&self, since: u64) -> Vec<ValueInfo> {
        let start = self.change_log.partition_point(|(g, _)| *g <= since);
        let mut sids: Vec<SeriesId> = self.change_log[start..].iter().map(|(_, sid)| *sid).collect();
        sids.sort_unstable();
        sids.dedup();
        let mut changed: Vec<&Series> = sids.iter().map(|sid| &self.series[*sid as usize]).collect();
        // The order of `ordered()`: families by name, then series by key.
        changed.sort_by(|a, b| {
            let fam = |s: &Series| self.families[s.family as usize].name.as_str();
            fam(a).cmp(fam(b)).then_with(|| a.key.cmp(&b.key))
        });
        changed.into_iter().map(value_info).collect()
    }

    /// Families in name order, each with its series in key order.
    pub(crate) fn ordered(&self) -> impl Iterator<Item = (&Family, &Series)> {
        self.family_order.values().flat_map(move |&f| {
            let fam = &self.families[f as usize];
            fam.series.values().map(move |&sid| (fam, &self.series[sid as usize]))
        })
    }
}

fn value_info(s: &Series) -> ValueInfo {
    ValueInfo { name: s.key.clone(), ts: s.ts, value: s.value() }
}

fn type_conflict(name: &str, was: Kind, now: Kind) -> String {
    let n = |k: Kind| match k {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
    };
    format!("type conflict: {name} is a {}, not a {}", n(was), n(now))
}

/// The family name OpenMetrics uses: counters without their `_total`.
pub(crate) fn om_family_name(name: &str, kind: Kind) -> &str {
    match kind {
        Kind::Counter => name.strip_suffix("_total").unwrap_or(name),
        Kind::Gauge => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(pid: u32) -> Identity {
        Identity { pid, start_time: 1, nonce: 2, program: "p".into() }
    }

    fn int(id: u32, v: u64) -> Sample {
        Sample { id, value: Value::Int(v) }
    }

    fn flt(id: u32, v: f64) -> Sample {
        Sample { id, value: Value::Float(v) }
    }

    fn val(st: &Store, name: &str) -> f64 {
        st.get(&[name.to_owned()]).unwrap()[0].value
    }

    fn hits(f: &str) -> Desc {
        Desc::counter("mpi_hits_total", &[("function", f)], "Calls")
    }

    #[test]
    fn counters_sum_every_collector_exactly() {
        let mut st = Store::new(Limits::default());
        let (a, _) = st.hello(ident(1));
        let (b, _) = st.hello(ident(2));
        st.register(a, 0, &hits("MPI_Send")).unwrap();
        st.register(b, 7, &hits("MPI_Send")).unwrap();
        assert!(st.update(a, &[int(0, 1 << 52)], 1.0).is_empty());
        assert!(st.update(b, &[int(7, (1 << 52) - 1)], 2.0).is_empty());
        let v = &st.values()[0];
        assert_eq!(v.name, "mpi_hits_total{function=\"MPI_Send\"}");
        assert_eq!(v.value, ((1u64 << 53) - 1) as f64);
        assert_eq!(v.ts, 2.0);
    }

    #[test]
    fn resync_after_reconnect_counts_nothing_twice() {
        let mut st = Store::new(Limits::default());
        let (a, resumed) = st.hello(ident(1));
        assert!(!resumed);
        st.register(a, 0, &hits("MPI_Recv")).unwrap();
        st.update(a, &[int(0, 10)], 1.0);
        st.disconnect(a, 1.0);
        // The collector counted 15 in all; the daemon saw 10 of them.
        let (a2, resumed) = st.hello(ident(1));
        assert!(resumed);
        st.register(a2, 0, &hits("MPI_Recv")).unwrap();
        st.resync(a2, &[int(0, 15)], 2.0);
        assert_eq!(val(&st, "mpi_hits_total{function=\"MPI_Recv\"}"), 15.0);
        // A resync that repeats what was counted adds nothing.
        st.resync(a2, &[int(0, 15)], 3.0);
        assert_eq!(val(&st, "mpi_hits_total{function=\"MPI_Recv\"}"), 15.0);
        // The old connection can no longer change anything.
        assert_eq!(st.update(a, &[int(0, 5)], 4.0).len(), 1);
        assert_eq!(val(&st, "mpi_hits_total{function=\"MPI_Recv\"}"), 15.0);
    }

    #[test]
    fn restarted_daemon_takes_totals_whole() {
        let mut st = Store::new(Limits::default());
        let (a, resumed) = st.hello(ident(1));
        assert!(!resumed);
        st.register(a, 3, &hits("MPI_Bcast")).unwrap();
        st.resync(a, &[int(3, 42)], 1.0);
        assert_eq!(val(&st, "mpi_hits_total{function=\"MPI_Bcast\"}"), 42.0);
    }

    #[test]
    fn gauges_sum_live_collectors_and_leave_with_them() {
        let mut st = Store::new(Limits::default());
        let g = Desc::gauge("ranks", &[], "Ranks");
        let (a, _) = st.hello(ident(1));
        let (b, _) = st.hello(ident(2));
        st.register(a, 0, &g).unwrap();
        st.register(b, 0, &g).unwrap();
        st.update(a, &[flt(0, 0.1)], 1.0);
        st.update(b, &[flt(0, 0.2)], 1.0);
        st.update(a, &[flt(0, 0.5)], 1.0);
        assert_eq!(val(&st, "ranks"), 0.5 + 0.2);
        assert_eq!(st.connected_collectors(), 2);
        st.disconnect(b, 2.0);
        assert_eq!(st.connected_collectors(), 1);
        assert_eq!(val(&st, "ranks"), 0.5);
        st.goodbye(a, 3.0);
        assert_eq!(st.connected_collectors(), 0);
        assert_eq!(val(&st, "ranks"), 0.0);
        assert_eq!(st.known_collectors(), 1);
    }

    #[test]
    fn departed_collectors_are_folded() {
        let mut st = Store::new(Limits::default());
        for pid in 0..100 {
            let (s, _) = st.hello(ident(pid));
            st.register(s, 0, &hits("MPI_Init")).unwrap();
            st.update(s, &[int(0, 1)], 1.0);
            if pid % 2 == 0 {
                st.goodbye(s, 1.0);
            } else {
                st.disconnect(s, 1.0);
            }
        }
        assert_eq!(st.known_collectors(), 50);
        assert_eq!(st.fold_departed(|p| p.pid == 99, 2.0), 49);
        assert_eq!(st.known_collectors(), 1);
        assert_eq!(val(&st, "mpi_hits_total{function=\"MPI_Init\"}"), 100.0);
        // Slots are reused.
        st.hello(ident(1000));
        assert!(st.collectors.len() <= 100);
    }

    #[test]
    fn remembered_collectors_are_capped_longest_gone_first() {
        let mut st = Store::new(Limits { max_remembered: 3, ..Limits::default() });
        for pid in 0..6 {
            let (s, _) = st.hello(ident(pid));
            st.set_process(s, ProcessRef { pid: 1000 + pid, start_time: 5 });
            st.disconnect(s, f64::from(pid));
        }
        // All alive: only the cap folds, the three disconnected first.
        let mut asked = Vec::new();
        assert_eq!(
            st.fold_departed(
                |p| {
                    asked.push(p);
                    true
                },
                10.0
            ),
            3
        );
        assert_eq!(asked[0], ProcessRef { pid: 1000, start_time: 5 });
        assert_eq!(st.known_collectors(), 3);
        let (_, resumed) = st.hello(ident(5));
        assert!(resumed, "the most recently gone is still remembered");
        let (_, resumed) = st.hello(ident(0));
        assert!(!resumed, "the longest gone was folded");
    }

    #[test]
    fn bad_input_is_refused_and_counted_nowhere() {
        let mut st = Store::new(Limits { max_series: 3, max_series_per_collector: 2, ..Limits::default() });
        let (a, _) = st.hello(ident(1));
        st.register(a, 0, &Desc::counter("x_total", &[], "")).unwrap();
        let e = st.register(a, 1, &Desc::gauge("x_total", &[], "")).unwrap_err();
        assert_eq!(e.message, "gauge name \"x_total\" must not end in \"_total\"");
        let e = st.register(a, 1, &Desc::gauge("x", &[], "")).unwrap_err();
        assert_eq!(e.message, "name conflict: \"x\" would share the OpenMetrics family \"x\" with another metric");
        let e = st.register(a, 1, &Desc::counter("y_total", &[], "").with_scale(Scale::Nano)).map(|_| ());
        assert!(e.is_ok());
        let e = st.register(a, 2, &Desc::counter("z_total", &[], "")).unwrap_err();
        assert_eq!(e.message, "series id 2 is beyond the per-collector limit of 2 series");
        let (b, _) = st.hello(ident(2));
        let e = st.register(b, 0, &Desc::counter("y_total", &[], "")).unwrap_err();
        assert_eq!(e.message, "unit conflict: y_total was registered with another scale");
        st.register(b, 0, &Desc::counter("w_total", &[], "")).unwrap();
        let e = st.register(b, 1, &Desc::counter("v_total", &[], "")).unwrap_err();
        assert_eq!(e.message, "node limit of 3 series reached");
        assert_eq!(st.refused_series(), 2);
        let errs = st.update(a, &[flt(0, f64::NAN), flt(0, -1.0), flt(0, f64::INFINITY), int(5, 1), int(0, 2)], 1.0);
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            [
                "series id 0: counter x_total cannot increase by NaN",
                "series id 0: counter x_total cannot increase by -1",
                "series id 0: counter x_total cannot increase by inf",
                "series id 5: update for a series id that was not registered",
            ]
        );
        assert_eq!(val(&st, "x_total"), 2.0);
    }

    #[test]
    fn sparse_ids_are_refused_and_rebound_gauges_leave() {
        let mut st = Store::new(Limits::default());
        let (a, _) = st.hello(ident(1));
        let e = st.register(a, 5000, &hits("X")).unwrap_err();
        assert_eq!(e.message, "series ids must be dense: id 5000 is more than 1024 past the ids registered so far");
        assert_eq!(st.refused_series(), 1);
        st.register(a, 0, &Desc::gauge("g1", &[], "")).unwrap();
        st.update(a, &[flt(0, 7.0)], 1.0);
        st.register(a, 0, &Desc::gauge("g2", &[], "")).unwrap();
        st.update(a, &[flt(0, 3.0)], 2.0);
        assert_eq!(val(&st, "g1"), 0.0);
        assert_eq!(val(&st, "g2"), 3.0);
    }

    #[test]
    fn the_daemons_own_series_escape_the_node_limit() {
        let mut st = Store::new(Limits { max_series: 1, max_series_per_collector: 1, ..Limits::default() });
        for i in 0..5 {
            st.internal(&Desc::counter(&format!("own{i}_total"), &[], "")).unwrap();
        }
        let (a, _) = st.hello(ident(1));
        st.register(a, 0, &hits("A")).unwrap_err();
        assert_eq!(st.series_count(), 5);
    }

    #[test]
    fn changes_from_the_log_equal_a_full_scan() {
        let mut st = Store::new(Limits::default());
        let (a, _) = st.hello(ident(1));
        // Family names chosen so that key order and family order differ.
        let descs = [hits("A"), hits("B"), Desc::counter("mpi_hitsx_total", &[], "x"), Desc::gauge("g", &[], "g")];
        for (i, d) in descs.iter().enumerate() {
            st.register(a, i as u32, d).unwrap();
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut gens = vec![0];
        // Enough generations to compact the log several times.
        for round in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = (x % 4) as u32;
            let value = if id == 3 { Value::Float(round as f64) } else { Value::Int(1) };
            st.update(a, &[Sample { id, value }], round as f64);
            if round % 997 == 0 {
                gens.push(st.generation());
            }
        }
        let own = st.internal(&Desc::counter("own_total", &[], "")).unwrap();
        st.internal_add(own, 1, 1.0);
        for since in gens {
            let scan: Vec<ValueInfo> =
                st.ordered().filter(|(_, s)| s.changed > since).map(|(_, s)| value_info(s)).collect();
            assert_eq!(st.changes(since), scan, "since {since}");
        }
        assert!(st.change_log.len() <= 2 * st.series.len() + 4096);
    }

    #[test]
    fn nanosecond_counters_export_seconds() {
        let mut st = Store::new(Limits::default());
        let (a, _) = st.hello(ident(1));
        st.register(a, 0, &Desc::counter("t_total", &[], "").with_scale(Scale::Nano)).unwrap();
        st.update(a, &[int(0, 1_500_000_000)], 1.0);
        let v = &st.values()[0];
        assert_eq!(v.value, 1.5);
    }

    #[test]
    fn changes_lists_only_what_moved() {
        let mut st = Store::new(Limits::default());
        let (a, _) = st.hello(ident(1));
        st.register(a, 0, &hits("A")).unwrap();
        st.register(a, 1, &hits("B")).unwrap();
        st.update(a, &[int(0, 1), int(1, 1)], 1.0);
        let g = st.generation();
        assert_eq!(st.changes(0).len(), 2);
        st.update(a, &[int(1, 1), int(0, 0)], 2.0);
        let names: Vec<String> = st.changes(g).into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["mpi_hits_total{function=\"B\"}"]);
        assert!(st.changes(st.generation()).is_empty());
        assert_eq!(st.get(&["nope".into()]), Err(vec!["nope".to_owned()]));
    }
}
