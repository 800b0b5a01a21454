//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the test that
//! replays their corpus on every CI run: whatever the bytes, nothing panics
//! and the store stays consistent.

use protocol::{decode_frame, Reply, Request};

use crate::{render, Format, Limits, Session, Snapshot, Store, Tally};

/// Decodes `data` as a stream of request frames, then of reply frames.
pub fn frames(data: &[u8]) {
    for_each_frame::<Request>(data);
    for_each_frame::<Reply>(data);
}

fn for_each_frame<T: serde::de::DeserializeOwned>(mut data: &[u8]) {
    while let Ok(Some((_, used))) = decode_frame::<T>(data) {
        assert!(used > 0 && used <= data.len());
        data = &data[used..];
    }
}

/// Feeds `data` to a session as a peer would send it, in chunks whose
/// sizes come from the data itself, then exercises every reader of the
/// resulting store.
pub fn session(data: &[u8]) {
    let mut store = Store::new(Limits {
        max_series: 1000,
        max_series_per_collector: 100,
        max_remembered: 100,
        ..Limits::default()
    });
    let mut s = Session::new();
    let mut tally = Tally::default();
    let mut at = 0;
    let mut step = 1 + data.first().copied().unwrap_or(0) as usize % 64;
    let mut ended = false;
    while at < data.len() && !ended {
        let end = (at + step).min(data.len());
        ended = s.feed(&data[at..end], &mut store, at as f64, &mut tally).is_err();
        // A query client's requests, one per turn, its replies read.
        while !ended && s.has_work() {
            ended = s.turn(&mut store, 0.0).is_err();
            s.output().clear();
        }
        step = 1 + (step * 7 + 3) % 97;
        at = end;
    }
    s.disconnect(&mut store, data.len() as f64);
    let mut out = String::new();
    render(&mut store, Format::Text, &mut out);
    render(&mut store, Format::OpenMetrics, &mut out);
    assert!(out.ends_with("# EOF\n"));
    let values = store.values();
    assert_eq!(values.len(), store.series_count());
    let snap = store.snapshot();
    let back = Snapshot::from_bytes(&snap.to_bytes()).expect("a snapshot reads back");
    assert_eq!(back, snap);
}
