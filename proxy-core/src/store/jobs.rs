//! The jobs a store knows: per job its collectors (members) in the order
//! they came, its commands and ranks, when it started and ended, and the
//! series of its own (`tau_job_*{jobid=...}`). Knows nothing of the store
//! but series ids.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::series::SeriesId;

/// Distinct commands kept per job, and the bytes kept of each: a job's
/// summary stays small whatever its collectors call themselves.
pub(crate) const MAX_COMMANDS: usize = 32;
pub(crate) const MAX_COMMAND_LEN: usize = 256;

/// One collector of a job.
#[derive(Debug)]
pub(super) struct Member {
    pub(super) pid: u32,
    pub(super) program: String,
    pub(super) rank: Option<u32>,
    pub(super) start: f64,
    /// When it left for good (folded), once it did.
    pub(super) end: Option<f64>,
    /// Whether its connection is open now.
    pub(super) connected: bool,
    /// Its final value of each node series it counted, in exposition
    /// units, kept when it was folded.
    pub(super) values: Vec<(SeriesId, f64)>,
}

#[derive(Debug)]
pub(super) struct Job {
    pub(super) id: String,
    pub(super) start: f64,
    /// When its last collector left; `None` while it runs.
    pub(super) end: Option<f64>,
    pub(super) members: Vec<Member>,
    /// Members not folded yet (connected or expected back).
    pub(super) live: usize,
    pub(super) commands: Vec<String>,
    pub(super) ranks: BTreeSet<u32>,
    /// Its series: the per-job twins of node series, in creation order.
    pub(super) series: Vec<SeriesId>,
    /// Its gauges: ranks connected now, start time, end time (once it
    /// ended).
    pub(super) ranks_gauge: Option<SeriesId>,
    pub(super) start_gauge: Option<SeriesId>,
    pub(super) end_gauge: Option<SeriesId>,
}

impl Job {
    /// Job `id`, started at `start`, with no member yet.
    pub(super) fn new(id: &str, start: f64) -> Job {
        Job {
            id: id.to_owned(),
            start,
            end: None,
            members: Vec::new(),
            live: 0,
            commands: Vec::new(),
            ranks: BTreeSet::new(),
            series: Vec::new(),
            ranks_gauge: None,
            start_gauge: None,
            end_gauge: None,
        }
    }

    /// Distinct ranks of the members connected now.
    pub(super) fn ranks_connected(&self) -> usize {
        let ranks: BTreeSet<u32> = self.members.iter().filter(|m| m.connected).filter_map(|m| m.rank).collect();
        ranks.len()
    }

    /// Every series of the job, its gauges included.
    pub(super) fn all_series(&self) -> impl Iterator<Item = SeriesId> + '_ {
        let gauges = [self.ranks_gauge, self.start_gauge, self.end_gauge];
        self.series.iter().copied().chain(gauges.into_iter().flatten())
    }

    fn note_command(&mut self, program: &str) {
        let mut cut = program.len().min(MAX_COMMAND_LEN);
        while !program.is_char_boundary(cut) {
            cut -= 1;
        }
        let program = &program[..cut];
        if self.commands.len() < MAX_COMMANDS && !self.commands.iter().any(|c| c == program) {
            self.commands.push(program.to_owned());
        }
    }
}

/// Every job kept, running or finished within its retention, in reusable
/// slots indexed by id.
#[derive(Debug, Default)]
pub(super) struct Jobs {
    slots: Vec<Option<Job>>,
    free: Vec<u32>,
    by_id: HashMap<String, u32>,
}

impl Jobs {
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(super) fn find(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    pub(super) fn get(&self, index: u32) -> Option<&Job> {
        self.slots.get(index as usize).and_then(Option::as_ref)
    }

    pub(super) fn get_mut(&mut self, index: u32) -> Option<&mut Job> {
        self.slots.get_mut(index as usize).and_then(Option::as_mut)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &Job)> {
        self.slots.iter().enumerate().filter_map(|(i, j)| j.as_ref().map(|j| (i as u32, j)))
    }

    /// A new job `id` (not kept yet), started at `now`.
    pub(super) fn create(&mut self, id: &str, now: f64) -> u32 {
        self.insert(Job::new(id, now))
    }

    /// Keeps `job` (whose id is not kept yet); returns its index.
    pub(super) fn insert(&mut self, job: Job) -> u32 {
        let id = job.id.clone();
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(job);
                i
            }
            None => {
                self.slots.push(Some(job));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_id.insert(id, index);
        index
    }

    /// Adds a collector to job `index`; returns its member index.
    pub(super) fn join(&mut self, index: u32, pid: u32, program: &str, rank: Option<u32>, now: f64) -> u32 {
        let job = self.get_mut(index).expect("joined job exists");
        job.end = None;
        job.live += 1;
        job.note_command(program);
        if let Some(r) = rank {
            job.ranks.insert(r);
        }
        let m = Member {
            pid,
            program: program.to_owned(),
            rank,
            start: now,
            end: None,
            connected: true,
            values: Vec::new(),
        };
        job.members.push(m);
        (job.members.len() - 1) as u32
    }

    /// The finished job that ended first, if any.
    pub(super) fn oldest_finished(&self) -> Option<u32> {
        let finished = self.iter().filter_map(|(i, j)| j.end.map(|end| (end, i)));
        finished.min_by(|a, b| a.0.total_cmp(&b.0)).map(|(_, i)| i)
    }

    /// Finished jobs whose end is at or before `before`.
    pub(super) fn ended_before(&self, before: f64) -> Vec<u32> {
        self.iter().filter(|(_, j)| j.end.is_some_and(|end| end <= before)).map(|(i, _)| i).collect()
    }

    /// Drops job `index` and frees its slot.
    pub(super) fn remove(&mut self, index: u32) -> Option<Job> {
        let job = self.slots.get_mut(index as usize)?.take()?;
        self.by_id.remove(&job.id);
        self.free.push(index);
        Some(job)
    }
}

/// A job as a state file keeps it: what it is, without the store's
/// bookkeeping (its gauges come back with it, its live members are
/// counted again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct KeptJob {
    pub(crate) id: String,
    pub(crate) start: f64,
    pub(crate) end: Option<f64>,
    pub(crate) commands: Vec<String>,
    pub(crate) ranks: Vec<u32>,
    pub(crate) members: Vec<KeptMember>,
    /// Its twin series.
    pub(crate) series: Vec<SeriesId>,
}

/// A member of a [`KeptJob`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct KeptMember {
    pub(crate) pid: u32,
    pub(crate) program: String,
    pub(crate) rank: Option<u32>,
    pub(crate) start: f64,
    pub(crate) end: Option<f64>,
    /// Once it left: its final value of each series it counted, for the
    /// job's profile.
    pub(crate) values: Vec<(SeriesId, f64)>,
}

impl Job {
    /// What a state file keeps of it.
    pub(super) fn kept(&self) -> KeptJob {
        KeptJob {
            id: self.id.clone(),
            start: self.start,
            end: self.end,
            commands: self.commands.clone(),
            ranks: self.ranks.iter().copied().collect(),
            members: self
                .members
                .iter()
                .map(|m| KeptMember {
                    pid: m.pid,
                    program: m.program.clone(),
                    rank: m.rank,
                    start: m.start,
                    end: m.end,
                    values: m.values.clone(),
                })
                .collect(),
            series: self.series.clone(),
        }
    }

    /// The job a state file kept, its members disconnected.
    pub(super) fn from_kept(k: KeptJob) -> Job {
        let mut job = Job::new(&k.id, k.start);
        job.end = k.end;
        job.commands = k.commands;
        job.ranks = k.ranks.into_iter().collect();
        job.series = k.series;
        job.live = k.members.iter().filter(|m| m.end.is_none()).count();
        job.members = k
            .members
            .into_iter()
            .map(|m| Member {
                pid: m.pid,
                program: m.program,
                rank: m.rank,
                start: m.start,
                end: m.end,
                connected: false,
                values: m.values,
            })
            .collect();
        job
    }
}
