//! Saving and restoring the node's counter totals (`--state FILE`).
//!
//! A snapshot holds every counter series (gauges belong to live collectors
//! and come back when they reconnect) and, for each collector still
//! remembered, what was counted of its series, so a collector that
//! reconnects after a graceful restart resyncs without counting twice.
//!
//! Encoding: `TAUMSTAT`, format version (`u32`), payload length (`u64`),
//! FNV-1a 64 checksum of the payload, then the bincode payload. A file
//! that is truncated, corrupt or of another version is refused whole.

use bincode::Options;
use protocol::{Desc, Identity, Kind};
use serde::{Deserialize, Serialize};

use crate::store::{Limits, Store};

const MAGIC: &[u8; 8] = b"TAUMSTAT";
const FORMAT: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 8;
/// Bound on a snapshot payload, far above 1,000,000 series.
const MAX_PAYLOAD: u64 = 4 << 30;

/// A counter series and its totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SeriesState {
    pub(crate) desc: Desc,
    pub(crate) int: u64,
    pub(crate) float: f64,
    pub(crate) ts: f64,
}

/// What was counted of one collector id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CountedState {
    pub(crate) id: u32,
    /// Index into [`Snapshot::series`].
    pub(crate) series: u32,
    pub(crate) int: u64,
    pub(crate) float: f64,
}

/// A remembered collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CollectorState {
    pub(crate) identity: Identity,
    pub(crate) counted: Vec<CountedState>,
}

/// The persistent part of a [`Store`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub(crate) series: Vec<SeriesState>,
    pub(crate) collectors: Vec<CollectorState>,
}

/// Why a snapshot could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotError(pub String);

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SnapshotError {}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn options() -> impl Options {
    bincode::DefaultOptions::new().with_varint_encoding().with_limit(MAX_PAYLOAD).reject_trailing_bytes()
}

impl Snapshot {
    /// Number of counter series held.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let payload = options().serialize(self).expect("a snapshot always serialises");
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&fnv1a(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        let err = |m: &str| Err(SnapshotError(m.to_owned()));
        if bytes.len() >= MAGIC.len() && &bytes[..MAGIC.len()] != MAGIC {
            return err("not a tau_metric_proxy state file (bad magic)");
        }
        if bytes.len() < HEADER {
            return err("truncated: shorter than its header");
        }
        let format = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if format != FORMAT {
            return Err(SnapshotError(format!("state format {format} is not the supported format {FORMAT}")));
        }
        let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        let sum = u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes"));
        let payload = &bytes[HEADER..];
        if payload.len() as u64 != len {
            return Err(SnapshotError(format!(
                "truncated or padded: payload of {} bytes, header says {len}",
                payload.len()
            )));
        }
        if fnv1a(payload) != sum {
            return err("corrupt: checksum mismatch");
        }
        options().deserialize(payload).map_err(|e| SnapshotError(format!("corrupt: {e}")))
    }
}

impl Store {
    /// The counters and collector bookkeeping worth keeping across a restart.
    pub fn snapshot(&self) -> Snapshot {
        let mut index = vec![u32::MAX; self.series.len()];
        let mut series = Vec::new();
        for (sid, s) in self.series.iter().enumerate() {
            if s.kind != Kind::Counter {
                continue;
            }
            index[sid] = series.len() as u32;
            series.push(SeriesState { desc: self.desc_of(sid as u32), int: s.int(), float: s.float(), ts: s.ts() });
        }
        let collectors = self
            .collectors()
            .map(|(identity, counted)| CollectorState {
                identity: identity.clone(),
                counted: counted
                    .filter(|(_, sid, _, _)| index[*sid as usize] != u32::MAX)
                    .map(|(id, sid, int, float)| CountedState { id, series: index[sid as usize], int, float })
                    .collect(),
            })
            .collect();
        Snapshot { series, collectors }
    }

    /// A store holding a snapshot's totals; every series is validated again
    /// and any problem refuses the whole snapshot.
    pub fn restore(limits: Limits, snap: Snapshot) -> Result<Store, SnapshotError> {
        let mut st = Store::new(limits);
        let mut sids = Vec::with_capacity(snap.series.len());
        for s in &snap.series {
            if s.desc.kind != Kind::Counter || !(s.float.is_finite() && s.float >= 0.0) {
                return Err(SnapshotError(format!("corrupt: series {} is not a valid counter", s.desc.name)));
            }
            let sid = st.internal(&s.desc).map_err(|e| SnapshotError(format!("corrupt: {e}")))?;
            st.restore_counter(sid, s.int, s.float, s.ts);
            sids.push(sid);
        }
        for c in snap.collectors {
            let mut counted = Vec::with_capacity(c.counted.len());
            for k in c.counted {
                let sid = *sids
                    .get(k.series as usize)
                    .ok_or_else(|| SnapshotError("corrupt: collector refers to a missing series".into()))?;
                counted.push((k.id, sid, k.int, k.float));
            }
            st.restore_collector(c.identity, counted).map_err(SnapshotError)?;
        }
        Ok(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{Sample, Scale, Value};

    fn populated() -> Store {
        let mut st = Store::new(Limits::default());
        let who = Identity { pid: 7, start_time: 3, nonce: 5, program: "p".into() };
        let (a, _) = st.hello(who);
        st.register(a, 0, &Desc::counter("x_total", &[("k", "v")], "X")).unwrap();
        st.register(a, 4, &Desc::counter("t_total", &[], "T").with_scale(Scale::Nano)).unwrap();
        st.register(a, 5, &Desc::gauge("g", &[], "G")).unwrap();
        st.update(
            a,
            &[
                Sample { id: 0, value: Value::Int(10) },
                Sample { id: 4, value: Value::Int(1_500_000_000) },
                Sample { id: 5, value: Value::Float(3.0) },
            ],
            2.0,
        );
        st.disconnect(a, 3.0);
        st
    }

    #[test]
    fn round_trip_keeps_counters_and_collectors() {
        let st = populated();
        let bytes = st.snapshot().to_bytes();
        let snap = Snapshot::from_bytes(&bytes).unwrap();
        assert_eq!(snap, st.snapshot());
        assert_eq!(snap.series_count(), 2);
        let mut back = Store::restore(Limits::default(), snap).unwrap();
        assert_eq!(back.values(), {
            let mut v = st.values();
            v.retain(|v| v.name != "g");
            v
        });
        // The collector reconnects and resyncs its totals: nothing twice.
        let who = Identity { pid: 7, start_time: 3, nonce: 5, program: "p".into() };
        let (a, resumed) = back.hello(who);
        assert!(resumed);
        back.register(a, 0, &Desc::counter("x_total", &[("k", "v")], "X")).unwrap();
        back.resync(a, &[Sample { id: 0, value: Value::Int(12) }], 4.0);
        assert_eq!(back.get(&["x_total{k=\"v\"}".into()]).unwrap()[0].value, 12.0);
    }

    #[test]
    fn damaged_files_are_refused_whole() {
        let bytes = populated().snapshot().to_bytes();
        for cut in [0, 5, HEADER - 1, HEADER, bytes.len() - 1] {
            assert!(Snapshot::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(Snapshot::from_bytes(&flipped), Err(SnapshotError("corrupt: checksum mismatch".into())));
        let mut other = bytes.clone();
        other[8] = 9;
        assert_eq!(
            Snapshot::from_bytes(&other),
            Err(SnapshotError("state format 9 is not the supported format 1".into()))
        );
        assert_eq!(
            Snapshot::from_bytes(b"#!/bin/sh\necho this is not a state file at all\n"),
            Err(SnapshotError("not a tau_metric_proxy state file (bad magic)".into()))
        );
    }
}
