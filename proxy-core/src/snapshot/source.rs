//! What a snapshot is made of, copied out of the store under its lock
//! (values, the positions of the keys, each collector's counted table),
//! so that the snapshot itself (descriptions, encoding) is made without
//! the lock: the store is held for memory copies only.

use protocol::{Identity, Kind, Scale};

use super::{CollectorState, CountedState, SeriesState, Snapshot};
use crate::store::{KeptJob, KeysView, ProcessRef, SeriesId, Store};
use crate::validate::labels_of_key;

/// A counter series as copied: its id, family, scale and totals.
#[derive(Debug, Clone, Copy)]
struct CounterCopy {
    sid: SeriesId,
    family: u32,
    scale: Scale,
    int: u64,
    float: f64,
    ts: f64,
}

/// What was counted of each id of a collector: id, series, totals.
type CountedCopy = Vec<(u32, SeriesId, u64, f64)>;

/// A remembered collector as copied: with what was counted of each id,
/// its job (index, member) and its twins (id, series).
type CollectorCopy = (Identity, ProcessRef, CountedCopy, Option<(u32, u32)>, Vec<(u32, SeriesId)>);

/// A store's persistent part, copied; [`SnapshotSource::build`] makes the
/// [`Snapshot`] of it.
#[derive(Debug)]
pub struct SnapshotSource {
    series_len: usize,
    counters: Vec<CounterCopy>,
    keys: KeysView,
    /// Name and help of each family, by index.
    families: Vec<(String, String)>,
    collectors: Vec<CollectorCopy>,
    owners: Vec<(String, u32)>,
    /// The jobs kept, each with its index in the store.
    jobs: Vec<(u32, KeptJob)>,
}

impl Store {
    /// Copies what a snapshot of the store needs; cheap enough to do under
    /// the store's lock (no description is built, nothing is encoded).
    pub fn snapshot_source(&self) -> SnapshotSource {
        let counters = self
            .series
            .iter()
            .enumerate()
            .filter(|(sid, s)| s.kind == Kind::Counter && !self.is_retired(*sid as SeriesId))
            .map(|(sid, s)| CounterCopy {
                sid: sid as SeriesId,
                family: s.family_index(),
                scale: s.scale(),
                int: s.int(),
                float: s.float(),
                ts: s.ts(),
            })
            .collect();
        let collectors =
            self.collectors().map(|c| (c.identity.clone(), c.process, c.counted, c.job, c.twins)).collect();
        SnapshotSource {
            series_len: self.series.len(),
            counters,
            keys: self.keys_view(),
            families: self.families.iter().map(|f| (f.name.clone(), f.help.clone())).collect(),
            collectors,
            owners: self.owners(),
            jobs: self.kept_jobs(),
        }
    }
}

impl SnapshotSource {
    /// Remembered collectors copied.
    pub fn collector_count(&self) -> usize {
        self.collectors.len()
    }

    /// The snapshot, not marked clean (see [`Snapshot::with_clean`]).
    pub fn build(self) -> Snapshot {
        let mut index = vec![u32::MAX; self.series_len];
        let mut series = Vec::with_capacity(self.counters.len());
        for c in &self.counters {
            index[c.sid as usize] = series.len() as u32;
            let (name, help) = &self.families[c.family as usize];
            let desc = protocol::Desc {
                name: name.clone(),
                labels: labels_of_key(self.keys.get(c.sid)),
                help: help.clone(),
                kind: Kind::Counter,
                scale: c.scale,
            };
            series.push(SeriesState { desc, int: c.int, float: c.float, ts: c.ts });
        }
        let at = |sid: SeriesId| Some(index[sid as usize]).filter(|&i| i != u32::MAX);
        // Jobs by their place in the snapshot, not their index in the
        // store; their series too (counters only: gauges come back with
        // collectors).
        let mut job_at = std::collections::HashMap::new();
        let jobs = self
            .jobs
            .into_iter()
            .enumerate()
            .map(|(n, (j, mut job))| {
                job_at.insert(j, n as u32);
                job.series = job.series.into_iter().filter_map(at).collect();
                for m in &mut job.members {
                    m.values = m.values.iter().filter_map(|&(sid, v)| Some((at(sid)?, v))).collect();
                }
                job
            })
            .collect();
        let collectors = self
            .collectors
            .into_iter()
            .map(|(identity, process, counted, job, twins)| CollectorState {
                identity,
                process: (process.pid, process.start_time),
                counted: counted
                    .into_iter()
                    .filter_map(|(id, sid, int, float)| Some(CountedState { id, series: at(sid)?, int, float }))
                    .collect(),
                job: job.and_then(|(j, m)| Some((*job_at.get(&j)?, m))),
                twins: twins.into_iter().filter_map(|(id, t)| Some((id, at(t)?))).collect(),
            })
            .collect();
        Snapshot { series, collectors, owners: self.owners, clean: false, journal: 0, jobs }
    }
}
