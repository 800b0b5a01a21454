//! Wire format spoken on the tau_metric_proxy Unix socket; pure data, no I/O.
//!
//! A connection starts with a fixed 8-byte [`Preamble`] in each direction
//! (magic number and protocol version), so that a peer speaking another
//! version is refused with a clear message before any frame is decoded.
//! After that, each side sends length-prefixed frames: a little-endian `u32`
//! payload length followed by a bincode-encoded [`Request`] (peer to daemon)
//! or [`Reply`] (daemon to peer). Payloads are capped at [`MAX_FRAME`] bytes
//! and decoding never allocates more than that.
//!
//! Collectors choose their own small metric ids when they [`Request::Register`]
//! a series, so the hot path never waits for a round trip: an update is a
//! list of `(id, value)` pairs, a few bytes each with bincode's varints.
#![forbid(unsafe_code)]

mod frame;
mod handshake;
mod message;

pub use frame::{decode_frame, encode_frame, FrameError, FRAME_HEADER, MAX_FRAME};
pub use handshake::{Preamble, PreambleError, Role, MAGIC, MIN_VERSION, PREAMBLE_LEN, VERSION};
pub use message::{Desc, DescInfo, Identity, JobInfo, JobTag, Kind, Reply, Request, Sample, Scale, Value, ValueInfo};

/// Environment variable naming the daemon's socket, honoured by every tool.
pub const SOCKET_ENV: &str = "TAU_METRIC_PROXY";

/// Per-job families start with this: `tau_job_` and the name of the node
/// family they are the job's part of (see [`job_family_name`]), and the job
/// gauges (`tau_job_ranks`, ...).
pub const JOB_PREFIX: &str = "tau_job_";

/// The label naming the job of a per-job series.
pub const JOB_LABEL: &str = "jobid";

/// The per-job twin of node family `name`: [`JOB_PREFIX`] and the name
/// without the daemon's `tau_metric_proxy_` (`mpi_hits_total` →
/// `tau_job_mpi_hits_total`, `tau_metric_proxy_run_total` →
/// `tau_job_run_total`).
pub fn job_family_name(name: &str) -> String {
    format!("{JOB_PREFIX}{}", name.strip_prefix("tau_metric_proxy_").unwrap_or(name))
}

/// Environment variable naming the job of a command and its collectors.
pub const JOB_ENV: &str = "TAU_METRIC_PROXY_JOB";

/// Longest job id, in bytes.
pub const MAX_JOB_ID: usize = 128;

/// Whether `id` may name a job: 1 to [`MAX_JOB_ID`] bytes of printable
/// ASCII other than `"` and `\\`, so it is the same text in a log line, a
/// label value and a file name (`/` is refused too).
pub fn check_job_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("a job id cannot be empty".to_owned());
    }
    if id.len() > MAX_JOB_ID {
        return Err(format!("a job id has at most {MAX_JOB_ID} bytes, not {}", id.len()));
    }
    match id.chars().find(|c| !c.is_ascii_graphic() || matches!(c, '"' | '\\' | '/')) {
        Some(c) => Err(format!("a job id holds printable ASCII but not {c:?}")),
        None => Ok(()),
    }
}

/// The socket path used when neither a flag nor [`SOCKET_ENV`] names one.
pub fn default_socket_path(uid: u32) -> String {
    format!("/tmp/tau_metric_proxy.{uid}.unix")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_short_printable_words() {
        for good in ["4242", "4242.0", "f2Xbc9", "hydra-812-77103", &"x".repeat(MAX_JOB_ID)] {
            assert_eq!(check_job_id(good), Ok(()), "{good}");
        }
        assert_eq!(check_job_id(""), Err("a job id cannot be empty".to_owned()));
        assert_eq!(check_job_id(&"x".repeat(129)), Err("a job id has at most 128 bytes, not 129".to_owned()));
        assert_eq!(check_job_id("a b"), Err("a job id holds printable ASCII but not ' '".to_owned()));
        assert_eq!(check_job_id("a\"b"), Err("a job id holds printable ASCII but not '\"'".to_owned()));
        assert_eq!(check_job_id("../x"), Err("a job id holds printable ASCII but not '/'".to_owned()));
        assert_eq!(check_job_id("é"), Err("a job id holds printable ASCII but not 'é'".to_owned()));
    }
}
