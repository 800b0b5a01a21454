//! Claims the UNIX socket path safely: never steals a live proxy's socket,
//! never replaces something that is not ours, and binds owner-only.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use nix::sys::stat::{umask, Mode};

/// Binds `path`, replacing a stale socket left by a dead proxy.
///
/// The socket is owner-only, unless `shared`: then anyone may connect and
/// the peer credential check of every connection decides.
pub(crate) fn bind(path: &Path, shared: bool) -> Result<mio::net::UnixListener, String> {
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
pub(crate) fn remove(path: &Path) {
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if md.file_type().is_socket() && md.uid() == nix::unistd::geteuid().as_raw() {
            let _ = std::fs::remove_file(path);
        }
    }
}
