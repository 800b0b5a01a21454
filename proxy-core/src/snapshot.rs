//! Saving and restoring the node's counter totals (`--state FILE`).
//!
//! A snapshot holds every counter series (gauges belong to live collectors
//! and come back when they reconnect) and, for each collector still
//! remembered, what was counted of its series, so a collector that
//! reconnects after a graceful restart resyncs without counting twice.
//!
//! Encoding: `TAUMSTAT`, format version (`u32`), payload length (`u64`),
//! FNV-1a 64 checksum of the payload, then the bincode payload. A file
//! that is truncated, corrupt or of an unknown version is refused whole;
//! a series in it that cannot be restored (not a valid counter, a name
//! the store refuses) is skipped and reported, the others are restored.
//! Format 2 adds the owner of each family; format 3 the kernel's word on
//! each remembered collector's process (pid and start time, from the peer
//! credentials of its connection), by which it is judged alive after a
//! restart, not by what its identity claims; format 4 whether the daemon
//! wrote it as it stopped (`clean`): one that was not is what a crash
//! left, older than what was served; format 5 the journal segment
//! recorded after it (see [`crate::journal`]), to replay after a crash,
//! and the jobs kept, with their series and their collectors' twins.
//! Formats 1 to 4 are still read (families unclaimed in 1; processes as
//! claimed in 1 and 2; clean in 1 to 3; no journal in any).
//!
//! [`Store::snapshot_source`] copies what a snapshot needs under the
//! store's lock (values, key positions, bookkeeping: memory copies);
//! [`SnapshotSource::build`] makes the snapshot of it without the lock.

use bincode::Options;
use protocol::{Desc, Identity, Kind};
use serde::{Deserialize, Serialize};

use crate::refusal::Refusal;
use crate::store::{KeptJob, Limits, ProcessRef, RestoredCollector, Store};
use crate::validate::series_key;

mod source;
pub use source::SnapshotSource;

const MAGIC: &[u8; 8] = b"TAUMSTAT";
const FORMAT: u32 = 5;
/// The format before families had owners, still read.
const FORMAT_V1: u32 = 1;
/// The format before collectors had their kernel process, still read.
const FORMAT_V2: u32 = 2;
/// The format before snapshots said whether they were written at a stop.
const FORMAT_V3: u32 = 3;
/// The format before snapshots named their journal.
const FORMAT_V4: u32 = 4;
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
    /// Pid and start time of its process, as the kernel named it.
    pub(crate) process: (u32, u64),
    /// Its job, an index into [`Snapshot::jobs`], and its member index
    /// there.
    pub(crate) job: Option<(u32, u32)>,
    /// Per id, the job's twin series (index into [`Snapshot::series`]).
    pub(crate) twins: Vec<(u32, u32)>,
}

/// A remembered collector in formats 3 and 4: of no job.
#[derive(Deserialize)]
struct CollectorStateV4 {
    identity: Identity,
    counted: Vec<CountedState>,
    process: (u32, u64),
}

impl From<CollectorStateV4> for CollectorState {
    fn from(c: CollectorStateV4) -> CollectorState {
        CollectorState { identity: c.identity, counted: c.counted, process: c.process, job: None, twins: Vec::new() }
    }
}

/// A remembered collector in formats 1 and 2: its process as claimed.
#[derive(Deserialize)]
struct CollectorStateV2 {
    identity: Identity,
    counted: Vec<CountedState>,
}

impl From<CollectorStateV2> for CollectorState {
    fn from(c: CollectorStateV2) -> CollectorState {
        let process = (c.identity.pid, c.identity.start_time);
        CollectorState { identity: c.identity, counted: c.counted, process, job: None, twins: Vec::new() }
    }
}

/// The persistent part of a [`Store`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub(crate) series: Vec<SeriesState>,
    pub(crate) collectors: Vec<CollectorState>,
    /// Families owned by a user, and that user's uid.
    pub(crate) owners: Vec<(String, u32)>,
    /// Written by a daemon as it stopped: nothing was counted after it.
    pub(crate) clean: bool,
    /// The journal segment recorded from when it was copied out of the
    /// store on (0: none was).
    pub(crate) journal: u64,
    /// The jobs kept, their series ids (twins, members' values) indexes
    /// into [`Snapshot::series`].
    pub(crate) jobs: Vec<KeptJob>,
}

/// Format 4: naming no journal, keeping no job.
#[derive(Deserialize)]
struct SnapshotV4 {
    series: Vec<SeriesState>,
    collectors: Vec<CollectorStateV4>,
    owners: Vec<(String, u32)>,
    clean: bool,
}

/// Format 3: not saying whether it was written at a stop.
#[derive(Deserialize)]
struct SnapshotV3 {
    series: Vec<SeriesState>,
    collectors: Vec<CollectorStateV4>,
    owners: Vec<(String, u32)>,
}

/// Format 1: the same without owners nor processes.
#[derive(Deserialize)]
struct SnapshotV1 {
    series: Vec<SeriesState>,
    collectors: Vec<CollectorStateV2>,
}

/// Format 2: without processes.
#[derive(Deserialize)]
struct SnapshotV2 {
    series: Vec<SeriesState>,
    collectors: Vec<CollectorStateV2>,
    owners: Vec<(String, u32)>,
}

/// A series of a snapshot that was not restored, and why.
#[derive(Debug)]
pub struct Skipped {
    pub name: String,
    pub why: SnapshotError,
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
    /// A collector of a job the snapshot does not hold.
    MissingJob,
    /// The same job id twice.
    DuplicateJob,
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
            SnapshotError::MissingJob => f.write_str("corrupt: collector refers to a missing job"),
            SnapshotError::DuplicateJob => f.write_str("corrupt: a job appears twice"),
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
    /// A snapshot of an older format: no journal, no job.
    fn older(
        series: Vec<SeriesState>,
        collectors: Vec<CollectorState>,
        owners: Vec<(String, u32)>,
        clean: bool,
    ) -> Snapshot {
        Snapshot { series, collectors, owners, clean, journal: 0, jobs: Vec::new() }
    }

    /// Number of counter series held.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Remembered collectors held.
    pub fn collector_count(&self) -> usize {
        self.collectors.len()
    }

    /// Whether it was written by a daemon as it stopped; a snapshot that
    /// was not is what a crash left (see [`Store::start_recovery`]).
    pub fn is_clean(&self) -> bool {
        self.clean
    }

    /// The same snapshot, saying whether it is written as the daemon stops.
    pub fn with_clean(self, clean: bool) -> Snapshot {
        Snapshot { clean, ..self }
    }

    /// The journal segment recorded after it was copied out (0: none).
    pub fn journal(&self) -> u64 {
        self.journal
    }

    /// The same snapshot, naming the journal segment recorded after it.
    pub fn with_journal(self, journal: u64) -> Snapshot {
        Snapshot { journal, ..self }
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
        if ![FORMAT, FORMAT_V1, FORMAT_V2, FORMAT_V3, FORMAT_V4].contains(&format) {
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
        if format == FORMAT_V1 {
            let v1: SnapshotV1 = options().deserialize(payload).map_err(SnapshotError::Decode)?;
            let collectors = v1.collectors.into_iter().map(CollectorState::from).collect();
            return Ok(Snapshot::older(v1.series, collectors, Vec::new(), true));
        }
        if format == FORMAT_V2 {
            let v2: SnapshotV2 = options().deserialize(payload).map_err(SnapshotError::Decode)?;
            let collectors = v2.collectors.into_iter().map(CollectorState::from).collect();
            return Ok(Snapshot::older(v2.series, collectors, v2.owners, true));
        }
        if format == FORMAT_V3 {
            let v3: SnapshotV3 = options().deserialize(payload).map_err(SnapshotError::Decode)?;
            let collectors = v3.collectors.into_iter().map(CollectorState::from).collect();
            return Ok(Snapshot::older(v3.series, collectors, v3.owners, true));
        }
        if format == FORMAT_V4 {
            let v4: SnapshotV4 = options().deserialize(payload).map_err(SnapshotError::Decode)?;
            let collectors = v4.collectors.into_iter().map(CollectorState::from).collect();
            return Ok(Snapshot::older(v4.series, collectors, v4.owners, v4.clean));
        }
        options().deserialize(payload).map_err(SnapshotError::Decode)
    }
}

impl Store {
    /// The counters and collector bookkeeping worth keeping across a
    /// restart (written at a stop: see [`Snapshot::with_clean`]).
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_source().build()
    }

    /// A store holding a snapshot's totals. Every series is validated
    /// again: one that is not a valid counter or that the store refuses is
    /// skipped (returned, with why), and so is what collectors counted of
    /// it; an inconsistency in the collectors refuses the whole snapshot.
    pub fn restore(limits: Limits, snap: Snapshot) -> Result<(Store, Vec<Skipped>), SnapshotError> {
        let mut st = Store::new(limits);
        let mut sids = Vec::with_capacity(snap.series.len());
        let mut skipped = Vec::new();
        for s in &snap.series {
            let restored = if s.desc.kind != Kind::Counter || !(s.float.is_finite() && s.float >= 0.0) {
                Err(SnapshotError::InvalidCounter { name: series_key(&s.desc) })
            } else {
                st.internal(&s.desc).map_err(SnapshotError::Series)
            };
            match restored {
                Ok(sid) => {
                    st.restore_counter(sid, s.int, s.float, s.ts);
                    sids.push(Some(sid));
                }
                Err(why) => {
                    skipped.push(Skipped { name: series_key(&s.desc), why });
                    sids.push(None);
                }
            }
        }
        st.restore_owners(&snap.owners);
        let series_at = |i: u32| sids.get(i as usize).ok_or(SnapshotError::MissingSeries).copied();
        let mut jobs = Vec::with_capacity(snap.jobs.len());
        for mut job in snap.jobs {
            if st.keeps_job(&job.id) {
                return Err(SnapshotError::DuplicateJob);
            }
            // From indexes into the snapshot's series to the store's ids; a
            // skipped series' twin and values go, the rest is kept.
            let mut series = Vec::with_capacity(job.series.len());
            for &i in &job.series {
                series.extend(series_at(i)?);
            }
            job.series = series;
            for m in &mut job.members {
                let mut values = Vec::with_capacity(m.values.len());
                for &(i, v) in &m.values {
                    values.extend(series_at(i)?.map(|sid| (sid, v)));
                }
                m.values = values;
            }
            let (size, at) = (job.members.len(), job.end.unwrap_or(job.start));
            jobs.push((st.restore_job(job, at), size));
        }
        let limit = limits.max_series_per_collector;
        for c in snap.collectors {
            let mut counted = Vec::with_capacity(c.counted.len());
            for k in c.counted {
                // The series starts again: what was counted of it goes.
                if let Some(sid) = series_at(k.series)? {
                    counted.push((k.id, sid, k.int, k.float));
                }
            }
            if st.knows(&c.identity) {
                return Err(SnapshotError::DuplicateCollector);
            }
            if let Some(&(id, ..)) = counted.iter().find(|(id, ..)| *id as usize >= limit) {
                return Err(SnapshotError::IdBeyondLimit { id });
            }
            let job = match c.job {
                Some((j, m)) => match jobs.get(j as usize) {
                    Some(&(index, size)) if (m as usize) < size => Some((index, m)),
                    _ => return Err(SnapshotError::MissingJob),
                },
                None => None,
            };
            let mut twins = Vec::with_capacity(c.twins.len());
            for (id, i) in c.twins {
                twins.extend(series_at(i)?.map(|t| (id, t)));
            }
            let process = ProcessRef { pid: c.process.0, start_time: c.process.1 };
            st.restore_collector(c.identity, process, RestoredCollector { counted, job, twins });
        }
        Ok((st, skipped))
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
        let (mut back, skipped) = Store::restore(Limits::default(), snap).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
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
    fn inconsistent_collectors_are_refused_whole() {
        let restore = |edit: fn(&mut Snapshot)| {
            let mut snap = populated().snapshot();
            edit(&mut snap);
            Store::restore(Limits { max_series_per_collector: 10, ..Limits::default() }, snap).map(|_| ())
        };
        restore(|_| ()).unwrap();
        let e = restore(|s| s.collectors[0].counted[0].series = 9).unwrap_err();
        assert!(matches!(e, SnapshotError::MissingSeries), "{e:?}");
        let e = restore(|s| s.collectors.push(s.collectors[0].clone())).unwrap_err();
        assert!(matches!(e, SnapshotError::DuplicateCollector), "{e:?}");
        let e = restore(|s| s.collectors[0].counted[0].id = 10).unwrap_err();
        assert!(matches!(e, SnapshotError::IdBeyondLimit { id: 10 }), "{e:?}");
    }

    #[test]
    fn a_bad_series_is_skipped_and_the_others_restored() {
        for (edit, why) in [
            ((|s: &mut Snapshot| s.series[0].float = f64::INFINITY) as fn(&mut Snapshot), "not a valid counter"),
            (|s| s.series[0].float = -1.0, "not a valid counter"),
            (|s| s.series[0].desc.name = "t".into(), "must end in \"_total\""),
        ] {
            let mut snap = populated().snapshot();
            edit(&mut snap);
            let name = series_key(&snap.series[0].desc);
            let (mut st, skipped) = Store::restore(Limits::default(), snap).unwrap();
            assert_eq!(skipped.len(), 1);
            assert_eq!(skipped[0].name, name);
            assert!(skipped[0].why.to_string().contains(why), "{}", skipped[0].why);
            assert_eq!(st.values().iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["t_total"]);
            assert_eq!(st.get(&["t_total".into()]).unwrap()[0].value, 1.5);
            // The collector's count of the skipped series went with it: its
            // resync counts that series again from nothing.
            let who = Identity { pid: 7, start_time: 3, nonce: 5, program: "p".into() };
            let (a, resumed) = st.hello(who);
            assert!(resumed);
            st.register(a, 0, &Desc::counter("x_total", &[("k", "v")], "X")).unwrap();
            st.register(a, 4, &Desc::counter("t_total", &[], "T").with_scale(Scale::Nano)).unwrap();
            st.resync(
                a,
                &[Sample { id: 0, value: Value::Int(12) }, Sample { id: 4, value: Value::Int(1_500_000_000) }],
                4.0,
            );
            assert_eq!(st.get(&["x_total{k=\"v\"}".into(), "t_total".into()]).unwrap()[0].value, 12.0);
            assert_eq!(st.get(&["t_total".into()]).unwrap()[0].value, 1.5);
        }
    }

    #[test]
    fn owners_survive_and_format_1_files_are_read_unclaimed() {
        let mut st = Store::new(Limits::default());
        let (a, _) = st.hello(Identity { pid: 7, start_time: 3, nonce: 5, program: "p".into() });
        st.set_uid(a, 1000);
        st.register(a, 0, &Desc::counter("mine_total", &[], "M")).unwrap();
        let snap = st.snapshot();
        assert_eq!(snap.owners, [("mine_total".to_owned(), 1000)]);
        let (mut back, _) = Store::restore(Limits::default(), Snapshot::from_bytes(&snap.to_bytes()).unwrap()).unwrap();
        let (b, _) = back.hello(Identity { pid: 8, start_time: 3, nonce: 5, program: "q".into() });
        back.set_uid(b, 1001);
        let e = back.register(b, 0, &Desc::counter("mine_total", &[], "M")).unwrap_err();
        assert_eq!(e.refusal, Refusal::Foreign { name: "mine_total".into() });
        // Format 1: the same payload without owners nor processes.
        let v2: Vec<_> = snap.collectors.iter().map(|c| (&c.identity, &c.counted)).collect();
        let v1 = options().serialize(&(&snap.series, &v2)).unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&FORMAT_V1.to_le_bytes());
        bytes.extend_from_slice(&(v1.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&fnv1a(&v1).to_le_bytes());
        bytes.extend_from_slice(&v1);
        let old = Snapshot::from_bytes(&bytes).unwrap();
        assert!(old.owners.is_empty());
        assert_eq!(old.collectors[0].process, (7, 3), "format 1 and 2: the process as claimed");
        let (mut back, _) = Store::restore(Limits::default(), old).unwrap();
        let (b, _) = back.hello(Identity { pid: 8, start_time: 3, nonce: 5, program: "q".into() });
        back.set_uid(b, 1001);
        back.register(b, 0, &Desc::counter("mine_total", &[], "M")).unwrap();
    }

    #[test]
    fn restored_collectors_keep_the_kernels_process_not_their_claims() {
        let mut st = Store::new(Limits::default());
        let claimed = Identity { pid: 1, start_time: 0, nonce: 5, program: "liar".into() };
        let kernel = ProcessRef { pid: 4242, start_time: 77 };
        let (a, _) = st.hello_from(claimed.clone(), None, Some(kernel), None, 1.0).unwrap();
        st.register(a, 0, &Desc::counter("x_total", &[], "x")).unwrap();
        st.disconnect(a, 1.0);
        let (mut back, _) =
            Store::restore(Limits::default(), Snapshot::from_bytes(&st.snapshot().to_bytes()).unwrap()).unwrap();
        let mut asked = Vec::new();
        back.fold_departed(
            |p| {
                asked.push(p);
                true
            },
            2.0,
        );
        assert_eq!(asked, [kernel]);
        assert!(back.hello_from(claimed, None, None, None, 1.0).unwrap().1, "still remembered");
    }

    #[test]
    fn snapshots_say_whether_they_were_written_at_a_stop_and_format_3_counts_as_such() {
        let snap = populated().snapshot();
        assert!(!snap.is_clean(), "a snapshot while running is not clean");
        assert!(!Snapshot::from_bytes(&snap.to_bytes()).unwrap().is_clean());
        let clean = snap.clone().with_clean(true);
        assert!(Snapshot::from_bytes(&clean.to_bytes()).unwrap().is_clean());
        // Format 3: the same payload without the flag, written at stops only.
        let collectors: Vec<_> = snap.collectors.iter().map(|c| (&c.identity, &c.counted, c.process)).collect();
        let v3 = options().serialize(&(&snap.series, &collectors, &snap.owners)).unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&FORMAT_V3.to_le_bytes());
        bytes.extend_from_slice(&(v3.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&fnv1a(&v3).to_le_bytes());
        bytes.extend_from_slice(&v3);
        let old = Snapshot::from_bytes(&bytes).unwrap();
        assert!(old.is_clean());
        assert_eq!(old.with_clean(false), snap);
    }

    #[test]
    fn each_refusal_keeps_its_message() {
        let decode = options().deserialize::<Snapshot>(&[0xff]).unwrap_err();
        let cases = [
            (SnapshotError::BadMagic, "not a tau_metric_proxy state file (bad magic)".to_owned()),
            (SnapshotError::Truncated, "truncated: shorter than its header".to_owned()),
            (SnapshotError::Format { found: 9 }, "state format 9 is not the supported format 5".to_owned()),
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
            (SnapshotError::MissingJob, "corrupt: collector refers to a missing job".to_owned()),
            (SnapshotError::DuplicateJob, "corrupt: a job appears twice".to_owned()),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
    }
}
