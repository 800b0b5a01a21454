//! The exposition order of a store's series, and the layout a scrape
//! renders from without the store's lock.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use protocol::Kind;

use super::keys::Keys;
use super::series::{Family, SeriesId};

/// What a scrape needs besides the values: every series' key in
/// exposition order, contiguous (so a scrape reads them sequentially),
/// and each family's header and range. Shared, immutable; rebuilt after
/// series are added.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    /// Keys in exposition order, concatenated.
    pub(crate) text: Arc<str>,
    /// Where each key ends in `text`.
    pub(crate) ends: Vec<usize>,
    pub(crate) families: Vec<LayoutFamily>,
}

#[derive(Debug)]
pub(crate) struct LayoutFamily {
    pub(crate) name: String,
    pub(crate) help: String,
    pub(crate) kind: Kind,
    /// Its series, as positions in the exposition order.
    pub(crate) range: Range<usize>,
}

#[derive(Debug, Default)]
pub(crate) struct RenderOrder {
    /// False once a series was added after the last build.
    pub(super) valid: bool,
    /// Series in exposition order.
    pub(crate) series: Vec<SeriesId>,
    pub(crate) layout: Arc<Layout>,
}

impl RenderOrder {
    /// Sorts each family's series by key, orders families by name
    /// (`family_order`), and lays the keys out again in that order.
    pub(super) fn build(family_order: &BTreeMap<String, u32>, families: &mut [Family], keys: &mut Keys) -> RenderOrder {
        let mut series = Vec::with_capacity(keys.len());
        let mut fams = Vec::new();
        for &f in family_order.values() {
            let fam = &mut families[f as usize];
            fam.series.sort_unstable_by(|a, b| keys.get(*a).cmp(keys.get(*b)));
            let start = series.len();
            series.extend_from_slice(&fam.series);
            let range = start..series.len();
            fams.push(LayoutFamily { name: fam.name.clone(), help: fam.help.clone(), kind: fam.kind, range });
        }
        let (text, ends) = keys.seal(&series);
        RenderOrder { valid: true, series, layout: Arc::new(Layout { text, ends, families: fams }) }
    }
}
