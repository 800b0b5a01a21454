//! The store's side of the journal (see [`crate::journal`]): what it
//! records as collectors register counters and count, and the replay of a
//! segment after a crash.

use protocol::{Desc, JobTag, Kind};

use super::{Owner, Registrant, SeriesId, Store};
use crate::journal::{self, Entry, Record, Replayed, SegmentError};

/// A collector's counted totals after a push, integer and floating point,
/// by id.
pub(super) type CountedLists = (Vec<(u32, u64)>, Vec<(u32, f64)>);

/// What the store recorded and not yet handed over.
#[derive(Debug, Default)]
pub(super) struct Recording {
    /// The segment recorded into: a collector is announced once in each.
    segment: u64,
    bytes: Vec<u8>,
    ints: Vec<(u32, u64)>,
    floats: Vec<(u32, f64)>,
}

impl Store {
    /// Starts recording into journal segment `segment` (after a state
    /// file was copied out: every collector is announced again), or stops
    /// recording (`None`: the journal could not be written).
    pub fn record_journal(&mut self, segment: Option<u64>) {
        self.journal = segment.map(|segment| Box::new(Recording { segment, ..Recording::default() }));
    }

    /// Whether the store records a journal.
    pub fn records_journal(&self) -> bool {
        self.journal.is_some()
    }

    /// What was recorded since the last call, to be written to the
    /// journal before the store's lock is released; the caller clears it.
    pub fn journal_pending(&mut self) -> Option<&mut Vec<u8>> {
        self.journal.as_mut().map(|j| &mut j.bytes).filter(|b| !b.is_empty())
    }

    /// Announces collector `index` in the current segment, once.
    fn announce(&mut self, index: u32) {
        let Some(j) = self.journal.as_mut() else { return };
        let Some(c) = self.collectors.get_mut(index) else { return };
        if c.journaled == j.segment {
            return;
        }
        c.journaled = j.segment;
        let jobs = &self.jobs;
        let job = c.job.and_then(|(j, m)| {
            let job = jobs.get(j)?;
            Some((job.id.as_str(), job.members.get(m as usize)?.rank))
        });
        let entry = Entry::Collector {
            slot: index,
            identity: c.identity(),
            process: (c.process.pid, c.process.start_time),
            uid: c.uid,
            job,
        };
        journal::push_record(&mut j.bytes, &entry);
    }

    /// Records that collector `index` bound `id` to the series of `desc`:
    /// a counter's binding, or that `id` names no counter any more.
    pub(super) fn journal_bind(&mut self, index: u32, id: u32, desc: &Desc) {
        if self.journal.is_none() {
            return;
        }
        self.announce(index);
        let entry = match desc.kind {
            Kind::Counter => Entry::Bind { slot: index, id, desc },
            Kind::Gauge => Entry::Unbind { slot: index, id },
        };
        if let Some(j) = self.journal.as_mut() {
            journal::push_record(&mut j.bytes, &entry);
        }
    }

    /// Empty lists for [`Store::journal_counted`] to fill, when recording.
    pub(super) fn journal_lists(&mut self) -> Option<CountedLists> {
        let j = self.journal.as_mut()?;
        Some((std::mem::take(&mut j.ints), std::mem::take(&mut j.floats)))
    }

    /// Records what collector `index` counted in all of the ids listed.
    pub(super) fn journal_counted(&mut self, index: u32, lists: CountedLists) {
        let (mut ints, mut floats) = lists;
        if !(ints.is_empty() && floats.is_empty()) {
            self.announce(index);
        }
        let Some(j) = self.journal.as_mut() else { return };
        if !(ints.is_empty() && floats.is_empty()) {
            journal::push_counted(&mut j.bytes, index, &ints, &floats);
        }
        ints.clear();
        floats.clear();
        (j.ints, j.floats) = (ints, floats);
    }

    /// Replays journal segment `seq` (its file's bytes) onto a store
    /// restored from the state file that names it, or from one replayed
    /// up to the segment before; `now` is the Unix time. Collectors it
    /// names that the store does not remember come back disconnected, as
    /// remembered collectors do.
    pub fn replay_journal(&mut self, bytes: &[u8], seq: u64, now: f64) -> Result<Replayed, SegmentError> {
        let mut frames = journal::frames(bytes, seq)?;
        let mut slots: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        let mut done = Replayed::default();
        let mut changed: Vec<SeriesId> = Vec::new();
        for record in frames.by_ref() {
            done.records += 1;
            match record {
                Record::Collector { slot, identity, process, uid, job } => {
                    let process = super::ProcessRef { pid: process.0, start_time: process.1 };
                    let index = match self.collectors.find(&identity) {
                        Some(index) => index,
                        None => self.collectors.restore(identity, process, Vec::new()),
                    };
                    let Some(c) = self.collectors.get_mut(index) else { continue };
                    (c.process, c.uid) = (process, uid);
                    // A collector new since the state file joins its job,
                    // disconnected as every collector replayed is.
                    if let (None, Some((id, rank))) = (c.job, job) {
                        self.join_job(index, &JobTag { id, rank }, now);
                        self.member_connected(index, false, now);
                    }
                    slots.insert(slot, index);
                    done.collectors += 1;
                }
                Record::Bind { slot, id, desc } => {
                    let Some(&index) = slots.get(&slot) else { continue };
                    let uid = self.collectors.get(index).and_then(|c| c.uid);
                    let Ok(sid) = self.series_for(&desc, Registrant::Peer(uid)) else { continue };
                    if let Some(uid) = uid {
                        self.claim(sid, uid);
                    }
                    if let Some(c) = self.collectors.get_mut(index) {
                        c.bind(id, sid);
                    }
                    self.bind_twin(index, id, sid);
                }
                Record::Unbind { slot, id } => {
                    if let Some(c) = slots.get(&slot).and_then(|&index| self.collectors.get_mut(index)) {
                        c.unbind(id);
                    }
                }
                Record::Counted { slot, ints, floats } => {
                    let Some(c) = slots.get(&slot).and_then(|&index| self.collectors.get_mut(index)) else {
                        continue;
                    };
                    // What it counted since goes to its node series and
                    // to its job's twin of it.
                    for (id, total) in ints {
                        let Some(Some(sid)) = c.ids.get(id as usize).copied() else { continue };
                        let counted = &mut c.counted[id as usize];
                        let d = total.saturating_sub(counted.int);
                        let s = &mut self.series[sid as usize];
                        let shared = self.families[s.family as usize].owner == Owner::Shared;
                        if s.kind == Kind::Counter && s.add_int(d, shared) {
                            counted.int = total.max(counted.int);
                            changed.push(sid);
                            if let Some(t) = c.twin(id) {
                                self.series[t as usize].add_int(d, true);
                                changed.push(t);
                            }
                        }
                    }
                    for (id, total) in floats {
                        let Some(Some(sid)) = c.ids.get(id as usize).copied() else { continue };
                        let counted = &mut c.counted[id as usize];
                        let d = (total - counted.float).max(0.0);
                        let s = &mut self.series[sid as usize];
                        if s.kind == Kind::Counter && total.is_finite() && (s.float + d).is_finite() {
                            s.float += d;
                            counted.float = total.max(counted.float);
                            changed.push(sid);
                            if let Some(t) = c.twin(id) {
                                self.series[t as usize].float += d;
                                changed.push(t);
                            }
                        }
                    }
                }
            }
        }
        done.dropped_bytes = frames.rest() as u64;
        if !changed.is_empty() {
            self.generation += 1;
            for sid in changed {
                self.mark_changed(sid, now);
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use protocol::{Desc, JobTag, Kind, Scale};

    use crate::store::tests::{flt as float, ident as who, int};
    use crate::{segment_header, Limits, ProcessRef, Refusal, Snapshot, Store};

    /// The counters of a store, as a scrape shows them.
    fn counters(st: &Store) -> Vec<(String, f64)> {
        st.values()
            .into_iter()
            .filter(|v| v.name.split('{').next().unwrap().ends_with("_total"))
            .map(|v| (v.name, v.value))
            .collect()
    }

    /// What the store recorded, as segment `seq`.
    fn segment(st: &mut Store, seq: u64) -> Vec<u8> {
        let mut bytes = segment_header(seq).to_vec();
        if let Some(pending) = st.journal_pending() {
            bytes.append(pending);
        }
        bytes
    }

    fn restored(snap: Snapshot) -> Store {
        Store::restore(Limits::default(), Snapshot::from_bytes(&snap.to_bytes()).unwrap()).unwrap().0
    }

    /// Collector `pid` registers two counters (one counted in floating
    /// point) and a gauge, counts, and leaves as `leave` says.
    fn work(st: &mut Store, pid: u32, leave: fn(&mut Store, crate::CollectorSlot)) {
        let process = ProcessRef { pid, start_time: 1 };
        let (a, _) = st.hello_from(who(pid), None, Some(process), Some(1000), 1.0).unwrap();
        st.register(a, 0, &Desc::counter("calls_total", &[("f", "send")], "Calls")).unwrap();
        st.register(a, 1, &Desc::counter("time_total", &[], "Time").with_scale(Scale::Nano)).unwrap();
        st.register(a, 2, &Desc::counter("bytes_total", &[], "Bytes")).unwrap();
        st.register(a, 3, &Desc::gauge("depth", &[], "Depth")).unwrap();
        st.update(a, &[int(0, 4), int(1, 1_500_000_000), float(2, 0.25), float(3, 9.0)], 2.0);
        st.update(a, &[int(0, 3), float(2, 0.5)], 3.0);
        leave(st, a);
    }

    #[test]
    fn a_replayed_segment_gives_the_totals_served() {
        let mut st = Store::new(Limits::default());
        let empty = st.snapshot();
        st.record_journal(Some(1));
        work(&mut st, 7, |st, a| st.disconnect(a, 4.0));
        work(&mut st, 8, |st, a| st.goodbye(a, 4.0));
        let served = counters(&st);
        assert_eq!(
            served,
            [
                ("bytes_total".to_owned(), 1.5),
                ("calls_total{f=\"send\"}".to_owned(), 14.0),
                ("time_total".to_owned(), 3.0)
            ]
        );
        let bytes = segment(&mut st, 1);
        let mut back = restored(empty);
        let done = back.replay_journal(&bytes, 1, 5.0).unwrap();
        assert_eq!((done.records, done.collectors, done.dropped_bytes), (14, 2, 0));
        assert_eq!(counters(&back), served);
        // Both collectors are remembered; one that comes back and sends
        // its totals again counts nothing twice, and its user still owns
        // what it registered first.
        assert_eq!(back.known_collectors(), 2);
        let (a, resumed) = back.hello_from(who(7), None, None, Some(1000), 6.0).unwrap();
        assert!(resumed);
        back.register(a, 0, &Desc::counter("calls_total", &[("f", "send")], "Calls")).unwrap();
        back.resync(a, &[int(0, 8)], 6.0);
        assert_eq!(back.get(&["calls_total{f=\"send\"}".into()]).unwrap()[0].value, 15.0);
        let (b, _) = back.hello_from(who(9), None, None, Some(1001), 6.0).unwrap();
        let e = back.register(b, 0, &Desc::counter("calls_total", &[("f", "recv")], "Calls")).unwrap_err();
        assert_eq!(e.refusal, Refusal::Foreign { name: "calls_total".into() });
    }

    #[test]
    fn a_segment_holds_what_came_after_its_state_file_and_a_torn_tail_is_dropped() {
        let mut st = Store::new(Limits::default());
        st.record_journal(Some(1));
        work(&mut st, 7, |_, _| {});
        // A state file is copied out: the next segment starts.
        let snap = st.snapshot().with_journal(2);
        st.journal_pending().map(Vec::clear);
        st.record_journal(Some(2));
        let (a, resumed) = st.hello_from(who(7), None, None, Some(1000), 5.0).unwrap();
        assert!(resumed, "the same connection's collector, announced again");
        st.update(a, &[int(0, 5)], 5.0);
        st.disconnect(a, 6.0);
        let served = counters(&st);
        let bytes = segment(&mut st, 2);
        let mut back = restored(snap);
        assert_eq!(back.replay_journal(&bytes, 2, 7.0).unwrap().records, 2);
        assert_eq!(counters(&back), served);
        assert_eq!(back.get(&["calls_total{f=\"send\"}".into()]).unwrap()[0].value, 12.0);
        // The daemon died writing its last frame: what that frame held was
        // never served, and the replay stops before it.
        let mut torn = restored(st.snapshot().with_journal(2));
        let mut frames = crate::journal::frames(&bytes, 2).unwrap();
        frames.next().unwrap();
        let last_frame = frames.rest();
        let partial = &bytes[..bytes.len() - 3];
        let done = torn.replay_journal(partial, 2, 7.0).unwrap();
        assert_eq!((done.records, done.dropped_bytes), (1, last_frame as u64 - 3));
    }

    #[test]
    fn an_id_that_names_a_gauge_between_two_bindings_counts_from_zero_again() {
        let mut st = Store::new(Limits::default());
        let empty = st.snapshot();
        st.record_journal(Some(1));
        let (a, _) = st.hello(who(7));
        st.register(a, 0, &Desc::counter("x_total", &[], "X")).unwrap();
        st.update(a, &[int(0, 10)], 1.0);
        st.register(a, 0, &Desc::gauge("g", &[], "G")).unwrap();
        st.register(a, 0, &Desc::counter("x_total", &[], "X")).unwrap();
        st.resync(a, &[int(0, 4)], 2.0);
        assert_eq!(st.get(&["x_total".into()]).unwrap()[0].value, 14.0);
        let bytes = segment(&mut st, 1);
        let mut back = restored(empty);
        back.replay_journal(&bytes, 1, 3.0).unwrap();
        assert_eq!(counters(&back), counters(&st));
    }

    #[test]
    fn a_replayed_collector_of_a_job_counts_in_the_jobs_series_too() {
        let shared = |st: &mut Store| st.declare_shared("mpi_hits_total", Kind::Counter, Scale::One, "Calls").unwrap();
        let mut st = Store::new(Limits::default());
        shared(&mut st);
        let empty = st.snapshot();
        st.record_journal(Some(1));
        let job = Some(JobTag { id: "j".into(), rank: Some(2) });
        let (a, _) = st.hello_from(who(7), job, None, None, 1.0).unwrap();
        st.register(a, 0, &Desc::counter("mpi_hits_total", &[("function", "MPI_Send")], "Calls")).unwrap();
        st.update(a, &[int(0, 5)], 2.0);
        st.update(a, &[int(0, 2)], 3.0);
        st.disconnect(a, 4.0);
        let served = counters(&st);
        assert!(served.contains(&("tau_job_mpi_hits_total{function=\"MPI_Send\",jobid=\"j\"}".to_owned(), 7.0)));
        let bytes = segment(&mut st, 1);
        let mut back = restored(empty);
        shared(&mut back);
        back.replay_journal(&bytes, 1, 5.0).unwrap();
        assert_eq!(counters(&back), served);
        let jobs = back.jobs();
        assert_eq!(jobs.len(), 1);
        assert_eq!((jobs[0].id.as_str(), &jobs[0].ranks[..], jobs[0].ranks_connected), ("j", &[2][..], 0));
        assert_eq!((jobs[0].collectors, jobs[0].live_collectors, jobs[0].end), (1, 1, None));
    }

    #[test]
    fn a_store_that_records_nothing_has_nothing_pending() {
        let mut st = Store::new(Limits::default());
        work(&mut st, 7, |st, a| st.disconnect(a, 4.0));
        assert!(st.journal_pending().is_none());
        st.record_journal(Some(1));
        assert!(st.journal_pending().is_none(), "nothing recorded yet");
        st.record_journal(None);
        assert!(!st.records_journal());
    }
}
