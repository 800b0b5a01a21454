//! The node service's protocol and its client. A user who may not load the
//! eBPF engine asks the service (`tau_strace --serve`, run by the operator
//! with CAP_BPF and CAP_PERFMON) over its UNIX socket to count a process
//! tree; the service checks that the user could ptrace it, counts it with
//! an engine of its own for this request, and streams the totals back, which
//! the user's `tau_strace` pushes to the proxy as usual.
//!
//! One request per connection, in text lines:
//! - client: `trace PID ONLY MAX_THREADS` (`ONLY`: `-`, or the `--only`
//!   names joined by commas; `MAX_THREADS`: `--max-threads`, which a
//!   request of an older client leaves out);
//! - service: `ok`, or `refused REASON` and the end;
//! - then, every push period, the totals: `row NAME IO HITS BYTES NS ERRORS`
//!   lines, once something was lost `lost THREADS CALLS` (what the engine's
//!   full maps refused, see `counts::Lost`), closed by `snap`; after the
//!   last traced thread ended, a last block and `done`.
//!
//! Closing the connection ends the counting: the service drops the engine.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::counts::{Lost, Row};

/// Where the service listens unless told otherwise.
pub(crate) const DEFAULT_SOCKET: &str = "/run/tau_strace/service.unix";
/// The environment variable naming another socket.
pub(crate) const SOCKET_ENV: &str = "TAU_STRACE_SERVICE";
/// Longest line either side accepts.
pub(crate) const MAX_LINE: usize = 4096;

/// `--service`, else `$TAU_STRACE_SERVICE`, else the default.
pub(crate) fn socket_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_owned)
        .or_else(|| std::env::var_os(SOCKET_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// Whether a service answers on `socket`.
pub(crate) fn reachable(socket: &Path) -> bool {
    UnixStream::connect(socket).is_ok()
}

/// What the service sent last: the totals and the losses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) rows: Vec<Row>,
    pub(crate) lost: Lost,
}

/// The losses as a line (none when nothing was lost).
pub(crate) fn encode_lost(l: Lost) -> String {
    if l == Lost::default() {
        return String::new();
    }
    format!("lost {} {}\n", l.threads, l.calls)
}

fn decode_lost(line: &str) -> Option<Lost> {
    let (threads, calls) = line.strip_prefix("lost ")?.split_once(' ')?;
    Some(Lost { threads: threads.parse().ok()?, calls: calls.parse().ok()? })
}

/// One row as a line.
pub(crate) fn encode_row(r: &Row) -> String {
    format!("row {} {} {} {} {} {}\n", r.name, u8::from(r.io), r.hits, r.bytes, r.ns, r.errors)
}

fn decode_row(line: &str) -> Option<Row> {
    let f: Vec<&str> = line.strip_prefix("row ")?.split(' ').collect();
    let [name, io, hits, bytes, ns, errors] = f[..] else {
        return None;
    };
    Some(Row {
        name: name.to_owned(),
        io: io == "1",
        hits: hits.parse().ok()?,
        bytes: bytes.parse().ok()?,
        ns: ns.parse().ok()?,
        errors: errors.parse().ok()?,
    })
}

/// A counting granted by the service, whose totals a thread of its own
/// copies into the [`Totals`] given to [`Remote::request`].
pub(crate) struct Remote {
    done: Arc<AtomicBool>,
    // Kept open: closing it ends the counting.
    _stream: UnixStream,
}

impl Remote {
    /// Asks the service on `socket` to count process `pid` (and what it
    /// creates), all syscalls or only those of `only`, following at most
    /// `max_threads` threads at once. The error is the one line to show.
    pub(crate) fn request(
        socket: &Path,
        pid: i32,
        only: &[String],
        max_threads: u32,
        totals: Arc<Mutex<Totals>>,
    ) -> Result<Remote, String> {
        let stream =
            UnixStream::connect(socket).map_err(|e| format!("no node service on {}: {e}", socket.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        let only = if only.is_empty() { "-".to_owned() } else { only.join(",") };
        (&stream)
            .write_all(format!("trace {pid} {only} {max_threads}\n").as_bytes())
            .map_err(|e| format!("node service on {}: {e}", socket.display()))?;
        let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| format!("node service on {}: {e}", socket.display()))?;
        match line.trim_end() {
            "ok" => {}
            l => match l.strip_prefix("refused ") {
                Some(why) => return Err(format!("the node service refused: {why}")),
                None => return Err(format!("node service on {}: unexpected answer {l:?}", socket.display())),
            },
        }
        let _ = reader.get_ref().set_read_timeout(None);
        let done = Arc::new(AtomicBool::new(false));
        {
            let done = done.clone();
            std::thread::Builder::new()
                .name("service".into())
                .spawn(move || read_totals(reader, &totals, &done))
                .map_err(|e| format!("cannot start the service reader: {e}"))?;
        }
        Ok(Remote { done, _stream: stream })
    }

    /// Whether any counted thread is still alive (the service says when
    /// none is; a service gone is taken as the end).
    pub(crate) fn any_traced(&self) -> bool {
        !self.done.load(Ordering::SeqCst)
    }
}

fn read_totals(mut reader: BufReader<UnixStream>, totals: &Mutex<Totals>, done: &AtomicBool) {
    let mut block = Totals::default();
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let l = line.trim_end();
        if l == "snap" {
            *totals.lock().unwrap_or_else(|e| e.into_inner()) = std::mem::take(&mut block);
        } else if l == "done" {
            break;
        } else if let Some(r) = decode_row(l) {
            block.rows.push(r);
        } else if let Some(lost) = decode_lost(l) {
            block.lost = lost;
        }
    }
    done.store(true, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_their_encoding() {
        let r = Row { name: "read".into(), io: true, hits: 3, bytes: 30, ns: 999, errors: 1 };
        assert_eq!(decode_row(encode_row(&r).trim_end()), Some(r));
        assert_eq!(decode_row("row read 1 2 3"), None);
        assert_eq!(decode_row("rows read 1 2 3 4 5"), None);
        let l = Lost { threads: 5, calls: 121 };
        assert_eq!(encode_lost(l), "lost 5 121\n");
        assert_eq!(decode_lost(encode_lost(l).trim_end()), Some(l));
        assert_eq!(encode_lost(Lost::default()), "");
        assert_eq!(decode_lost("lost 5"), None);
    }

    #[test]
    fn the_socket_is_the_flag_then_the_environment_then_the_default() {
        assert_eq!(socket_path(Some(Path::new("/s"))), PathBuf::from("/s"));
        if std::env::var_os(SOCKET_ENV).is_none() {
            assert_eq!(socket_path(None), PathBuf::from(DEFAULT_SOCKET));
        }
    }
}
