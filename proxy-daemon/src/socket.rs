//! Claims the UNIX socket path safely: never steals a live proxy's socket,
//! never replaces something that is not ours, and binds owner-only.
//!
//! The claim is atomic: a daemon first takes an exclusive lock on
//! `PATH.lock`, held for its whole life, and only the holder probes,
//! replaces and binds the socket. Two daemons starting together on a stale
//! socket cannot both replace it (the loser would otherwise unlink the
//! winner's fresh socket and leave it unreachable).

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::{umask, Mode};

/// The socket path claimed for the daemon's life: the lock that makes it
/// ours.
#[derive(Debug)]
pub(crate) struct Claim {
    path: PathBuf,
    lock_path: PathBuf,
    _lock: Flock<File>,
}

impl Claim {
    /// Locks `PATH.lock`, then binds `path` (see [`bind`]).
    pub(crate) fn take(path: &Path, shared: bool) -> Result<(mio::net::UnixListener, Claim), String> {
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let lock = lock(path, &lock_path)?;
        let listener = bind(path, shared)?;
        Ok((listener, Claim { path: path.to_owned(), lock_path, _lock: lock }))
    }

    /// At shutdown: removes the socket, if it is still ours, and the lock
    /// file, then lets the lock go.
    pub(crate) fn release(self) {
        remove(&self.path);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// Takes the exclusive lock on `lock_path`, created owner-only, never
/// through a symbolic link, never another user's. A lock file removed by
/// a daemon stopping between our open and our lock is opened again.
fn lock(path: &Path, lock_path: &Path) -> Result<Flock<File>, String> {
    let shown = lock_path.display();
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
            .open(lock_path)
            .map_err(|e| format!("cannot open lock file {shown}: {e}"))?;
        let md = file.metadata().map_err(|e| format!("cannot inspect lock file {shown}: {e}"))?;
        let me = nix::unistd::geteuid().as_raw();
        if !md.is_file() || md.uid() != me {
            return Err(format!("lock file {shown} is not a file of uid {me}; refusing to use it"));
        }
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => match std::fs::symlink_metadata(lock_path) {
                Ok(now) if now.ino() == md.ino() && now.dev() == md.dev() => return Ok(lock),
                _ => continue,
            },
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(format!("another tau_metric_proxy is already running on {}", path.display()))
            }
            Err((_, e)) => return Err(format!("cannot lock {shown}: {e}")),
        }
    }
}

/// Binds `path`, replacing a stale socket left by a dead proxy; the
/// caller holds the lock.
///
/// The socket is owner-only, unless `shared`: then anyone may connect and
/// the peer credential check of every connection decides.
fn bind(path: &Path, shared: bool) -> Result<mio::net::UnixListener, String> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(md) => {
            if !md.file_type().is_socket() {
                return Err(format!("{shown} exists and is not a socket; refusing to replace it"));
            }
            let me = nix::unistd::geteuid().as_raw();
            if md.uid() != me {
                return Err(format!("{shown} belongs to uid {}, not to uid {me}; refusing to replace it", md.uid()));
            }
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(format!("another tau_metric_proxy is already running on {shown}")),
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    log::info!("removing stale socket {shown}");
                    std::fs::remove_file(path).map_err(|e| format!("cannot remove stale socket {shown}: {e}"))?;
                }
                Err(e) => return Err(format!("cannot probe existing socket {shown}: {e}")),
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot inspect {shown}: {e}")),
    }
    // Owner-only from the start: no window in which others could connect.
    let old = umask(Mode::from_bits_truncate(if shared { 0o111 } else { 0o177 }));
    let bound = mio::net::UnixListener::bind(path);
    umask(old);
    bound.map_err(|e| format!("cannot bind UNIX socket {shown}: {e}"))
}

/// Removes our socket at shutdown, if it is still ours.
fn remove(path: &Path) {
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if md.file_type().is_socket() && md.uid() == nix::unistd::geteuid().as_raw() {
            let _ = std::fs::remove_file(path);
        }
    }
}
