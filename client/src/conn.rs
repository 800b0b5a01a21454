//! A blocking connection to the daemon with bounded I/O times.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{send, MsgFlags};
use protocol::{decode_frame, encode_frame, FrameError, Preamble, PreambleError, Reply, Request, Role, PREAMBLE_LEN};

/// What can go wrong talking to the daemon.
#[derive(Debug)]
pub enum Error {
    /// Nothing is listening on the socket path.
    NotRunning {
        path: PathBuf,
        source: io::Error,
    },
    /// The peer is not a daemon of this protocol version.
    Handshake(PreambleError),
    /// A frame could not be encoded or decoded.
    Frame(FrameError),
    /// The daemon closed the connection.
    Closed,
    /// The daemon answered something this request does not expect.
    Unexpected(String),
    Io(io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotRunning { path, source } => {
                write!(f, "no tau_metric_proxy is running on {}: {source}", path.display())
            }
            Error::Handshake(e) => write!(f, "handshake with tau_metric_proxy failed: {e}"),
            Error::Frame(e) => write!(f, "{e}"),
            Error::Closed => write!(f, "tau_metric_proxy closed the connection"),
            Error::Unexpected(what) => write!(f, "unexpected answer from tau_metric_proxy: {what}"),
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
}

impl Connection {
    /// Connects and exchanges preambles.
    pub fn connect(path: &Path, role: Role, timeout: Duration) -> Result<Connection, Error> {
        let stream =
            connect_bounded(path, timeout).map_err(|source| Error::NotRunning { path: path.to_owned(), source })?;
        let mut conn = Connection { stream, inbuf: Vec::new(), outbuf: Vec::new() };
        conn.write_raw(&Preamble::new(role).encode())?;
        let mut theirs = [0u8; PREAMBLE_LEN];
        conn.stream.read_exact(&mut theirs).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => Error::Closed,
            _ => Error::Io(e),
        })?;
        Preamble::decode(&theirs).map_err(Error::Handshake)?;
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

    /// Waits for the next reply.
    pub fn recv(&mut self) -> Result<Reply, Error> {
        loop {
            if let Some((reply, used)) = decode_frame::<Reply>(&self.inbuf).map_err(Error::Frame)? {
                self.inbuf.drain(..used);
                return Ok(reply);
            }
            self.fill()?;
        }
    }

    /// Replies that already arrived, without waiting (for collectors, whose
    /// only replies are errors about their own registrations).
    pub fn drain_ready(&mut self) -> Result<Vec<Reply>, Error> {
        self.stream.set_nonblocking(true)?;
        let filled = loop {
            match self.fill() {
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

    fn fill(&mut self) -> Result<(), Error> {
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
    fn write_raw(&mut self, mut buf: &[u8]) -> Result<(), Error> {
        while !buf.is_empty() {
            match send(self.stream.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL) {
                Ok(0) => return Err(Error::Closed),
                Ok(n) => buf = &buf[n..],
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => {
                    return Err(Error::Io(io::Error::new(io::ErrorKind::TimedOut, "write timed out")))
                }
                Err(nix::errno::Errno::EPIPE) | Err(nix::errno::Errno::ECONNRESET) => return Err(Error::Closed),
                Err(e) => return Err(Error::Io(e.into())),
            }
        }
        Ok(())
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
