//! The journal's format: what the collectors counted, recorded as it is
//! counted, between two state files (`--state`).
//!
//! A state file is written every `--state-interval` and soon after a
//! collector leaves; what was counted in between lives only in memory. A
//! daemon killed then (SIGKILL, the OOM killer) would come back with lower
//! totals than it served, and a collector that ended meanwhile cannot send
//! its totals again. So the store also records, as it counts, what it
//! would need to count it again: the journal. The daemon writes it to the
//! file system before the store's lock is released, so before a scrape can
//! see what it records, and a restart after a crash replays it on top of
//! the state file: the totals are those last served, not older.
//!
//! Records are absolute: a collector's counted total of an id, not the
//! delta. A segment holds what was recorded after one state file was
//! copied out of the store and before the next one was: the state file
//! names the first segment to replay, and every record in it and after it
//! is newer than the file.
//!
//! Encoding: a segment starts with `TAUMJRNL`, the format (`u32`) and the
//! segment's number (`u64`); then frames of a length (`u32`), the CRC-32
//! of the payload (`u32`) and the bincode payload of one [`Record`]. A frame cut short or damaged ends the replay
//! there: the daemon died while writing it, and so before anything it
//! holds could be served.

use bincode::Options;
use protocol::{Desc, Identity};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"TAUMJRNL";
const FORMAT: u32 = 1;
/// Bytes of a segment's header.
pub const SEGMENT_HEADER: usize = 8 + 4 + 8;
const FRAME_HEADER: usize = 4 + 4;
/// Bound on one record, far above a push of the per-collector limit.
const MAX_RECORD: u64 = 64 << 20;

/// One thing recorded, as read back.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) enum Record {
    /// The collector that `slot` names in the rest of the segment: its
    /// identity, its process as the kernel named it, its user, its job
    /// (id and rank).
    Collector {
        slot: u32,
        identity: Identity,
        process: (u32, u64),
        uid: Option<u32>,
        job: Option<(String, Option<u32>)>,
    },
    /// Its `id` now names the counter `desc`, nothing counted of it yet
    /// (unless it named that counter already).
    Bind { slot: u32, id: u32, desc: Desc },
    /// Its `id` names no counter any more (a gauge now).
    Unbind { slot: u32, id: u32 },
    /// What it counted in all of these ids, integer and floating point.
    Counted { slot: u32, ints: Vec<(u32, u64)>, floats: Vec<(u32, f64)> },
}

/// A [`Record`] as written, borrowing what it holds (the same encoding).
#[derive(Debug, Serialize)]
pub(crate) enum Entry<'a> {
    Collector {
        slot: u32,
        identity: &'a Identity,
        process: (u32, u64),
        uid: Option<u32>,
        job: Option<(&'a str, Option<u32>)>,
    },
    Bind {
        slot: u32,
        id: u32,
        desc: &'a Desc,
    },
    Unbind {
        slot: u32,
        id: u32,
    },
    /// Written by [`push_counted`]; here to test that it writes the same.
    #[cfg(test)]
    Counted {
        slot: u32,
        ints: &'a [(u32, u64)],
        floats: &'a [(u32, f64)],
    },
}

fn options() -> impl Options {
    bincode::DefaultOptions::new().with_varint_encoding().with_limit(MAX_RECORD).reject_trailing_bytes()
}

/// Appends `record` as one frame.
pub(crate) fn push_record(out: &mut Vec<u8>, record: &Entry<'_>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    options().serialize_into(&mut *out, record).expect("a journal record always serialises");
    seal(out, start);
}

/// Fills in the header of the frame begun at `start` (its payload is the
/// rest of `out`): length and checksum.
fn seal(out: &mut [u8], start: usize) {
    let payload = &out[start + FRAME_HEADER..];
    let (len, sum) = (payload.len() as u32, crc32fast::hash(payload));
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + FRAME_HEADER].copy_from_slice(&sum.to_le_bytes());
}

/// Appends a [`Record::Counted`] as one frame, encoded by hand as bincode
/// encodes it: it is the record of every push, and bincode's generic path
/// costs several times this loop.
pub(crate) fn push_counted(out: &mut Vec<u8>, slot: u32, ints: &[(u32, u64)], floats: &[(u32, f64)]) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    out.reserve(3 * 9 + ints.len() * 14 + floats.len() * 13);
    varint(out, COUNTED_VARIANT);
    varint(out, u64::from(slot));
    varint(out, ints.len() as u64);
    for &(id, total) in ints {
        varint(out, u64::from(id));
        varint(out, total);
    }
    varint(out, floats.len() as u64);
    for &(id, total) in floats {
        varint(out, u64::from(id));
        out.extend_from_slice(&total.to_le_bytes());
    }
    seal(out, start);
}

/// The index of [`Record::Counted`] among the variants.
const COUNTED_VARIANT: u64 = 3;

/// bincode's variable-length integer: one byte below 251, else a marker
/// and the value in 2, 4 or 8 little-endian bytes.
#[inline(always)]
fn varint(out: &mut Vec<u8>, v: u64) {
    if v < 251 {
        out.push(v as u8);
    } else if v <= u64::from(u16::MAX) {
        out.push(251);
        out.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v <= u64::from(u32::MAX) {
        out.push(252);
        out.extend_from_slice(&(v as u32).to_le_bytes());
    } else {
        out.push(253);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// The header of segment `seq`.
pub fn segment_header(seq: u64) -> [u8; SEGMENT_HEADER] {
    let mut h = [0; SEGMENT_HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    h[12..].copy_from_slice(&seq.to_le_bytes());
    h
}

/// Why a segment cannot be replayed at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentError {
    /// It does not start with the journal's magic.
    BadMagic,
    /// Shorter than its header.
    Truncated,
    /// Another format version.
    Format { found: u32 },
    /// Its header names another segment than its file name.
    Number { found: u64, expected: u64 },
}

impl std::fmt::Display for SegmentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SegmentError::BadMagic => f.write_str("not a tau_metric_proxy journal (bad magic)"),
            SegmentError::Truncated => f.write_str("truncated: shorter than its header"),
            SegmentError::Format { found } => write!(f, "journal format {found} is not the supported format {FORMAT}"),
            SegmentError::Number { found, expected } => {
                write!(f, "its header names segment {found}, not {expected}")
            }
        }
    }
}

impl std::error::Error for SegmentError {}

/// The frames of segment `seq`, after checking its header.
pub(crate) fn frames(bytes: &[u8], seq: u64) -> Result<Frames<'_>, SegmentError> {
    if bytes.len() >= MAGIC.len() && &bytes[..MAGIC.len()] != MAGIC {
        return Err(SegmentError::BadMagic);
    }
    if bytes.len() < SEGMENT_HEADER {
        return Err(SegmentError::Truncated);
    }
    let format = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if format != FORMAT {
        return Err(SegmentError::Format { found: format });
    }
    let found = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    if found != seq {
        return Err(SegmentError::Number { found, expected: seq });
    }
    Ok(Frames { bytes, at: SEGMENT_HEADER })
}

/// The records of a segment, in order, up to the first frame cut short or
/// damaged.
pub(crate) struct Frames<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Frames<'_> {
    /// Bytes after the last whole frame read: a frame the daemon was
    /// writing when it died.
    pub(crate) fn rest(&self) -> usize {
        self.bytes.len() - self.at
    }
}

impl Iterator for Frames<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        let head = self.bytes.get(self.at..self.at + FRAME_HEADER)?;
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let sum = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        let payload = self.bytes.get(self.at + FRAME_HEADER..self.at + FRAME_HEADER + len)?;
        if crc32fast::hash(payload) != sum {
            return None;
        }
        let record = options().deserialize(payload).ok()?;
        self.at += FRAME_HEADER + len;
        Some(record)
    }
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Records replayed.
    pub records: u64,
    /// Collectors they were about.
    pub collectors: u64,
    /// Bytes after the last whole record, dropped.
    pub dropped_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        let identity = Identity { pid: 7, start_time: 3, nonce: 5, program: "p".into() };
        vec![
            Record::Collector {
                slot: 0,
                identity,
                process: (7, 3),
                uid: Some(1000),
                job: Some(("42".into(), Some(3))),
            },
            Record::Bind { slot: 0, id: 2, desc: Desc::counter("x_total", &[("k", "v")], "X") },
            Record::Unbind { slot: 0, id: 1 },
            Record::Counted { slot: 0, ints: vec![(2, 10)], floats: vec![(3, 1.5)] },
        ]
    }

    fn entry(r: &Record) -> Entry<'_> {
        match r {
            Record::Collector { slot, identity, process, uid, job } => Entry::Collector {
                slot: *slot,
                identity,
                process: *process,
                uid: *uid,
                job: job.as_ref().map(|(id, rank)| (id.as_str(), *rank)),
            },
            Record::Bind { slot, id, desc } => Entry::Bind { slot: *slot, id: *id, desc },
            Record::Unbind { slot, id } => Entry::Unbind { slot: *slot, id: *id },
            Record::Counted { slot, ints, floats } => Entry::Counted { slot: *slot, ints, floats },
        }
    }

    fn segment(records: &[Record]) -> Vec<u8> {
        let mut bytes = segment_header(9).to_vec();
        for r in records {
            push_record(&mut bytes, &entry(r));
        }
        bytes
    }

    #[test]
    fn counted_records_encoded_by_hand_are_what_bincode_writes() {
        let big = [0, 1, 250, 251, 65_535, 65_536, u64::from(u32::MAX), u64::from(u32::MAX) + 1, u64::MAX];
        let ints: Vec<(u32, u64)> = big.iter().enumerate().map(|(i, &v)| ((i as u32) * 1000, v)).collect();
        let floats = vec![(7, 0.5), (70_000, 1e300)];
        for slot in [0, 300, u32::MAX] {
            let (mut by_hand, mut generic) = (Vec::new(), Vec::new());
            push_counted(&mut by_hand, slot, &ints, &floats);
            push_record(&mut generic, &Entry::Counted { slot, ints: &ints, floats: &floats });
            assert_eq!(by_hand, generic, "slot {slot}");
        }
    }

    #[test]
    fn records_read_back_in_order() {
        let bytes = segment(&sample());
        let mut frames = frames(&bytes, 9).unwrap();
        assert_eq!(frames.by_ref().collect::<Vec<_>>(), sample());
        assert_eq!(frames.rest(), 0);
    }

    #[test]
    fn a_torn_or_damaged_frame_ends_the_replay_there() {
        let bytes = segment(&sample());
        let whole = segment(&sample()[..3]).len();
        for cut in whole + 1..bytes.len() {
            let mut f = frames(&bytes[..cut], 9).unwrap();
            assert_eq!(f.by_ref().count(), 3, "cut at {cut}");
            assert_eq!(f.rest(), cut - whole);
        }
        let mut flipped = bytes.clone();
        flipped[whole + FRAME_HEADER] ^= 1;
        assert_eq!(frames(&flipped, 9).unwrap().count(), 3);
    }

    #[test]
    fn foreign_or_misnamed_segments_are_refused() {
        let bytes = segment(&sample());
        assert_eq!(frames(&bytes, 8).err(), Some(SegmentError::Number { found: 9, expected: 8 }));
        assert_eq!(frames(&bytes[..10], 9).err(), Some(SegmentError::Truncated));
        assert_eq!(frames(b"#!/bin/sh\necho not a journal\n", 9).err(), Some(SegmentError::BadMagic));
        let mut other = bytes.clone();
        other[8] = 2;
        assert_eq!(frames(&other, 9).err(), Some(SegmentError::Format { found: 2 }));
        assert_eq!(SegmentError::Number { found: 9, expected: 8 }.to_string(), "its header names segment 9, not 8");
    }
}
