//! Unit tests of the jobs in the store: twins, members, records,
//! retention, limits (here, above both `store` and `expose`, since they
//! read the rendered page too).

use protocol::{Desc, Identity, JobTag, Kind, Sample, Scale, Value};

use crate::expose::{render, Format};
use crate::job_record::SeriesValue;
use crate::store::*;
use crate::Refusal;

fn ident(pid: u32) -> Identity {
    Identity { pid, start_time: 1, nonce: 2, program: format!("app{pid}") }
}

fn tag(id: &str, rank: Option<u32>) -> Option<JobTag> {
    Some(JobTag { id: id.into(), rank })
}

fn int(id: u32, v: u64) -> Sample {
    Sample { id, value: Value::Int(v) }
}

fn shared(limits: Limits) -> Store {
    let mut st = Store::new(limits);
    st.declare_shared("mpi_hits_total", Kind::Counter, Scale::One, "Calls").unwrap();
    st.declare_shared("mpi_time_total", Kind::Counter, Scale::Nano, "Seconds").unwrap();
    st
}

fn val(st: &Store, name: &str) -> Option<f64> {
    st.get(&[name.to_owned()]).ok().map(|v| v[0].value)
}

fn hits(f: &str) -> Desc {
    Desc::counter("mpi_hits_total", &[("function", f)], "Calls")
}

fn page(st: &mut Store) -> String {
    let mut out = String::new();
    render(st, Format::Text, &mut out);
    out
}

/// A collector of `job` (or none) with rank `rank`, sending `n` calls.
fn collector(st: &mut Store, pid: u32, job: Option<JobTag>, n: u64, now: f64) -> CollectorSlot {
    let (slot, _) = st.hello_from(ident(pid), job, None, None, now).unwrap();
    st.register(slot, 0, &hits("MPI_Send")).unwrap();
    assert!(st.update(slot, &[int(0, n)], now).is_empty());
    slot
}

#[test]
fn two_jobs_are_kept_apart_and_the_node_total_is_their_sum() {
    let mut st = shared(Limits::default());
    collector(&mut st, 1, tag("4242", Some(0)), 3, 1.0);
    collector(&mut st, 2, tag("4242", Some(1)), 4, 1.0);
    collector(&mut st, 3, tag("77", Some(0)), 10, 1.0);
    collector(&mut st, 4, None, 100, 1.0);
    assert_eq!(val(&st, "mpi_hits_total{function=\"MPI_Send\"}"), Some(117.0));
    assert_eq!(val(&st, "tau_job_mpi_hits_total{function=\"MPI_Send\",jobid=\"4242\"}"), Some(7.0));
    assert_eq!(val(&st, "tau_job_mpi_hits_total{function=\"MPI_Send\",jobid=\"77\"}"), Some(10.0));
    assert_eq!(val(&st, "tau_job_ranks{jobid=\"4242\"}"), Some(2.0));
    assert_eq!(val(&st, "tau_job_start_time_seconds{jobid=\"77\"}"), Some(1.0));
    let out = page(&mut st);
    assert!(
        out.contains(
            "# HELP tau_job_mpi_hits_total Calls, per job\n# TYPE tau_job_mpi_hits_total counter\n\
             tau_job_mpi_hits_total{function=\"MPI_Send\",jobid=\"4242\"} 7\n\
             tau_job_mpi_hits_total{function=\"MPI_Send\",jobid=\"77\"} 10\n"
        ),
        "{out}"
    );
    // A family that is not shared has no twin; a peer cannot register a
    // job family.
    let (s, _) = st.hello_from(ident(5), tag("77", None), None, None, 1.0).unwrap();
    st.register(s, 0, &Desc::counter("mine_total", &[], "Mine")).unwrap();
    assert!(!page(&mut st).contains("tau_job_mine_total"));
    let e = st.register(s, 1, &Desc::counter("tau_job_x_total", &[], "X")).unwrap_err();
    assert_eq!(e.refusal, Refusal::Reserved { name: "tau_job_x_total".into() });
    let jobs = st.jobs();
    assert_eq!(jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["4242", "77"]);
    assert_eq!(
        (jobs[0].ranks.clone(), jobs[0].collectors, jobs[0].commands.clone()),
        (vec![0, 1], 2, vec!["app1".into(), "app2".into()])
    );
}

#[test]
fn a_reconnection_stays_in_the_job_and_counts_nothing_twice() {
    let mut st = shared(Limits::default());
    let a = collector(&mut st, 1, tag("j", Some(0)), 5, 1.0);
    st.disconnect(a, 2.0);
    assert_eq!(val(&st, "tau_job_ranks{jobid=\"j\"}"), Some(0.0));
    assert!(st.take_finished_jobs().is_empty(), "a disconnected collector may come back");
    let (a, resumed) = st.hello_from(ident(1), tag("j", Some(0)), None, None, 3.0).unwrap();
    assert!(resumed);
    st.register(a, 0, &hits("MPI_Send")).unwrap();
    assert!(st.resync(a, &[int(0, 8)], 3.0).is_empty());
    assert_eq!(val(&st, "tau_job_mpi_hits_total{function=\"MPI_Send\",jobid=\"j\"}"), Some(8.0));
    assert_eq!(val(&st, "mpi_hits_total{function=\"MPI_Send\"}"), Some(8.0));
    assert_eq!(val(&st, "tau_job_ranks{jobid=\"j\"}"), Some(1.0));
    assert_eq!(st.jobs()[0].collectors, 1);
}

#[test]
fn the_last_collector_leaving_hands_over_the_record_and_the_series_leave_after_the_retention() {
    let mut st = shared(Limits { job_retention: 60.0, ..Limits::default() });
    let a = collector(&mut st, 1, tag("j", Some(0)), 3, 10.0);
    let b = collector(&mut st, 2, tag("j", Some(1)), 5, 11.0);
    st.register(b, 1, &Desc::counter("mpi_time_total", &[("function", "MPI_Send")], "Seconds").with_scale(Scale::Nano))
        .unwrap();
    assert!(st.update(b, &[int(1, 1_500_000_000)], 12.0).is_empty());
    st.goodbye(a, 20.0);
    assert!(st.take_finished_jobs().is_empty(), "one collector is still there");
    st.disconnect(b, 21.0);
    assert_eq!(st.fold_departed(|_| false, 30.0), 1);
    let records = st.take_finished_jobs();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!((r.job.as_str(), r.start, r.end), ("j", 10.0, 30.0));
    let send = |v: f64| SeriesValue {
        name: "mpi_hits_total".into(),
        labels: vec![("function".into(), "MPI_Send".into())],
        value: v,
    };
    let time =
        SeriesValue { name: "mpi_time_total".into(), labels: vec![("function".into(), "MPI_Send".into())], value: 1.5 };
    let got: Vec<_> =
        r.collectors.iter().map(|c| (c.pid, c.program.as_str(), c.rank, c.start, c.end, c.values.clone())).collect();
    assert_eq!(
        got,
        [(1, "app1", Some(0), 10.0, 20.0, vec![send(3.0)]), (2, "app2", Some(1), 11.0, 30.0, vec![send(5.0), time])]
    );
    assert!(st.take_finished_jobs().is_empty(), "drained");
    assert_eq!(st.jobs()[0].end, Some(30.0));
    assert_eq!(val(&st, "tau_job_end_time_seconds{jobid=\"j\"}"), Some(30.0));
    assert_eq!(st.expire_jobs(89.0), 0, "within the retention");
    assert!(page(&mut st).contains("jobid=\"j\""));
    let before = st.series_count();
    assert_eq!(st.expire_jobs(90.0), 1);
    let out = page(&mut st);
    assert!(!out.contains("jobid"), "{out}");
    assert!(out.contains("mpi_hits_total{function=\"MPI_Send\"} 8\n"), "node totals stay: {out}");
    assert_eq!(st.series_count(), before - 5, "two twins and three gauges left");
    assert_eq!(val(&st, "tau_job_ranks{jobid=\"j\"}"), None);
    assert!(st.changes(0).iter().all(|v| !v.name.contains("jobid")));
    assert!(st.jobs().is_empty());
    // The same id again is a new job; retired ids are reused.
    let slots = st.series.len();
    collector(&mut st, 3, tag("j", None), 2, 100.0);
    assert_eq!(val(&st, "tau_job_mpi_hits_total{function=\"MPI_Send\",jobid=\"j\"}"), Some(2.0));
    assert_eq!(st.series.len(), slots, "ids reused");
    assert_eq!(val(&st, "mpi_hits_total{function=\"MPI_Send\"}"), Some(10.0));
}

#[test]
fn a_job_that_gets_a_collector_within_its_retention_goes_on() {
    let mut st = shared(Limits::default());
    let a = collector(&mut st, 1, tag("j", Some(0)), 3, 1.0);
    st.goodbye(a, 2.0);
    assert_eq!(st.take_finished_jobs().len(), 1);
    let b = collector(&mut st, 2, tag("j", Some(1)), 4, 3.0);
    assert_eq!(st.jobs()[0].end, None);
    assert_eq!(val(&st, "tau_job_end_time_seconds{jobid=\"j\"}"), None, "running again");
    assert_eq!(val(&st, "tau_job_mpi_hits_total{function=\"MPI_Send\",jobid=\"j\"}"), Some(7.0));
    st.goodbye(b, 4.0);
    let r = st.take_finished_jobs();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].start, r[0].end, r[0].collectors.len()), (1.0, 4.0, 2));
}

#[test]
fn max_jobs_drops_the_job_that_finished_first_and_counts_it() {
    let mut st = shared(Limits { max_jobs: 2, ..Limits::default() });
    let a = collector(&mut st, 1, tag("a", None), 1, 1.0);
    let b = collector(&mut st, 2, tag("b", None), 1, 1.0);
    st.goodbye(b, 2.0);
    st.goodbye(a, 3.0);
    collector(&mut st, 3, tag("c", None), 1, 4.0);
    assert_eq!(st.jobs().iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["a", "c"]);
    assert_eq!(st.job_evictions(), 1);
    collector(&mut st, 4, tag("d", None), 1, 5.0);
    assert_eq!(st.jobs().iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["c", "d"]);
    // Both kept jobs run: a collector of a new one counts in no job.
    collector(&mut st, 5, tag("e", None), 1, 6.0);
    assert_eq!((st.job_count(), st.job_evictions(), st.untracked_job_collectors()), (2, 2, 1));
    assert_eq!(val(&st, "mpi_hits_total{function=\"MPI_Send\"}"), Some(5.0));
    assert_eq!(val(&st, "tau_job_mpi_hits_total{function=\"MPI_Send\",jobid=\"e\"}"), None);
}

#[test]
fn state_files_keep_jobs_their_series_and_their_collectors_twins() {
    let mut st = shared(Limits::default());
    let a = collector(&mut st, 1, tag("j", Some(0)), 3, 1.0);
    let b = collector(&mut st, 2, tag("j", Some(1)), 4, 1.0);
    st.goodbye(b, 2.0);
    let done = collector(&mut st, 3, tag("done", None), 5, 1.0);
    st.goodbye(done, 3.0);
    st.disconnect(a, 3.0);
    st.take_finished_jobs();
    let snap = crate::Snapshot::from_bytes(&st.snapshot().to_bytes()).unwrap();
    let (mut back, skipped) = Store::restore(Limits::default(), snap).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    // The daemon declares its shared families after loading the file.
    back.declare_shared("mpi_hits_total", Kind::Counter, Scale::One, "Calls").unwrap();
    back.declare_shared("mpi_time_total", Kind::Counter, Scale::Nano, "Seconds").unwrap();
    assert_eq!(back.jobs(), st.jobs());
    let twin = |job: &str| format!("tau_job_mpi_hits_total{{function=\"MPI_Send\",jobid=\"{job}\"}}");
    assert_eq!(val(&back, &twin("j")), Some(7.0));
    assert_eq!(val(&back, &twin("done")), Some(5.0));
    assert_eq!(val(&back, "mpi_hits_total{function=\"MPI_Send\"}"), Some(12.0));
    let text = page(&mut back);
    for line in ["tau_job_start_time_seconds{jobid=\"j\"} 1\n", "tau_job_end_time_seconds{jobid=\"done\"} 3\n"] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    // The collector that was still remembered comes back and sends its
    // totals: its job's series go on from where they were.
    let (a, resumed) = back.hello_from(ident(1), tag("j", Some(0)), None, None, 5.0).unwrap();
    assert!(resumed);
    back.register(a, 0, &hits("MPI_Send")).unwrap();
    assert!(back.resync(a, &[int(0, 9)], 5.0).is_empty());
    assert_eq!(val(&back, &twin("j")), Some(13.0));
    assert_eq!(val(&back, "mpi_hits_total{function=\"MPI_Send\"}"), Some(18.0));
    // It leaves for good: the job's record holds both its collectors.
    back.goodbye(a, 6.0);
    let records = back.take_finished_jobs();
    assert_eq!(records.len(), 1);
    let calls: Vec<(u32, f64)> = records[0].collectors.iter().map(|c| (c.pid, c.values[0].value)).collect();
    assert_eq!((records[0].job.as_str(), records[0].start, records[0].end), ("j", 1.0, 6.0));
    assert_eq!(calls, [(1, 9.0), (2, 4.0)]);
    // The job that had finished before the restart leaves after its
    // retention, counted from when it finished.
    assert_eq!(back.expire_jobs(3.0 + 300.0), 1);
    assert_eq!(back.jobs().iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["j"]);
    assert_eq!(val(&back, &twin("done")), None);
}
