//! A collector speaking the protocol by hand, frame by frame.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use protocol::{encode_frame, Preamble, Request, Role, PREAMBLE_LEN};

/// A collector speaking the protocol by hand, frame by frame.
pub struct RawPeer {
    pub stream: UnixStream,
}

impl RawPeer {
    /// Connects and exchanges preambles as `role`.
    pub fn connect(socket: &Path, role: Role) -> RawPeer {
        let mut stream = UnixStream::connect(socket).expect("connect to daemon");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(&Preamble::new(role).encode()).unwrap();
        let mut theirs = [0u8; PREAMBLE_LEN];
        stream.read_exact(&mut theirs).expect("daemon preamble");
        Preamble::decode(&theirs).expect("daemon speaks our version");
        RawPeer { stream }
    }

    pub fn send(&mut self, req: &Request) {
        let mut buf = Vec::new();
        encode_frame(req, &mut buf).unwrap();
        self.stream.write_all(&buf).unwrap();
    }

    /// Reads the next reply frame (within the read timeout).
    pub fn recv(&mut self) -> protocol::Reply {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).expect("a reply frame");
        let mut frame = len.to_vec();
        frame.resize(4 + u32::from_le_bytes(len) as usize, 0);
        self.stream.read_exact(&mut frame[4..]).expect("a whole reply frame");
        protocol::decode_frame(&frame).expect("a valid reply").expect("a whole frame").0
    }

    /// Writes raw bytes; a write error (daemon closed) is ignored.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// True when the daemon has closed the connection (read gives EOF).
    pub fn closed_by_daemon(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// A test identity, unique per call.
pub fn identity(program: &str) -> protocol::Identity {
    static N: AtomicUsize = AtomicUsize::new(1);
    protocol::Identity {
        pid: std::process::id(),
        start_time: 0,
        nonce: N.fetch_add(1, Ordering::Relaxed) as u64,
        program: program.to_owned(),
    }
}
