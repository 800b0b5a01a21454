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
pub use message::{Desc, DescInfo, Identity, Kind, Reply, Request, Sample, Scale, Value, ValueInfo};

/// Environment variable naming the daemon's socket, honoured by every tool.
pub const SOCKET_ENV: &str = "TAU_METRIC_PROXY";

/// The socket path used when neither a flag nor [`SOCKET_ENV`] names one.
pub fn default_socket_path(uid: u32) -> String {
    format!("/tmp/tau_metric_proxy.{uid}.unix")
}
