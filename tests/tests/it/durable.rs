//! Crash restarts and big state files: a SIGKILL never makes a counter go
//! backwards for Prometheus, and folding thousands of departed collectors
//! or saving 100,000 series delays neither collectors nor scrapes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use client::{PushConfig, PushState, Pusher};
use protocol::{Desc, Identity, Sample, Value};
use proxy_core::{Limits, ProcessRef, Snapshot, Store};

use crate::util::{http_get, push_and_scrape_meanwhile, wait_for, Meanwhile, Proxy, TempDir};

const RUN: &str = "tau_metric_proxy_run_total{operation=\"exec\"}";

fn pusher(p: &Proxy, name: &str) -> (Pusher, client::MetricId) {
    let mut cfg = PushConfig::new(p.socket.clone(), name);
    cfg.retry_every = Duration::ZERO;
    let mut pusher = Pusher::new(cfg);
    let id = pusher.register(Desc::counter(name, &[], "Pushed across a crash"));
    (pusher, id)
}

/// The values of a text-format page, by `family{labels}`.
fn page_values(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_owned(), v.parse().unwrap_or(f64::NAN))))
        .collect()
}

/// What the state file holds of `name`, if it holds it.
fn saved_value(state: &std::path::Path, name: &str) -> Option<f64> {
    let snap = Snapshot::from_bytes(&std::fs::read(state).ok()?).ok()?;
    let (store, _) = Store::restore(Limits::default(), snap).ok()?;
    store.get(&[name.to_owned()]).ok().map(|v| v[0].value)
}

#[test]
fn a_sigkill_between_pushes_never_makes_a_counter_go_backwards() {
    let dir = TempDir::new("sigkill");
    let state = dir.join("proxy.state");
    // No periodic save during the test: only departures make the daemon save.
    let mut p = Proxy::with_state(dir, &state, &["--state-interval", "3600"]);
    let (mut live, live_id) = pusher(&p, "live_total");
    live.add(live_id, 5);
    assert_eq!(live.flush(), PushState::Sent);
    assert_eq!(p.wait_value("live_total", 5.0), 5.0);
    // Departed collectors: each launch pushes its count and leaves.
    for _ in 0..3 {
        p.tool("tau_metric_proxy_run").args(["--", "true"]).run().assert_success();
    }
    // Saved once they are folded: the file holds their counts and only the
    // live collector.
    let saved = wait_for(Duration::from_secs(20), || {
        let collectors = Snapshot::from_bytes(&std::fs::read(&state).ok()?).ok()?.collector_count();
        (collectors == 1 && saved_value(&state, RUN)? == 3.0).then_some(())
    });
    assert!(saved.is_some(), "no save after the departures held them; log:\n{}", p.log());
    assert_eq!(p.wait_value("tau_metric_proxy_remembered_collectors", 1.0), 1.0, "nothing left to depart");
    // Then pushes no save holds: of a collector the file knows, and of one
    // it does not.
    live.add(live_id, 2);
    assert_eq!(live.flush(), PushState::Sent);
    let (mut late, late_id) = pusher(&p, "late_total");
    late.add(late_id, 4);
    assert_eq!(late.flush(), PushState::Sent);
    assert_eq!(p.wait_value("late_total", 4.0), 4.0);
    assert_eq!(p.wait_value("live_total", 7.0), 7.0);
    // Both read their welcomes (counted by the time their pushes are).
    assert_eq!((live.flush(), late.flush()), (PushState::Sent, PushState::Sent));
    let page = http_get(p.port, "/metrics", None);
    assert_eq!(page.status, 200);
    let before = page_values(&page.body);
    assert_eq!(saved_value(&state, "live_total"), Some(5.0), "the file is behind what was served");

    p.kill();
    let dir = std::mem::replace(&mut p.dir, TempDir::new("moved"));
    let p = Proxy::with_state(dir, &state, &["--state-interval", "3600"]);
    assert!(p.log().contains("the state file was not written at a stop"), "{}", p.log());
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
        refused += 1;
        assert!(started.elapsed() < Duration::from_secs(30), "still recovering after 30 s");
        live.flush();
        late.flush();
        std::thread::sleep(Duration::from_millis(20));
    };
    let recovered = started.elapsed();
    for name in ["live_total", "late_total", RUN] {
        println!("{name}: {} before the SIGKILL, {} on the first page after it", before[name], after[name]);
        assert_eq!(after[name], before[name], "{name}");
    }
    println!(
        "first page {:.2} s after the restart, {refused} scrapes answered 503 meanwhile; the daemon's own \
         tau_metric_proxy_frames_total restarted from zero ({} before, {} after)",
        recovered.as_secs_f64(),
        before["tau_metric_proxy_frames_total"],
        after["tau_metric_proxy_frames_total"]
    );
    // Their daemon's welcomes, answered before their totals were counted,
    // are read at their next push.
    assert_eq!((live.flush(), late.flush()), (PushState::Sent, PushState::Sent));
    assert_eq!((live.forgotten(), late.forgotten()), (0, 1), "the file knew live_total's collector only");
}

#[test]
fn folding_and_saving_a_big_store_delay_neither_pushes_nor_scrapes() {
    const SERIES: u32 = 100_000;
    const DEPARTED: u32 = 20_000;
    let dir = TempDir::new("bigstate");
    let state = dir.join("proxy.state");
    // A state file of 100,000 series and 20,000 remembered collectors whose
    // processes are gone, each having counted three of them.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let process = ProcessRef { pid: dead, start_time: 1 };
    let mut st = Store::new(Limits::default());
    let who = |nonce: u64| Identity { pid: dead, start_time: 1, nonce, program: "gone".into() };
    let (bulk, _) = st.hello_from(who(0), None, Some(process), None, 1.0).unwrap();
    let descs: Vec<Desc> = (0..SERIES).map(|i| Desc::counter("bulk_total", &[("i", &i.to_string())], "Bulk")).collect();
    for (i, desc) in descs.iter().enumerate() {
        st.register(bulk, i as u32, desc).unwrap();
    }
    st.update(bulk, &(0..SERIES).map(|id| Sample { id, value: Value::Int(1) }).collect::<Vec<_>>(), 1.0);
    st.disconnect(bulk, 1.0);
    for n in 1..=DEPARTED {
        let (c, _) = st.hello_from(who(n as u64), None, Some(process), None, 1.0).unwrap();
        for k in 0..3 {
            st.register(c, k, &descs[((n * 3 + k) % SERIES) as usize]).unwrap();
        }
        st.update(c, &(0..3).map(|id| Sample { id, value: Value::Int(1) }).collect::<Vec<_>>(), 1.0);
        st.disconnect(c, 1.0);
    }
    std::fs::write(&state, st.snapshot().with_clean(true).to_bytes()).unwrap();

    let p = Proxy::with_state(dir, &state, &["--state-interval", "1", "-v"]);
    let Meanwhile { pushed, worst_push, worst_scrape } = push_and_scrape_meanwhile(&p, Duration::from_secs(4));
    // Every departed collector was folded, nothing of what they counted lost.
    assert_eq!(p.wait_value("tau_metric_proxy_remembered_collectors", 1.0), 1.0, "{}", p.log());
    let values = p.values();
    let bulk_sum: f64 = values.iter().filter(|(k, _)| k.starts_with("bulk_total{")).map(|(_, v)| v).sum();
    assert_eq!(bulk_sum, (SERIES + 3 * DEPARTED) as f64);
    let log = p.log();
    assert!(log.contains(&format!("folded {} departed collectors", DEPARTED + 1)), "{log}");
    // "saved N counter series and M collectors to FILE in X ms (store locked Y ms)"
    let saves: Vec<(f64, f64)> = log
        .lines()
        .filter(|l| l.contains(" counter series and ") && l.contains("(store locked "))
        .filter_map(|l| {
            let took = l.rsplit_once(" in ")?.1.split(' ').next()?.parse().ok()?;
            let locked = l.rsplit_once("(store locked ")?.1.split(' ').next()?.parse().ok()?;
            Some((took, locked))
        })
        .collect();
    assert!(!saves.is_empty(), "no save of the state file logged:\n{log}");
    let max = |f: fn(&(f64, f64)) -> f64| saves.iter().map(f).fold(0.0, f64::max);
    println!(
        "{SERIES} series, {DEPARTED} departed collectors folded, {} saves of the state file (longest {:.0} ms, \
         store locked at most {:.1} ms): {pushed} pushes, worst push {:.1} ms, worst scrape {:.1} ms",
        saves.len(),
        max(|s| s.0),
        max(|s| s.1),
        worst_push.as_secs_f64() * 1e3,
        worst_scrape.as_secs_f64() * 1e3
    );
}
