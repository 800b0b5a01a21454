//! A blocking connection to the daemon with bounded I/O times.
//!
//! Before anything is sent, the process serving the socket is checked with
//! the kernel's word on it (`SO_PEERCRED`): this user, root, or, for a
//! socket in a directory that only its owner (and root) can write, like the
//! system unit's runtime directory, that owner. A socket another user
//! planted in `/tmp` gets nothing. Every operation is bounded in time as a
//! whole, not only each system call, and in the bytes it takes in, whatever
//! the peer sends.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::socket::{getsockopt, send, sockopt::PeerCredentials, MsgFlags};
use protocol::{decode_frame, encode_frame, FrameError, Preamble, PreambleError, Reply, Request, Role, PREAMBLE_LEN};

/// What can go wrong talking to the daemon.
#[derive(Debug)]
pub enum Error {
    /// Nothing is listening on the socket path.
    NotRunning {
        path: PathBuf,
        source: io::Error,
    },
    /// The socket is served by a user this process does not trust;
    /// nothing was sent.
    Untrusted {
        path: PathBuf,
        uid: u32,
    },
    /// The peer is not a daemon of this protocol version.
    Handshake(PreambleError),
    /// A frame could not be encoded or decoded.
    Frame(FrameError),
    /// The daemon closed the connection.
    Closed,
    /// The daemon answered something this request does not expect.
    Unexpected(String),
    /// The daemon answered the request with an error (it recovers after a
    /// crash, the answer would be too large).
    Refused(String),
    Io(io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotRunning { path, source } => {
                write!(f, "no tau_metric_proxy is running on {}: {source}", path.display())
            }
            Error::Untrusted { path, uid } => write!(
                f,
                "refusing {}: it is served by uid {uid}, neither this user (uid {}) nor the owner of a directory \
                 only that owner can write; nothing was sent",
                path.display(),
                nix::unistd::geteuid()
            ),
            Error::Handshake(e) => write!(f, "handshake with tau_metric_proxy failed: {e}"),
            Error::Frame(e) => write!(f, "{e}"),
            Error::Closed => write!(f, "tau_metric_proxy closed the connection"),
            Error::Unexpected(what) => write!(f, "unexpected answer from tau_metric_proxy: {what}"),
            Error::Refused(why) => write!(f, "tau_metric_proxy answered: {why}"),
            Error::Io(e) => write!(f, "I/O error talking to tau_metric_proxy: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

/// A handshaken, blocking connection. Every read and write is bounded by
/// the timeout given to [`Connection::connect`].
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// Bound on one whole operation (a flush, a reply, the handshake).
    timeout: Duration,
}

/// Most bytes [`Connection::drain_ready`] takes in one call: a daemon that
/// floods the socket cannot keep a collector reading.
const DRAIN_LIMIT: usize = 1 << 20;
/// A flush may take this many timeouts in all: a daemon reading a byte at
/// a time cannot hold a collector longer.
const WRITE_BUDGET: u32 = 4;

impl Connection {
    /// Connects, checks who serves the socket, and exchanges preambles.
    pub fn connect(path: &Path, role: Role, timeout: Duration) -> Result<Connection, Error> {
        let stream =
            connect_bounded(path, timeout).map_err(|source| Error::NotRunning { path: path.to_owned(), source })?;
        check_server(&stream, path)?;
        let mut conn = Connection { stream, inbuf: Vec::new(), outbuf: Vec::new(), timeout };
        let deadline = Instant::now() + timeout;
        conn.write_raw(&Preamble::new(role).encode())?;
        while conn.inbuf.len() < PREAMBLE_LEN {
            conn.fill(deadline)?;
        }
        let theirs: [u8; PREAMBLE_LEN] = conn.inbuf[..PREAMBLE_LEN].try_into().expect("preamble length");
        conn.inbuf.drain(..PREAMBLE_LEN);
        let theirs = Preamble::decode(&theirs).map_err(Error::Handshake)?;
        // An older daemon answers in its own version: not ours, not usable.
        if theirs.version != protocol::VERSION {
            let mismatch = PreambleError::VersionMismatch { ours: protocol::VERSION, theirs: theirs.version };
            return Err(Error::Handshake(mismatch));
        }
        Ok(conn)
    }

    /// Queues a request; nothing is sent before [`Connection::flush`].
    pub fn queue(&mut self, req: &Request) -> Result<(), Error> {
        encode_frame(req, &mut self.outbuf).map_err(Error::Frame)
    }

    /// Bytes queued and not yet sent.
    pub fn queued(&self) -> usize {
        self.outbuf.len()
    }

    /// Sends everything queued. On error the connection must be dropped:
    /// part of a frame may have been sent.
    pub fn flush(&mut self) -> Result<(), Error> {
        let out = std::mem::take(&mut self.outbuf);
        let res = self.write_raw(&out);
        self.outbuf = out;
        self.outbuf.clear();
        res
    }

    /// Sends one request and waits for its reply.
    pub fn call(&mut self, req: &Request) -> Result<Reply, Error> {
        self.queue(req)?;
        self.flush()?;
        self.recv()
    }

    /// Waits for the next reply, at most the timeout in all.
    pub fn recv(&mut self) -> Result<Reply, Error> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some((reply, used)) = decode_frame::<Reply>(&self.inbuf).map_err(Error::Frame)? {
                self.inbuf.drain(..used);
                return Ok(reply);
            }
            self.fill(deadline)?;
        }
    }

    /// Replies that already arrived, without waiting (for collectors, whose
    /// only replies are errors about their own registrations).
    /// At most [`DRAIN_LIMIT`] bytes are taken in one call.
    pub fn drain_ready(&mut self) -> Result<Vec<Reply>, Error> {
        self.stream.set_nonblocking(true)?;
        let start = self.inbuf.len();
        let deadline = Instant::now() + self.timeout;
        let filled = loop {
            if self.inbuf.len() - start >= DRAIN_LIMIT {
                break Ok(());
            }
            match self.fill(deadline) {
                Ok(()) => continue,
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.stream.set_nonblocking(false)?;
        filled?;
        let mut out = Vec::new();
        while let Some((reply, used)) = decode_frame::<Reply>(&self.inbuf).map_err(Error::Frame)? {
            self.inbuf.drain(..used);
            out.push(reply);
        }
        Ok(out)
    }

    /// One read; an error once `deadline` has passed.
    fn fill(&mut self, deadline: Instant) -> Result<(), Error> {
        if Instant::now() >= deadline {
            return Err(timed_out("read timed out"));
        }
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(Error::Closed),
            Ok(n) => {
                self.inbuf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(Error::Io(e)),
        }
    }

    /// `send(2)` with `MSG_NOSIGNAL`: a dead daemon must never kill the
    /// instrumented program with `SIGPIPE`.
    /// Bounded by [`WRITE_BUDGET`] timeouts in all.
    fn write_raw(&mut self, mut buf: &[u8]) -> Result<(), Error> {
        let deadline = Instant::now() + self.timeout * WRITE_BUDGET;
        while !buf.is_empty() {
            if Instant::now() >= deadline {
                return Err(timed_out("write timed out"));
            }
            match send(self.stream.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL) {
                Ok(0) => return Err(Error::Closed),
                Ok(n) => buf = &buf[n..],
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => return Err(timed_out("write timed out")),
                Err(nix::errno::Errno::EPIPE) | Err(nix::errno::Errno::ECONNRESET) => return Err(Error::Closed),
                Err(e) => return Err(Error::Io(e.into())),
            }
        }
        Ok(())
    }
}

fn timed_out(what: &str) -> Error {
    Error::Io(io::Error::new(io::ErrorKind::TimedOut, what))
}

/// Whether the process serving the socket may be told anything: this
/// user's, root's, or that of the owner of the socket's directory when
/// only that owner can write there (no group or other write permission).
fn check_server(stream: &UnixStream, path: &Path) -> Result<(), Error> {
    let uid = getsockopt(stream, PeerCredentials).map_err(|e| Error::Io(e.into()))?.uid();
    if uid == nix::unistd::geteuid().as_raw() || uid == 0 {
        return Ok(());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(md) if md.uid() == uid && md.mode() & 0o022 == 0 => Ok(()),
        _ => Err(Error::Untrusted { path: path.to_owned(), uid }),
    }
}

/// Connects with every step bounded by `timeout`. The timeouts are set
/// before `connect`: a stopped or swamped daemon whose listen queue is full
/// would otherwise block a blocking `connect` until the queue drains.
fn connect_bounded(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    use nix::sys::socket::{connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
    use nix::sys::time::TimeVal;
    let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    let micros = timeout.as_micros().clamp(1, i64::MAX as u128) as i64;
    let tv = TimeVal::new(micros / 1_000_000, micros % 1_000_000);
    setsockopt(&fd, sockopt::SendTimeout, &tv)?;
    setsockopt(&fd, sockopt::ReceiveTimeout, &tv)?;
    let addr = UnixAddr::new(path)?;
    match connect(fd.as_raw_fd(), &addr) {
        Ok(()) => Ok(UnixStream::from(fd)),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINPROGRESS) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "connection timed out (the proxy is not accepting connections)",
        )),
        Err(e) => Err(e.into()),
    }
}
