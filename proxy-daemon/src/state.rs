//! `--state FILE`: counter totals saved periodically and at shutdown, and
//! loaded at start. Never follows a symbolic link, never reads or replaces
//! a file of another user, never leaves a half-written file behind: the
//! directory is synced after the rename, so a crash right after a save
//! finds the new file, and temporary files a crashed daemon left are
//! removed at start.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;
use proxy_core::{Limits, Snapshot, Store};

use crate::replace::{self, directory, Failure};

/// Loads the store saved in `path`, or `None` when there is no file yet,
/// and whether the file is what a crash left (not written at a stop).
pub(crate) fn load(path: &Path, limits: Limits) -> Result<Option<(Store, bool)>, String> {
    let shown = path.display();
    remove_stale_temporaries(path);
    let mut file = match OpenOptions::new().read(true).custom_flags(OFlag::O_NOFOLLOW.bits()).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) => {
            return Err(format!("refusing to read state file {shown}: it is a symbolic link"))
        }
        Err(e) => return Err(format!("cannot open state file {shown}: {e}")),
    };
    let md = file.metadata().map_err(|e| format!("cannot inspect state file {shown}: {e}"))?;
    let me = nix::unistd::geteuid().as_raw();
    if !md.is_file() {
        return Err(format!("refusing to read state file {shown}: not a regular file"));
    }
    if md.uid() != me {
        return Err(format!("refusing to read state file {shown}: it belongs to uid {}, not to uid {me}", md.uid()));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| format!("cannot read state file {shown}: {e}"))?;
    let snap = Snapshot::from_bytes(&bytes).map_err(|e| {
        format!("cannot load state file {shown}: {e}; nothing was loaded (move the file away to start empty)")
    })?;
    let crashed = !snap.is_clean();
    let (store, skipped) = Store::restore(limits, snap).map_err(|e| {
        format!("cannot load state file {shown}: {e}; nothing was loaded (move the file away to start empty)")
    })?;
    if !skipped.is_empty() {
        let shown_skipped: Vec<String> = skipped.iter().take(10).map(|s| format!("{} ({})", s.name, s.why)).collect();
        let more = if skipped.len() > 10 { format!(" and {} more", skipped.len() - 10) } else { String::new() };
        log::warn!(
            "state file {shown}: skipped {} series that cannot be restored, they start again from zero: {}{more}",
            skipped.len(),
            shown_skipped.join(", ")
        );
    }
    log::info!("loaded {} counter series from state file {shown}", store.series_count());
    Ok(Some((store, crashed)))
}

/// After a crash (the state file was not written at a stop), the store
/// recovers: the daemon's own counters start from zero and `/metrics`
/// waits for the remembered collectors to send their totals again (see
/// [`Store::start_recovery`]).
pub(crate) fn recover(mut store: Store, crashed: bool) -> Store {
    if crashed {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let awaited = store.start_recovery(now);
        log::warn!(
            "the state file was not written at a stop (the daemon crashed or was killed): waiting for {awaited}              remembered collectors to send their totals again, between {} and {} s, before serving /metrics",
            proxy_core::RECOVERY_MIN,
            proxy_core::RECOVERY_MAX
        );
    }
    store
}

/// Writes `snap` to `path` atomically: a new owner-only file beside it,
/// then a rename over the old one (see [`replace::replace`]).
pub(crate) fn save(path: &Path, snap: &Snapshot) -> Result<(), String> {
    let shown = path.display();
    replace::replace(path, &snap.to_bytes(), 0o600).map_err(|f| match f {
        Failure::Create(tmp, e) => format!("cannot write state file {shown}: cannot create {}: {e}", tmp.display()),
        Failure::Write(e) => format!("cannot write state file {shown}: {e}"),
        Failure::Directory(e) => format!("cannot sync the directory of state file {shown}: {e}"),
    })
}

/// Removes the temporary files of [`save`] that a daemon killed while
/// saving left beside `path`: regular files of this user named like ours
/// whose writer's pid is no longer running.
fn remove_stale_temporaries(path: &Path) {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else { return };
    let prefix = format!(".{name}.");
    let Ok(entries) = std::fs::read_dir(directory(path)) else { return };
    let me = nix::unistd::geteuid().as_raw();
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) =
            file.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".tmp")).and_then(|r| r.split('.').next())
        else {
            continue;
        };
        let Ok(pid) = pid.parse::<i32>() else { continue };
        let ours = entry.metadata().is_ok_and(|md| md.is_file() && md.uid() == me);
        let writer_gone =
            matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(nix::errno::Errno::ESRCH));
        if ours && writer_gone && std::fs::remove_file(entry.path()).is_ok() {
            log::info!("removed {}, left by a daemon that stopped while saving", entry.path().display());
        }
    }
}
