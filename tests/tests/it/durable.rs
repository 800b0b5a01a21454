//! Big state files: folding thousands of departed collectors or saving
//! 100,000 series delays neither collectors nor scrapes.

use std::time::Duration;

use protocol::{Desc, Identity, Sample, Value};
use proxy_core::{Limits, ProcessRef, Store};

use crate::util::{push_and_scrape_meanwhile, Meanwhile, Proxy, TempDir};

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
