//! A real Prometheus server scraping real proxies, configured by the
//! generator with the shipped rules: exact sums across nodes, OpenMetrics
//! negotiation, the recording rules, a 100,000-series scrape inside a 1 s
//! timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use client::{PushConfig, PushState, Pusher};
use protocol::{Desc, Scale};

use crate::util::{generate_config, http_get, number, wait_for, Prometheus, Proxy, TempDir, FAMILIES};

/// What the collectors send: node, rank on that node, family, label, label
/// value, first push, increment in the second push. Times are nanoseconds
/// (exported in seconds); they are binary fractions of a second, so that the
/// expected sums are exact in floating point too.
const SENT: &[(usize, usize, &str, &str, &str, u64, u64)] = &[
    (0, 0, "mpi_hits_total", "function", "MPI_Send", 3, 4),
    (0, 0, "mpi_size_total", "function", "MPI_Send", 3 * 4096, 4 * 4096),
    (0, 0, "mpi_time_total", "function", "MPI_Send", 1_500_000_000, 250_000_000),
    (0, 0, "mpi_hits_total", "function", "MPI_Allreduce", 10, 10),
    (0, 0, "mpi_time_total", "function", "MPI_Allreduce", 125_000_000, 125_000_000),
    (0, 1, "mpi_hits_total", "function", "MPI_Recv", 3, 4),
    (0, 1, "mpi_size_total", "function", "MPI_Recv", 3 * 4096, 4 * 4096),
    (0, 1, "mpi_time_total", "function", "MPI_Recv", 2_000_000_000, 500_000_000),
    (0, 1, "mpi_hits_total", "function", "MPI_Allreduce", 10, 10),
    (0, 1, "mpi_time_total", "function", "MPI_Allreduce", 250_000_000, 125_000_000),
    (0, 1, "strace_hits_total", "scall", "read", 100, 28),
    (0, 1, "strace_size_total", "scall", "read", 1 << 20, 1 << 19),
    (0, 1, "strace_time_total", "scall", "read", 62_500_000, 62_500_000),
    (0, 1, "strace_errors_total", "scall", "read", 3, 2),
    (1, 0, "mpi_hits_total", "function", "MPI_Allreduce", 10, 10),
    (1, 0, "mpi_time_total", "function", "MPI_Allreduce", 500_000_000, 3_000_000_000),
    (1, 0, "strace_hits_total", "scall", "read", 7, 1),
    (1, 0, "strace_size_total", "scall", "read", 70_000, 1_000),
    (1, 0, "strace_time_total", "scall", "read", 31_250_000, 31_250_000),
    (1, 0, "strace_hits_total", "scall", "write", 5, 5),
    (1, 0, "strace_size_total", "scall", "write", 512, 512),
    (1, 0, "strace_time_total", "scall", "write", 1_000_000_000, 1_000_000_000),
    (1, 0, "strace_errors_total", "scall", "read", 1, 1),
    (1, 0, "strace_errors_total", "scall", "openat", 2, 4),
];

/// One process pushing its rows of [`SENT`] to its node's proxy.
struct Rank {
    pusher: Pusher,
    rows: Vec<(client::MetricId, u64, u64)>,
}

impl Rank {
    fn new(proxy: &Proxy, node: usize, rank: usize) -> Rank {
        let mut pusher = Pusher::new(PushConfig::new(proxy.socket.clone(), &format!("rank{rank}@node{node}")));
        let rows = SENT
            .iter()
            .filter(|r| (r.0, r.1) == (node, rank))
            .map(|&(_, _, family, label, value, first, more)| {
                let desc = Desc::counter(family, &[(label, value)], "test counter");
                let desc = if family.ends_with("_time_total") { desc.with_scale(Scale::Nano) } else { desc };
                (pusher.register(desc), first, more)
            })
            .collect();
        Rank { pusher, rows }
    }

    fn push(&mut self, second: bool) {
        for &(id, first, more) in &self.rows {
            self.pusher.add(id, if second { more } else { first });
        }
        assert_eq!(self.pusher.flush(), PushState::Sent);
    }
}

/// What Prometheus must report for `sum by (LABEL) (FAMILY)` after the first
/// push, or after both, computed from [`SENT`]; node-wide with `node`.
fn expected(family: &str, node: Option<usize>, both: bool) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, u64> = BTreeMap::new();
    for &(n, _, f, _, value, first, more) in SENT {
        if f == family && node.unwrap_or(n) == n {
            *sums.entry(value.to_owned()).or_default() += first + if both { more } else { 0 };
        }
    }
    let scale = if family.ends_with("_time_total") { 1e9 } else { 1.0 };
    sums.into_iter().map(|(k, v)| (k, v as f64 / scale)).collect()
}

/// Two daemons stand in for two nodes; three collectors and the launcher
/// push to them; Prometheus, configured by the generator with the shipped
/// rules, must add them up exactly.
#[test]
fn prometheus_sums_two_nodes_exactly_over_openmetrics() {
    let proxies = [Proxy::start(), Proxy::start()];
    let mut ranks = [Rank::new(&proxies[0], 0, 0), Rank::new(&proxies[0], 0, 1), Rank::new(&proxies[1], 1, 0)];
    for r in &mut ranks {
        r.push(false);
    }
    let dir = TempDir::new("prom-e2e");
    let nodes: Vec<String> = proxies.iter().map(|p| format!("127.0.0.1:{}", p.port)).collect();
    let config = generate_config(&dir, &nodes.join(","));
    let prom = Prometheus::start(&config);
    let limit = Duration::from_secs(20);

    // First push scraped: the sums match it.
    let want = expected("mpi_hits_total", None, false);
    let got = prom.wait_by("sum by (function) (mpi_hits_total)", "function", &want, limit);
    assert_eq!(got, want, "first push; prometheus log:\n{}", prom.log());

    // Second push, and the launcher counting three runs (two on node 0).
    for r in &mut ranks {
        r.push(true);
    }
    for p in [&proxies[0], &proxies[0], &proxies[1]] {
        p.tool("tau_metric_proxy_run").args(["--", "true"]).run().assert_exit(0);
    }
    for (family, label) in FAMILIES {
        let want = expected(family, None, true);
        let query = format!("sum by ({label}) ({family})");
        assert_eq!(prom.wait_by(&query, label, &want, limit), want, "{query}");
        // Node-wide: the same family on each node.
        for (n, node) in nodes.iter().enumerate() {
            let want = expected(family, Some(n), true);
            let query = format!("sum by ({label}) ({family}{{node=\"{node}\"}})");
            assert_eq!(prom.wait_by(&query, label, &want, limit), want, "{query}");
        }
    }
    let runs = BTreeMap::from([(String::new(), 3.0)]);
    let query = "sum(tau_metric_proxy_run_total{operation=\"exec\"})";
    assert_eq!(prom.wait_by(query, "", &runs, limit), runs, "{query}");
    // The seed's example query: one series per node, labelled with it.
    let reads = prom.by("strace_time_total{scall=\"read\"}", "node");
    assert_eq!(reads, BTreeMap::from([(nodes[0].clone(), 0.125), (nodes[1].clone(), 0.0625)]));

    // Both targets up, one job each, named after the node.
    let up = prom.query("up");
    assert_eq!(up.len(), 2, "{up:?}");
    for (labels, value) in &up {
        assert_eq!(*value, 1.0, "{labels:?}");
        let node = &labels["node"];
        assert!(nodes.contains(node), "{labels:?}");
        assert_eq!(labels["instance"], *node);
        assert_eq!(labels["job"], format!("tau_{node}"));
    }
    // Prometheus asked for OpenMetrics, and every scrape got it.
    for node in &nodes {
        let scrapes = prom.by(&format!("tau_metric_proxy_scrapes_total{{node=\"{node}\"}}"), "format");
        assert_eq!(scrapes.get("text"), Some(&0.0), "{node}: {scrapes:?}");
        assert!(scrapes.get("openmetrics").is_some_and(|&n| n >= 2.0), "{node}: {scrapes:?}");
    }

    // The recording rules: exact job-wide totals ...
    for (family, label) in FAMILIES {
        let want = expected(family, None, true);
        let record = format!("{label}:{family}:sum");
        assert_eq!(prom.wait_by(&record, label, &want, limit), want, "{record}");
    }
    // ... and rates, which the second push made positive: node-wide for both
    // nodes, job-wide and node-wide by function.
    let rate_positive = |record: &str, label: &str, keys: &[&str]| {
        let mut last = BTreeMap::new();
        let ok = wait_for(limit, || {
            last = prom.by(record, label);
            (last.len() == keys.len() && keys.iter().all(|k| last.get(*k).is_some_and(|&v| v > 0.0))).then_some(())
        });
        assert!(ok.is_some(), "{record}: {last:?}, want {keys:?} all above 0");
    };
    let node_keys: Vec<&str> = nodes.iter().map(String::as_str).collect();
    for m in ["hits", "size", "time"] {
        rate_positive(&format!("node:mpi_{m}:rate1m"), "node", &node_keys[..if m == "size" { 1 } else { 2 }]);
        rate_positive(&format!("node:strace_{m}:rate1m"), "node", &node_keys);
    }
    rate_positive("node:strace_errors:rate1m", "node", &node_keys);
    rate_positive("scall:strace_errors:rate1m", "scall", &["openat", "read"]);
    rate_positive("function:mpi_hits:rate1m", "function", &["MPI_Allreduce", "MPI_Recv", "MPI_Send"]);
    rate_positive("scall:strace_size:rate1m", "scall", &["read", "write"]);
    rate_positive(&format!("node_function:mpi_time:rate1m{{node=\"{}\"}}", nodes[1]), "function", &["MPI_Allreduce"]);
    rate_positive("node_scall:strace_hits:rate1m{scall=\"read\"}", "node", &node_keys);
}

/// A proxy holding 100,000 series is scraped successfully with the
/// generated configuration's 1 s scrape timeout.
#[test]
fn a_100000_series_scrape_fits_in_the_1s_timeout() {
    const SERIES: usize = 100_000;
    let proxy = Proxy::start();
    // Two collectors of 50,000 series each, under the per-collector limit.
    let mut pushers: Vec<Pusher> = (0..2)
        .map(|c| {
            let mut p = Pusher::new(PushConfig::new(proxy.socket.clone(), &format!("load{c}")));
            for i in 0..SERIES / 2 {
                let series = format!("{c}-{i}");
                let id = p.register(Desc::counter("load_hits_total", &[("series", &series)], "one of many"));
                p.add(id, i as u64 + 1);
            }
            p
        })
        .collect();
    for p in &mut pushers {
        assert_eq!(p.flush(), PushState::Sent);
    }
    let last = "load_hits_total{series=\"1-49999\"}";
    assert_eq!(proxy.wait_value(last, 50_000.0), 50_000.0);
    // The page alone, as Prometheus asks for it, for the record.
    let start = std::time::Instant::now();
    let page = http_get(proxy.port, "/metrics", Some("application/openmetrics-text;version=1.0.0"));
    assert_eq!(page.status, 200);
    assert_eq!(page.body.matches("\nload_hits_total{").count(), SERIES);
    println!("GET /metrics: {} bytes of OpenMetrics in {:?}", page.body.len(), start.elapsed());

    let dir = TempDir::new("prom-load");
    let config = generate_config(&dir, &format!("127.0.0.1:{}", proxy.port));
    assert!(std::fs::read_to_string(&config).unwrap().contains("    scrape_timeout: 1s\n"));
    let prom = Prometheus::start(&config);
    // Every scrape of the last 15 s read the full page, and at least three
    // did; none timed out (a timeout gives up 0 and no samples).
    let raw = |query: &str| -> Vec<f64> {
        let data = prom.api(query);
        data["result"][0]["values"].as_array().map(|a| a.iter().map(|v| number(&v[1])).collect()).unwrap_or_default()
    };
    let mut scraped = Vec::new();
    let three = wait_for(Duration::from_secs(30), || {
        scraped = raw("scrape_samples_scraped[15s]");
        (scraped.iter().filter(|&&n| n >= SERIES as f64).count() >= 3).then_some(())
    });
    assert!(three.is_some(), "samples per scrape: {scraped:?}; prometheus log:\n{}", prom.log());
    let ups = raw("up[15s]");
    let scraped = raw("scrape_samples_scraped[15s]");
    assert!(ups.len() >= 3 && ups.iter().all(|&u| u == 1.0), "up over the last 15 s: {ups:?}");
    assert!(scraped.iter().all(|&n| n >= SERIES as f64), "samples per scrape: {scraped:?}");
    // Prometheus's duration includes storing the samples (the first scrape
    // creates the 100,000 series); its timeout covers only the HTTP fetch.
    let took = raw("scrape_duration_seconds[15s]");
    println!("scrape_duration_seconds of {} samples: {took:?} (timeout 1 s)", scraped[0]);
}
