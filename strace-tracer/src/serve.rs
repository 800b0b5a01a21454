//! `tau_strace --serve SOCKET`: the node service. It offers the eBPF engine
//! to users who may not load it: for each request (see `service.rs`) it
//! checks, with the kernel's peer credentials of the connection and the
//! target's credentials in `/proc`, that the asking user could ptrace the
//! process, then counts it with an engine of its own and streams the totals
//! back until the process tree is gone or the user hangs up. It reads no
//! memory and changes no process; it only loads programs and marks threads.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::counts::{loss_notices, Lost};
use crate::service::{encode_lost, encode_row, MAX_LINE};
use crate::sys::{self, Pid};
use crate::syscall::{Catalog, Slot};
use crate::{bpf, fail, Failure};

/// Requests served at once; more are refused.
const MAX_CLIENTS: usize = 64;
/// Period of the totals sent back.
const PERIOD: Duration = Duration::from_millis(100);

/// Who asks: the peer credentials of the connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    pub(crate) pid: Pid,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// Serves until SIGINT or SIGTERM; a request may ask for a thread map of
/// at most `max_threads` entries (`--max-threads`).
pub(crate) fn serve(socket: &Path, max_threads: u32) -> Result<i32, Failure> {
    if let Some(why) = bpf::unavailable() {
        return Err(fail(1, format!("--serve: cannot offer the eBPF engine: {why}")));
    }
    let listener = bind(socket)?;
    listener.set_nonblocking(true).map_err(|e| fail(1, format!("{}: {e}", socket.display())))?;
    log::info!("serving the eBPF engine on {}", socket.display());
    let busy = Arc::new(AtomicUsize::new(0));
    loop {
        if let Some(r) = sys::take_signals().first() {
            log::info!("signal {}: stopping", r.sig);
            let _ = std::fs::remove_file(socket);
            return Ok(0);
        }
        match listener.accept() {
            Ok((stream, _)) => {
                let busy = busy.clone();
                if busy.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
                    busy.fetch_sub(1, Ordering::SeqCst);
                    let _ = (&stream).write_all(b"refused the node service is busy: try again later\n");
                    continue;
                }
                let spawned = std::thread::Builder::new().name("client".into()).spawn(move || {
                    serve_one(stream, max_threads);
                    busy.fetch_sub(1, Ordering::SeqCst);
                });
                if spawned.is_err() {
                    log::warn!("cannot start a thread for a request");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => log::warn!("accept: {e}"),
        }
    }
}

/// Binds `socket`, connectable by every user (each request is checked),
/// replacing a stale socket but never a live service nor another file.
fn bind(socket: &Path) -> Result<UnixListener, Failure> {
    if let Ok(m) = std::fs::symlink_metadata(socket) {
        if !m.file_type().is_socket() {
            return Err(fail(1, format!("{} exists and is not a socket", socket.display())));
        }
        if UnixStream::connect(socket).is_ok() {
            return Err(fail(1, format!("a node service already listens on {}", socket.display())));
        }
        let _ = std::fs::remove_file(socket);
    }
    // Bound under a private name and renamed once its mode is set, so the
    // socket never appears with the umask's mode, refusing users.
    let name = socket.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let fresh = socket.with_file_name(format!(".{name}.{}", std::process::id()));
    let _ = std::fs::remove_file(&fresh);
    let listener =
        UnixListener::bind(&fresh).map_err(|e| fail(1, format!("cannot listen on {}: {e}", socket.display())))?;
    let placed = std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o666))
        .and_then(|()| std::fs::rename(&fresh, socket));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&fresh);
        return Err(fail(1, format!("{}: {e}", socket.display())));
    }
    Ok(listener)
}

fn serve_one(stream: UnixStream, max_threads: u32) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let peer = match sys::peer_cred(stream.as_raw_fd()) {
        Ok((pid, uid, gid)) => Peer { pid, uid, gid },
        Err(e) => {
            log::warn!("peer credentials: {e}");
            return;
        }
    };
    let mut line = String::new();
    let mut reader = BufReader::new((&stream).take(MAX_LINE as u64));
    // Nothing asked (a client checking that the service is there).
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut out = &stream;
    match grant(peer, line.trim_end(), max_threads) {
        Ok((engine, pid)) => {
            log::info!("counting process {pid} for uid {} (pid {})", peer.uid, peer.pid);
            if out.write_all(b"ok\n").is_ok() {
                stream_totals(engine, &stream, peer, pid);
            }
            log::info!("done with process {pid} for uid {}", peer.uid);
        }
        Err(why) => {
            log::info!("refused uid {} (pid {}): {why}", peer.uid, peer.pid);
            let _ = out.write_all(format!("refused {why}\n").as_bytes());
        }
    }
}

/// Checks a request and starts counting, with a thread map of at most
/// `max_threads` entries; the error is the reason given.
fn grant(peer: Peer, request: &str, max_threads: u32) -> Result<(bpf::Engine, Pid), String> {
    let words: Vec<&str> = request.split(' ').collect();
    let (pid, only, threads) = match words[..] {
        ["trace", pid, only] => (pid, only, bpf::MAX_THREADS.min(max_threads)),
        ["trace", pid, only, threads] => {
            let n = threads.parse().ok().filter(|&n: &u32| n > 0);
            let n = n.ok_or_else(|| format!("not a number of threads: {threads:?}"))?;
            if n > max_threads {
                return Err(format!(
                    "--max-threads {n}: this node service follows at most {max_threads} threads per request"
                ));
            }
            (pid, only, n)
        }
        _ => return Err(format!("not a request: {request:?}")),
    };
    let pid: Pid = pid.parse().ok().filter(|&p| p > 0).ok_or_else(|| format!("not a process id: {pid:?}"))?;
    let catalog = Catalog::new();
    let only: Option<Vec<Slot>> = match only {
        "-" => None,
        list => Some(
            list.split(',')
                .map(|n| catalog.slot_of_name(n).ok_or_else(|| format!("unknown syscall name in --only: {n}")))
                .collect::<Result<_, _>>()?,
        ),
    };
    may_trace(peer, pid)?;
    let mut engine =
        bpf::Engine::load(only.as_deref(), threads).map_err(|why| format!("cannot count with eBPF: {why}"))?;
    crate::engine::mark_process(&mut engine, pid)?;
    // Checked again once marked: a process that ended and whose id was
    // taken meanwhile by someone else's is not counted.
    may_trace(peer, pid)?;
    Ok((engine, pid))
}

/// What ptrace would let the peer do to `pid` (see ptrace(2), "Ptrace
/// access mode checking"): same user and group in every id, a dumpable
/// process, no capability the peer lacks, and what Yama's ptrace_scope
/// allows. Root may count anything.
pub(crate) fn may_trace(peer: Peer, pid: Pid) -> Result<(), String> {
    if peer.uid == 0 {
        return Ok(());
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|_| format!("no process {pid}"))?;
    let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).unwrap_or("").to_owned();
    let all = |k: &str, want: u32| {
        let ids: Vec<u32> = field(k).split_whitespace().filter_map(|v| v.parse().ok()).collect();
        ids.len() == 4 && ids.iter().all(|&v| v == want)
    };
    if !all("Uid:", peer.uid) {
        return Err(format!("process {pid} belongs to another user"));
    }
    if !all("Gid:", peer.gid) {
        return Err(format!("process {pid} runs with another group than yours"));
    }
    // A process that is not dumpable (it changed its privileges) has its
    // /proc directory owned by root.
    let owner = std::fs::metadata(format!("/proc/{pid}")).map(|m| m.uid()).map_err(|_| format!("no process {pid}"))?;
    if owner != peer.uid {
        return Err(format!("process {pid} is not dumpable (it changed its privileges)"));
    }
    let caps = |s: &str| u64::from_str_radix(s.trim(), 16).unwrap_or(u64::MAX);
    let peer_status = std::fs::read_to_string(format!("/proc/{}/status", peer.pid)).unwrap_or_default();
    let peer_caps = peer_status.lines().find_map(|l| l.strip_prefix("CapPrm:")).map_or(0, caps);
    if caps(&field("CapPrm:")) & !peer_caps != 0 {
        return Err(format!("process {pid} has capabilities you lack"));
    }
    let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").unwrap_or_default();
    match scope.trim() {
        "" | "0" => Ok(()),
        "1" if descends_from(pid, peer.pid) => Ok(()),
        "1" => Err(format!("process {pid} is not a descendant of yours, as ptrace_scope 1 requires")),
        s => Err(format!("ptrace_scope {s} lets no user trace another process")),
    }
}

/// Whether `pid` is `ancestor` or one of its descendants.
fn descends_from(mut pid: Pid, ancestor: Pid) -> bool {
    for _ in 0..4096 {
        if pid == ancestor {
            return true;
        }
        if pid <= 1 {
            return false;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            return false;
        };
        match status.lines().find_map(|l| l.strip_prefix("PPid:")).and_then(|p| p.trim().parse().ok()) {
            Some(p) => pid = p,
            None => return false,
        }
    }
    false
}

/// Sends the totals every period until the tree is gone (then a last time
/// and `done`) or the user hangs up. A full map is also said once in the
/// service's log, naming the request.
fn stream_totals(mut engine: bpf::Engine, stream: &UnixStream, peer: Peer, pid: Pid) {
    let Some(mut reader) = engine.take_reader() else {
        return;
    };
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut out = stream;
    let mut said = Lost::default();
    loop {
        let last = !engine.any_traced();
        let mut text: String = reader.snapshot().iter().map(encode_row).collect();
        let lost = reader.lost();
        for line in loss_notices(said, lost, reader.bounds()) {
            log::warn!("process {pid} for uid {}: {line}", peer.uid);
        }
        said = lost;
        text.push_str(&encode_lost(lost));
        text.push_str(if last { "snap\ndone\n" } else { "snap\n" });
        if out.write_all(text.as_bytes()).is_err() || last {
            return;
        }
        std::thread::sleep(PERIOD);
    }
}
