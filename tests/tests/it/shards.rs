//! Clusters beyond one Prometheus: `--prometheus-config NODES --shards N`
//! run as two real shard servers and one global server over proxies on
//! loopback ports standing in for nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use client::{PushConfig, PushState, Pusher};
use protocol::{Desc, Scale};

use crate::util::{promtool, rules_file, tool, wait_for, Prometheus, Proxy, TempDir, FAMILIES};

/// Writes `--prometheus-config NODES --shards N [--shard-servers S]` with the
/// shipped rules into `dir`; promtool must accept every file. Returns the
/// files, shards first, then `global.yml`.
fn generate(dir: &Path, nodes: &str, shards: usize, servers: Option<&str>) -> Vec<PathBuf> {
    let mut cmd = tool("tau_metric_client")
        .args(["--prometheus-config", nodes, "--shards", &shards.to_string(), "--prometheus-rules"])
        .arg(rules_file())
        .arg("-o")
        .arg(dir);
    if let Some(s) = servers {
        cmd = cmd.args(["--shard-servers", s]);
    }
    cmd.run().assert_exit(0).assert_stdout("").assert_stderr("");
    let mut files: Vec<PathBuf> = (0..shards).map(|i| dir.join(format!("shard-{i}.yml"))).collect();
    files.push(dir.join("global.yml"));
    let mut listed: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    listed.sort();
    let mut want = files.clone();
    want.sort();
    assert_eq!(listed, want, "the files written");
    for (i, file) in files.iter().enumerate() {
        let check = promtool(&["check", "config", file.to_str().unwrap()]).run();
        if check.code() != Some(0) {
            check.fail(format_args!("expected status 0 for\n{}", std::fs::read_to_string(file).unwrap()));
        }
        // Shards load the recording rules; the global server reads the shards'.
        let rules = if i < shards { "SUCCESS: 46 rules found" } else { "is valid prometheus config file syntax" };
        assert!(check.combined().contains(rules), "{check}");
    }
    files
}

/// Starts one shard server per shard file, then the global server federating
/// them (its file regenerated with the shards' real ports).
fn start_cluster(dir: &TempDir, nodes: &str, shards: usize) -> (Vec<Prometheus>, Prometheus) {
    let first = generate(&dir.join("default"), nodes, shards, None);
    let servers: Vec<Prometheus> = first[..shards].iter().map(|f| Prometheus::start(f.as_path())).collect();
    let list: Vec<String> = servers.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
    let files = generate(&dir.join("real"), nodes, shards, Some(&list.join(",")));
    // Only the comment saying where each shard runs changed.
    let strip = |f: &PathBuf| -> String {
        std::fs::read_to_string(f).unwrap().lines().filter(|l| !l.contains("--web.listen-address")).collect()
    };
    for (i, (a, b)) in first.iter().zip(&files).take(shards).enumerate() {
        assert_eq!(strip(a), strip(b), "shard-{i}.yml");
    }
    let global = Prometheus::start(&files[shards]);
    (servers, global)
}

/// Nanoseconds per unit of a `_time_total` value: 1/8 s, so that every sum
/// in seconds is exact in floating point.
const TIME_UNIT: u64 = 125_000_000;

/// What node N's collector sends: every family, two label values, value
/// `(N + 1) * (family + 1) * (value + 1)` (times in [`TIME_UNIT`]s).
fn push_node(proxy: &Proxy, n: usize) -> Pusher {
    let mut p = Pusher::new(PushConfig::new(proxy.socket.clone(), &format!("rank0@node{n}")));
    for (base, (family, label)) in FAMILIES.iter().enumerate() {
        for (k, value) in ["a", "b"].iter().enumerate() {
            let desc = Desc::counter(family, &[(label, &format!("{label}_{value}"))], "test counter");
            let (desc, unit) =
                if family.ends_with("_time_total") { (desc.with_scale(Scale::Nano), TIME_UNIT) } else { (desc, 1) };
            let id = p.register(desc);
            p.add(id, ((n + 1) * (base + 1) * (k + 1)) as u64 * unit);
        }
    }
    assert_eq!(p.flush(), PushState::Sent);
    p
}

#[test]
fn two_shards_and_a_global_server_add_up_eight_nodes_exactly() {
    const NODES: usize = 8;
    let proxies: Vec<Proxy> = (0..NODES).map(|_| Proxy::start()).collect();
    let _pushers: Vec<Pusher> = proxies.iter().enumerate().map(|(n, p)| push_node(p, n)).collect();
    let nodes: Vec<String> = proxies.iter().map(|p| format!("127.0.0.1:{}", p.port)).collect();
    let dir = TempDir::new("prom-shards");
    let (shards, global) = start_cluster(&dir, &nodes.join(","), 2);
    let limit = Duration::from_secs(30);

    // Each node is scraped by exactly one shard, and is up there.
    let mut seen = BTreeMap::new();
    let all = wait_for(limit, || {
        seen.clear();
        for (i, s) in shards.iter().enumerate() {
            for (labels, up) in s.query("up{job=\"tau_nodes\"}") {
                assert_eq!(up, 1.0, "shard {i}: {labels:?}; log:\n{}", s.log());
                assert_eq!(labels["instance"], labels["node"], "{labels:?}");
                assert!(seen.insert(labels["node"].clone(), i).is_none(), "{labels:?} on two shards");
            }
        }
        (seen.len() == NODES).then_some(())
    });
    assert!(all.is_some(), "nodes seen by the shards: {seen:?}");
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), nodes.iter().cloned().collect::<BTreeSet<_>>());
    println!("nodes per shard: {seen:?}");

    // The global server holds the shards' job-wide totals, one series per
    // shard that has a node; their sum is what the collectors sent.
    for (base, (family, label)) in FAMILIES.iter().enumerate() {
        let record = format!("{label}:{family}:sum");
        let total: usize = (1..=NODES).sum();
        let unit = if family.ends_with("_time_total") { TIME_UNIT as f64 / 1e9 } else { 1.0 };
        let want: BTreeMap<String, f64> = ["a", "b"]
            .iter()
            .enumerate()
            .map(|(k, v)| (format!("{label}_{v}"), (total * (base + 1) * (k + 1)) as f64 * unit))
            .collect();
        let query = format!("sum by ({label}) ({record})");
        assert_eq!(global.wait_by(&query, label, &want, limit), want, "{query}; log:\n{}", global.log());
        let per_shard = global.by(&format!("{record}{{{label}=\"{label}_a\"}}"), "shard");
        let used: BTreeSet<String> = seen.values().map(|i| i.to_string()).collect();
        assert_eq!(per_shard.keys().cloned().collect::<BTreeSet<_>>(), used, "{record}");
    }
    // Node-level rules come through too, each node from its own shard.
    let mut rates = BTreeMap::new();
    let every = wait_for(limit, || {
        rates = global.by("node:strace_hits:rate1m", "node");
        (rates.len() == NODES).then_some(())
    });
    assert!(every.is_some(), "node:strace_hits:rate1m at the global server: {rates:?}");
    for (labels, _) in global.query("node:strace_hits:rate1m") {
        assert_eq!(labels["shard"], seen[&labels["node"]].to_string(), "{labels:?}");
    }
    // What is federated: the 28 recorded series of the node families (no
    // job runs here, so the jobs' 18 rules record nothing), not the raw
    // families.
    let (jobs, records): (BTreeSet<String>, BTreeSet<String>) = std::fs::read_to_string(rules_file())
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: ").map(str::to_owned))
        .partition(|r| r.starts_with("jobid"));
    assert_eq!((records.len(), jobs.len()), (28, 18));
    let mut names = BTreeSet::new();
    let mut recorded = BTreeSet::new();
    wait_for(limit, || {
        let query = "count by (__name__) ({job=\"tau_federate\"})";
        names = global.query(query).into_iter().map(|(l, _)| l["__name__"].clone()).collect();
        recorded = names.iter().filter(|n| n.contains(':')).cloned().collect();
        (recorded == records).then_some(())
    });
    assert_eq!(recorded, records, "recorded series at the global server");
    let raw: Vec<&String> = names.iter().filter(|n| !n.contains(':')).collect();
    // up and the scrape_* series of its own two targets, nothing else.
    let own: BTreeSet<&str> = raw.iter().map(|s| s.as_str()).collect();
    assert!(own.iter().all(|n| *n == "up" || n.starts_with("scrape_")), "{own:?}");
    let ups = global.by("up{job=\"tau_federate\"}", "shard");
    assert_eq!(ups, BTreeMap::from([("0".to_owned(), 1.0), ("1".to_owned(), 1.0)]));
}

/// The scale figure, printed: 64 proxies of 1,000 series each scraped every
/// second by two shards, and a cluster-wide query at the global server.
#[test]
fn sixty_four_nodes_of_1000_series_over_two_shards_figures() {
    const NODES: usize = 64;
    const SERIES: usize = 1000;
    let proxies: Vec<Proxy> = (0..NODES).map(|_| Proxy::start()).collect();
    let _pushers: Vec<Pusher> = proxies
        .iter()
        .enumerate()
        .map(|(n, proxy)| {
            let mut p = Pusher::new(PushConfig::new(proxy.socket.clone(), &format!("load@node{n}")));
            for i in 0..SERIES {
                let id = p.register(Desc::counter("mpi_hits_total", &[("function", &format!("F{i:04}"))], "load"));
                p.add(id, 1);
            }
            assert_eq!(p.flush(), PushState::Sent);
            p
        })
        .collect();
    let last = "mpi_hits_total{function=\"F0999\"}";
    for p in &proxies {
        assert_eq!(p.wait_value(last, 1.0), 1.0);
    }
    let nodes: Vec<String> = proxies.iter().map(|p| format!("127.0.0.1:{}", p.port)).collect();
    let dir = TempDir::new("prom-shards-64");
    let (shards, global) = start_cluster(&dir, &nodes.join(","), 2);
    // Every node scraped whole at least twice, on one shard or the other.
    let want = BTreeMap::from([("F0000".to_owned(), NODES as f64)]);
    let got = global.wait_by(
        "sum by (function) (function:mpi_hits_total:sum{function=\"F0000\"})",
        "function",
        &want,
        Duration::from_secs(60),
    );
    assert_eq!(got, want, "global log:\n{}", global.log());
    let mut scraped = 0;
    for (i, s) in shards.iter().enumerate() {
        let full = s.query(&format!("scrape_samples_scraped{{job=\"tau_nodes\"}} >= {SERIES}"));
        scraped += full.len();
        let mut took: Vec<f64> =
            s.query("scrape_duration_seconds{job=\"tau_nodes\"}").into_iter().map(|x| x.1).collect();
        took.sort_by(f64::total_cmp);
        if let (Some(lo), Some(hi)) = (took.first(), took.last()) {
            println!(
                "shard {i}: {} nodes of {SERIES} series, scrape_duration_seconds median {:.4} s, min {lo:.4} s, max {hi:.4} s",
                took.len(),
                took[took.len() / 2]
            );
        }
    }
    assert_eq!(scraped, NODES, "nodes scraped whole by the shards");
    let query = "topk(5, sum by (function) (function:mpi_hits:rate1m))";
    let mut lat = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        assert!(!global.query(query).is_empty(), "{query}");
        lat.push(start.elapsed());
    }
    lat.sort();
    let series = global.query("count({job=\"tau_federate\", __name__=~\".+:.+\"})");
    println!(
        "global: {} federated series; `{query}` median {:?} (5 queries, min {:?}, max {:?})",
        series.first().map(|s| s.1).unwrap_or(0.0),
        lat[2],
        lat[0],
        lat[4]
    );
}
