//! Replacing a file atomically and durably, for the state file and the
//! end-of-job profiles: a new file beside it, synced, renamed over it, and
//! its directory synced.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
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
