//! `--state FILE`: counter totals saved periodically and at shutdown, and
//! loaded at start. Never follows a symbolic link, never reads or replaces
//! a file of another user, never leaves a half-written file behind: the
//! directory is synced after the rename, so a crash right after a save
//! finds the new file, and temporary files a crashed daemon left are
//! removed at start. After a crash, the journal recorded since the file
//! was written is replayed on top of it (see [`crate::journal`]).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use proxy_core::{Limits, Snapshot, Store};

use crate::replace::{self, directory, Failure};

/// A state file, loaded.
pub(crate) struct Loaded {
    pub(crate) store: Store,
    /// The file was written at a stop (else a crash left it).
    pub(crate) clean: bool,
    /// The journal segment recorded after it (0: none).
    pub(crate) journal: u64,
}

/// Loads the store saved in `path`, or `None` when there is no file yet.
pub(crate) fn load(path: &Path, limits: Limits) -> Result<Option<Loaded>, String> {
    let shown = path.display();
    remove_stale_temporaries(path);
    let bytes = match replace::read_own(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(why) => return Err(why.describe("state file", path)),
    };
    let snap = Snapshot::from_bytes(&bytes).map_err(|e| {
        format!("cannot load state file {shown}: {e}; nothing was loaded (move the file away to start empty)")
    })?;
    let (clean, journal) = (snap.is_clean(), snap.journal());
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
    Ok(Some(Loaded { store, clean, journal }))
}

/// After a crash, the journal is replayed from the segment after the
/// state file `path` on (the one it names; for a file written at a stop,
/// the one after, which a daemon started on it recorded into): the totals
/// are then those last served, and only the daemon's own counters start
/// again from zero. A crash is a file not written at a stop (`clean`), or
/// one written at a stop with a segment after it. Without a journal to
/// vouch for the totals, `/metrics` also waits for the remembered
/// collectors to send their totals again (see [`Store::start_recovery`]).
/// Returns the store and whether the segments replayed are to be kept
/// until the next save (a crash before it replays them again).
pub(crate) fn recover(path: &Path, mut store: Store, clean: bool, journal: u64) -> (Store, bool) {
    let first = if clean { journal + 1 } else { journal };
    if clean && !crate::journal::exists(path, first) {
        return (store, false);
    }
    let now = crate::server::now();
    let replayed = match first {
        0 => Err("the state file names no journal".to_owned()),
        first => crate::journal::replay(path, first, &mut store, now),
    };
    match replayed {
        Ok(r) => {
            store.start_recovery(now, false);
            log::warn!(
                "the last daemon did not stop cleanly (it crashed or was killed): replayed {} records of {} \
                 collectors from {} journal segments; the daemon's own counters start again from zero",
                r.done.records,
                r.done.collectors,
                r.segments
            );
            (store, true)
        }
        Err(why) => {
            let awaited = store.start_recovery(now, true);
            log::warn!(
                "the last daemon did not stop cleanly (it crashed or was killed) and {why}: waiting for {awaited} \
                 remembered collectors to send their totals again, between {} and {} s, before serving /metrics",
                proxy_core::RECOVERY_MIN,
                proxy_core::RECOVERY_MAX
            );
            (store, false)
        }
    }
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
