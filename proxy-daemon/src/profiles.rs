//! `--profile-dir DIR`: the end-of-job profiles, written off the event loop.
//!
//! The loop hands each finished job's record to [`ProfileWriter::finished_job`],
//! which only queues it (at most [`QUEUE`] records wait; beyond, the record is
//! dropped, logged and counted). A thread of its own builds the profile
//! (`proxy_core::Profile`), and writes it as `DIR/JOB@NODE.json` atomically:
//! a temporary file beside it, `fsync`, `rename` over the old one, `fsync` of
//! the directory, so a crash leaves the old profile or the new one, never a
//! part. A failure (a full disk, a directory that is missing or not
//! writable) is logged and counted, never fatal. Every outcome is counted in
//! `tau_metric_proxy_profiles_total{result="written"|"failed"|"dropped"}`.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use protocol::Desc;
use proxy_core::{profile_file_name, JobRecord, Profile, SeriesId, Store};

use crate::replace::{self, Failure};

/// Most finished jobs waiting for their profile to be written.
pub(crate) const QUEUE: usize = 64;

/// The self metric's series, by result.
#[derive(Debug, Clone, Copy)]
struct Outcomes {
    written: SeriesId,
    failed: SeriesId,
    dropped: SeriesId,
}

impl Outcomes {
    fn register(store: &mut Store) -> Outcomes {
        let mut reg = |result: &str| {
            store
                .internal(&Desc::counter(
                    "tau_metric_proxy_profiles_total",
                    &[("result", result)],
                    "End-of-job profiles written to --profile-dir, failed to write, or dropped because the queue was full",
                ))
                .expect("self metric descriptions are valid")
        };
        Outcomes { written: reg("written"), failed: reg("failed"), dropped: reg("dropped") }
    }
}

/// The writer thread, stopped by [`ProfileWriter::stop`] once every
/// [`ProfileQueue`] is dropped.
#[derive(Debug)]
pub(crate) struct ProfileWriter {
    queue: ProfileQueue,
    thread: Option<JoinHandle<()>>,
}

/// Where the event loop hands finished jobs; without `--profile-dir`,
/// nowhere.
#[derive(Debug, Clone)]
pub(crate) struct ProfileQueue {
    tx: Option<SyncSender<JobRecord>>,
    store: Arc<Mutex<Store>>,
    outcomes: Outcomes,
}

impl ProfileWriter {
    /// Starts the writer thread for `dir`, naming the node `node` or else by
    /// its host name (`dir` is created if missing; a directory that cannot
    /// be created is logged, and each profile then fails and is counted).
    /// Without a directory the self metric is still registered, at 0.
    pub(crate) fn start(
        dir: Option<PathBuf>,
        node: Option<String>,
        store: Arc<Mutex<Store>>,
    ) -> Result<ProfileWriter, String> {
        let outcomes = Outcomes::register(&mut store.lock());
        let Some(dir) = dir else {
            return Ok(ProfileWriter { queue: ProfileQueue { tx: None, store, outcomes }, thread: None });
        };
        if let Err(e) = std::fs::create_dir_all(&dir) {
            log::warn!(
                "cannot create the profile directory {}: {e}; profiles will fail until it exists",
                dir.display()
            );
        }
        let node = node.unwrap_or_else(host_name);
        log::info!("end-of-job profiles go to {} (node {node})", dir.display());
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let thread_store = store.clone();
        let thread = std::thread::Builder::new()
            .name("profiles".into())
            .spawn(move || write_loop(rx, &dir, &node, &thread_store, outcomes))
            .map_err(|e| format!("cannot start the profile writer thread: {e}"))?;
        Ok(ProfileWriter { queue: ProfileQueue { tx: Some(tx), store, outcomes }, thread: Some(thread) })
    }

    /// A handle for the event loop.
    pub(crate) fn queue(&self) -> ProfileQueue {
        self.queue.clone()
    }

    /// Writes what is queued and stops the thread (at shutdown, after the
    /// event loop has dropped its queue).
    pub(crate) fn stop(self) {
        drop(self.queue);
        if let Some(thread) = self.thread {
            let _ = thread.join();
        }
    }
}

impl ProfileQueue {
    /// Queues the profile of a job whose last collector on the node left;
    /// never blocks. A full queue drops the job's profile, logged and
    /// counted.
    pub(crate) fn finished_job(&self, record: JobRecord) {
        let Some(tx) = &self.tx else { return };
        let why = match tx.try_send(record) {
            Ok(()) => return,
            Err(TrySendError::Full(r)) => {
                format!("profile of job {} dropped: {QUEUE} profiles are already waiting to be written", r.job)
            }
            Err(TrySendError::Disconnected(r)) => {
                format!("profile of job {} dropped: the profile writer has stopped", r.job)
            }
        };
        log::warn!("{why}");
        self.store.lock().internal_add(self.outcomes.dropped, 1, now());
    }
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The node's host name, as the kernel has it.
fn host_name() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into())
}

fn write_loop(rx: Receiver<JobRecord>, dir: &Path, node: &str, store: &Mutex<Store>, outcomes: Outcomes) {
    for record in rx {
        let profile = Profile::from_record(&record, node);
        let path = dir.join(profile_file_name(&profile.job, node));
        let text = profile.to_json();
        let sid = match write_atomically(&path, text.as_bytes()) {
            Ok(()) => {
                log::info!("profile of job {} written to {} ({} bytes)", profile.job, path.display(), text.len());
                outcomes.written
            }
            Err(e) => {
                log::warn!("cannot write the profile of job {}: {e}", profile.job);
                outcomes.failed
            }
        };
        store.lock().internal_add(sid, 1, now());
    }
}

/// Replaces `path` with the profile's `bytes` (see [`replace::replace`]).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    replace::replace(path, bytes, 0o644).map_err(|f| match f {
        Failure::Create(tmp, e) => format!("cannot create {}: {e}", tmp.display()),
        Failure::Write(e) | Failure::Directory(e) => format!("cannot write {}: {e}", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;
    use proxy_core::{JobRecord, Limits, Store};

    use super::{write_atomically, Outcomes, ProfileQueue, QUEUE};

    fn counted(store: &Mutex<Store>, result: &str) -> f64 {
        let name = format!("tau_metric_proxy_profiles_total{{result=\"{result}\"}}");
        store.lock().get(&[name]).unwrap()[0].value
    }

    /// A writer that does not keep up: the queue holds 64 jobs, the 65th
    /// is dropped and counted, and the caller never waits.
    #[test]
    fn a_full_queue_drops_and_counts_the_profile() {
        let store = Arc::new(Mutex::new(Store::new(Limits::default())));
        let outcomes = Outcomes::register(&mut store.lock());
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let queue = ProfileQueue { tx: Some(tx), store: store.clone(), outcomes };
        let record = |i: usize| JobRecord { job: format!("j{i}"), start: 1.0, end: 2.0, collectors: vec![] };
        for i in 0..QUEUE + 1 {
            queue.finished_job(record(i));
        }
        assert_eq!(counted(&store, "dropped"), 1.0);
        assert_eq!(rx.try_iter().map(|r| r.job).last(), Some(format!("j{}", QUEUE - 1)));
        drop(rx);
        queue.finished_job(record(99));
        assert_eq!(counted(&store, "dropped"), 2.0, "a stopped writer drops too");
        assert_eq!((counted(&store, "written"), counted(&store, "failed")), (0.0, 0.0));
    }

    #[test]
    fn a_profile_replaces_the_old_one_and_never_writes_through_a_link() {
        let dir = std::env::temp_dir().join(format!("tau-profiles-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("4242@node01.json");
        write_atomically(&path, b"old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let target = dir.join("target");
        std::fs::write(&target, b"kept").unwrap();
        let link = dir.join("j@n.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomically(&link, b"profile").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"kept");
        assert!(!std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        let mut names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["4242@node01.json", "j@n.json", "target"], "no temporary file left");
        let err = write_atomically(&target.join("x.json"), b"x").unwrap_err();
        assert!(err.starts_with(&format!("cannot create {}/.x.json.", target.display())), "{err}");
        assert!(err.ends_with(".tmp: Not a directory (os error 20)"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
