//! Which series changed in which generation, so that a client asking what
//! changed costs what changed, not the size of the store.

use super::series::{Series, SeriesId};

/// `(generation, series)` each time a series changed in a generation it had
/// not changed in yet, in generation order.
#[derive(Debug, Default)]
pub(super) struct ChangeLog {
    entries: Vec<(u64, SeriesId)>,
}

impl ChangeLog {
    /// Records that series `sid` (that is, `s`) changed in `generation`,
    /// once per generation.
    pub(super) fn note(&mut self, s: &mut Series, sid: SeriesId, generation: u64) {
        if s.changed != generation {
            s.changed = generation;
            self.entries.push((generation, sid));
        }
    }

    /// Keeps the log within twice the number of series by keeping only the
    /// latest change of each series: the entry of the generation it last
    /// changed in. The entries stay in generation order, and the cost is
    /// that of the entries, so each note costs a constant, amortized.
    pub(super) fn compact(&mut self, series: &[Series]) {
        if self.entries.len() <= 2 * series.len() + 4096 {
            return;
        }
        self.entries.retain(|&(generation, sid)| series[sid as usize].changed == generation);
    }

    /// The series that changed after generation `since`, each once, by id.
    pub(super) fn since(&self, since: u64) -> Vec<SeriesId> {
        let start = self.entries.partition_point(|(g, _)| *g <= since);
        let mut sids: Vec<SeriesId> = self.entries[start..].iter().map(|(_, sid)| *sid).collect();
        sids.sort_unstable();
        sids.dedup();
        sids
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}
