//! Helpers of the crash-restart tests: a collector pushing one counter,
//! the values of a page, what a state file holds, the journal's segments.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use client::{PushConfig, Pusher};
use protocol::Desc;
use proxy_core::{Limits, Snapshot, Store};

use super::Proxy;

/// A collector of the counter `name`, retrying at once after a failure.
pub fn counter_pusher(p: &Proxy, name: &str) -> (Pusher, client::MetricId) {
    let mut cfg = PushConfig::new(p.socket.clone(), name);
    cfg.retry_every = Duration::ZERO;
    let mut pusher = Pusher::new(cfg);
    let id = pusher.register(Desc::counter(name, &[], "Pushed across a crash"));
    (pusher, id)
}

/// The values of a text-format page, by `family{labels}`.
pub fn page_values(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_owned(), v.parse().unwrap_or(f64::NAN))))
        .collect()
}

/// What the state file holds of `name`, if it holds it.
pub fn saved_value(state: &Path, name: &str) -> Option<f64> {
    let snap = Snapshot::from_bytes(&std::fs::read(state).ok()?).ok()?;
    let (store, _) = Store::restore(Limits::default(), snap).ok()?;
    store.get(&[name.to_owned()]).ok().map(|v| v[0].value)
}

/// The numbers of the journal segments beside `state` (`STATE.journal.N`).
pub fn journal_segments(state: &Path) -> Vec<u64> {
    let prefix = format!("{}.journal.", state.file_name().unwrap().to_string_lossy());
    let mut found: Vec<u64> = std::fs::read_dir(state.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_string_lossy().strip_prefix(&prefix)?.parse().ok())
        .collect();
    found.sort_unstable();
    found
}
