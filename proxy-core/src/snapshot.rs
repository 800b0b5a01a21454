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

use crate::refusal::Refusal;
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

/// Why a snapshot could not be read or restored; a snapshot is refused
/// whole.
#[derive(Debug)]
pub enum SnapshotError {
    /// The file does not start with the snapshot magic.
    BadMagic,
    /// Shorter than the header.
    Truncated,
    /// Another format version.
    Format { found: u32 },
    /// The payload is not as long as the header says.
    Length { payload: usize, header: u64 },
    /// The payload does not match its checksum.
    Checksum,
    /// The payload does not decode.
    Decode(bincode::Error),
    /// A series that is not a counter, or whose float total is negative,
    /// infinite or NaN.
    InvalidCounter { name: String },
    /// A series the store refuses (bad name, conflict).
    Series(Refusal),
    /// A collector's id refers to a series the snapshot does not hold.
    MissingSeries,
    /// The same collector identity twice.
    DuplicateCollector,
    /// A collector's id beyond the per-collector limit.
    IdBeyondLimit { id: u32 },
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::BadMagic => f.write_str("not a tau_metric_proxy state file (bad magic)"),
            SnapshotError::Truncated => f.write_str("truncated: shorter than its header"),
            SnapshotError::Format { found } => write!(f, "state format {found} is not the supported format {FORMAT}"),
            SnapshotError::Length { payload, header } => {
                write!(f, "truncated or padded: payload of {payload} bytes, header says {header}")
            }
            SnapshotError::Checksum => f.write_str("corrupt: checksum mismatch"),
            SnapshotError::Decode(e) => write!(f, "corrupt: {e}"),
            SnapshotError::InvalidCounter { name } => write!(f, "corrupt: series {name} is not a valid counter"),
            SnapshotError::Series(e) => write!(f, "corrupt: {e}"),
            SnapshotError::MissingSeries => f.write_str("corrupt: collector refers to a missing series"),
            SnapshotError::DuplicateCollector => f.write_str("corrupt: a collector appears twice"),
            SnapshotError::IdBeyondLimit { id } => write!(f, "corrupt: series id {id} beyond the per-collector limit"),
        }
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
        if bytes.len() >= MAGIC.len() && &bytes[..MAGIC.len()] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        if bytes.len() < HEADER {
            return Err(SnapshotError::Truncated);
        }
        let format = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if format != FORMAT {
            return Err(SnapshotError::Format { found: format });
        }
        let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        let sum = u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes"));
        let payload = &bytes[HEADER..];
        if payload.len() as u64 != len {
            return Err(SnapshotError::Length { payload: payload.len(), header: len });
        }
        if fnv1a(payload) != sum {
            return Err(SnapshotError::Checksum);
        }
        options().deserialize(payload).map_err(SnapshotError::Decode)
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
                return Err(SnapshotError::InvalidCounter { name: s.desc.name.clone() });
            }
            let sid = st.internal(&s.desc).map_err(SnapshotError::Series)?;
            st.restore_counter(sid, s.int, s.float, s.ts);
            sids.push(sid);
        }
        let limit = limits.max_series_per_collector;
        for c in snap.collectors {
            let mut counted = Vec::with_capacity(c.counted.len());
            for k in c.counted {
                let sid = *sids.get(k.series as usize).ok_or(SnapshotError::MissingSeries)?;
                counted.push((k.id, sid, k.int, k.float));
            }
            if st.knows(&c.identity) {
                return Err(SnapshotError::DuplicateCollector);
            }
            if let Some(&(id, ..)) = counted.iter().find(|(id, ..)| *id as usize >= limit) {
                return Err(SnapshotError::IdBeyondLimit { id });
            }
            st.restore_collector(c.identity, counted);
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
        assert!(matches!(Snapshot::from_bytes(&bytes[..5]), Err(SnapshotError::Truncated)));
        assert!(matches!(
            Snapshot::from_bytes(&bytes[..bytes.len() - 1]),
            Err(SnapshotError::Length { payload, header }) if payload as u64 + 1 == header
        ));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(Snapshot::from_bytes(&flipped), Err(SnapshotError::Checksum)));
        let mut other = bytes.clone();
        other[8] = 9;
        assert!(matches!(Snapshot::from_bytes(&other), Err(SnapshotError::Format { found: 9 })));
        assert!(matches!(
            Snapshot::from_bytes(b"#!/bin/sh\necho this is not a state file at all\n"),
            Err(SnapshotError::BadMagic)
        ));
        let mut garbage = bytes[..HEADER].to_vec();
        garbage[12..20].copy_from_slice(&1u64.to_le_bytes());
        garbage[20..28].copy_from_slice(&fnv1a(&[0xff]).to_le_bytes());
        garbage.push(0xff);
        assert!(matches!(Snapshot::from_bytes(&garbage), Err(SnapshotError::Decode(_))));
    }

    #[test]
    fn inconsistent_snapshots_are_refused_whole() {
        let restore = |edit: fn(&mut Snapshot)| {
            let mut snap = populated().snapshot();
            edit(&mut snap);
            Store::restore(Limits { max_series_per_collector: 10, ..Limits::default() }, snap).map(|_| ())
        };
        restore(|_| ()).unwrap();
        let e = restore(|s| s.series[0].float = -1.0).unwrap_err();
        assert!(matches!(&e, SnapshotError::InvalidCounter { name } if name == "x_total"), "{e:?}");
        let e = restore(|s| s.series[0].desc.name = "t".into()).unwrap_err();
        assert!(matches!(e, SnapshotError::Series(Refusal::InvalidName(_))), "{e:?}");
        let e = restore(|s| s.collectors[0].counted[0].series = 9).unwrap_err();
        assert!(matches!(e, SnapshotError::MissingSeries), "{e:?}");
        let e = restore(|s| s.collectors.push(s.collectors[0].clone())).unwrap_err();
        assert!(matches!(e, SnapshotError::DuplicateCollector), "{e:?}");
        let e = restore(|s| s.collectors[0].counted[0].id = 10).unwrap_err();
        assert!(matches!(e, SnapshotError::IdBeyondLimit { id: 10 }), "{e:?}");
    }

    #[test]
    fn each_refusal_keeps_its_message() {
        let decode = options().deserialize::<Snapshot>(&[0xff]).unwrap_err();
        let cases = [
            (SnapshotError::BadMagic, "not a tau_metric_proxy state file (bad magic)".to_owned()),
            (SnapshotError::Truncated, "truncated: shorter than its header".to_owned()),
            (SnapshotError::Format { found: 9 }, "state format 9 is not the supported format 1".to_owned()),
            (
                SnapshotError::Length { payload: 3, header: 4 },
                "truncated or padded: payload of 3 bytes, header says 4".to_owned(),
            ),
            (SnapshotError::Checksum, "corrupt: checksum mismatch".to_owned()),
            (
                SnapshotError::Decode(options().deserialize::<Snapshot>(&[0xff]).unwrap_err()),
                format!("corrupt: {decode}"),
            ),
            (SnapshotError::InvalidCounter { name: "g".into() }, "corrupt: series g is not a valid counter".to_owned()),
            (
                SnapshotError::Series(Refusal::UnitConflict { key: "t_total".into() }),
                "corrupt: unit conflict: t_total was registered with another scale".to_owned(),
            ),
            (SnapshotError::MissingSeries, "corrupt: collector refers to a missing series".to_owned()),
            (SnapshotError::DuplicateCollector, "corrupt: a collector appears twice".to_owned()),
            (SnapshotError::IdBeyondLimit { id: 7 }, "corrupt: series id 7 beyond the per-collector limit".to_owned()),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
    }
}
