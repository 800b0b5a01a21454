//! Writing to non-blocking sockets, shared by the UNIX and HTTP servers.

use std::io::{self, Write};

/// Writes as much of `out` as the socket takes now and removes it from
/// `out`. Returns `false` when the peer is gone (the rest is then useless).
pub(crate) fn write_pending(stream: &mut impl Write, out: &mut Vec<u8>) -> bool {
    let mut written = 0;
    let alive = loop {
        if written == out.len() {
            break true;
        }
        match stream.write(&out[written..]) {
            Ok(0) => break false,
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break false,
        }
    };
    out.drain(..written);
    alive
}
