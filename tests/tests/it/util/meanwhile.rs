//! A collector that pushes and a scraper that scrapes while something heavy
//! happens in the daemon, measuring how long each waited.

use std::time::{Duration, Instant};

use protocol::{Desc, Request, Role, Sample, Value};

use super::{http_get, identity, Proxy, RawPeer};

/// What [`push_and_scrape_meanwhile`] saw.
pub struct Meanwhile {
    pub pushed: u64,
    pub worst_push: Duration,
    pub worst_scrape: Duration,
}

/// For `span`, a collector adds 1 to `meanwhile_total` again and again: a
/// push is done when a query sees it, and the scrape after it must show it.
pub fn push_and_scrape_meanwhile(p: &Proxy, span: Duration) -> Meanwhile {
    let mut pusher = RawPeer::connect(&p.socket, Role::Collector);
    pusher.send(&Request::Hello { identity: identity("meanwhile") });
    pusher.send(&Request::Register { id: 0, desc: Desc::counter("meanwhile_total", &[], "Pushed meanwhile") });
    let mut q = client::QueryClient::connect(&p.socket, Duration::from_secs(20)).unwrap();
    let name = vec!["meanwhile_total".to_owned()];
    let mut seen = Meanwhile { pushed: 0, worst_push: Duration::ZERO, worst_scrape: Duration::ZERO };
    let started = Instant::now();
    while started.elapsed() < span {
        let t = Instant::now();
        pusher.send(&Request::Update { samples: vec![Sample { id: 0, value: Value::Int(1) }] });
        seen.pushed += 1;
        let pushed = seen.pushed;
        loop {
            match q.get(&name).expect("query meanwhile") {
                client::GetResult::Found(v) if v[0].value == pushed as f64 => break,
                _ => assert!(t.elapsed() < Duration::from_secs(20), "push {pushed} not counted within 20 s"),
            }
        }
        seen.worst_push = seen.worst_push.max(t.elapsed());
        let t = Instant::now();
        let r = http_get(p.port, "/metrics", None);
        seen.worst_scrape = seen.worst_scrape.max(t.elapsed());
        assert_eq!(r.status, 200);
        assert!(r.body.contains(&format!("\nmeanwhile_total {pushed}\n")), "the scrape shows every push");
    }
    seen
}
