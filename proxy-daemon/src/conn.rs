//! What both mio loops do with their connections, whatever they speak: a
//! table of connections keyed by their tokens (slots reused), accepting
//! until the listener has no more, writing without blocking, and waiting
//! for writability only while output is pending.
//!
//! A loop runs one handler per event on the connection of the event's token;
//! the handler returns a [`Verdict`] that [`Slab::handle`] applies once.

use std::io::{self, Write};

use mio::event::Source;
use mio::{Interest, Registry, Token};

/// What a handler decided for its connection.
#[derive(Debug)]
pub(crate) enum Verdict<Why> {
    /// Leave it as it is.
    Keep,
    /// Keep it, and wait for it to be writable too if `write` (output is
    /// pending) or for reads only; the interest changes only if that does.
    Rearm { write: bool },
    /// Close it, for this reason.
    Close(Why),
}

/// One connection: its socket, the loop's state for it, and its interest.
#[derive(Debug)]
pub(crate) struct Conn<S, T> {
    pub(crate) stream: S,
    pub(crate) state: T,
    token: Token,
    writable_armed: bool,
}

impl<S: Source, T> Conn<S, T> {
    pub(crate) fn token(&self) -> Token {
        self.token
    }

    /// Waits for reads, and for writes too if `write`. A failed change is
    /// tried again on the next call.
    fn arm(&mut self, registry: &Registry, write: bool) {
        if write != self.writable_armed {
            let interest = if write { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            if registry.reregister(&mut self.stream, self.token, interest).is_ok() {
                self.writable_armed = write;
            }
        }
    }
}

/// The connections of one loop. Tokens below `first` are the loop's own
/// (listener, signals, waker); a closed connection's token is reused.
#[derive(Debug)]
pub(crate) struct Slab<S, T> {
    slots: Vec<Option<Conn<S, T>>>,
    free: Vec<usize>,
    live: usize,
    first: usize,
}

impl<S: Source, T> Slab<S, T> {
    pub(crate) fn new(first: Token) -> Slab<S, T> {
        Slab { slots: Vec::new(), free: Vec::new(), live: 0, first: first.0 }
    }

    /// Connections open.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Registers `stream` for reads under a free token and keeps it; on
    /// failure the stream is dropped (closed).
    pub(crate) fn insert(&mut self, registry: &Registry, mut stream: S, state: T) -> io::Result<Token> {
        let reused = self.free.pop();
        let i = reused.unwrap_or(self.slots.len());
        let token = Token(i + self.first);
        if let Err(e) = registry.register(&mut stream, token, Interest::READABLE) {
            if let Some(i) = reused {
                self.free.push(i);
            }
            return Err(e);
        }
        let conn = Conn { stream, state, token, writable_armed: false };
        if i == self.slots.len() {
            self.slots.push(Some(conn));
        } else {
            self.slots[i] = Some(conn);
        }
        self.live += 1;
        Ok(token)
    }

    /// Every open connection, in token order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Conn<S, T>> {
        self.slots.iter().flatten()
    }

    pub(crate) fn get_mut(&mut self, token: Token) -> Option<&mut Conn<S, T>> {
        let i = token.0.checked_sub(self.first)?;
        self.slots.get_mut(i).and_then(|c| c.as_mut())
    }

    /// Takes the connection of `token` out of the table and the event loop.
    pub(crate) fn remove(&mut self, registry: &Registry, token: Token) -> Option<Conn<S, T>> {
        let i = token.0.checked_sub(self.first)?;
        let mut conn = self.slots.get_mut(i).and_then(|c| c.take())?;
        let _ = registry.deregister(&mut conn.stream);
        self.free.push(i);
        self.live -= 1;
        Some(conn)
    }

    /// Runs `handler` on the connection of `token`, if it is open, and
    /// applies its verdict. A connection closed is returned with the reason,
    /// for the loop's bookkeeping (logs, counters); dropping it closes it.
    pub(crate) fn handle<W>(
        &mut self,
        registry: &Registry,
        token: Token,
        handler: impl FnOnce(&mut Conn<S, T>) -> Verdict<W>,
    ) -> Option<(Conn<S, T>, W)> {
        let conn = self.get_mut(token)?;
        match handler(conn) {
            Verdict::Keep => None,
            Verdict::Rearm { write } => {
                conn.arm(registry, write);
                None
            }
            Verdict::Close(why) => self.remove(registry, token).map(|conn| (conn, why)),
        }
    }

    /// Runs `handler` on every open connection in token order and applies
    /// each verdict; connections closed are dropped.
    pub(crate) fn sweep<W>(&mut self, registry: &Registry, mut handler: impl FnMut(&mut Conn<S, T>) -> Verdict<W>) {
        for i in 0..self.slots.len() {
            let _ = self.handle(registry, Token(i + self.first), &mut handler);
        }
    }
}

/// Accepts connections until the listener has none left, handing each to
/// `add`. Another error than `WouldBlock` (out of file descriptors,
/// typically) is returned: the caller reports it and accepts again on the
/// listener's next event.
pub(crate) fn accept_all<S>(mut accept: impl FnMut() -> io::Result<S>, mut add: impl FnMut(S)) -> io::Result<()> {
    loop {
        match accept() {
            Ok(stream) => add(stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::Duration;

    use mio::net::UnixStream;
    use mio::{Events, Poll};

    use super::*;

    fn pair() -> (UnixStream, UnixStream) {
        UnixStream::pair().expect("socket pair")
    }

    #[test]
    fn tokens_start_after_the_loops_own_and_are_reused() {
        let poll = Poll::new().unwrap();
        let mut slab: Slab<UnixStream, u32> = Slab::new(Token(2));
        let (a, _pa) = pair();
        let (b, _pb) = pair();
        let (c, _pc) = pair();
        assert_eq!(slab.insert(poll.registry(), a, 10).unwrap(), Token(2));
        assert_eq!(slab.insert(poll.registry(), b, 11).unwrap(), Token(3));
        assert_eq!(slab.len(), 2);
        assert!(slab.get_mut(Token(1)).is_none(), "the loop's own tokens are no connection");
        assert_eq!(slab.remove(poll.registry(), Token(2)).map(|c| c.state), Some(10));
        assert!(slab.remove(poll.registry(), Token(2)).is_none());
        assert_eq!(slab.len(), 1);
        assert_eq!(slab.insert(poll.registry(), c, 12).unwrap(), Token(2), "a freed token is reused");
        assert_eq!(slab.get_mut(Token(2)).map(|c| (c.state, c.token())), Some((12, Token(2))));
        assert_eq!(slab.get_mut(Token(3)).map(|c| c.state), Some(11));
        assert_eq!(slab.len(), 2);
    }

    #[test]
    fn verdicts_are_applied_once_by_the_table() {
        let poll = Poll::new().unwrap();
        let mut slab: Slab<UnixStream, u32> = Slab::new(Token(2));
        let (a, _pa) = pair();
        let t = slab.insert(poll.registry(), a, 1).unwrap();
        assert!(slab
            .handle(poll.registry(), t, |c| -> Verdict<&str> {
                c.state += 1;
                Verdict::Keep
            })
            .is_none());
        assert_eq!(slab.get_mut(t).map(|c| c.state), Some(2));
        let closed = slab.handle(poll.registry(), t, |_| Verdict::Close("bye"));
        assert_eq!(closed.map(|(c, why)| (c.state, why)), Some((2, "bye")));
        assert_eq!(slab.len(), 0);
        let mut ran = false;
        assert!(slab
            .handle(poll.registry(), t, |_| -> Verdict<&str> {
                ran = true;
                Verdict::Keep
            })
            .is_none());
        assert!(!ran, "no handler runs for a closed connection");
    }

    /// Whether `token` is reported writable within a short wait.
    fn writable(poll: &mut Poll, token: Token) -> bool {
        let mut events = Events::with_capacity(8);
        poll.poll(&mut events, Some(Duration::from_millis(50))).unwrap();
        events.iter().any(|e| e.token() == token && e.is_writable())
    }

    #[test]
    fn writable_interest_follows_the_verdict() {
        let mut poll = Poll::new().unwrap();
        let mut slab: Slab<UnixStream, ()> = Slab::new(Token(2));
        let (a, _pa) = pair();
        let t = slab.insert(poll.registry(), a, ()).unwrap();
        assert!(!writable(&mut poll, t), "registered for reads only");
        slab.handle(poll.registry(), t, |_| Verdict::<()>::Rearm { write: true });
        assert!(writable(&mut poll, t));
        slab.handle(poll.registry(), t, |_| Verdict::<()>::Rearm { write: false });
        assert!(!writable(&mut poll, t));
    }

    #[test]
    fn sweep_visits_every_connection_and_drops_the_closed() {
        let poll = Poll::new().unwrap();
        let mut slab: Slab<UnixStream, u32> = Slab::new(Token(2));
        let mut peers = Vec::new();
        for n in 0..4 {
            let (a, p) = pair();
            slab.insert(poll.registry(), a, n).unwrap();
            peers.push(p);
        }
        slab.remove(poll.registry(), Token(3));
        let mut seen = Vec::new();
        slab.sweep(poll.registry(), |c| {
            seen.push(c.state);
            if c.state % 2 == 0 {
                Verdict::Close(())
            } else {
                Verdict::Keep
            }
        });
        assert_eq!(seen, [0, 2, 3]);
        assert_eq!(slab.len(), 1);
        assert_eq!(slab.get_mut(Token(5)).map(|c| c.state), Some(3));
        // The closed connections' sockets are closed: their peers read EOF.
        let mut buf = [0u8; 1];
        assert_eq!(peers[0].read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn accept_all_drains_the_listener_and_reports_other_errors() {
        let mut script = vec![
            Ok(1),
            Err(io::Error::from(io::ErrorKind::Interrupted)),
            Ok(2),
            Err(io::Error::from(io::ErrorKind::WouldBlock)),
            Ok(3),
        ]
        .into_iter();
        let mut added = Vec::new();
        assert!(accept_all(|| script.next().unwrap(), |s| added.push(s)).is_ok());
        assert_eq!(added, [1, 2]);
        let mut script = vec![Ok(4), Err(io::Error::from(io::ErrorKind::OutOfMemory)), Ok(5)].into_iter();
        let e = accept_all(|| script.next().unwrap(), |s| added.push(s)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::OutOfMemory);
        assert_eq!(added, [1, 2, 4]);
    }

    #[test]
    fn pending_output_is_written_until_the_socket_is_full_or_gone() {
        let (mut a, mut b) = pair();
        let mut out = b"hello".to_vec();
        assert!(write_pending(&mut a, &mut out));
        assert!(out.is_empty());
        let mut buf = [0u8; 5];
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        let mut big = vec![7u8; 16 << 20];
        assert!(write_pending(&mut a, &mut big), "a full socket is not a dead one");
        assert!(!big.is_empty(), "what the socket did not take stays");
        drop(b);
        let mut out = b"more".to_vec();
        assert!(!write_pending(&mut a, &mut out), "the peer is gone");
    }
}
