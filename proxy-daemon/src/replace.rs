//! Replacing a file atomically and durably, for the state file and the
//! end-of-job profiles: a new file beside it, synced, renamed over it, and
//! its directory synced. And reading back a file of the daemon's own (the
//! state file, the journal) without following a link or trusting a file
//! another user put there.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

/// The step of [`replace`] that failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The temporary file (named here) could not be created.
    Create(PathBuf, io::Error),
    /// Writing, syncing or renaming it failed (it was removed).
    Write(io::Error),
    /// The new file is in place, but its directory could not be synced.
    Directory(io::Error),
}

/// The directory `path` is in (`.` for a bare name).
pub(crate) fn directory(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Replaces `path` with `bytes`, the new file of `mode`. No symbolic link
/// is followed at `path` (`rename` replaces a link itself) nor at the
/// temporary file, named `.NAME.PID.NANOS.tmp` beside it (what a crashed
/// writer leaves is recognised by that name).
pub(crate) fn replace(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Failure> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let tmp = path.with_file_name(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(&tmp)
        .map_err(|e| Failure::Create(tmp.clone(), e))?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all()).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Failure::Write(e));
    }
    // The rename is durable once the directory is.
    File::open(directory(path)).and_then(|d| d.sync_all()).map_err(Failure::Directory)
}

/// Why [`read_own`] refused a file.
#[derive(Debug)]
pub(crate) enum Unreadable {
    Link,
    NotRegular,
    /// It belongs to this uid, not to the daemon's user.
    Foreign(u32),
    Open(io::Error),
    Read(io::Error),
}

impl Unreadable {
    /// The reason, after "refusing to read FILE: " or "cannot ... FILE: ".
    pub(crate) fn describe(&self, what: &str, path: &Path) -> String {
        let shown = path.display();
        let me = nix::unistd::geteuid().as_raw();
        match self {
            Unreadable::Link => format!("refusing to read {what} {shown}: it is a symbolic link"),
            Unreadable::NotRegular => format!("refusing to read {what} {shown}: not a regular file"),
            Unreadable::Foreign(uid) => {
                format!("refusing to read {what} {shown}: it belongs to uid {uid}, not to uid {me}")
            }
            Unreadable::Open(e) => format!("cannot open {what} {shown}: {e}"),
            Unreadable::Read(e) => format!("cannot read {what} {shown}: {e}"),
        }
    }
}

/// The bytes of `path`, a regular file of the daemon's user, or `None`
/// when there is none; a symbolic link is not followed.
pub(crate) fn read_own(path: &Path) -> Result<Option<Vec<u8>>, Unreadable> {
    let mut file = match OpenOptions::new().read(true).custom_flags(OFlag::O_NOFOLLOW.bits()).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) => return Err(Unreadable::Link),
        Err(e) => return Err(Unreadable::Open(e)),
    };
    let md = file.metadata().map_err(Unreadable::Open)?;
    if !md.is_file() {
        return Err(Unreadable::NotRegular);
    }
    if md.uid() != nix::unistd::geteuid().as_raw() {
        return Err(Unreadable::Foreign(md.uid()));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(Unreadable::Read)?;
    Ok(Some(bytes))
}
