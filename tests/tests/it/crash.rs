//! Crash restarts: a SIGKILL never makes a counter go backwards for
//! Prometheus. The journal of `--state` is replayed on top of the state
//! file, so a collector that ended while the daemon was down loses
//! nothing; a torn last record is dropped; segments come and go with the
//! saves; without a journal to vouch for the totals (removed, or stopped
//! by a full disk) `/metrics` waits for the collectors to send them again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use client::{PushState, Pusher};
use proxy_core::Snapshot;

use crate::util::{
    counter_pusher, http_get, journal_segments, page_values, saved_value, wait_for, FullFs, Proxy, TempDir,
};

const RUN: &str = "tau_metric_proxy_run_total{operation=\"exec\"}";

/// A daemon killed with its state file behind what it served.
struct Crashed {
    dir: TempDir,
    state: PathBuf,
    /// A collector the state file knows, which pushed 2 more after it.
    live: Pusher,
    /// A collector the state file does not know.
    late: Pusher,
    /// The page served right before the SIGKILL.
    before: BTreeMap<String, f64>,
}

/// Starts a daemon on `dir` (whose `state/` holds the state file), makes
/// its state file hold `live_total` 5 and one launcher run, then counts
/// `live_total` 7 and `late_total` 4 and SIGKILLs it.
fn crash(dir: TempDir) -> Crashed {
    let state = dir.join("state").join("proxy.state");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    // No periodic save during the test: only departures make the daemon save.
    let mut p = Proxy::with_state(dir, &state, &["--state-interval", "3600"]);
    let (mut live, live_id) = counter_pusher(&p, "live_total");
    live.add(live_id, 5);
    assert_eq!(live.flush(), PushState::Sent);
    assert_eq!(p.wait_value("live_total", 5.0), 5.0);
    // A collector that leaves makes the daemon save.
    p.tool("tau_metric_proxy_run").args(["--", "true"]).run().assert_success();
    // Saved once it is folded too: the file holds its count and only the
    // live collector.
    let saved = wait_for(Duration::from_secs(20), || {
        let collectors = Snapshot::from_bytes(&std::fs::read(&state).ok()?).ok()?.collector_count();
        (collectors == 1 && saved_value(&state, RUN)? == 1.0).then_some(())
    });
    assert!(saved.is_some(), "no save after the departure; log:\n{}", p.log());
    assert_eq!(saved_value(&state, "live_total"), Some(5.0));
    live.add(live_id, 2);
    assert_eq!(live.flush(), PushState::Sent);
    let (mut late, late_id) = counter_pusher(&p, "late_total");
    late.add(late_id, 4);
    assert_eq!(late.flush(), PushState::Sent);
    assert_eq!(p.wait_value("late_total", 4.0), 4.0);
    assert_eq!(p.wait_value("live_total", 7.0), 7.0);
    // Both read their welcomes (counted by the time their pushes are).
    assert_eq!((live.flush(), late.flush()), (PushState::Sent, PushState::Sent));
    let page = http_get(p.port, "/metrics", None);
    assert_eq!(page.status, 200);
    let before = page_values(&page.body);
    p.kill();
    assert_eq!(saved_value(&state, "live_total"), Some(5.0), "the state file is behind what was served");
    assert_eq!(saved_value(&state, "late_total"), None);
    let dir = std::mem::replace(&mut p.dir, TempDir::new("moved"));
    Crashed { dir, state, live, late, before }
}

/// Asserts that the page shows what was served before the crash.
fn assert_same(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) {
    for name in ["live_total", "late_total", RUN] {
        println!("{name}: {} before the SIGKILL, {} on the first page after it", before[name], after[name]);
        assert_eq!(after.get(name), Some(&before[name]), "{name}");
    }
}

#[test]
fn a_collector_that_ends_while_the_daemon_is_down_loses_nothing() {
    let Crashed { dir, state, live, mut late, before } = crash(TempDir::new("crash-replay"));
    let segments = journal_segments(&state);
    // The collector the state file knew ends before the daemon is back: it
    // can never send its totals again.
    drop(live);
    let started = Instant::now();
    let p = Proxy::with_state(dir, &state, &["--state-interval", "3600"]);
    let log = p.log();
    let replayed = log.lines().find(|l| l.contains("replayed")).unwrap_or_else(|| panic!("no replay logged:\n{log}"));
    assert!(replayed.contains("did not stop cleanly (it crashed or was killed)"), "{replayed}");
    // The first page is served at once, with the totals last served.
    let page = http_get(p.port, "/metrics", None);
    assert_eq!(page.status, 200, "{}", page.body);
    let after = page_values(&page.body);
    assert_same(&before, &after);
    println!(
        "first page {:.0} ms after the restart; {}; the daemon's own tau_metric_proxy_frames_total restarted \
         from zero ({} before, {} after)",
        started.elapsed().as_secs_f64() * 1e3,
        replayed.split(": ").last().and_then(|r| r.split(';').next()).unwrap_or(replayed),
        before["tau_metric_proxy_frames_total"],
        after["tau_metric_proxy_frames_total"]
    );
    assert_eq!(after["tau_metric_proxy_frames_total"], 0.0);
    // The collector the journal told of is remembered: it counts on
    // without being told it was forgotten, and nothing twice (its first
    // push finds its connection gone, the next ones reconnect).
    let sent = wait_for(Duration::from_secs(10), || (late.flush() == PushState::Sent).then_some(()));
    assert!(sent.is_some(), "{}", p.log());
    assert_eq!(late.flush(), PushState::Sent);
    assert_eq!(late.forgotten(), 0);
    assert_eq!(p.value("late_total"), 4.0);
    // The first save after the restart removes the segments replayed.
    let gone = wait_for(Duration::from_secs(10), || {
        let now = journal_segments(&state);
        (now.len() == 1 && now[0] > *segments.last()?).then_some(now)
    });
    println!("journal segments {segments:?} before the restart, {gone:?} after its first save");
    assert!(gone.is_some(), "segments now {:?}; log:\n{}", journal_segments(&state), p.log());
}

#[test]
fn without_its_journal_a_crash_restart_waits_for_the_collectors() {
    let Crashed { dir, state, mut live, mut late, before } = crash(TempDir::new("crash-wait"));
    for seq in journal_segments(&state) {
        std::fs::remove_file(state.with_file_name(format!("proxy.state.journal.{seq}"))).unwrap();
    }
    let p = Proxy::with_state(dir, &state, &["--state-interval", "3600"]);
    let log = p.log();
    assert!(log.contains("the last daemon did not stop cleanly (it crashed or was killed)"), "{log}");
    assert!(log.contains("proxy.state.journal.") && log.contains(" is missing: waiting for 1 remembered"), "{log}");
    // Until the collectors sent their totals again, no page rather than
    // lower counters; the collectors go on pushing as they would.
    let started = Instant::now();
    let mut refused = 0;
    let after = loop {
        let page = http_get(p.port, "/metrics", None);
        if page.status == 200 {
            break page_values(&page.body);
        }
        assert_eq!(page.status, 503, "{}", page.body);
        assert_eq!(page.body, "recovering after a crash: waiting for the collectors to resend their totals\n");
        if refused == 0 {
            // Nor lower values to a query client or the live page (the
            // recovery lasts 2 s at least, this is its first moment).
            p.client(&["-v"]).assert_exit(1).assert_stderr(
                "tau_metric_client: error: tau_metric_proxy answered: recovering after a crash: waiting for the \
                 collectors to resend their totals\n",
            );
            let api = http_get(p.port, "/api/values", None);
            assert_eq!((api.status, api.body.as_str()), (503, page.body.as_str()));
        }
        refused += 1;
        assert!(started.elapsed() < Duration::from_secs(30), "still recovering after 30 s");
        live.flush();
        late.flush();
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_same(&before, &after);
    println!(
        "first page {:.2} s after the restart, {refused} scrapes answered 503 meanwhile",
        started.elapsed().as_secs_f64()
    );
    // Their daemon's welcomes, answered before their totals were counted,
    // are read at their next push.
    assert_eq!((live.flush(), late.flush()), (PushState::Sent, PushState::Sent));
    assert_eq!((live.forgotten(), late.forgotten()), (0, 1), "the file knew live_total's collector only");
}

#[test]
fn a_record_torn_by_the_crash_is_dropped_and_the_rest_replayed() {
    let Crashed { dir, state, live, late, before } = crash(TempDir::new("crash-torn"));
    let last = *journal_segments(&state).last().expect("a journal segment");
    let segment = state.with_file_name(format!("proxy.state.journal.{last}"));
    // What a daemon killed in the middle of a write leaves: a frame header
    // announcing more than follows.
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 5]);
    std::fs::write(&segment, &bytes).unwrap();
    drop((live, late));
    let p = Proxy::with_state(dir, &state, &["--state-interval", "3600"]);
    let log = p.log();
    let line = format!("journal segment {}: dropped its last 9 bytes", segment.display());
    assert!(log.contains(&line), "{log}");
    let page = http_get(p.port, "/metrics", None);
    assert_eq!(page.status, 200, "{}", page.body);
    assert_same(&before, &page_values(&page.body));
}

#[test]
fn saves_start_segments_and_remove_old_ones_and_a_clean_stop_leaves_none() {
    let dir = TempDir::new("journal-files");
    let state = dir.join("proxy.state");
    let mut p = Proxy::with_state(dir, &state, &["--state-interval", "3600"]);
    let first = journal_segments(&state);
    assert_eq!(first.len(), 1, "one segment from the start: {first:?}");
    let mut seen = vec![first[0]];
    for n in 1..=3 {
        p.tool("tau_metric_proxy_run").args(["--", "true"]).run().assert_success();
        let next = wait_for(Duration::from_secs(10), || {
            let now = journal_segments(&state);
            (saved_value(&state, RUN) == Some(n as f64) && now.len() == 1 && now[0] > *seen.last()?).then_some(now[0])
        });
        seen.push(next.unwrap_or_else(|| panic!("segments {:?} after save {n}", journal_segments(&state))));
        let snap = Snapshot::from_bytes(&std::fs::read(&state).unwrap()).unwrap();
        assert_eq!(snap.journal(), *seen.last().unwrap(), "the state file names the segment after it");
    }
    println!("segments after the start and each of 3 saves: {seen:?}");
    assert_eq!(p.stop_with(nix::sys::signal::Signal::SIGTERM).code(), Some(0));
    assert_eq!(journal_segments(&state), Vec::<u64>::new());
    let snap = Snapshot::from_bytes(&std::fs::read(&state).unwrap()).unwrap();
    assert!(snap.is_clean());
}

#[test]
fn a_journal_that_cannot_be_written_stops_and_a_crash_then_waits_for_the_collectors() {
    let dir = TempDir::new("journal-full");
    let fs = FullFs::empty(dir.join("fs"));
    let state = fs.path().join("proxy.state");
    let mut p = Proxy::with_state(dir, &state, &["--state-interval", "3600"]);
    let (mut c, id) = counter_pusher(&p, "full_total");
    c.add(id, 1);
    assert_eq!(c.flush(), PushState::Sent);
    assert_eq!(p.wait_value("full_total", 1.0), 1.0);
    // A departure makes the daemon save: the state file names a segment.
    p.tool("tau_metric_proxy_run").args(["--", "true"]).run().assert_success();
    let named = wait_for(Duration::from_secs(10), || {
        let snap = Snapshot::from_bytes(&std::fs::read(&state).ok()?).ok()?;
        (snap.journal() > 0).then_some(snap.journal())
    });
    assert!(named.is_some(), "{}", p.log());
    fs.fill();
    // Every push records a few bytes; the segment's last page fills up.
    let mut pushed = 1;
    let failed = wait_for(Duration::from_secs(20), || {
        c.add(id, 1);
        c.flush();
        pushed += 1;
        p.log().contains("cannot write journal segment").then_some(())
    });
    assert!(failed.is_some(), "{}", p.log());
    let log = p.log();
    let line = log.lines().find(|l| l.contains("cannot write journal segment")).unwrap();
    assert!(line.contains("No space left on device"), "{line}");
    assert!(line.contains("the journal stops until the next save of the state file"), "{line}");
    assert_eq!(journal_segments(&state), Vec::<u64>::new(), "a broken chain is removed");
    // The daemon counts on; the saves fail for want of space too.
    assert_eq!(c.flush(), PushState::Sent);
    assert_eq!(p.wait_value("full_total", pushed as f64), pushed as f64);
    println!("journal stopped after {pushed} pushes on a full filesystem; the daemon served full_total {pushed}");
    p.kill();
    let dir = std::mem::replace(&mut p.dir, TempDir::new("moved"));
    let p = Proxy::with_state(dir, &state, &["--state-interval", "3600"]);
    let log = p.log();
    assert!(log.contains(&format!("proxy.state.journal.{} is missing: waiting for ", named.unwrap())), "{log}");
    let value = wait_for(Duration::from_secs(30), || {
        c.flush();
        let page = http_get(p.port, "/metrics", None);
        (page.status == 200).then(|| page_values(&page.body)["full_total"])
    });
    assert_eq!(value, Some(pushed as f64), "{}", p.log());
    drop(fs);
}

#[test]
fn a_jobs_series_go_on_across_a_clean_restart_and_a_sigkill() {
    const JOB_RUNS: &str = "tau_job_run_total{jobid=\"keep-7\",operation=\"exec\"}";
    let dir = TempDir::new("crash-jobs");
    let state = dir.join("proxy.state");
    let mut p = Proxy::with_state(dir, &state, &["--state-interval", "3600"]);
    let run = |p: &Proxy| {
        p.tool("tau_metric_proxy_run").args(["-j", "keep-7", "--", "true"]).run().assert_success();
    };
    run(&p);
    run(&p);
    assert_eq!(p.wait_value(JOB_RUNS, 2.0), 2.0, "{}", p.log());
    let jobs = |p: &Proxy| {
        let out = p.client(&["--jobs", "-f", "json"]);
        out.assert_success();
        let json: serde_json::Value = serde_json::from_slice(out.stdout_bytes()).unwrap();
        json.as_array()
            .unwrap()
            .iter()
            .map(|j| (j["id"].as_str().unwrap().to_owned(), j["start"].as_f64().unwrap()))
            .collect::<Vec<_>>()
    };
    let before = jobs(&p);
    assert_eq!(before.len(), 1, "{before:?}");
    // A clean restart: the job, finished, is still listed with its start,
    // and its series count on.
    assert_eq!(p.stop_with(nix::sys::signal::Signal::SIGTERM).code(), Some(0));
    let dir = std::mem::replace(&mut p.dir, TempDir::new("moved"));
    let mut p = Proxy::with_state(dir, &state, &["--state-interval", "3600"]);
    assert_eq!(jobs(&p), before);
    assert_eq!(p.value(JOB_RUNS), 2.0);
    run(&p);
    assert_eq!(p.wait_value(JOB_RUNS, 3.0), 3.0);
    // A SIGKILL: the journal holds the job's collector and what it counted
    // since the state file.
    p.kill();
    let dir = std::mem::replace(&mut p.dir, TempDir::new("moved"));
    let p = Proxy::with_state(dir, &state, &["--state-interval", "3600"]);
    let page = http_get(p.port, "/metrics", None);
    assert_eq!(page.status, 200, "{}", page.body);
    let after = page_values(&page.body);
    println!("{JOB_RUNS}: 3 before the SIGKILL, {:?} after; jobs {:?}", after.get(JOB_RUNS), jobs(&p));
    assert_eq!(after.get(JOB_RUNS), Some(&3.0));
    assert_eq!(after.get(RUN), Some(&3.0));
    assert_eq!(jobs(&p), before);
}
