//! What query clients ask of a store: descriptions, values, changes.

use std::fmt;

use protocol::{DescInfo, ValueInfo};

use super::series::{Family, Series};
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
        self.ordered().map(|(fam, s)| DescInfo { name: s.key.clone(), help: fam.help.clone(), kind: s.kind }).collect()
    }

    /// Every series value, ordered by name.
    pub fn values(&self) -> Vec<ValueInfo> {
        self.ordered().map(|(_, s)| s.value_info()).collect()
    }

    /// The named series' values, in the order asked; or the names unknown.
    pub fn get(&self, names: &[String]) -> Result<Vec<ValueInfo>, UnknownSeries> {
        let unknown: Vec<String> = names.iter().filter(|n| !self.by_key.contains_key(*n)).cloned().collect();
        if !unknown.is_empty() {
            return Err(UnknownSeries(unknown));
        }
        Ok(names.iter().map(|n| self.series[self.by_key[n] as usize].value_info()).collect())
    }

    /// The series that changed after generation `since`, ordered by name.
    pub fn changes(&self, since: u64) -> Vec<ValueInfo> {
        let mut changed: Vec<&Series> =
            self.change_log.since(since).into_iter().map(|sid| &self.series[sid as usize]).collect();
        // The order of `ordered()`: families by name, then series by key.
        changed.sort_by(|a, b| {
            let fam = |s: &Series| self.families[s.family as usize].name.as_str();
            fam(a).cmp(fam(b)).then_with(|| a.key.cmp(&b.key))
        });
        changed.into_iter().map(Series::value_info).collect()
    }

    /// Families in name order, each with its series in key order.
    pub(crate) fn ordered(&self) -> impl Iterator<Item = (&Family, &Series)> {
        self.family_order.values().flat_map(move |&f| {
            let fam = &self.families[f as usize];
            fam.series.values().map(move |&sid| (fam, &self.series[sid as usize]))
        })
    }
}
