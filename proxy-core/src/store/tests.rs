//! Unit tests of the store: counting, resync, folding, refusals, changes.

use protocol::{Desc, Identity, Sample, Scale, Value, ValueInfo};

use super::query::UnknownSeries;
use super::*;
use crate::refusal::{Refusal, RefusalKind};
use crate::validate::NameError;

pub(super) fn ident(pid: u32) -> Identity {
    Identity { pid, start_time: 1, nonce: 2, program: "p".into() }
}

pub(super) fn int(id: u32, v: u64) -> Sample {
    Sample { id, value: Value::Int(v) }
}

pub(super) fn flt(id: u32, v: f64) -> Sample {
    Sample { id, value: Value::Float(v) }
}

fn val(st: &Store, name: &str) -> f64 {
    st.get(&[name.to_owned()]).unwrap()[0].value
}

fn hits(f: &str) -> Desc {
    Desc::counter("mpi_hits_total", &[("function", f)], "Calls")
}

#[test]
fn counters_sum_every_collector_exactly() {
    let mut st = Store::new(Limits::default());
    let (a, _) = st.hello(ident(1));
    let (b, _) = st.hello(ident(2));
    st.register(a, 0, &hits("MPI_Send")).unwrap();
    st.register(b, 7, &hits("MPI_Send")).unwrap();
    assert!(st.update(a, &[int(0, 1 << 52)], 1.0).is_empty());
    assert!(st.update(b, &[int(7, (1 << 52) - 1)], 2.0).is_empty());
    let v = &st.values()[0];
    assert_eq!(v.name, "mpi_hits_total{function=\"MPI_Send\"}");
    assert_eq!(v.value, ((1u64 << 53) - 1) as f64);
    assert_eq!(v.ts, 2.0);
}

#[test]
fn resync_after_reconnect_counts_nothing_twice() {
    let mut st = Store::new(Limits::default());
    let (a, resumed) = st.hello(ident(1));
    assert!(!resumed);
    st.register(a, 0, &hits("MPI_Recv")).unwrap();
    st.update(a, &[int(0, 10)], 1.0);
    st.disconnect(a, 1.0);
    // The collector counted 15 in all; the daemon saw 10 of them.
    let (a2, resumed) = st.hello(ident(1));
    assert!(resumed);
    st.register(a2, 0, &hits("MPI_Recv")).unwrap();
    st.resync(a2, &[int(0, 15)], 2.0);
    assert_eq!(val(&st, "mpi_hits_total{function=\"MPI_Recv\"}"), 15.0);
    // A resync that repeats what was counted adds nothing.
    st.resync(a2, &[int(0, 15)], 3.0);
    assert_eq!(val(&st, "mpi_hits_total{function=\"MPI_Recv\"}"), 15.0);
    // The old connection can no longer change anything.
    assert_eq!(st.update(a, &[int(0, 5)], 4.0).len(), 1);
    assert_eq!(val(&st, "mpi_hits_total{function=\"MPI_Recv\"}"), 15.0);
}

#[test]
fn restarted_daemon_takes_totals_whole() {
    let mut st = Store::new(Limits::default());
    let (a, resumed) = st.hello(ident(1));
    assert!(!resumed);
    st.register(a, 3, &hits("MPI_Bcast")).unwrap();
    st.resync(a, &[int(3, 42)], 1.0);
    assert_eq!(val(&st, "mpi_hits_total{function=\"MPI_Bcast\"}"), 42.0);
}

#[test]
fn gauges_sum_live_collectors_and_leave_with_them() {
    let mut st = Store::new(Limits::default());
    let g = Desc::gauge("ranks", &[], "Ranks");
    let (a, _) = st.hello(ident(1));
    let (b, _) = st.hello(ident(2));
    st.register(a, 0, &g).unwrap();
    st.register(b, 0, &g).unwrap();
    st.update(a, &[flt(0, 0.1)], 1.0);
    st.update(b, &[flt(0, 0.2)], 1.0);
    st.update(a, &[flt(0, 0.5)], 1.0);
    assert_eq!(val(&st, "ranks"), 0.5 + 0.2);
    assert_eq!(st.connected_collectors(), 2);
    st.disconnect(b, 2.0);
    assert_eq!(st.connected_collectors(), 1);
    assert_eq!(val(&st, "ranks"), 0.5);
    st.goodbye(a, 3.0);
    assert_eq!(st.connected_collectors(), 0);
    assert_eq!(val(&st, "ranks"), 0.0);
    assert_eq!(st.known_collectors(), 1);
}

#[test]
fn departed_collectors_are_folded() {
    let mut st = Store::new(Limits::default());
    for pid in 0..100 {
        let (s, _) = st.hello(ident(pid));
        st.register(s, 0, &hits("MPI_Init")).unwrap();
        st.update(s, &[int(0, 1)], 1.0);
        if pid % 2 == 0 {
            st.goodbye(s, 1.0);
        } else {
            st.disconnect(s, 1.0);
        }
    }
    assert_eq!(st.known_collectors(), 50);
    assert_eq!(st.fold_departed(|p| p.pid == 99, 2.0), 49);
    assert_eq!(st.known_collectors(), 1);
    assert_eq!(val(&st, "mpi_hits_total{function=\"MPI_Init\"}"), 100.0);
    // Slots are reused.
    st.hello(ident(1000));
    assert!(st.collectors.slots() <= 100);
}

#[test]
fn live_collectors_are_never_folded_and_new_ones_wait_at_the_cap() {
    let mut st = Store::new(Limits { max_remembered: 3, ..Limits::default() });
    // Disconnections beyond the cap cannot be refused: 4 wait.
    let slots: Vec<_> = (0..4)
        .map(|pid| {
            st.hello_from(ident(pid), None, Some(ProcessRef { pid: 1000 + pid, start_time: 5 }), None, 1.0).unwrap().0
        })
        .collect();
    for (i, s) in slots.into_iter().enumerate() {
        st.disconnect(s, i as f64);
    }
    // All alive: none is folded, beyond the cap too.
    let mut asked = Vec::new();
    let folded = st.fold_departed(
        |p| {
            asked.push(p);
            true
        },
        10.0,
    );
    assert_eq!((folded, asked.len(), st.known_collectors()), (0, 4, 4));
    assert_eq!(asked[0], ProcessRef { pid: 1000, start_time: 5 });
    // A new collector waits; a known one comes back.
    let refused = st.hello_from(ident(9), None, None, None, 1.0).unwrap_err();
    assert_eq!(refused.refusal, Refusal::RememberedLimit { limit: 3 });
    assert_eq!(st.refusals(RefusalKind::RememberedLimit), 1);
    let (s, resumed) = st.hello_from(ident(0), None, None, None, 1.0).unwrap();
    assert!(resumed, "remembered past the cap");
    st.disconnect(s, 11.0);
    // Once processes are gone, their collectors are folded: room is made.
    assert_eq!(st.fold_departed(|p| p.pid < 1002, 12.0), 2);
    assert!(!st.hello_from(ident(9), None, None, None, 1.0).unwrap().1);
}

/// What the daemon reports as refused series: the refusals that mean a
/// series limit was reached.
fn limit_refusals(st: &Store) -> u64 {
    RefusalKind::ALL.into_iter().filter(|k| k.is_series_limit()).map(|k| st.refusals(k)).sum()
}

#[test]
fn bad_input_is_refused_and_counted_nowhere() {
    let mut st = Store::new(Limits { max_series: 3, max_series_per_collector: 2, ..Limits::default() });
    let (a, _) = st.hello(ident(1));
    st.register(a, 0, &Desc::counter("x_total", &[], "")).unwrap();
    let e = st.register(a, 1, &Desc::gauge("x_total", &[], "")).unwrap_err();
    assert_eq!(e.id, Some(1));
    assert_eq!(e.refusal, Refusal::InvalidName(NameError::GaugeWithTotal { name: "x_total".into() }));
    let e = st.register(a, 1, &Desc::gauge("x", &[], "")).unwrap_err();
    assert_eq!(e.refusal, Refusal::NameConflict { name: "x".into(), family: "x".into() });
    let e = st.register(a, 1, &Desc::counter("y_total", &[], "").with_scale(Scale::Nano)).map(|_| ());
    assert!(e.is_ok());
    let e = st.register(a, 2, &Desc::counter("z_total", &[], "")).unwrap_err();
    assert_eq!(e, IngestError { id: Some(2), refusal: Refusal::IdBeyondLimit { id: 2, limit: 2 } });
    let (b, _) = st.hello(ident(2));
    let e = st.register(b, 0, &Desc::counter("y_total", &[], "")).unwrap_err();
    assert_eq!(e.refusal, Refusal::UnitConflict { key: "y_total".into() });
    st.register(b, 0, &Desc::counter("w_total", &[], "")).unwrap();
    let e = st.register(b, 1, &Desc::counter("v_total", &[], "")).unwrap_err();
    assert_eq!(e.refusal, Refusal::NodeLimit { limit: 3 });
    assert_eq!(limit_refusals(&st), 2);
    let errs = st.update(a, &[flt(0, f64::NAN), flt(0, -1.0), flt(0, f64::INFINITY), int(5, 1), int(0, 2)], 1.0);
    let bad = |e: &IngestError, want: fn(f64) -> bool| match &e.refusal {
        Refusal::BadValue { key, value, total } => key == "x_total" && !total && want(*value),
        _ => false,
    };
    assert_eq!(errs.len(), 4, "{errs:?}");
    assert!(errs[..3].iter().all(|e| e.id == Some(0)), "{errs:?}");
    assert!(bad(&errs[0], f64::is_nan), "{errs:?}");
    assert!(bad(&errs[1], |v| v == -1.0), "{errs:?}");
    assert!(bad(&errs[2], |v| v == f64::INFINITY), "{errs:?}");
    assert_eq!(errs[3], IngestError { id: Some(5), refusal: Refusal::Unregistered });
    assert_eq!(val(&st, "x_total"), 2.0);
    // Every refusal is counted under its kind; only limits are "refused series".
    let counts: Vec<(RefusalKind, u64)> =
        RefusalKind::ALL.into_iter().map(|k| (k, st.refusals(k))).filter(|(_, n)| *n > 0).collect();
    assert_eq!(
        counts,
        [
            (RefusalKind::IdBeyondLimit, 1),
            (RefusalKind::NodeLimit, 1),
            (RefusalKind::InvalidName, 1),
            (RefusalKind::UnitConflict, 1),
            (RefusalKind::NameConflict, 1),
            (RefusalKind::Unregistered, 1),
            (RefusalKind::BadValue, 3),
        ]
    );
    assert_eq!(limit_refusals(&st), 2);
}

#[test]
fn a_superseded_connection_is_refused() {
    let mut st = Store::new(Limits::default());
    let (old, _) = st.hello(ident(1));
    let (new, resumed) = st.hello(ident(1));
    assert!(resumed);
    let e = st.register(old, 0, &hits("A")).unwrap_err();
    assert_eq!(e, IngestError { id: None, refusal: Refusal::Superseded });
    st.register(new, 0, &hits("A")).unwrap();
    assert_eq!(st.update(old, &[int(0, 1)], 1.0), [IngestError { id: None, refusal: Refusal::Superseded }]);
    assert_eq!(st.refusals(RefusalKind::Superseded), 2);
    assert_eq!(limit_refusals(&st), 0);
    assert_eq!(val(&st, "mpi_hits_total{function=\"A\"}"), 0.0);
}

#[test]
fn sparse_ids_are_refused_and_rebound_gauges_leave() {
    let mut st = Store::new(Limits::default());
    let (a, _) = st.hello(ident(1));
    let e = st.register(a, 5000, &hits("X")).unwrap_err();
    assert_eq!(e, IngestError { id: Some(5000), refusal: Refusal::SparseId { id: 5000, max_gap: 1024 } });
    assert_eq!(limit_refusals(&st), 1);
    st.register(a, 0, &Desc::gauge("g1", &[], "")).unwrap();
    st.update(a, &[flt(0, 7.0)], 1.0);
    st.register(a, 0, &Desc::gauge("g2", &[], "")).unwrap();
    st.update(a, &[flt(0, 3.0)], 2.0);
    assert_eq!(val(&st, "g1"), 0.0);
    assert_eq!(val(&st, "g2"), 3.0);
}

#[test]
fn the_daemons_own_series_escape_the_node_limit() {
    let mut st = Store::new(Limits { max_series: 1, max_series_per_collector: 1, ..Limits::default() });
    for i in 0..5 {
        st.internal(&Desc::counter(&format!("own{i}_total"), &[], "")).unwrap();
    }
    let (a, _) = st.hello(ident(1));
    assert_eq!(st.register(a, 0, &hits("A")).unwrap_err().refusal, Refusal::NodeLimit { limit: 1 });
    assert_eq!(st.series_count(), 5);
}

#[test]
fn changes_from_the_log_equal_a_full_scan() {
    let mut st = Store::new(Limits::default());
    let (a, _) = st.hello(ident(1));
    // Family names chosen so that key order and family order differ.
    let descs = [hits("A"), hits("B"), Desc::counter("mpi_hitsx_total", &[], "x"), Desc::gauge("g", &[], "g")];
    for (i, d) in descs.iter().enumerate() {
        st.register(a, i as u32, d).unwrap();
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut gens = vec![0];
    // Enough generations to compact the log several times.
    for round in 0..20_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let id = (x % 4) as u32;
        let value = if id == 3 { Value::Float(round as f64) } else { Value::Int(1) };
        st.update(a, &[Sample { id, value }], round as f64);
        if round % 997 == 0 {
            gens.push(st.generation());
        }
    }
    let own = st.internal(&Desc::counter("own_total", &[], "")).unwrap();
    st.internal_add(own, 1, 1.0);
    for since in gens {
        let scan: Vec<ValueInfo> = st
            .ordered()
            .filter(|(_, sid)| st.series[*sid as usize].changed > since)
            .map(|(_, sid)| st.series[sid as usize].value_info(st.keys.get(sid)))
            .collect();
        assert_eq!(st.changes(since), scan, "since {since}");
    }
    assert!(st.change_log.len() <= 2 * st.series.len() + 4096);
}

#[test]
fn nanosecond_counters_export_seconds() {
    let mut st = Store::new(Limits::default());
    let (a, _) = st.hello(ident(1));
    st.register(a, 0, &Desc::counter("t_total", &[], "").with_scale(Scale::Nano)).unwrap();
    st.update(a, &[int(0, 1_500_000_000)], 1.0);
    let v = &st.values()[0];
    assert_eq!(v.value, 1.5);
}

#[test]
fn changes_lists_only_what_moved() {
    let mut st = Store::new(Limits::default());
    let (a, _) = st.hello(ident(1));
    st.register(a, 0, &hits("A")).unwrap();
    st.register(a, 1, &hits("B")).unwrap();
    st.update(a, &[int(0, 1), int(1, 1)], 1.0);
    let g = st.generation();
    assert_eq!(st.changes(0).len(), 2);
    st.update(a, &[int(1, 1), int(0, 0)], 2.0);
    let names: Vec<String> = st.changes(g).into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["mpi_hits_total{function=\"B\"}"]);
    assert!(st.changes(st.generation()).is_empty());
    assert_eq!(st.get(&["nope".into()]), Err(UnknownSeries(vec!["nope".to_owned()])));
}

#[test]
fn counters_stay_finite_and_in_range_whatever_deltas_arrive() {
    let mut st = Store::new(Limits::default());
    let (a, _) = st.hello(ident(1));
    st.register(a, 0, &Desc::counter("f_total", &[], "F")).unwrap();
    st.register(a, 1, &Desc::counter("i_total", &[], "I")).unwrap();
    // The poisoned counter: two float deltas of 1.7e308.
    assert!(st.update(a, &[flt(0, 1.7e308)], 1.0).is_empty());
    let e = st.update(a, &[flt(0, 1.7e308)], 2.0);
    assert_eq!(e[0].refusal, Refusal::Overflow { key: "f_total".into(), value: "1.7e308".into(), total: false });
    assert_eq!(val(&st, "f_total"), 1.7e308);
    // Integers: the delta that would pass 2^64 - 1 is refused, the value stays.
    assert!(st.update(a, &[int(1, u64::MAX - 1)], 1.0).is_empty());
    let e = st.update(a, &[int(1, 2)], 2.0);
    assert_eq!(e[0].refusal, Refusal::Overflow { key: "i_total".into(), value: "2".into(), total: false });
    assert!(st.update(a, &[int(1, 1)], 3.0).is_empty());
    assert_eq!(st.values()[1].value, u64::MAX as f64);
    assert_eq!(st.refusals(RefusalKind::Overflow), 2);
    assert!(st.values().iter().all(|v| v.value.is_finite()));
}

fn owned(st: &mut Store, pid: u32, uid: u32) -> CollectorSlot {
    let (slot, _) = st.hello(ident(pid));
    st.set_uid(slot, uid);
    slot
}

#[test]
fn a_family_belongs_to_its_first_user_and_reserved_names_to_the_daemon() {
    let mut st = Store::new(Limits::default());
    st.internal(&Desc::counter("tau_metric_proxy_frames_total", &[], "Frames")).unwrap();
    let (a, b) = (owned(&mut st, 1, 1000), owned(&mut st, 2, 1001));
    st.register(a, 0, &Desc::counter("app_total", &[("k", "1")], "A")).unwrap();
    // Another user can register neither the same series nor another of the family.
    for (id, desc) in [
        (0, Desc::counter("app_total", &[("k", "1")], "A")),
        (1, Desc::counter("app_total", &[("k", "2")], "A")),
        (2, Desc::counter("app_total", &[], "other help")),
    ] {
        let e = st.register(b, id, &desc).unwrap_err();
        assert_eq!(e.refusal, Refusal::Foreign { name: "app_total".into() }, "{desc:?}");
    }
    // Nor write the proxy's own metrics, nor create a family of its prefix.
    for name in ["tau_metric_proxy_frames_total", "tau_metric_proxy_new_total"] {
        let e = st.register(b, 3, &Desc::counter(name, &[], "x")).unwrap_err();
        assert_eq!(e.refusal, Refusal::Reserved { name: name.into() });
    }
    assert_eq!(st.refusals(RefusalKind::Foreign), 3);
    assert_eq!(st.refusals(RefusalKind::Reserved), 2);
    // The owner still can, and the other user's own families are its own.
    st.register(a, 1, &Desc::counter("app_total", &[("k", "2")], "A")).unwrap();
    st.register(b, 4, &Desc::counter("other_total", &[], "B")).unwrap();
    assert_eq!(
        st.register(a, 2, &Desc::counter("other_total", &[], "B")).unwrap_err().refusal.kind(),
        RefusalKind::Foreign
    );
}

#[test]
fn shared_families_keep_their_type_and_scale_and_cannot_be_pinned() {
    let mut st = Store::new(Limits::default());
    st.declare_shared("mpi_time_total", Kind::Counter, Scale::Nano, "Seconds").unwrap();
    st.declare_shared("mpi_hits_total", Kind::Counter, Scale::One, "Calls").unwrap();
    let (a, b) = (owned(&mut st, 1, 1000), owned(&mut st, 2, 1001));
    // A gauge that OpenMetrics would show as the same family.
    let e = st.register(a, 0, &Desc::gauge("mpi_hits", &[], "x")).unwrap_err();
    assert_eq!(e.refusal.kind(), RefusalKind::NameConflict);
    let e = st.register(a, 0, &Desc::counter("mpi_time_total", &[("function", "MPI_Send")], "x")).unwrap_err();
    assert_eq!(e.refusal.kind(), RefusalKind::UnitConflict);
    st.register(a, 0, &hits("MPI_Send")).unwrap();
    st.register(b, 0, &hits("MPI_Send")).unwrap();
    // One user tries to pin the node's counter at 2^64 - 1: the other's
    // calls are still counted, never refused.
    assert!(st.update(a, &[int(0, u64::MAX)], 1.0).is_empty());
    assert!(st.update(b, &[int(0, 4096)], 2.0).is_empty());
    assert!(st.update(b, &[int(0, 4096)], 3.0).is_empty());
    assert_eq!(val(&st, "mpi_hits_total{function=\"MPI_Send\"}"), u64::MAX as f64 + 8192.0);
    // The pinning user's own total is refused beyond 2^64 - 1.
    assert_eq!(st.update(a, &[int(0, 1)], 4.0)[0].refusal.kind(), RefusalKind::Overflow);
}

#[test]
fn label_limits_and_empty_values_are_refused_at_registration() {
    let mut st = Store::new(Limits { max_labels: 2, max_label_value_length: 8, ..Limits::default() });
    let (a, _) = st.hello(ident(1));
    let e = st.register(a, 0, &Desc::gauge("g", &[("a", "1"), ("b", "2"), ("c", "3")], "")).unwrap_err();
    assert_eq!(e.refusal, Refusal::TooManyLabels { name: "g".into(), limit: 2 });
    let e = st.register(a, 0, &Desc::gauge("g", &[("a", "123456789")], "")).unwrap_err();
    assert_eq!(e.refusal, Refusal::LabelValueTooLong { name: "g".into(), label: "a".into(), limit: 8 });
    let e = st.register(a, 0, &Desc::gauge("g", &[("a", "")], "")).unwrap_err();
    assert_eq!(e.refusal, Refusal::InvalidName(NameError::EmptyLabelValue { name: "g".into(), label: "a".into() }));
    st.register(a, 0, &Desc::gauge("g", &[("a", "12345678"), ("b", "x")], "")).unwrap();
    assert_eq!(st.refusals(RefusalKind::TooManyLabels), 1);
    assert_eq!(st.refusals(RefusalKind::LabelValueTooLong), 1);
    assert_eq!(st.refusals(RefusalKind::InvalidName), 1);
}

#[test]
fn folding_in_batches_skips_collectors_that_came_back_meanwhile() {
    let mut st = Store::new(Limits::default());
    for pid in 0..10 {
        let (s, _) = st.hello(ident(pid));
        st.register(s, 0, &hits("MPI_Init")).unwrap();
        st.update(s, &[int(0, 1)], 1.0);
        st.disconnect(s, 1.0);
    }
    let departures = st.departures();
    assert_eq!(departures, 10, "each disconnection is a departure");
    // Four slots at a time, the processes judged between two batches.
    let (first, next) = st.disconnected_batch(0, 4);
    assert_eq!((first.len(), next), (4, Some(4)));
    let (rest, end) = st.disconnected_batch(4, 100);
    assert_eq!((rest.len(), end), (6, None));
    // Collector 0 comes back before its batch is folded: it stays.
    let (back, resumed) = st.hello(ident(0));
    assert!(resumed);
    let listed: Vec<CollectorSlot> = first.iter().chain(&rest).map(|(s, _)| *s).collect();
    assert_eq!(st.fold_if_departed(&listed, 2.0), 9);
    assert_eq!(st.known_collectors(), 1);
    assert_eq!(st.departures(), departures + 9, "each fold is a departure");
    assert!(st.is_current(back));
    assert_eq!(val(&st, "mpi_hits_total{function=\"MPI_Init\"}"), 10.0);
}

#[test]
fn a_recovery_zeroes_the_daemons_counters_and_waits_for_remembered_collectors() {
    let mut st = Store::new(Limits::default());
    let own = st.internal(&Desc::counter("tau_metric_proxy_frames_total", &[], "Frames")).unwrap();
    st.internal_add(own, 7, 1.0);
    let (a, _) = st.hello(ident(1));
    st.register(a, 0, &hits("MPI_Send")).unwrap();
    st.update(a, &[int(0, 5)], 1.0);
    st.disconnect(a, 1.0);
    assert!(!st.recovering(1.0), "no recovery without a crash");
    assert_eq!(st.start_recovery(10.0, true), 1);
    assert_eq!(val(&st, "tau_metric_proxy_frames_total"), 0.0, "the daemon's own counters start again");
    assert_eq!(val(&st, "mpi_hits_total{function=\"MPI_Send\"}"), 5.0, "the collectors' totals stay");
    assert!(st.recovering(10.0 + RECOVERY_MIN - 0.1));
    assert!(st.recovering(10.0 + RECOVERY_MIN + 0.1), "a remembered collector is still awaited");
    // It comes back and sends its totals: no longer awaited.
    let (a, _) = st.hello(ident(1));
    st.register(a, 0, &hits("MPI_Send")).unwrap();
    st.resync(a, &[int(0, 6)], 12.5);
    assert_eq!(st.awaited_collectors(), 0);
    assert!(!st.recovering(10.0 + RECOVERY_MIN + 0.1));
    assert!(!st.recovering(10.0), "a recovery ends once");
    assert_eq!(val(&st, "mpi_hits_total{function=\"MPI_Send\"}"), 6.0);
    // A collector that never comes back is waited for at most RECOVERY_MAX.
    let (b, _) = st.hello(ident(2));
    st.disconnect(b, 20.0);
    st.start_recovery(30.0, true);
    assert!(st.recovering(30.0 + RECOVERY_MAX - 0.1));
    assert!(!st.recovering(30.0 + RECOVERY_MAX + 0.1));
}
