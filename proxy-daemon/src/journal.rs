//! The journal of `--state FILE` on disk (its format and why it exists:
//! `proxy_core`'s journal module): segments `FILE.journal.N` beside the
//! state file, owner-only, never followed through a link.
//!
//! The event loop writes what the store recorded to the current segment
//! before it releases the store's lock, so nothing is served that a
//! SIGKILL could lose: `write(2)` puts it in the kernel's page cache,
//! which outlives the process (syncing it is left to the state file's own
//! saves; a crash of the whole node goes back to the last state file).
//! Each save of the state file starts a new segment while it holds the
//! store's lock, names it in the file, and once the file is in place
//! removes the segments before it. A clean stop removes them all.
//!
//! A segment that cannot be created or written stops the journal: the
//! segments are removed (a chain with a hole would replay lower totals
//! than were served), a crash then waits for the collectors as it does
//! without a journal, and the next save starts a new chain.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::OFlag;
use parking_lot::Mutex;
use proxy_core::{segment_header, Replayed, Store};

use crate::replace::{self, directory};

/// The segment being written, shared by the event loop (which writes) and
/// the housekeeping thread (which starts the next one at each save).
/// Taken only while holding the store's lock, after it.
pub(crate) type SharedJournal = Arc<Mutex<Journal>>;

/// The journal of one state file.
#[derive(Debug)]
pub(crate) struct Journal {
    state: PathBuf,
    /// The segment written, or the last one when none is.
    seq: u64,
    file: Option<File>,
    /// A save of the state file is due now: the daemon started, or a
    /// write failed since the last save.
    save_due: bool,
}

/// The file of segment `seq` of the journal of `state`.
pub(crate) fn segment_path(state: &Path, seq: u64) -> PathBuf {
    let mut name = state.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".journal.{seq}"));
    state.with_file_name(name)
}

/// The segments beside `state`, by number.
fn segments(state: &Path) -> Vec<u64> {
    let Some(name) = state.file_name().map(|n| n.to_string_lossy().into_owned()) else { return Vec::new() };
    let prefix = format!("{name}.journal.");
    let Ok(entries) = std::fs::read_dir(directory(state)) else { return Vec::new() };
    let mut found: Vec<u64> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().strip_prefix(&prefix).and_then(|n| n.parse().ok()))
        .collect();
    found.sort_unstable();
    found
}

/// Creates segment `seq`, its header written.
fn create(state: &Path, seq: u64) -> Result<File, String> {
    let path = segment_path(state, seq);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(&path)
        .map_err(|e| format!("cannot create journal segment {}: {e}", path.display()))?;
    if let Err(e) = file.write_all(&segment_header(seq)) {
        let _ = std::fs::remove_file(&path);
        return Err(format!("cannot write journal segment {}: {e}", path.display()));
    }
    Ok(file)
}

/// Whether segment `seq` of the journal of `state` is there.
pub(crate) fn exists(state: &Path, seq: u64) -> bool {
    segment_path(state, seq).symlink_metadata().is_ok()
}

/// Removes the segments of `state` numbered below `below`.
fn remove_below(state: &Path, below: u64) {
    for seq in segments(state).into_iter().filter(|&s| s < below) {
        let path = segment_path(state, seq);
        if let Err(e) = std::fs::remove_file(&path) {
            log::warn!("cannot remove journal segment {}: {e}", path.display());
        }
    }
}

/// What was replayed after a crash.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    /// Segments read.
    pub(crate) segments: u64,
    pub(crate) done: Replayed,
}

/// Replays the segments of `state` from `first` on (the one its state
/// file names) onto the store restored from it. An error says why the
/// journal cannot vouch for the totals (its first segment missing or
/// unreadable); what was replayed before a later segment failed stays.
/// `now` is the Unix time.
pub(crate) fn replay(state: &Path, first: u64, store: &mut Store, now: f64) -> Result<Replay, String> {
    let mut replay = Replay::default();
    for seq in first.. {
        let path = segment_path(state, seq);
        let bytes = match replace::read_own(&path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) if seq == first => return Err(format!("journal segment {} is missing", path.display())),
            Ok(None) => break,
            Err(why) => return Err(why.describe("journal segment", &path)),
        };
        let done = store
            .replay_journal(&bytes, seq, now)
            .map_err(|e| format!("cannot replay journal segment {}: {e}", path.display()))?;
        if done.dropped_bytes > 0 {
            log::info!(
                "journal segment {}: dropped its last {} bytes, a record the daemon was writing as it stopped",
                path.display(),
                done.dropped_bytes
            );
        }
        replay.segments += 1;
        replay.done.records += done.records;
        replay.done.collectors += done.collectors;
        replay.done.dropped_bytes += done.dropped_bytes;
    }
    Ok(replay)
}

impl Journal {
    /// Starts the journal of `state` in a new segment. After a crash whose
    /// journal was replayed (`keep`), the segments replayed stay until the
    /// next save, and the new one follows them; else the segments are
    /// removed, and the new one follows `named`, the one the state file
    /// names (a clean file's writer removed it: a crash before the next
    /// save replays from the new segment on). A save is due at once: it
    /// names the new segment in a file not marked clean.
    pub(crate) fn start(state: &Path, named: u64, keep: bool, store: &mut Store) -> SharedJournal {
        let seq = match keep {
            true => segments(state).last().copied().unwrap_or(0).max(named) + 1,
            false => {
                remove_below(state, u64::MAX);
                named + 1
            }
        };
        let mut journal = Journal { state: state.to_owned(), seq, file: None, save_due: true };
        match create(state, seq) {
            Ok(file) => {
                journal.file = Some(file);
                store.record_journal(Some(seq));
            }
            Err(e) => {
                log::error!("{e}; the journal stops until the next save of the state file");
                journal.stop(store);
            }
        }
        Arc::new(Mutex::new(journal))
    }

    /// The journal stops: the store records nothing more and the segments
    /// go (a chain with a hole would replay lower totals than were
    /// served).
    fn stop(&mut self, store: &mut Store) {
        self.file = None;
        store.record_journal(None);
        remove_below(&self.state, u64::MAX);
    }

    /// Writes what the store recorded; on a failure the journal stops (see
    /// the module's documentation) and the store stops recording.
    pub(crate) fn write(&mut self, store: &mut Store) {
        let Some(pending) = store.journal_pending() else { return };
        let written = match &mut self.file {
            Some(file) => file.write_all(pending),
            None => Ok(()),
        };
        pending.clear();
        if let Err(e) = written {
            log::error!(
                "cannot write journal segment {}: {e}; the journal stops until the next save of the state file, \
                 and a crash meanwhile loses what was counted since the last one",
                segment_path(&self.state, self.seq).display()
            );
            self.save_due = true;
            self.stop(store);
        }
    }

    /// Whether a save of the state file is due now (the daemon started,
    /// or a write failed).
    pub(crate) fn save_due(&self) -> bool {
        self.save_due
    }

    /// The number the next segment will have.
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq + 1
    }

    /// Creates the next segment (outside the store's lock).
    pub(crate) fn prepare(&self) -> (u64, Result<File, String>) {
        let seq = self.next_seq();
        (seq, create(&self.state, seq))
    }

    /// At a save, under the store's lock as the state is copied out:
    /// what is recorded from now on goes to `next` (from
    /// [`Journal::prepare`]). Returns the segment the state file names,
    /// or 0 when the next segment could not be created (the journal
    /// stops: see the module's documentation).
    pub(crate) fn rotate(&mut self, store: &mut Store, next: (u64, Result<File, String>)) -> u64 {
        self.write(store);
        self.save_due = false;
        match next {
            (seq, Ok(file)) => {
                self.seq = seq;
                self.file = Some(file);
                store.record_journal(Some(seq));
                seq
            }
            (seq, Err(e)) => {
                log::error!("{e}; the journal stops until the next save of the state file");
                self.seq = seq;
                self.stop(store);
                0
            }
        }
    }

    /// The state file naming segment `named` (0: none) is in place: the
    /// segments before it are not needed any more.
    pub(crate) fn saved(&self, named: u64) {
        remove_below(&self.state, if named == 0 { u64::MAX } else { named });
    }

    /// The daemon stopped and saved everything: no segment is needed.
    pub(crate) fn close(&mut self) {
        self.file = None;
        remove_below(&self.state, u64::MAX);
    }
}
