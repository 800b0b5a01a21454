//! The exposition order of a store's series, kept for rendering.

use std::collections::BTreeMap;

use super::series::{Family, Series, SeriesId};

/// The exposition order of every series with their `key ` text laid out
/// contiguously, rebuilt after series are added, so that a scrape reads
/// names sequentially instead of chasing one allocation per series.
#[derive(Debug, Default)]
pub(crate) struct RenderOrder {
    /// False once a series was added after the last build.
    pub(super) valid: bool,
    /// Families in name order, each with its range in `series`.
    pub(crate) families: Vec<(u32, std::ops::Range<usize>)>,
    /// Series in exposition order.
    pub(crate) series: Vec<SeriesId>,
    /// `key ` of every series in that order, concatenated.
    pub(crate) text: String,
    /// Where each series' text ends in `text`.
    pub(crate) ends: Vec<usize>,
}

impl RenderOrder {
    /// The order of `families` (indexed by name in `family_order`) and
    /// their `series`.
    pub(super) fn build(family_order: &BTreeMap<String, u32>, families: &[Family], series: &[Series]) -> RenderOrder {
        let mut order = RenderOrder { valid: true, ..RenderOrder::default() };
        for &f in family_order.values() {
            let fam = &families[f as usize];
            let start = order.series.len();
            for &sid in fam.series.values() {
                order.series.push(sid);
                order.text.push_str(&series[sid as usize].key);
                order.text.push(' ');
                order.ends.push(order.text.len());
            }
            order.families.push((f, start..order.series.len()));
        }
        order
    }
}
