//! Jobs in the store: who joins which job, the job's own series (the
//! per-job twins of the shared families and the job gauges), what is kept
//! of a collector when it leaves, the record handed over when a job's
//! last collector has left, and the series leaving after the retention.
//!
//! A collector of a job counts in the node series as any other, and each
//! sample of a shared family (the project's own collectors' `mpi_*`,
//! `strace_*`, `tau_metric_proxy_run_total`) goes to the job's twin too:
//! `tau_job_mpi_hits_total{function="MPI_Send",jobid="4242"}`, in a family
//! of its own, so no sum over one family counts a call twice.

use std::collections::{BTreeSet, HashSet};

use protocol::{job_family_name, Desc, JobInfo, JobTag, Kind, Scale, JOB_LABEL};

use super::jobs::{Job, KeptJob};
use super::series::{om_family_name, Family, Owner, Series, SeriesId};
use super::{Registrant, Store, JOB_PREFIX};
use crate::job_record::{CollectorRecord, JobRecord, SeriesValue};
use crate::refusal::Refusal;
use crate::validate::{labels_of_key, series_key};

const RANKS: (&str, &str) = ("tau_job_ranks", "MPI ranks of the job connected now on this node");
const START: (&str, &str) =
    ("tau_job_start_time_seconds", "When the job's first collector came on this node, in seconds since the Unix epoch");
const END: (&str, &str) =
    ("tau_job_end_time_seconds", "When the job's last collector on this node left, in seconds since the Unix epoch");

impl Store {
    /// Declares the per-job twin of the shared family `name`; returns its
    /// index.
    pub(super) fn declare_twin(&mut self, name: &str, kind: Kind, scale: Scale, help: &str) -> Result<u32, Refusal> {
        let twin = job_family_name(name);
        if let Some(&f) = self.family_order.get(&twin) {
            return Ok(f);
        }
        let om = om_family_name(&twin, kind).to_owned();
        if self.om_names.contains_key(&om) {
            return Err(Refusal::NameConflict { name: twin, family: om });
        }
        self.om_names.insert(om, kind);
        self.families.push(Family {
            name: twin.clone(),
            help: format!("{help}, per job"),
            kind,
            owner: Owner::Daemon,
            scale: Some(scale),
            series: Vec::new(),
            twin: None,
        });
        let f = (self.families.len() - 1) as u32;
        self.family_order.insert(twin, f);
        self.order.valid = false;
        Ok(f)
    }

    /// A job gauge of job `id`, set to `v`.
    fn job_gauge(&mut self, (name, help): (&str, &str), id: &str, v: f64, now: f64) -> Option<SeriesId> {
        let sid = self.internal(&Desc::gauge(name, &[(JOB_LABEL, id)], help)).ok()?;
        self.internal_set(sid, v, now);
        Some(sid)
    }

    /// A new collector joins its job, which starts if it is not kept, or
    /// goes on if it had finished within its retention. At
    /// [`crate::Limits::max_jobs`] the job that finished first goes; when
    /// every kept job runs, the collector counts in no job.
    pub(super) fn join_job(&mut self, index: u32, tag: &JobTag, now: f64) {
        let j = match self.jobs.find(&tag.id) {
            Some(j) => {
                let end = self.jobs.get_mut(j).and_then(|job| job.end_gauge.take());
                self.retire(end.into_iter().collect());
                j
            }
            None => {
                if self.jobs.len() >= self.limits.max_jobs {
                    match self.jobs.oldest_finished() {
                        Some(old) => {
                            self.drop_job(old);
                            self.job_evictions += 1;
                        }
                        None => {
                            self.untracked_collectors += 1;
                            return;
                        }
                    }
                }
                let j = self.jobs.create(&tag.id, now);
                let start = self.job_gauge(START, &tag.id, now, now);
                let ranks = self.job_gauge(RANKS, &tag.id, 0.0, now);
                if let Some(job) = self.jobs.get_mut(j) {
                    (job.start_gauge, job.ranks_gauge) = (start, ranks);
                }
                j
            }
        };
        let Some(c) = self.collectors.get_mut(index) else { return };
        let (pid, program) = (c.process.pid, c.identity().program.clone());
        let m = self.jobs.join(j, pid, &program, tag.rank, now);
        if let Some(c) = self.collectors.get_mut(index) {
            c.job = Some((j, m));
        }
        self.update_ranks(j, now);
    }

    /// The collector of slot `index` connected again, or its connection
    /// closed.
    pub(super) fn member_connected(&mut self, index: u32, connected: bool, now: f64) {
        let Some((j, m)) = self.collectors.get(index).and_then(|c| c.job) else { return };
        if let Some(member) = self.jobs.get_mut(j).and_then(|job| job.members.get_mut(m as usize)) {
            member.connected = connected;
        }
        self.update_ranks(j, now);
    }

    fn update_ranks(&mut self, j: u32, now: f64) {
        let Some(job) = self.jobs.get(j) else { return };
        if let Some(g) = job.ranks_gauge {
            let n = job.ranks_connected() as f64;
            self.internal_set(g, n, now);
        }
    }

    /// Binds the twin of the collector's `id`, now bound to `sid`: the
    /// job's series of the same family and labels, created if needed. No
    /// twin for a collector of no job, a family that is not shared, a
    /// series that has a `jobid` label of its own, or beyond the node's
    /// series limit (the node series counts all the same).
    pub(super) fn bind_twin(&mut self, index: u32, id: u32, sid: SeriesId) {
        let Some((j, _)) = self.collectors.get(index).and_then(|c| c.job) else { return };
        let twin = self.twin_series(sid, j);
        if let Some(c) = self.collectors.get_mut(index) {
            c.set_twin(id, twin);
        }
    }

    fn twin_series(&mut self, sid: SeriesId, j: u32) -> Option<SeriesId> {
        let s = &self.series[sid as usize];
        let (kind, scale) = (s.kind, s.scale);
        let twin_family = &self.families[self.families[s.family as usize].twin? as usize];
        let mut labels = labels_of_key(self.keys.get(sid));
        if labels.iter().any(|(k, _)| k == JOB_LABEL) {
            return None;
        }
        labels.push((JOB_LABEL.to_owned(), self.jobs.get(j)?.id.clone()));
        let desc = Desc { name: twin_family.name.clone(), labels, help: twin_family.help.clone(), kind, scale };
        if let Some(t) = self.keys.find(&series_key(&desc)) {
            return Some(t);
        }
        if self.keys.live() >= self.limits.max_series {
            return None;
        }
        let t = self.series_for(&desc, Registrant::Daemon).ok()?;
        self.jobs.get_mut(j)?.series.push(t);
        Some(t)
    }

    /// The collector of slot `index` leaves for good: its job keeps its
    /// final values; the job's last collector to leave ends it, and its
    /// record waits for [`Store::take_finished_jobs`].
    pub(super) fn leave_job(&mut self, index: u32, now: f64) {
        let Some(c) = self.collectors.get(index) else { return };
        let Some((j, m)) = c.job else { return };
        let values: Vec<(SeriesId, f64)> = c
            .counted_ids()
            .map(|(_, sid, int, float)| {
                let s = &self.series[sid as usize];
                let v = match s.kind {
                    Kind::Counter => s.exposed(int, float),
                    Kind::Gauge => s.gauge_of(index).unwrap_or(0.0),
                };
                (sid, v)
            })
            .collect();
        let Some(job) = self.jobs.get_mut(j) else { return };
        if let Some(member) = job.members.get_mut(m as usize) {
            member.values = values;
            member.end = Some(now);
            member.connected = false;
        }
        job.live -= 1;
        if job.live == 0 {
            job.end = Some(now);
            let id = job.id.clone();
            let end = self.job_gauge(END, &id, now, now);
            if let Some(job) = self.jobs.get_mut(j) {
                job.end_gauge = end;
            }
            if let Some(record) = self.job_record(j) {
                if self.finished.len() >= self.limits.max_jobs.max(1) {
                    self.finished.remove(0);
                }
                self.finished.push(record);
            }
        }
        self.update_ranks(j, now);
    }

    fn job_record(&self, j: u32) -> Option<JobRecord> {
        let job = self.jobs.get(j)?;
        let end = job.end?;
        let value = |&(sid, value): &(SeriesId, f64)| {
            let name = self.families[self.series[sid as usize].family as usize].name.clone();
            SeriesValue { name, labels: labels_of_key(self.keys.get(sid)), value }
        };
        let collectors = job.members.iter().map(|m| CollectorRecord {
            pid: m.pid,
            program: m.program.clone(),
            rank: m.rank,
            start: m.start,
            end: m.end.unwrap_or(end),
            values: m.values.iter().map(value).collect(),
        });
        Some(JobRecord { job: job.id.clone(), start: job.start, end, collectors: collectors.collect() })
    }

    /// The records of the jobs whose last collector on the node left since
    /// the last call, in the order they finished. A job that gets a
    /// collector again within its retention goes on, and gives a record of
    /// all its collectors when it finishes again.
    pub fn take_finished_jobs(&mut self) -> Vec<JobRecord> {
        std::mem::take(&mut self.finished)
    }

    /// Drops the jobs that finished more than the retention before `now`,
    /// their series leaving the page. Returns how many went.
    pub fn expire_jobs(&mut self, now: f64) -> usize {
        let gone = self.jobs.ended_before(now - self.limits.job_retention);
        for &j in &gone {
            self.drop_job(j);
        }
        gone.len()
    }

    fn drop_job(&mut self, j: u32) {
        if let Some(job) = self.jobs.remove(j) {
            self.retire(job.all_series().collect());
        }
    }

    /// Takes series off the page for good; their ids are reused.
    fn retire(&mut self, sids: Vec<SeriesId>) {
        if sids.is_empty() {
            return;
        }
        let mut families = BTreeSet::new();
        for &sid in &sids {
            let s = &mut self.series[sid as usize];
            families.insert(s.family);
            *s = Series::new(s.family, s.kind, s.scale);
            s.retired = true;
            self.keys.retire(sid);
            self.free_series.push(sid);
        }
        let gone: HashSet<SeriesId> = sids.into_iter().collect();
        for f in families {
            self.families[f as usize].series.retain(|sid| !gone.contains(sid));
        }
        self.order.valid = false;
        self.generation += 1;
    }

    /// The jobs kept, running or finished within their retention, by
    /// start.
    pub fn jobs(&self) -> Vec<JobInfo> {
        let mut jobs: Vec<JobInfo> = self
            .jobs
            .iter()
            .map(|(_, j)| JobInfo {
                id: j.id.clone(),
                ranks: j.ranks.iter().copied().collect(),
                ranks_connected: j.ranks_connected() as u32,
                collectors: j.members.len() as u32,
                live_collectors: j.live as u32,
                start: j.start,
                end: j.end,
                commands: j.commands.clone(),
            })
            .collect();
        jobs.sort_by(|a, b| a.start.total_cmp(&b.start).then_with(|| a.id.cmp(&b.id)));
        jobs
    }

    /// Jobs kept, running or finished within their retention.
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// Finished jobs dropped before the end of their retention, at
    /// [`crate::Limits::max_jobs`].
    pub fn job_evictions(&self) -> u64 {
        self.job_evictions
    }

    /// Collectors of a job that counted in no job: every one of the
    /// [`crate::Limits::max_jobs`] jobs kept was running.
    pub fn untracked_job_collectors(&self) -> u64 {
        self.untracked_collectors
    }

    /// Whether series `sid` is one of a job's (or retired).
    pub(crate) fn is_job_series(&self, sid: SeriesId) -> bool {
        let s = &self.series[sid as usize];
        s.retired || self.families[s.family as usize].name.starts_with(JOB_PREFIX)
    }

    /// Whether series `sid` is retired (left out of state files).
    pub(crate) fn is_retired(&self, sid: SeriesId) -> bool {
        self.series[sid as usize].retired
    }

    /// The jobs kept, as a state file keeps them, each with its index.
    pub(crate) fn kept_jobs(&self) -> Vec<(u32, KeptJob)> {
        self.jobs.iter().map(|(j, job)| (j, job.kept())).collect()
    }

    /// Keeps a job a state file kept (its id not kept yet) and brings its
    /// gauges back; returns its index.
    pub(crate) fn restore_job(&mut self, kept: KeptJob, now: f64) -> u32 {
        let job = Job::from_kept(kept);
        let (id, start, end) = (job.id.clone(), job.start, job.end);
        let j = self.jobs.insert(job);
        let start = self.job_gauge(START, &id, start, now);
        let ranks = self.job_gauge(RANKS, &id, 0.0, now);
        let end = end.and_then(|end| self.job_gauge(END, &id, end, now));
        if let Some(job) = self.jobs.get_mut(j) {
            (job.start_gauge, job.ranks_gauge, job.end_gauge) = (start, ranks, end);
        }
        j
    }

    /// Whether a job of this id is kept.
    pub(crate) fn keeps_job(&self, id: &str) -> bool {
        self.jobs.find(id).is_some()
    }
}
