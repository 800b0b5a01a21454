//! What query clients ask of a store: descriptions, values, changes.

use std::fmt;

use protocol::{DescInfo, ValueInfo};

use super::series::{Family, SeriesId};
use super::Store;

/// Names asked for that are not series of the store, in the order asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSeries(pub Vec<String>);

impl fmt::Display for UnknownSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no such series: {}", self.0.join(", "))
    }
}

impl std::error::Error for UnknownSeries {}

impl Store {
    /// Every series description, ordered by name.
    pub fn descs(&self) -> Vec<DescInfo> {
        self.ordered()
            .map(|(fam, sid)| {
                let kind = self.series[sid as usize].kind;
                DescInfo { name: self.keys.get(sid).to_owned(), help: fam.help.clone(), kind }
            })
            .collect()
    }

    /// Every series value, ordered by name.
    pub fn values(&self) -> Vec<ValueInfo> {
        self.ordered().map(|(_, sid)| self.series[sid as usize].value_info(self.keys.get(sid))).collect()
    }

    /// The named series' values, in the order asked; or the names unknown.
    pub fn get(&self, names: &[String]) -> Result<Vec<ValueInfo>, UnknownSeries> {
        Ok(self.value_infos(&self.ids_of(names)?))
    }

    /// The series that changed after generation `since`, ordered by name.
    pub fn changes(&self, since: u64) -> Vec<ValueInfo> {
        self.value_infos(&self.changed_ids(since))
    }

    /// Every series, in the order [`Store::values`] lists them: a reply
    /// is then produced from it a part at a time, as the peer reads.
    pub fn ordered_ids(&mut self) -> Vec<SeriesId> {
        self.prepare_render();
        self.order.series.clone()
    }

    /// The named series, in the order asked; or the names unknown.
    pub fn ids_of(&self, names: &[String]) -> Result<Vec<SeriesId>, UnknownSeries> {
        let sids: Vec<Option<SeriesId>> = names.iter().map(|n| self.keys.find(n)).collect();
        let unknown: Vec<String> =
            names.iter().zip(&sids).filter(|(_, sid)| sid.is_none()).map(|(n, _)| n.clone()).collect();
        if !unknown.is_empty() {
            return Err(UnknownSeries(unknown));
        }
        Ok(sids.into_iter().flatten().collect())
    }

    /// The series that changed after generation `since`, in the order of
    /// [`Store::values`].
    pub fn changed_ids(&self, since: u64) -> Vec<SeriesId> {
        let mut changed = self.change_log.since(since);
        changed.retain(|sid| !self.series[*sid as usize].retired);
        // The order of `ordered()`: families by name, then series by key.
        let fam = |sid: &SeriesId| self.families[self.series[*sid as usize].family as usize].name.as_str();
        changed.sort_by(|a, b| fam(a).cmp(fam(b)).then_with(|| self.keys.get(*a).cmp(self.keys.get(*b))));
        changed
    }

    /// The values of `ids` (from this store), in that order.
    pub fn value_infos(&self, ids: &[SeriesId]) -> Vec<ValueInfo> {
        ids.iter().map(|&sid| self.series[sid as usize].value_info(self.keys.get(sid))).collect()
    }

    /// The descriptions of `ids` (from this store), in that order.
    pub fn desc_infos(&self, ids: &[SeriesId]) -> Vec<DescInfo> {
        ids.iter()
            .map(|&sid| {
                let s = &self.series[sid as usize];
                let help = self.families[s.family as usize].help.clone();
                DescInfo { name: self.keys.get(sid).to_owned(), help, kind: s.kind }
            })
            .collect()
    }

    /// Bytes that [`Store::value_infos`] and [`Store::desc_infos`] of
    /// `sid` take on the wire, about.
    pub fn reply_size(&self, sid: SeriesId, with_help: bool) -> usize {
        let s = &self.series[sid as usize];
        let help = if with_help { self.families[s.family as usize].help.len() } else { 0 };
        self.keys.get(sid).len() + help + 24
    }

    /// Families in name order, each with its series in key order.
    pub(crate) fn ordered(&self) -> impl Iterator<Item = (&Family, SeriesId)> {
        let sorted: Vec<(u32, SeriesId)> = if self.order.valid {
            let order = &self.order;
            let ranges = order.layout.families.iter().zip(self.family_order.values());
            ranges.flat_map(|(lf, &f)| order.series[lf.range.clone()].iter().map(move |&sid| (f, sid))).collect()
        } else {
            let mut all = Vec::with_capacity(self.series.len());
            for &f in self.family_order.values() {
                let mut sids = self.families[f as usize].series.clone();
                sids.sort_unstable_by(|a, b| self.keys.get(*a).cmp(self.keys.get(*b)));
                all.extend(sids.into_iter().map(|sid| (f, sid)));
            }
            all
        };
        sorted.into_iter().map(move |(f, sid)| (&self.families[f as usize], sid))
    }
}
