//! Length-prefixed bincode frames with a hard size limit.

use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};

/// Largest payload a frame may carry. Decoding refuses anything larger
/// before reading it, and bincode is bounded by the same limit.
pub const MAX_FRAME: usize = 1 << 20;
/// Size of the length prefix.
pub const FRAME_HEADER: usize = 4;

/// Why bytes could not be turned into a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix exceeds [`MAX_FRAME`].
    Oversized(usize),
    /// The payload is not a valid message.
    Malformed(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Oversized(n) => {
                write!(f, "frame of {n} bytes exceeds the limit of {MAX_FRAME} bytes")
            }
            FrameError::Malformed(why) => write!(f, "malformed frame: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_varint_encoding()
        .with_little_endian()
        .with_limit(MAX_FRAME as u64)
        .reject_trailing_bytes()
}

/// Appends `msg` as one frame to `out`.
///
/// Fails only if the encoded message would exceed [`MAX_FRAME`]; `out` is
/// then left as it was.
pub fn encode_frame<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    if let Err(e) = options().serialize_into(&mut *out, msg) {
        out.truncate(start);
        return Err(FrameError::Malformed(e.to_string()));
    }
    let len = out.len() - start - FRAME_HEADER;
    if len > MAX_FRAME {
        out.truncate(start);
        return Err(FrameError::Oversized(len));
    }
    out[start..start + FRAME_HEADER].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Decodes the first frame of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole frame, or the
/// message and the number of bytes it used.
pub fn decode_frame<T: DeserializeOwned>(buf: &[u8]) -> Result<Option<(T, usize)>, FrameError> {
    let Some(header) = buf.get(..FRAME_HEADER) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::Oversized(len));
    }
    let Some(payload) = buf.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Ok(None);
    };
    let msg = options().deserialize(payload).map_err(|e| FrameError::Malformed(e.to_string()))?;
    Ok(Some((msg, FRAME_HEADER + len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Desc, Identity, JobInfo, JobTag, Kind, Reply, Request, Sample, Scale, Value, ValueInfo};

    fn samples() -> Vec<Request> {
        vec![
            Request::Hello { identity: Identity { pid: 42, start_time: 7, nonce: u64::MAX, program: "a.out".into() } },
            Request::Register {
                id: 3,
                desc: Desc::new("mpi_time_total", &[("function", "MPI_Send")], "Time", Kind::Counter, Scale::Nano),
            },
            Request::Update {
                samples: vec![Sample { id: 0, value: Value::Int(1) }, Sample { id: 1, value: Value::Float(-2.5) }],
            },
            Request::Resync { samples: vec![Sample { id: 9, value: Value::Int(u64::MAX) }] },
            Request::Goodbye,
            Request::List,
            Request::Values,
            Request::Get { names: vec!["a".into(), "b{c=\"d\"}".into()] },
            Request::Changes { since: 12 },
            Request::JobHello {
                identity: Identity { pid: 42, start_time: 7, nonce: 1, program: "a.out".into() },
                job: JobTag { id: "4242.0".into(), rank: Some(3) },
            },
            Request::Jobs,
        ]
    }

    #[test]
    fn the_requests_of_older_versions_keep_their_bytes() {
        // What a version-1 or -2 collector sends: variant index, then the
        // identity's fields as varints and a length-prefixed name.
        let mut buf = Vec::new();
        let identity = Identity { pid: 42, start_time: 7, nonce: 1, program: "ab".into() };
        encode_frame(&Request::Hello { identity }, &mut buf).unwrap();
        assert_eq!(buf, [7, 0, 0, 0, 0, 42, 7, 1, 2, b'a', b'b']);
        buf.clear();
        encode_frame(&Request::Changes { since: 12 }, &mut buf).unwrap();
        assert_eq!(buf, [2, 0, 0, 0, 8, 12]);
        buf.clear();
        let job = JobTag { id: "j".into(), rank: None };
        let identity = Identity { pid: 42, start_time: 7, nonce: 1, program: "ab".into() };
        encode_frame(&Request::JobHello { identity, job }, &mut buf).unwrap();
        assert_eq!(buf, [10, 0, 0, 0, 9, 42, 7, 1, 2, b'a', b'b', 1, b'j', 0]);
    }

    #[test]
    fn requests_round_trip_back_to_back() {
        let mut buf = Vec::new();
        for m in samples() {
            encode_frame(&m, &mut buf).unwrap();
        }
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((m, used)) = decode_frame::<Request>(&buf[at..]).unwrap() {
            got.push(m);
            at += used;
        }
        assert_eq!(at, buf.len());
        assert_eq!(got, samples());
    }

    #[test]
    fn replies_round_trip() {
        let r = Reply::Values {
            generation: 5,
            values: vec![ValueInfo { name: "x".into(), ts: 1.5, value: 2.0 }],
            last: true,
        };
        let mut buf = Vec::new();
        encode_frame(&r, &mut buf).unwrap();
        assert_eq!(decode_frame::<Reply>(&buf).unwrap(), Some((r, buf.len())));
        let job = JobInfo {
            id: "4242".into(),
            ranks: vec![0, 1],
            ranks_connected: 1,
            collectors: 4,
            live_collectors: 2,
            start: 1.5,
            end: None,
            commands: vec!["ring".into()],
        };
        let r = Reply::Jobs { jobs: vec![job], last: true };
        buf.clear();
        encode_frame(&r, &mut buf).unwrap();
        assert_eq!(decode_frame::<Reply>(&buf).unwrap(), Some((r, buf.len())));
    }

    #[test]
    fn counter_update_costs_a_few_bytes_per_series() {
        let mut buf = Vec::new();
        let samples = (0..100).map(|id| Sample { id, value: Value::Int(3) }).collect();
        encode_frame(&Request::Update { samples }, &mut buf).unwrap();
        // header + tag + length + 100 * (id + value tag + value)
        assert_eq!(buf.len(), 4 + 1 + 1 + 100 * 3);
    }

    #[test]
    fn every_truncation_asks_for_more_bytes() {
        let mut buf = Vec::new();
        for m in samples() {
            buf.clear();
            encode_frame(&m, &mut buf).unwrap();
            for cut in 0..buf.len() {
                assert_eq!(decode_frame::<Request>(&buf[..cut]), Ok(None), "cut at {cut} of {m:?}");
            }
        }
    }

    #[test]
    fn truncated_payload_inside_a_whole_frame_is_malformed() {
        let mut buf = Vec::new();
        encode_frame(&samples()[1], &mut buf).unwrap();
        let payload_len = buf.len() - FRAME_HEADER;
        for keep in 0..payload_len {
            let mut f = (keep as u32).to_le_bytes().to_vec();
            f.extend_from_slice(&buf[FRAME_HEADER..FRAME_HEADER + keep]);
            assert!(matches!(decode_frame::<Request>(&f), Err(FrameError::Malformed(_))), "keep {keep}");
        }
    }

    #[test]
    fn oversized_prefix_is_refused_before_reading() {
        let mut buf = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
        buf.extend_from_slice(&[0; 16]);
        assert_eq!(decode_frame::<Request>(&buf), Err(FrameError::Oversized(MAX_FRAME + 1)));
        let huge = u32::MAX.to_le_bytes();
        assert_eq!(decode_frame::<Request>(&huge), Err(FrameError::Oversized(u32::MAX as usize)));
    }

    #[test]
    fn huge_inner_lengths_do_not_allocate() {
        // A Get with a claimed vector length of 2^62 elements inside a small frame.
        let mut payload = vec![7u8]; // variant index of Get
        payload.push(0xfd); // varint u64 marker
        payload.extend_from_slice(&(1u64 << 62).to_le_bytes());
        let mut f = (payload.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&payload);
        assert!(matches!(decode_frame::<Request>(&f), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut buf = Vec::new();
        encode_frame(&Request::Goodbye, &mut buf).unwrap();
        buf.push(0);
        buf[0] += 1;
        assert!(matches!(decode_frame::<Request>(&buf), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn random_bytes_never_panic() {
        // xorshift: deterministic, no dependency.
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut ok = 0;
        for round in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut f = (len as u32).to_le_bytes().to_vec();
            f.extend((0..len).map(|_| next() as u8));
            if round % 2 == 0 {
                // bias towards valid tags to get deeper into the decoder
                if let Some(b) = f.get_mut(FRAME_HEADER) {
                    *b %= 11;
                }
            }
            if let Ok(Some(_)) = decode_frame::<Request>(&f) {
                ok += 1;
            }
            let _ = decode_frame::<Reply>(&f);
        }
        // Some random payloads are valid messages (e.g. Goodbye, List): the
        // decoder was exercised on both paths.
        assert!(ok > 0);
    }
}
