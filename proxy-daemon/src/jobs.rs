//! The daemon's side of jobs: once a second the store drops the jobs past
//! their retention and hands over the records of the jobs that finished,
//! which go to [`Jobs::finished_job`], the one place they are handled (to
//! the profile writer of `--profile-dir`); and the jobs' self metrics.

use protocol::Desc;
use proxy_core::{JobRecord, SeriesId, Store};

use crate::profiles::ProfileQueue;

/// The jobs' self metrics, and what of them was reported.
#[derive(Debug)]
pub(crate) struct Jobs {
    kept: SeriesId,
    evictions: SeriesId,
    untracked: SeriesId,
    evictions_reported: u64,
    untracked_reported: u64,
    /// Where finished jobs go for their profile.
    profiles: ProfileQueue,
}

impl Jobs {
    pub(crate) fn new(store: &mut Store, profiles: ProfileQueue) -> Jobs {
        let mut reg = |d: Desc| store.internal(&d).expect("self metric descriptions are valid");
        Jobs {
            kept: reg(Desc::gauge(
                "tau_metric_proxy_jobs",
                &[],
                "Jobs kept on this node, running or finished within --job-retention",
            )),
            evictions: reg(Desc::counter(
                "tau_metric_proxy_job_evictions_total",
                &[],
                "Finished jobs dropped before the end of their retention because --max-jobs jobs were kept",
            )),
            untracked: reg(Desc::counter(
                "tau_metric_proxy_untracked_job_collectors_total",
                &[],
                "Collectors of a job counted in no job because --max-jobs jobs were running",
            )),
            evictions_reported: 0,
            untracked_reported: 0,
            profiles,
        }
    }

    /// Under the store's lock: drops the jobs past their retention,
    /// refreshes the self metrics, and returns the records of the jobs
    /// that finished since the last call.
    pub(crate) fn housekeeping(&mut self, st: &mut Store, now: f64) -> Vec<JobRecord> {
        let expired = st.expire_jobs(now);
        if expired > 0 {
            log::debug!("{expired} finished jobs left the page after their retention");
        }
        let kept = st.job_count() as f64;
        st.internal_set(self.kept, kept, now);
        let evictions = st.job_evictions();
        st.internal_add(self.evictions, evictions - self.evictions_reported, now);
        self.evictions_reported = evictions;
        let untracked = st.untracked_job_collectors();
        st.internal_add(self.untracked, untracked - self.untracked_reported, now);
        self.untracked_reported = untracked;
        st.take_finished_jobs()
    }

    /// A job's last collector on this node has left: its record, handled
    /// here without the store's lock.
    pub(crate) fn finished_job(&mut self, record: JobRecord) {
        log::debug!(
            "job {} finished: {} collectors, {:.3} s",
            record.job,
            record.collectors.len(),
            record.end - record.start
        );
        self.profiles.finished_job(record);
    }
}
